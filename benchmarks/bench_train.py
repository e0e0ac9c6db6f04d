"""Trainer throughput: pretrain.train against Hugging Face Trainer, same DeepSpeed ZeRO-2 config,
same tiny model (conf/model/tiny.yaml), same packed windows of 128 tokens, same 2 processes.

    python benchmarks/bench_train.py [--shards out/demo/shards] [--steps 40] [--compile]

(make demo first, or point --shards at any shard set). Tokens/s are measured after the first
10 steps, so start-up, warm-up and compilation (--compile adds a run with model.compile=true)
are not counted. On CPU it sets DS_ACCELERATOR=cpu.
Prints a table and writes benchmarks/results/train.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import free_port, table, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def env() -> dict:
    import torch

    extra = {} if torch.cuda.is_available() else {"DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    return {**os.environ, **extra, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}


def ours(shards: str, steps: int, nproc: int, *extra: str) -> float:
    out = tempfile.mkdtemp(prefix="bench-train-")
    subprocess.run([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", f"--master_port={free_port()}",
                    "-m", "pretrain.train", f"data.shards={shards}", f"trainer.out_dir={out}", "model=tiny", "optimizer=adamw", "trainer=ci",
                    "deepspeed=zero2", "data.seq_len=128", f"trainer.max_steps={steps}", "trainer.log_interval=10",
                    f"trainer.eval_interval={steps}", f"trainer.checkpoint_interval={steps}", "trainer.sample_max_new_tokens=1",
                    "trainer.tensorboard=false", *extra], cwd=REPO, env=env(), check=True, capture_output=True)
    speeds = [r["tokens_per_s"] for r in map(json.loads, open(os.path.join(out, "metrics.jsonl")))
              if r["kind"] == "train" and "tokens_per_s" in r]
    return sum(speeds[1:]) / len(speeds[1:])  # the first window holds the warm-up


def hf(shards: str, steps: int, nproc: int) -> float:
    out = tempfile.mkdtemp(prefix="bench-hf-")
    result = os.path.join(out, "result.json")
    subprocess.run([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", f"--master_port={free_port()}",
                    "benchmarks/hf_trainer_baseline.py", "--shards", shards, "--out", out, "--steps", str(steps),
                    "--result", result], cwd=REPO, env=env(), check=True, capture_output=True)
    return json.load(open(result))["tokens_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shards", default="out/demo/shards")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also run ours with model.compile=true")
    args = parser.parse_args()
    rows = []
    runs = [("pretrain.train (ours)", ours, ()), ("Hugging Face Trainer", hf, ())]
    if args.compile:
        runs.append(("pretrain.train, model.compile=true", ours, ("model.compile=true",)))
    for name, fn, extra in runs:
        rows.append({"run": name, "processes": args.nproc, "tokens_per_s": fn(args.shards, args.steps, args.nproc, *extra)})
    for r in rows:
        r["vs_hf_trainer"] = r["tokens_per_s"] / rows[1]["tokens_per_s"]
    print(table(rows, ["run", "processes", "tokens_per_s", "vs_hf_trainer"]))
    print(f"results: {write_results('train', {'steps': args.steps, 'zero_stage': 2, 'model': 'tiny', 'seq_len': 128, 'rows': rows})}")


if __name__ == "__main__":
    main()
