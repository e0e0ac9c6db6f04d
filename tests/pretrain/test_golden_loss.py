"""A golden loss curve for the tiny model: fixed data, seed and config on one CPU process. A change
that moves the first steps' losses (initialisation, data order, masking, optimizer, schedule,
DeepSpeed settings) fails here and has to be made on purpose: rerun with REGENERATE_GOLDEN=1 and
commit the new file, saying why in the commit."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reddit_pretrain.documents import encode_session
from reddit_pretrain.shards import ShardWriter, new_manifest, write_manifest

GOLDEN = Path(__file__).with_name("golden_tiny_losses.json")
REPO = Path(__file__).resolve().parents[2]
STEPS = 12


def golden_shards(folder: Path) -> Path:
    """Sessions of a fixed little grammar (numbers count up, replies repeat their prompt's numbers
    backwards), the same bytes on every machine."""
    rng = np.random.default_rng(2024)
    vocab, eos = 64, 0
    for split, count in (("train", 300), ("valid", 40)):
        writer = ShardWriter(str(folder / "shards"), f"{split}-00000", split, vocab, 4000, True)
        for _ in range(count):
            start = int(rng.integers(1, 40))
            prompt = list(range(start, start + int(rng.integers(2, 8))))
            writer.add(*encode_session([prompt, prompt[::-1], [63, *prompt[:2]]], eos))
        entries = writer.close()
        if split == "train":
            all_entries = entries
        else:
            all_entries += entries
    write_manifest(str(folder), new_manifest(tokenizer={"name": "golden", "sha256": "none"}, vocab_size=vocab,
                                             eos_id=eos, shards=all_entries))
    return folder


@pytest.mark.slow
def test_the_tiny_model_follows_its_golden_loss_curve(tmp_path):
    shards = golden_shards(tmp_path / "data")
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "pretrain.train", f"data.shards={shards}", f"trainer.out_dir={tmp_path / 'run'}",
               "model=tiny", "optimizer=adamw", "trainer=ci", "deepspeed=zero2", "data.seq_len=32", f"trainer.max_steps={STEPS}",
               "trainer.eval_interval=1000", "trainer.checkpoint_interval=1000", "trainer.tensorboard=false",
               "optimizer.lr=3e-3", "trainer.seed=1234"]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    with open(tmp_path / "run" / "metrics.jsonl") as f:
        losses = [r["loss"] for r in map(json.loads, f) if r["kind"] == "train"]
    assert len(losses) == STEPS
    if os.environ.get("REGENERATE_GOLDEN"):
        GOLDEN.write_text(json.dumps({"overrides": command[5:], "losses": losses}, indent=2) + "\n")
    golden = json.loads(GOLDEN.read_text())["losses"]
    # fp32 on one CPU thread: the same machine repeats bit for bit; other CPUs differ in the last digits.
    np.testing.assert_allclose(losses, golden, rtol=2e-4, atol=0)
    assert losses[-1] < losses[0] - 0.5  # and it learns
