"""The DeepSpeed trainer: real launchers, 2 CPU processes over gloo, real shards."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from tests.net import free_port

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))



def env() -> dict:
    return {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
            "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def run(cmd: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=REPO, env=env(), capture_output=True, text=True, timeout=timeout)
    return result


def torchrun(overrides: list[str], nproc: int = 2) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", f"--master_port={free_port()}",
                "-m", "pretrain.train", *overrides])


def base(shards, out, *extra) -> list[str]:
    return [f"data.shards={shards}", f"trainer.out_dir={out}", "model=tiny", "optimizer=adamw", "trainer=ci", "data.seq_len=64",
            *extra]


def losses(out) -> dict[int, float]:
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return {r["step"]: r["loss"] for r in map(json.loads, f) if r["kind"] == "train"}


def check(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]


@pytest.mark.slow
def test_compiled_blocks_train_like_eager_and_export(shards_dir, tmp_path):
    common = ["deepspeed=zero2", "trainer.max_steps=4", "trainer.checkpoint_interval=4", "trainer.eval_interval=4",
              "trainer.sample_max_new_tokens=2", "trainer.tensorboard=false"]
    check(torchrun(base(shards_dir, tmp_path / "eager", *common)))
    check(torchrun(base(shards_dir, tmp_path / "compiled", "model.compile=true", *common)))
    eager, compiled = losses(tmp_path / "eager"), losses(tmp_path / "compiled")
    np.testing.assert_allclose([compiled[s] for s in range(1, 5)], [eager[s] for s in range(1, 5)], rtol=1e-4)
    check(run([sys.executable, "-m", "pretrain.export", str(tmp_path / "compiled" / "checkpoints"), str(tmp_path / "hf")]))
    from transformers import GPT2LMHeadModel

    assert GPT2LMHeadModel.from_pretrained(tmp_path / "hf").config.n_layer == 2


@pytest.fixture(scope="module")
def zero2_thirty(shards_dir, tmp_path_factory):
    """Two processes, ZeRO 2, 30 steps: ``test_two_processes_loss_falls[2]``'s run, and the
    reference the offloaded runs follow (their 6 steps are all in the warm-up, as its first 6 are,
    and nothing before step 6 differs: the same losses as a 6-step run)."""
    out = tmp_path_factory.mktemp("zero2-thirty") / "zero2"
    result = torchrun(base(shards_dir, out, "deepspeed=zero2", "trainer.max_steps=30", "optimizer.lr=3e-3",
                           "trainer.checkpoint_interval=30"))
    check(result)
    return out, result


@pytest.mark.slow
def test_cpu_offload_of_optimizer_and_parameters(shards_dir, zero2_thirty, tmp_path):
    """ZeRO-Offload (stage 2, DeepSpeedCPUAdam) and ZeRO-3 with parameters offloaded too: they run
    and follow the same losses as torch AdamW without offload."""
    common = ["trainer.max_steps=6", "optimizer.lr=3e-3", "trainer.checkpoint_interval=6", "trainer.eval_interval=6",
              "trainer.sample_max_new_tokens=2", "trainer.tensorboard=false"]
    reference = zero2_thirty[0]
    for group in ("zero2_offload", "zero3_offload"):
        out = tmp_path / group
        result = torchrun(base(shards_dir, out, f"deepspeed={group}", *common))
        check(result)
        assert (out / "checkpoints" / "latest").read_text() == "step_0000006"
        got, expected = losses(out), losses(reference)
        assert sorted(got) == list(range(1, 7)) and got[6] < got[1]
        np.testing.assert_allclose([got[s] for s in range(1, 7)], [expected[s] for s in range(1, 7)], rtol=2e-3)


@pytest.mark.slow
@pytest.mark.parametrize("stage", [2, 3])
def test_two_processes_loss_falls(shards_dir, zero2_thirty, tmp_path, stage):
    out = tmp_path / f"zero{stage}"
    if stage == 2:
        out, result = zero2_thirty
    else:
        result = torchrun(base(shards_dir, out, f"deepspeed=zero{stage}", "trainer.max_steps=30", "optimizer.lr=3e-3",
                               "trainer.checkpoint_interval=30"))
    check(result)
    assert "world 2" in result.stdout and f"ZeRO {stage}" in result.stdout
    loss = losses(out)
    assert len(loss) == 30
    first, last = sum(loss[s] for s in (1, 2, 3)) / 3, sum(loss[s] for s in (28, 29, 30)) / 3
    assert last < first - 0.5, loss
    records = [json.loads(line) for line in open(out / "metrics.jsonl")]
    valid = [r for r in records if r["kind"] == "valid"]
    assert valid and valid[-1]["valid_perplexity"] > 1
    assert any(r["kind"] == "samples" and r["samples"] for r in records)
    assert {"lr", "grad_norm"} <= set(records[0]) and any("tokens_per_s" in r for r in records)
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert os.listdir(out / "tensorboard")
    ckpt = out / "checkpoints"
    assert (ckpt / "latest").read_text() == "step_0000030"
    step = ckpt / "step_0000030"
    assert {"trainer_state.json", "config.yaml", "shard_manifest.json", "rng_rank00000.pt", "rng_rank00001.pt"} <= set(os.listdir(step))
    assert json.loads((step / "trainer_state.json").read_text())["samples_consumed"] == 30 * 4 * 2 * 2

    # Export from this ZeRO stage, reload with from_pretrained, generate.
    exported = tmp_path / f"hf{stage}"
    check(run([sys.executable, "-m", "pretrain.export", str(ckpt), str(exported)]))
    from transformers import AutoTokenizer, GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(exported)
    tok = AutoTokenizer.from_pretrained(exported)
    ids = tok("what do you think of it", return_tensors="pt")
    generated = model.generate(**ids, max_new_tokens=5, do_sample=False, pad_token_id=tok.eos_token_id)
    assert generated.shape[1] > ids["input_ids"].shape[1]
    # Hugging Face conventions: the dropout it trained with, the length it has, EOS as pad (batched
    # generation pads on the left), and the chat's decoding as generation_config.json.
    assert model.config.resid_pdrop == model.config.embd_pdrop == model.config.attn_pdrop == 0.0
    assert tok.model_max_length == model.config.n_positions and tok.pad_token == tok.eos_token
    assert json.loads((exported / "generation_config.json").read_text())["no_repeat_ngram_size"] == 3
    batch = tok(["hello", "what do you think of the new phone"], return_tensors="pt", padding=True)
    assert model.generate(**batch, max_new_tokens=3).shape[0] == 2
    if stage == 2:  # DialoGPT's model-card loop, as written there (max_length=1000), with the lines typed in
        import torch
        from transformers import AutoModelForCausalLM

        tokenizer, model = AutoTokenizer.from_pretrained(exported), AutoModelForCausalLM.from_pretrained(exported)
        for step, line in enumerate(["hello", "what do you think of the new phone?", "why?", "ok", "bye"]):
            new_user_input_ids = tokenizer.encode(line + tokenizer.eos_token, return_tensors="pt")
            bot_input_ids = torch.cat([chat_history_ids, new_user_input_ids], dim=-1) if step > 0 else new_user_input_ids
            chat_history_ids = model.generate(bot_input_ids, max_length=1000, pad_token_id=tokenizer.eos_token_id)
            answer = tokenizer.decode(chat_history_ids[:, bot_input_ids.shape[-1]:][0], skip_special_tokens=True)
            assert bot_input_ids.shape[-1] < chat_history_ids.shape[-1] <= 1000 and isinstance(answer, str)
    # The exported weights are the trained ones: its loss on a valid window matches training's scale.
    import torch

    from pretrain.data import SampleSource
    from reddit_pretrain.shards import ShardSet

    source = SampleSource(ShardSet(str(shards_dir), "valid"), "packed", 64, True)
    windows = [source.sample(i) for i in range(min(8, source.num_samples))]
    x = torch.tensor(np.stack([w[0] for w in windows]))
    y = torch.tensor(np.stack([w[1] for w in windows]))
    with torch.no_grad():
        logits = model(x).logits
    mask = y != -100
    assert mask.any()
    value = torch.nn.functional.cross_entropy(logits[mask], y[mask]).item()
    assert value < loss[1]


@pytest.mark.slow
def test_resume_gives_the_same_losses_bitwise(shards_dir, tmp_path):
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    common = ["deepspeed=zero2", "model.dropout=0.1", "trainer.checkpoint_interval=6"]
    check(torchrun(base(shards_dir, straight, *common, "trainer.max_steps=12")))
    check(torchrun(base(shards_dir, stopped, *common, "trainer.max_steps=6")))
    check(torchrun(base(shards_dir, stopped, *common, "trainer.max_steps=12", "model.init=resume")))
    a, b = losses(straight), losses(stopped)
    assert [a[s] for s in range(7, 13)] == [b[s] for s in range(7, 13)]  # exact equality


@pytest.mark.slow
def test_two_nodes_over_loopback(shards_dir, tmp_path):
    port = free_port()
    out = tmp_path / "nodes"
    procs = [
        subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes=2", f"--node_rank={rank}",
                          "--nproc_per_node=1", "--master_addr=127.0.0.1", f"--master_port={port}", "-m", "pretrain.train",
                          *base(shards_dir, out, "deepspeed=zero3", "trainer.max_steps=4", "trainer.eval_interval=4")],
                         cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for rank in (0, 1)
    ]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    assert "world 2" in outputs[0] and len(losses(out)) == 4


@pytest.mark.slow
def test_deepspeed_launcher_and_hydra_overrides(shards_dir, tmp_path):
    out = tmp_path / "ds"
    launcher = os.path.join(os.path.dirname(sys.executable), "deepspeed")  # the venv's, PATH need not have it
    result = run([launcher, "--num_gpus", "2", f"--master_port={free_port()}", "--module", "pretrain.train",
                  *base(shards_dir, out, "deepspeed=zero1", "trainer.max_steps=4", "data=padded", "data.seq_len=64",
                        f"data.shards={shards_dir}")])
    check(result)
    assert "world 2" in result.stdout + result.stderr and len(losses(out)) == 4


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["trainer.global_batch_size=7"], "batch arithmetic"),
        (["model.init=resume", "trainer.resume_from=/nonexistent"], "not a complete checkpoint: does not exist"),
        (["deepspeed.precision=bf16"], "needs a GPU"),
    ],
)
def test_bad_configs_fail_before_any_step(shards_dir, tmp_path, overrides, message):
    """The command line's contract, for errors found at set-up (the world size, the checkpoint, the device):
    one line, exit status 2, no step taken."""
    result = run([sys.executable, "-m", "pretrain.train", *base(shards_dir, tmp_path / "bad"), *overrides])
    assert result.returncode == 2 and message in result.stderr, result.stderr[-3000:]
    assert not (tmp_path / "bad" / "metrics.jsonl").exists()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["data.seq_len=4096"], "exceeds model.n_positions"),
        (["optimizer.name=sgd"], "optimizer.name must be adamw"),
        (["trainer.keep_last=0"], "trainer.keep_last must be >= 1"),
        (["data.seq_len=0"], "data.seq_len must be >= 1"),
        (["trainer.stop_signals=[SIGKILL]"], "SIGKILL cannot be caught"),
        (["trainer.stop_signals=[USR9]"], "'USR9' is not a signal name"),
    ],
)
def test_bad_values_are_refused_by_the_composed_config(tmp_path, overrides, message):
    """What ``TrainConfig.validate`` refuses, composed from the same command line by Hydra in this
    process (``train`` calls ``validate`` first; the test above holds the command line to exit 2)."""
    from omegaconf import OmegaConf

    from pretrain.config import GROUPS, ConfigError, TrainConfig
    from reddit_pretrain.hydra_job import _compose, register_schemas

    register_schemas("train", TrainConfig, GROUPS)
    cfg = OmegaConf.to_object(_compose("train", base(tmp_path / "shards", tmp_path / "bad", *overrides))[0])
    with pytest.raises(ConfigError, match=re.escape(message)):
        cfg.validate()


def test_missing_shards_and_checkpoint_from_another_model(shards_dir, tmp_path):
    result = run([sys.executable, "-m", "pretrain.train", *base(tmp_path / "none", tmp_path / "o")])
    assert result.returncode == 2 and "no manifest.json" in result.stderr


@pytest.mark.slow
def test_resume_refuses_a_checkpoint_of_another_model(shards_dir, tmp_path):
    out = tmp_path / "m"
    check(run([sys.executable, "-m", "pretrain.train", *base(shards_dir, out, "trainer.max_steps=2", "deepspeed=zero0")]))
    result = run([sys.executable, "-m", "pretrain.train",
                  *base(shards_dir, out, "trainer.max_steps=4", "model.init=resume", "model.n_layer=3")])
    assert result.returncode == 2 and "another model" in result.stderr


def test_chat_reads_turns_from_stdin(shards_dir, tmp_path):
    """An exported model answers in the terminal loop; the history is joined by EOS."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from pretrain.chat import reply

    tok = AutoTokenizer.from_pretrained(json.loads((shards_dir / "manifest.json").read_text())["tokenizer"]["path"])
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_layer=1, n_head=2, n_embd=32, n_positions=64,
                                       eos_token_id=tok.eos_token_id))
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    assert isinstance(reply(model, tok, ["hello there", "hi", "how are you"], max_new_tokens=4), str)
    result = subprocess.run([sys.executable, "-m", "pretrain.chat", str(tmp_path / "m"), "--max-new-tokens", "4"],
                            input="hello there\n/help\n/reset\nhow are you\nquit\nnot a message\n", capture_output=True,
                            text=True, env=env(), cwd=REPO, timeout=300)
    assert result.returncode == 0 and result.stdout.count("bot> ") == 2, result.stderr[-2000:]
    assert "commands: /help" in result.stdout and "(history cleared)" in result.stdout
    assert "loading" in result.stderr and "exit or quit" in result.stderr and "Traceback" not in result.stderr
    eof = subprocess.run([sys.executable, "-m", "pretrain.chat", str(tmp_path / "m")], input="", capture_output=True,
                         text=True, env=env(), cwd=REPO, timeout=300)
    assert eof.returncode == 0 and "Traceback" not in eof.stderr


def test_chat_takes_any_bytes_and_refuses_a_length_beyond_the_model(shards_dir, tmp_path, capsys):
    """Invalid UTF-8 on stdin is read (as U+FFFD), not a TypeError; --max-new-tokens past the
    model's positions is one line, not an IndexError."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    tok = AutoTokenizer.from_pretrained(json.loads((shards_dir / "manifest.json").read_text())["tokenizer"]["path"])
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_layer=1, n_head=2, n_embd=32, n_positions=64,
                                       eos_token_id=tok.eos_token_id))
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    # Invalid UTF-8, an empty line (skipped: it used to quit without a word) and a prompt past the
    # window (cut, and said), in the default locale and in C's.
    long_prompt = " ".join(["word"] * 80).encode()
    for extra_env, stdin, replies in (({}, b"hello \xff\xfe there\n\n" + long_prompt + b"\nquit\n", 2),
                                      ({"LC_ALL": "C", "LANG": "C"}, b"hello \xff\xfe there\nquit\n", 1)):
        result = subprocess.run([sys.executable, "-m", "pretrain.chat", str(tmp_path / "m"), "--max-new-tokens", "3"],
                                input=stdin, capture_output=True, env={**env(), **extra_env}, cwd=REPO, timeout=300)
        out, err = result.stdout.decode(), result.stderr.decode()
        assert result.returncode == 0 and out.count("bot> ") == replies, err[-2000:]
        assert "Traceback" not in err
        if replies == 2:
            assert "the model sees its last 61" in err and "an empty line is ignored" in err
    from pretrain import chat

    for bad in ("64", "0", "5000"):  # in this process: the same main() the command runs
        assert chat.main([str(tmp_path / "m"), "--max-new-tokens", bad]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert lines[-1].startswith("error: --max-new-tokens must be between 1 and 63")


@pytest.mark.gpu
def test_bf16_on_gpu_logs_mfu(shards_dir, tmp_path):
    env_gpu = {k: v for k, v in env().items() if k != "DS_ACCELERATOR"}
    out = tmp_path / "gpu"
    result = subprocess.run([sys.executable, "-m", "pretrain.train", *base(shards_dir, out, "deepspeed.precision=bf16",
                                                                            "trainer.max_steps=10")],
                            cwd=REPO, env=env_gpu, capture_output=True, text=True, timeout=600)
    check(result)
    records = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert any("mfu" in r for r in records) and "bf16" in result.stdout


@pytest.mark.slow
def test_workers_exit_when_their_launcher_is_killed(shards_dir, tmp_path):
    """SIGKILL to torchrun: its workers stop too (they would train on and write checkpoints)."""
    import signal
    import time

    import psutil

    out = tmp_path / "orphans"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
           "-m", "pretrain.train", *base(shards_dir, out, "trainer.max_steps=100000", "trainer.log_interval=1")]
    launcher = subprocess.Popen(cmd, cwd=REPO, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = []
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not (out / "metrics.jsonl").exists():
            time.sleep(0.5)
        assert (out / "metrics.jsonl").exists(), "training did not start"
        workers = psutil.Process(launcher.pid).children(recursive=True)
        assert len(workers) >= 2
        os.kill(launcher.pid, signal.SIGKILL)
        launcher.wait()
        gone, alive = psutil.wait_procs(workers, timeout=60)
        assert not alive, [p.pid for p in alive]
    finally:  # only this test's processes (the session's Spark JVM is a child of pytest too)
        for p in [*workers, launcher]:
            try:
                p.kill()
            except (psutil.Error, ProcessLookupError):
                pass


@pytest.mark.slow
def test_a_stop_signal_to_one_rank_stops_all_after_a_checkpoint_and_resume_is_exact(shards_dir, tmp_path):
    """SIGUSR1 (what Slurm sends before a time limit) to one worker only: both ranks stop at the same
    step, after a complete checkpoint of it, with exit status 3; resuming gives an uninterrupted
    run's losses, bitwise. (Under Slurm itself: tests/test_slurm.py.)"""
    import signal
    import time

    import psutil

    common = ["deepspeed=zero2", "model.dropout=0.1", "trainer.max_steps=80", "trainer.checkpoint_interval=1000",
              "trainer.eval_interval=1000", "trainer.tensorboard=false"]
    straight, out = tmp_path / "straight", tmp_path / "stopped"
    check(torchrun(base(shards_dir, straight, *common)))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
           "-m", "pretrain.train", *base(shards_dir, out, *common)]
    launcher = subprocess.Popen(cmd, cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not (out / "metrics.jsonl").exists():
            time.sleep(0.1)
        workers = [p for p in psutil.Process(launcher.pid).children(recursive=True) if "pretrain.train" in " ".join(p.cmdline())]
        assert len(workers) == 2
        os.kill(workers[-1].pid, signal.SIGUSR1)
        output = launcher.communicate(timeout=300)[0]
    finally:
        launcher.kill()
    stopped_at = int(re.search(r"stopped by .+ at step (\d+) of 80", output).group(1))
    assert launcher.returncode != 0 and re.search(r"exitcode\s*: 3", output), output[-3000:]  # torchrun names it
    assert sorted(p.name for p in (out / "checkpoints").iterdir() if p.name.startswith("step_")) == [f"step_{stopped_at:07d}"]
    assert (out / "checkpoints" / f"step_{stopped_at:07d}" / "COMPLETE.json").exists()
    check(torchrun(base(shards_dir, out, *common, "model.init=resume")))
    assert losses(out) == losses(straight)


@pytest.mark.slow
def test_resume_skips_a_checkpoint_damaged_while_written(shards_dir, tmp_path):
    """The newest checkpoint truncated (as a kill or a full disk leaves it): resume takes the one
    before, says which it skipped and why, and trains on; an explicit damaged one is refused."""
    out = tmp_path / "run"
    common = ["deepspeed=zero2", "trainer.checkpoint_interval=3", "trainer.keep_last=3"]
    check(torchrun(base(shards_dir, out, *common, "trainer.max_steps=6")))
    root = out / "checkpoints"
    assert sorted(p.name for p in root.iterdir() if p.name.startswith("step_")) == ["step_0000003", "step_0000006"]
    assert (root / "step_0000006" / "COMPLETE.json").exists()
    config = root / "step_0000006" / "config.yaml"
    config.write_bytes(config.read_bytes()[:40])  # a YAML file cut short
    state = next((root / "step_0000006").rglob("*model_states.pt"))
    state.write_bytes(state.read_bytes()[:1000])  # and a torch archive
    refused = torchrun(base(shards_dir, tmp_path / "other", *common, "model.init=resume",
                            f"trainer.resume_from={root / 'step_0000006'}"))
    assert refused.returncode != 0 and "not a complete checkpoint" in refused.stdout + refused.stderr
    result = torchrun(base(shards_dir, out, *common, "trainer.max_steps=8", "model.init=resume"))
    check(result)
    assert "skipping checkpoint" in result.stdout and "step_0000006" in result.stdout and "bytes, not the" in result.stdout
    assert f"resuming from {root / 'step_0000003'}" in result.stdout
    assert sorted(losses(out))[-1] == 8


@pytest.mark.slow
def test_a_corrupted_shard_stops_training_by_default(shards_dir, tmp_path):
    """One flipped byte in a token shard: every process stops before the first step, naming the file;
    data.verify_checksums=false trains anyway (as before)."""
    import shutil

    shards = tmp_path / "shards"
    shutil.copytree(shards_dir, shards)
    manifest = json.loads((shards / "manifest.json").read_text())
    victim = next(shards / manifest.get("shards_dir", "shards") / s["files"]["tokens"]["path"]
                  for s in manifest["shards"] if s["split"] == "train")
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    result = torchrun(base(shards, tmp_path / "out", "trainer.max_steps=2"))
    assert result.returncode != 0
    assert "do not match their sha256" in result.stderr and victim.name in result.stderr
    assert not (tmp_path / "out" / "metrics.jsonl").exists() or "train" not in (tmp_path / "out" / "metrics.jsonl").read_text()
    check(torchrun(base(shards, tmp_path / "anyway", "trainer.max_steps=2", "data.verify_checksums=false")))
    ok = torchrun(base(shards_dir, tmp_path / "good", "trainer.max_steps=2"))
    check(ok)
    assert "shards verified" in ok.stdout
