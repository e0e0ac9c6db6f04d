"""What the trainer and the export refuse, each found by trying to break them: a user's folder or the
run itself as an export's destination, a rigged checkpoint, a resume with another world size or onto
other shards, a second run in a used folder, a pretrained model of another tokenizer, a full disk
during a checkpoint. Real DeepSpeed on CPU (2 processes where a world size matters)."""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest

from tests.pretrain.test_train import base, check, losses, run, torchrun

pytestmark = pytest.mark.slow

COMMON = ["deepspeed=zero2", "trainer.max_steps=2", "trainer.checkpoint_interval=2", "trainer.eval_interval=2",
          "trainer.sample_max_new_tokens=2", "trainer.tensorboard=false"]


@pytest.fixture(scope="module")
def trained(shards_dir, tmp_path_factory):
    """A 2-process ZeRO-2 run of 2 steps with its checkpoint (copy it before changing anything)."""
    out = tmp_path_factory.mktemp("faults") / "run"
    check(torchrun(base(shards_dir, out, *COMMON)))
    return out


def copy_run(trained, tmp_path, name="run"):
    target = tmp_path / name
    shutil.copytree(trained, target)
    return target


def export(checkpoint, dest, *extra):
    return run([sys.executable, "-m", "pretrain.export", str(checkpoint), str(dest), *extra])


def test_export_replaces_only_an_earlier_export(trained, tmp_path):
    run_dir = copy_run(trained, tmp_path)
    ckpt = run_dir / "checkpoints"
    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    refused = export(ckpt, user)
    assert refused.returncode == 2 and "holds files the export did not write (notes.txt)" in refused.stderr
    assert (user / "notes.txt").read_text() == "mine"
    for dest in (run_dir, tmp_path):  # the run itself, or a folder holding it: never, not even with --overwrite
        for extra in ([], ["--overwrite"]):
            result = export(ckpt, dest, *extra)
            assert result.returncode == 2 and "reads from" in result.stderr, result.stderr[-2000:]
    assert sorted(os.listdir(run_dir)) == sorted(os.listdir(trained)) and (ckpt / "step_0000002" / "COMPLETE.json").exists()
    (tmp_path / "afile").write_text("x")
    assert export(ckpt, tmp_path / "afile").returncode == 2 and (tmp_path / "afile").read_text() == "x"
    first = export(ckpt, tmp_path / "model")
    check(first)
    assert f"exported step 2 ({ckpt / 'step_0000002'}) to {tmp_path / 'model'}" in first.stdout
    check(export(ckpt, tmp_path / "model"))  # an earlier export is the export's to replace
    check(export(ckpt, user, "--overwrite"))
    assert not (user / "notes.txt").exists() and (user / "config.json").exists()


class Rigged:
    """Unpickling this runs a shell command: what a hostile checkpoint file holds."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_rigged_checkpoint_is_never_unpickled(trained, shards_dir, tmp_path):
    import hashlib

    import torch

    run_dir = copy_run(trained, tmp_path)
    step = run_dir / "checkpoints" / "step_0000002"
    marker = tmp_path / "code_ran"
    # 1. A file changed after it was written (same size): it no longer matches the sha256 COMPLETE.json
    # recorded, and is refused before anything is unpickled.
    victim = step / "zero_pp_rank_0_mp_rank_00_optim_states.pt"
    original = victim.read_bytes()
    victim.write_bytes(original[:-9] + bytes([original[-9] ^ 1]) + original[-8:])
    result = export(step, tmp_path / "m1")
    assert result.returncode == 2 and f"{victim.name} does not match the sha256" in result.stderr, result.stderr[-2000:]
    victim.write_bytes(original)
    torch.save({"torch": Rigged(marker), "cuda": None}, step / "rng_rank00000.pt")
    # 2. COMPLETE.json rewritten to match (a hostile sender re-signs it): torch's restricted
    # unpickler refuses the file, on export and on resume, and nothing runs.
    complete = json.loads((step / "COMPLETE.json").read_text())
    data = (step / "rng_rank00000.pt").read_bytes()
    complete["files"]["rng_rank00000.pt"] = len(data)
    complete["sha256"]["rng_rank00000.pt"] = hashlib.sha256(data).hexdigest()
    (step / "COMPLETE.json").write_text(json.dumps(complete))
    result = export(step, tmp_path / "m2")
    assert result.returncode == 2 and "posix.system" in result.stderr and "refuses" in result.stderr, result.stderr[-2000:]
    resumed = torchrun(base(shards_dir, run_dir, *COMMON, "trainer.max_steps=4", "model.init=resume"))
    assert resumed.returncode != 0 and "posix.system" in resumed.stdout + resumed.stderr
    assert not marker.exists(), "the checkpoint ran code"


def test_resume_with_another_world_size_says_which(trained, shards_dir, tmp_path):
    run_dir = copy_run(trained, tmp_path)
    result = run([sys.executable, "-m", "pretrain.train", *base(shards_dir, run_dir, *COMMON, "trainer.max_steps=4",
                                                                "model.init=resume")])
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "was written by 2 processes" in result.stderr and "resume it with 2 processes" in result.stderr


def test_resume_on_other_shards_is_refused_unless_asked(trained, extracted, tokenizer_dir, shards_dir, tmp_path):
    from extraction.tokenize.job import TokenizeConfig, run_tokenize

    other = tmp_path / "other_shards"  # the same tokenizer, other documents (shorter sessions)
    run_tokenize(TokenizeConfig(input=str(extracted / "extract"), output=str(other), tokenizer=tokenizer_dir,
                                max_session_tokens=96, tokens_per_shard=100_000))
    run_dir = copy_run(trained, tmp_path)
    refused = torchrun(base(other, run_dir, *COMMON, "trainer.max_steps=4", "model.init=resume"))
    assert refused.returncode != 0 and "trained on other shards" in refused.stderr, refused.stderr[-3000:]
    allowed = torchrun(base(other, run_dir, *COMMON, "trainer.max_steps=4", "model.init=resume",
                            "trainer.resume_with_new_data=true"))
    check(allowed)
    assert "the data order restarts from the first sample" in allowed.stdout
    state = json.loads((run_dir / "checkpoints" / "step_0000004" / "trainer_state.json").read_text())
    assert state["step"] == 4 and state["samples_consumed"] == 2 * 4 * 2 * 2  # 2 steps of 16 samples: counted from 0 at step 2


def test_a_second_run_into_a_used_folder_is_refused_or_starts_over(trained, shards_dir, tmp_path):
    run_dir = copy_run(trained, tmp_path)
    before = sorted(os.listdir(run_dir / "checkpoints"))
    refused = run([sys.executable, "-m", "pretrain.train", *base(shards_dir, run_dir, *COMMON, "deepspeed=zero0")])
    assert refused.returncode == 2 and "holds another run (checkpoints up to step_0000002, metrics.jsonl)" in refused.stderr
    assert sorted(os.listdir(run_dir / "checkpoints")) == before
    again = run([sys.executable, "-m", "pretrain.train", *base(shards_dir, run_dir, *COMMON, "deepspeed=zero0",
                                                               "trainer.max_steps=1", "trainer.checkpoint_interval=1",
                                                               "trainer.overwrite=true")])
    check(again)
    assert sorted(losses(run_dir)) == [1]  # one run's curve, not two
    assert sorted(p for p in os.listdir(run_dir / "checkpoints") if p.startswith("step_")) == ["step_0000001"]
    assert (run_dir / "checkpoints" / "latest").read_text() == "step_0000001"


def test_a_pretrained_model_of_another_tokenizer_is_refused(trained, extracted, tokenizer_dir, shards_dir, tmp_path):
    """Same vocabulary size and EOS id, other tokens: training on would be nonsense (perplexity in the
    thousands); the vocabularies are compared whole and the run is refused naming both."""
    from transformers import AutoTokenizer

    from extraction.tokenize.job import TokenizeConfig, run_tokenize
    from extraction.tokenize.train_tokenizer import train_tokenizer

    other_tok = train_tokenizer(str(extracted / "extract" / "sessions"), str(tmp_path / "tok_b"), vocab_size=600,
                                split="valid")
    a, b = AutoTokenizer.from_pretrained(tokenizer_dir), AutoTokenizer.from_pretrained(other_tok)
    assert len(a) == len(b) and a.eos_token_id == b.eos_token_id and a.get_vocab() != b.get_vocab()
    other_shards = tmp_path / "shards_b"
    run_tokenize(TokenizeConfig(input=str(extracted / "extract"), output=str(other_shards), tokenizer=other_tok))
    check(export(trained / "checkpoints", tmp_path / "model"))
    pretrained = ["model.init=pretrained", f"model.pretrained={tmp_path / 'model'}", "deepspeed=zero0",
                  "trainer.max_steps=1", "trainer.eval_interval=1", "trainer.sample_max_new_tokens=2", "trainer.tensorboard=false"]
    refused = run([sys.executable, "-m", "pretrain.train", *base(other_shards, tmp_path / "b", *pretrained)])
    assert refused.returncode == 2 and "is not the one the shards were made with" in refused.stderr, refused.stderr[-3000:]
    assert str(tmp_path / "model") in refused.stderr and other_tok in refused.stderr
    check(run([sys.executable, "-m", "pretrain.train", *base(shards_dir, tmp_path / "a", *pretrained)]))  # its own: trains


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one(shards_dir, small_disk):
    """The second checkpoint does not fit: one line naming the disk, the partial folder removed,
    the first checkpoint complete and still the latest."""
    disk = small_disk(5 << 20)
    out = disk / "run"
    result = run([sys.executable, "-m", "pretrain.train",
                  *base(shards_dir, out, "deepspeed=zero2", "trainer.max_steps=4", "trainer.checkpoint_interval=2",
                        "trainer.eval_interval=2", "trainer.sample_max_new_tokens=2", "trainer.tensorboard=false")])
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: no space left on {disk} (tmpfs) writing {out / 'checkpoints'}") and "previous one is kept" in last
    assert "Traceback" not in result.stderr
    root = out / "checkpoints"
    assert sorted(p for p in os.listdir(root) if p.startswith("step_")) == ["step_0000002"]
    assert (root / "latest").read_text() == "step_0000002" and (root / "step_0000002" / "COMPLETE.json").exists()
    from pretrain.checkpoints import problem

    assert problem(str(root / "step_0000002")) is None


def test_the_export_behaves_like_a_hub_model(trained, tmp_path):
    """Left padding saved (not only set in memory), a chat template in DialoGPT's format that
    pipeline("text-generation") takes, and a model card with the run's data and losses."""
    from transformers import AutoTokenizer, pipeline

    check(export(trained / "checkpoints", tmp_path / "model"))
    tok = AutoTokenizer.from_pretrained(tmp_path / "model")
    assert tok.padding_side == "left"
    assert json.loads((tmp_path / "model" / "tokenizer_config.json").read_text())["padding_side"] == "left"
    messages = [{"role": "user", "content": "hi there"}, {"role": "assistant", "content": "hello"}]
    assert tok.apply_chat_template(messages, tokenize=False) == f"hi there{tok.eos_token}hello{tok.eos_token}"
    reply = pipeline("text-generation", model=str(tmp_path / "model"))(messages[:1], max_new_tokens=3)[0]["generated_text"]
    assert reply[0] == messages[0] and reply[-1]["role"] == "assistant"
    card = (tmp_path / "model" / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: transformers\npipeline_tag: text-generation\n")
    assert "- steps: 2" in card and "validation loss:" in card and "RC_2015-01.zst" in card and "rules on: deleted, bots" in card


def _resave_as_python_3_11_early(path, member_name=None):
    """Re-pickles a checkpoint file as CPython 3.11.0-3.11.3 do: a member of an int enum (DeepSpeed's
    ZeroStageEnum) as ``getattr(ZeroStageEnum, name)``; with ``member_name`` a rigged name instead."""
    import pickle
    import types

    import torch
    from deepspeed.runtime.zero.config import ZeroStageEnum

    class EarlyPickler(pickle.Pickler):
        def reducer_override(self, obj):
            if isinstance(obj, ZeroStageEnum):
                return getattr, (ZeroStageEnum, member_name or obj.name)
            return NotImplemented

    state = torch.load(path, map_location="cpu", weights_only=False)  # the test's own file
    torch.save(state, path, pickle_module=types.SimpleNamespace(Pickler=EarlyPickler, __name__="pickle"))
    assert b"getattr" in open(path, "rb").read()


def _reseal(step):
    import hashlib

    complete = json.loads((step / "COMPLETE.json").read_text())
    for name in complete["files"]:
        data = (step / name).read_bytes()
        complete["files"][name], complete["sha256"][name] = len(data), hashlib.sha256(data).hexdigest()
    (step / "COMPLETE.json").write_text(json.dumps(complete))


def test_a_checkpoint_written_by_python_3_11_early_releases_loads_and_getattr_stays_refused(trained, tmp_path):
    run_dir = copy_run(trained, tmp_path)
    step = run_dir / "checkpoints" / "step_0000002"
    victim = step / "zero_pp_rank_0_mp_rank_00_optim_states.pt"
    _resave_as_python_3_11_early(victim)
    _reseal(step)
    result = export(step, tmp_path / "model")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "model" / "config.json").exists()
    # The stand-in for getattr reads enum members only: any other attribute is refused.
    _resave_as_python_3_11_early(victim, member_name="__class__")
    _reseal(step)
    result = export(step, tmp_path / "rigged")
    assert result.returncode == 2 and "getattr" in result.stderr and "refuse" in result.stderr, result.stderr[-2000:]
