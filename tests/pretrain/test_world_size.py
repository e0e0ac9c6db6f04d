"""A run resumed on another number of processes (issue 48): the global batch kept by the gradient
accumulation, the data position exact, the ZeRO 1-3 states converted to DeepSpeed's universal
layout only after the checkpoint's files passed their checks, and the loss curve of a run that
never changed its world size. Real DeepSpeed on CPU, 1 and 2 processes."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys

import pytest

from pretrain.checkpointer import resize, restore_rng
from pretrain.checkpoints import COMPLETE, CheckpointError, check_before_unpickling, files_of, mark_complete, problem
from pretrain.config import ConfigError, TrainConfig
from tests.pretrain.test_train import base, check, losses, run, torchrun


def configs(micro: int, accumulation: int, saved_micro: int = 4, saved_accumulation: int = 2):
    cfg, saved = TrainConfig(), TrainConfig()
    cfg.trainer = dataclasses.replace(cfg.trainer, micro_batch_size_per_gpu=micro, gradient_accumulation_steps=accumulation)
    saved.trainer = dataclasses.replace(saved.trainer, micro_batch_size_per_gpu=saved_micro,
                                        gradient_accumulation_steps=saved_accumulation)
    return cfg, saved


def test_the_accumulation_keeps_the_global_batch_or_the_resume_names_the_sizes_that_work():
    cfg, saved = configs(4, 2)  # 4 x 2 x 2 processes = 16
    assert resize(cfg, saved, "ck", {}, 2, 1) == {"from": 2, "to": 1, "gradient_accumulation_steps": 4, "global_batch_size": 16,
                                                     "zero_stage": 2}
    assert resize(cfg, saved, "ck", {}, 2, 4)["gradient_accumulation_steps"] == 1
    cfg, _ = configs(2, 8)  # the run's own accumulation already fills it: kept
    assert resize(cfg, saved, "ck", {}, 2, 1)["gradient_accumulation_steps"] == 8
    cfg, _ = configs(2, 1)  # the micro batch is this run's; the accumulation follows
    assert resize(cfg, saved, "ck", {}, 2, 4)["gradient_accumulation_steps"] == 2
    assert resize(cfg, saved, "ck", {"global_batch_size": 24}, 2, 3)["gradient_accumulation_steps"] == 4  # recorded wins
    cfg, _ = configs(4, 2)
    with pytest.raises(ConfigError, match=r"global batch of 16 \(2 processes\); with trainer.micro_batch_size_per_gpu=4 "
                                          r"it continues on 1, 2, 4 processes, not on 3"):
        resize(cfg, saved, "ck", {}, 2, 3)
    cfg, _ = configs(3, 1)
    with pytest.raises(ConfigError, match="no number of processes divides it with micro batches of 3"):
        resize(cfg, saved, "ck", {}, 2, 1)


def test_a_rank_the_checkpoint_has_no_state_for_seeds_from_the_seed_its_rank_and_the_step(tmp_path):
    import torch

    assert restore_rng(str(tmp_path), 1, 1234, 6) is False
    first = torch.rand(4)
    torch.manual_seed(0)
    restore_rng(str(tmp_path), 1, 1234, 6)
    assert torch.equal(torch.rand(4), first)  # the same on every resume
    restore_rng(str(tmp_path), 2, 1234, 6)
    assert not torch.equal(torch.rand(4), first)  # and its own per rank


def test_a_converted_checkpoint_lists_its_nested_files_and_nothing_leads_out(tmp_path):
    folder = tmp_path / "universal" / "step_0000006"
    (folder / "zero" / "wte.weight").mkdir(parents=True)
    (folder / "mp_rank_00_model_states.pt").write_bytes(b"m")
    (folder / "zero" / "wte.weight" / "fp32.pt").write_bytes(b"w" * 10)
    assert problem(str(folder)) == f"no {COMPLETE} (its writing did not finish)"
    mark_complete(str(folder))
    marker = json.loads((folder / COMPLETE).read_text())
    assert files_of(str(folder)) == ["mp_rank_00_model_states.pt", "zero/wte.weight/fp32.pt"] == sorted(marker["sha256"])
    assert problem(str(folder)) is None
    (folder / "zero" / "wte.weight" / "fp32.pt").write_bytes(b"x" * 10)  # same size, other bytes
    with pytest.raises(CheckpointError, match="zero/wte.weight/fp32.pt does not match the sha256"):
        check_before_unpickling(str(folder))
    (folder / "zero" / "wte.weight" / "fp32.pt").write_bytes(b"w" * 10)
    (folder / "zero" / "extra.pt").write_bytes(b"e")
    with pytest.raises(CheckpointError, match="zero/extra.pt is not among the files"):
        check_before_unpickling(str(folder))
    os.remove(folder / "zero" / "extra.pt")
    os.symlink(tmp_path, folder / "zero" / "elsewhere")
    assert "zero/elsewhere is a symbolic link" in problem(str(folder))
    os.remove(folder / "zero" / "elsewhere")
    for name in ("../outside.pt", "zero/../../x.pt", "/etc/passwd", "zero//x.pt"):
        marker["files"] = {name: 1}
        (folder / COMPLETE).write_text(json.dumps(marker))
        assert "which is not a file of the checkpoint folder" in problem(str(folder)), name


# ---------------------------------------------------------------------------------------------
# Real runs

COMMON = ["model.dropout=0", "trainer.checkpoint_interval=4", "trainer.eval_interval=100", "trainer.sample_max_new_tokens=2",
          "trainer.tensorboard=false", "trainer.keep_last=5"]
STEPS = 12


def state_at(out, step: int) -> dict:
    return json.loads((out / "checkpoints" / f"step_{step:07d}" / "trainer_state.json").read_text())


@pytest.fixture(scope="module")
def uninterrupted(shards_dir, tmp_path_factory):
    """Two processes, ZeRO 2, 12 steps that nothing stopped: the curve every resized run must follow."""
    out = tmp_path_factory.mktemp("world-size") / "straight"
    check(torchrun(base(shards_dir, out, *COMMON, "deepspeed=zero2", f"trainer.max_steps={STEPS}")))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("stage", [1, 2, 3])
def test_two_processes_then_one_then_two_continue_the_curve(shards_dir, uninterrupted, tmp_path, stage):
    """Stopped at step 4 of 2 processes, resumed on 1 to step 8, then on 2 to the end: every step's loss
    within float tolerance of the uninterrupted run (ZeRO 1-3 give its losses when nothing stops), and
    step and samples consumed exact at each checkpoint."""
    out = tmp_path / "resized"
    common = [*COMMON, f"deepspeed=zero{stage}"]
    if stage == 2:  # the uninterrupted run's own step 4
        shutil.copytree(uninterrupted, out)
        for step in (8, 12):
            shutil.rmtree(out / "checkpoints" / f"step_{step:07d}")
    else:
        check(torchrun(base(shards_dir, out, *common, "trainer.max_steps=4")))
    one = torchrun(base(shards_dir, out, *common, "trainer.max_steps=8", "model.init=resume"), nproc=1)
    check(one)
    assert "the world size changed: 2 processes wrote" in one.stdout and "1 resume it; the global batch stays 16 " \
        "(gradient accumulation 4), the data position at sample 64" in one.stdout, one.stdout[-3000:]
    assert "world 1, fp32, ZeRO %d, global batch 16 (4 x 4 x 1)" % stage in one.stdout
    assert (out / "checkpoints" / "universal" / "step_0000004" / COMPLETE).exists()
    two = torchrun(base(shards_dir, out, *common, f"trainer.max_steps={STEPS}", "model.init=resume"))
    check(two)
    assert "1 processes wrote" in two.stdout and "ranks 1-1 seed their RNG from trainer.seed and their rank" in two.stdout
    assert "global batch 16 (4 x 2 x 2)" in two.stdout
    expected, got = losses(uninterrupted), losses(out)
    assert sorted(got) == list(range(1, STEPS + 1))
    for step in range(1, STEPS + 1):
        assert got[step] == pytest.approx(expected[step], rel=1e-5, abs=1e-6), (step, got[step], expected[step])
    for step, world in ((8, 1), (12, 2)):
        state = state_at(out, step)
        assert (state["step"], state["samples_consumed"], state["world_size"], state["global_batch_size"]) == \
            (step, step * 16, world, 16)


@pytest.mark.slow
def test_the_conversion_runs_only_on_checked_files_and_is_redone_when_damaged(shards_dir, uninterrupted, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(uninterrupted, out)
    for step in (8, 12):
        shutil.rmtree(out / "checkpoints" / f"step_{step:07d}")
    step4 = out / "checkpoints" / "step_0000004"
    victim = step4 / "zero_pp_rank_1_mp_rank_00_optim_states.pt"
    original = victim.read_bytes()
    victim.write_bytes(original[:-9] + bytes([original[-9] ^ 1]) + original[-8:])
    one = [sys.executable, "-m", "pretrain.train", *base(shards_dir, out, *COMMON, "deepspeed=zero2", "model.init=resume")]
    refused = run([*one, "trainer.max_steps=5"])
    assert refused.returncode == 2 and f"{victim.name} does not match the sha256" in refused.stderr, refused.stderr[-3000:]
    assert not (out / "checkpoints" / "universal").exists()  # nothing was converted, nothing unpickled
    victim.write_bytes(original)
    check(run([*one, "trainer.max_steps=5"]))
    converted = out / "checkpoints" / "universal" / "step_0000004"
    assert problem(str(converted)) is None and state_at(out, 5)["samples_consumed"] == 5 * 16
    fp32 = next(converted.glob("zero/*/fp32.pt"))
    data = fp32.read_bytes()
    fp32.write_bytes(data[:-9] + bytes([data[-9] ^ 1]) + data[-8:])  # the conversion damaged: made again
    again = run([*one, "trainer.max_steps=5", f"trainer.resume_from={step4}"])
    check(again)
    assert f"converting {step4}" in again.stdout and problem(str(converted)) is None
    assert check_before_unpickling(str(converted)) is None
    assert losses(out)[5] == pytest.approx(losses(uninterrupted)[5], rel=1e-5)
