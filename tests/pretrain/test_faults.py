"""What the trainer and the export refuse, each found by trying to break them: a user's folder or the
run itself as an export's destination, a rigged checkpoint, a resume on a world size that cannot keep its
global batch or onto other shards, a second run in a used folder, a pretrained model of another tokenizer, a full disk
during a checkpoint. Real DeepSpeed on CPU (2 processes where a world size matters)."""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest

from pretrain.metrics import metric
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


def test_resume_on_a_world_size_that_cannot_keep_the_global_batch_says_which(trained, shards_dir, tmp_path):
    run_dir = copy_run(trained, tmp_path)
    result = run([sys.executable, "-m", "pretrain.train", *base(shards_dir, run_dir, *COMMON, "trainer.max_steps=4",
                                                                "model.init=resume", "trainer.micro_batch_size_per_gpu=3")])
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "trained with a global batch of 16 (2 processes); with trainer.micro_batch_size_per_gpu=3 no number of " \
        "processes divides it" in result.stderr
    assert not (run_dir / "checkpoints" / "universal").exists()


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


# ---------------------------------------------------------------------------------------------
# What the guide promises, kept (each a member of its class other than the one first reported)


def _metrics_steps(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [r["step"] for r in map(json.loads, f) if r["kind"] == "train"]


def test_a_live_run_holds_its_folder_against_a_second_trainer(shards_dir, tmp_path):
    """While a run trains, a second trainer on its out_dir (a resume, which would cut its metrics
    back, or a new run with trainer.overwrite, which would delete it) is refused naming the holder;
    the live run goes on to its end untouched and lets go of the folder."""
    import signal
    import subprocess

    from tests.pretrain.test_train import REPO, env

    import time

    out = tmp_path / "run"
    log = tmp_path / "first.log"  # a file, not a pipe: a pipe nobody reads fills and stops the trainer mid-step
    with open(log, "w") as sink:
        first = subprocess.Popen([sys.executable, "-m", "pretrain.train",
                                  *base(shards_dir, out, "deepspeed=zero0", "trainer.max_steps=100000", "trainer.log_interval=1",
                                        "trainer.eval_interval=100000", "trainer.checkpoint_interval=100000",
                                        "trainer.tensorboard=false", "trainer.sample_max_new_tokens=2")],
                                 cwd=REPO, env=env(), stdout=sink, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 300
        while "step 1/" not in log.read_text():  # its first step is logged: it holds the folder and trains
            assert first.poll() is None and time.time() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        second = [run([sys.executable, "-m", "pretrain.train", *base(shards_dir, out, "deepspeed=zero0", *extra)])
                  for extra in (["model.init=resume", "trainer.max_steps=200000"], ["trainer.overwrite=true"])]
        for result in second:
            assert result.returncode == 2, result.stderr[-2000:]
            assert f"error: another trainer is running in trainer.out_dir {out} (pid {first.pid}, host " in result.stderr
            assert "Traceback" not in result.stderr
        first.send_signal(signal.SIGUSR1)  # the live run: a checkpoint of its step, exit 3
        assert first.wait(timeout=300) == 3
    finally:
        if first.poll() is None:
            first.kill()
    steps = _metrics_steps(out)
    assert steps == list(range(1, len(steps) + 1)) and (out / "checkpoints" / "latest").exists()
    assert not (out / "_LOCK.json").exists()
    resumed = run([sys.executable, "-m", "pretrain.train", *base(shards_dir, out, "deepspeed=zero0", "model.init=resume",
                                                                 f"trainer.max_steps={steps[-1] + 1}",
                                                                 "trainer.tensorboard=false", "trainer.sample_max_new_tokens=2")])
    check(resumed)  # the folder is free once its run ended
    assert _metrics_steps(out) == list(range(1, steps[-1] + 2))


def test_a_run_whose_loss_stops_being_finite_fails_and_keeps_its_last_finite_checkpoint(shards_dir, tmp_path):
    """The loss goes NaN several steps in (a learning rate that grows in warm-up past what the model
    takes): the run stops in one line with a non-zero status, no checkpoint of a NaN step is written,
    ``latest`` stays the last finite one, and that one exports."""
    out = tmp_path / "run"
    result = run([sys.executable, "-m", "pretrain.train",
                  *base(shards_dir, out, "deepspeed=zero0", "trainer.max_steps=30", "trainer.checkpoint_interval=2",
                        "trainer.eval_interval=100", "trainer.tensorboard=false", "trainer.sample_max_new_tokens=2",
                        "optimizer.lr=30", "scheduler.warmup_steps=6", "deepspeed.gradient_clipping=0",
                        "trainer.max_nonfinite_steps=2")])
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    strict = lambda text: json.loads(text, parse_constant=lambda c: pytest.fail(f"metrics.jsonl holds {c}"))  # noqa: E731
    losses_ = {r["step"]: metric(r, "loss") for r in map(strict, open(out / "metrics.jsonl")) if r["kind"] == "train"}
    bad = min(s for s, v in losses_.items() if v != v or abs(v) == float("inf"))
    record = next(r for r in map(json.loads, open(out / "metrics.jsonl")) if r["kind"] == "train" and r["step"] == bad)
    assert record["loss"] is None and record["not_finite"]["loss"] in ("nan", "inf", "-inf")  # strict JSON: null, named
    assert max(losses_) == bad + 1 < 30, losses_  # stopped at the second non-finite step
    kept = f"step_{(bad - 1) // 2 * 2:07d}"
    assert last.startswith(f"error: step {bad + 1}: loss nan (2 steps in a row not finite") and f"{kept}, is kept as latest" in last
    assert "optimizer.lr (now 30)" in last
    assert (out / "checkpoints" / "latest").read_text() == kept
    assert max(p for p in os.listdir(out / "checkpoints") if p.startswith("step_")) == kept
    check(export(out / "checkpoints", tmp_path / "model"))


def test_an_export_refuses_weights_that_are_not_finite(trained, tmp_path):
    """A checkpoint holding an infinite weight (one written before the trainer stopped on NaN, or
    damaged and resealed) is refused by the export in one line, and nothing is left behind."""
    import torch

    run_dir = copy_run(trained, tmp_path)
    step = run_dir / "checkpoints" / "step_0000002"
    victim = step / "zero_pp_rank_1_mp_rank_00_optim_states.pt"
    state = torch.load(victim, map_location="cpu", weights_only=False)  # the test's own file
    state["optimizer_state_dict"]["single_partition_of_fp32_groups"][0].data[3] = float("inf")
    torch.save(state, victim)
    _reseal(step)
    result = export(step, tmp_path / "model")
    assert result.returncode == 2 and "hold NaN or infinite values" in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "model").exists() and not [p for p in os.listdir(tmp_path) if p.startswith(".model.tmp-")]


def test_resume_refuses_other_optimizer_or_schedule_settings_naming_them(trained, shards_dir, tmp_path):
    run_dir = copy_run(trained, tmp_path)
    result = run([sys.executable, "-m", "pretrain.train",
                  *base(shards_dir, run_dir, *COMMON, "trainer.max_steps=4", "model.init=resume", "optimizer.betas=[0.8,0.99]",
                        "scheduler.min_lr_ratio=0.5")])
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    line = result.stderr.strip().splitlines()[-1]
    assert "optimizer.betas=[0.8, 0.99] (it trained with [0.9, 0.95])" in line and "scheduler.min_lr_ratio=0.5 (it trained with 0.1)" in line
    assert "model.init=pretrained" in line and not (run_dir / "_LOCK.json").exists()


def test_checkpoint_files_are_confined_to_their_folder(trained, tmp_path):
    """A config.yaml that is a symbolic link to another run's, or a COMPLETE.json naming an absolute
    path with its real sha256: refused before anything there is read, hashed or unpickled."""
    import hashlib

    run_dir = copy_run(trained, tmp_path)
    step = run_dir / "checkpoints" / "step_0000002"
    other = tmp_path / "other.yaml"
    other.write_text((step / "config.yaml").read_text().replace("n_layer: 2", "n_layer: 3"))
    (step / "config.yaml").unlink()
    (step / "config.yaml").symlink_to(other)
    result = export(step, tmp_path / "m1")
    assert result.returncode == 2 and "config.yaml is a symbolic link" in result.stderr, result.stderr[-2000:]
    (step / "config.yaml").unlink()
    (step / "config.yaml").write_text(other.read_text().replace("n_layer: 3", "n_layer: 2"))
    _reseal(step)
    secret = tmp_path / "secret.txt"
    secret.write_text("not the checkpoint's")
    complete = json.loads((step / "COMPLETE.json").read_text())
    complete["files"][str(secret)] = secret.stat().st_size
    complete["sha256"][str(secret)] = hashlib.sha256(secret.read_bytes()).hexdigest()
    (step / "COMPLETE.json").write_text(json.dumps(complete))
    result = export(step, tmp_path / "m2")
    assert result.returncode == 2 and f"lists '{secret}', which is not a file of the checkpoint" in result.stderr
    # a step folder that links to another run's step: the resume skips it, saying why
    linked = run_dir / "checkpoints" / "step_0000009"
    linked.symlink_to(trained / "checkpoints" / "step_0000002")
    from pretrain.checkpoints import find_resumable

    folder, skipped = find_resumable(str(run_dir / "checkpoints"))
    assert skipped[0][0] == str(linked) and "the folder is a symbolic link" in skipped[0][1]


def test_a_micro_batch_larger_than_the_split_is_refused(shards_dir, tmp_path):
    from reddit_pretrain.shards import ShardSet

    sessions = ShardSet(str(shards_dir), "train").num_documents
    result = run([sys.executable, "-m", "pretrain.train",
                  *base(shards_dir, tmp_path / "run", "deepspeed=zero0", "data.mode=padded",
                        f"trainer.micro_batch_size_per_gpu={sessions + 1}", "trainer.gradient_accumulation_steps=1")])
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert (f"trainer.micro_batch_size_per_gpu={sessions + 1} is larger than the train split of {shards_dir}, "
            f"{sessions:,} samples (sessions, data.mode=padded)") in result.stderr
    assert not (tmp_path / "run").exists()


def test_a_batch_that_cannot_be_allocated_is_one_line():
    import torch

    from pretrain.train import Run, TrainingFailed, _allocated

    class Ctx:
        step, cfg = 6, type("Cfg", (), {"data": type("Data", (), {"seq_len": 1024})()})()

    run_ = Run(Ctx(), type("B", (), {"micro_batch_size_per_gpu": 512})(), {}, None, None, None, None, None, None)
    with pytest.raises(TrainingFailed, match=r"^step 7: a micro batch of 512 x 1024 tokens could not be allocated \(.*"
                                             r"lower trainer.micro_batch_size_per_gpu"):
        _allocated(run_, lambda: torch.empty(2**62, dtype=torch.uint8))  # a real allocation the machine refuses
    with pytest.raises(ValueError):  # any other error is left as it is
        _allocated(run_, lambda: (_ for _ in ()).throw(ValueError("other")))


def _read_only(small_disk, name):
    import subprocess

    disk = small_disk(64 << 20, name)
    return disk, lambda: subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)


def test_unwritable_outputs_are_one_line_in_every_command(trained, shards_dir, extracted, small_disk, tmp_path):
    """A read-only file system under a new training run, a resumed run, an export and a dataset
    export, and a full disk under an export: one line each, status 2, no traceback."""
    from extraction.sessions.export_dataset import main as export_dataset_main

    disk, seal = _read_only(small_disk, "ro")
    shutil.copytree(trained, disk / "run")
    (disk / "dataset").mkdir()
    seal()
    for cmd, said in [(["-m", "pretrain.train", *base(shards_dir, disk / "new", "deepspeed=zero0")], "read-only"),
                      (["-m", "pretrain.train", *base(shards_dir, disk / "run", "deepspeed=zero0", "model.init=resume",
                                                       "trainer.max_steps=4")], "read-only"),
                      (["-m", "pretrain.export", str(trained / "checkpoints"), str(disk / "model")], "read-only")]:
        result = run([sys.executable, *cmd])
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
        assert said in result.stderr.strip().splitlines()[-1], result.stderr[-1000:]
    assert export_dataset_main([str(extracted / "extract"), str(disk / "dataset")]) == 2
    full = small_disk(256 << 10, "full")
    result = export(trained / "checkpoints", full / "model")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: no space left on {full} (tmpfs)")
    assert os.listdir(full) == []


def test_train_and_export_refuse_a_tokenizer_edited_since_the_shards(extracted, tokenizer_dir, tmp_path):
    """The tokenizer folder the shards name gets a new tokenizer_config.json (tokenizer.json untouched,
    so its old digest alone would pass): train and export refuse in one line naming the file and both
    digests, instead of training or exporting with a tokenizer the shards were not made with."""
    from extraction.tokenize.job import TokenizeConfig, run_tokenize

    tok = tmp_path / "tok"
    shutil.copytree(tokenizer_dir, tok)
    shards = tmp_path / "shards"
    run_tokenize(TokenizeConfig(input=str(extracted / "extract"), output=str(shards), tokenizer=str(tok),
                                max_session_tokens=256, tokens_per_shard=100_000))
    one_step = ["deepspeed=zero0", "trainer.max_steps=1", "trainer.checkpoint_interval=1", "trainer.eval_interval=1",
                "trainer.sample_max_new_tokens=2", "trainer.tensorboard=false"]
    check(run([sys.executable, "-m", "pretrain.train", *base(shards, tmp_path / "run", *one_step)]))
    config = json.loads((tok / "tokenizer_config.json").read_text())
    (tok / "tokenizer_config.json").write_text(json.dumps({**config, "eos_token": "the"}))
    recorded = json.loads((shards / "manifest.json").read_text())["tokenizer"]["files"]["tokenizer_config.json"]
    refused = [run([sys.executable, "-m", "pretrain.train", *base(shards, tmp_path / "run2", *one_step)]),
               export(tmp_path / "run" / "checkpoints", tmp_path / "model")]
    for result in refused:
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
        line = result.stderr.strip().splitlines()[-1]
        assert "tokenizer_config.json has sha256" in line and f"the manifest records {recorded}" in line, line
    assert not (tmp_path / "model").exists() and not (tmp_path / "run2").exists()


def test_evaluate_and_chat_refuse_a_tokenizer_changed_in_an_export(trained, extracted, tmp_path):
    """The export records the digests of the tokenizer it writes beside the model; a special-tokens
    file added there afterwards is refused by evaluate and chat in one line."""
    check(export(trained / "checkpoints", tmp_path / "model"))
    (tmp_path / "model" / "special_tokens_map.json").write_text(json.dumps({"eos_token": "hello"}))
    for cmd in (["-m", "pretrain.evaluate", str(tmp_path / "model"), str(extracted / "extract"), "--contexts", "2"],
                ["-m", "pretrain.chat", str(tmp_path / "model")]):
        result = run([sys.executable, *cmd])
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert "its tokenizer is not the one exported with the model (special_tokens_map.json" in result.stderr
