"""Trainer tokens/s and MFU on GPUs: GPT-2 124M at sequence length 1024 in bf16 by default.

    python benchmarks/bench_gpu_train.py [--nproc 1] [--micro-batch 16] [--steps 60]
    python benchmarks/bench_gpu_train.py --model tiny --seq-len 128 --micro-batch 4 --steps 12   # a CPU smoke run

The shards are generated (a GPT-2-sized vocabulary of 50,257 ids, documents of DialoGPT-like
lengths, the first turn masked as in our shards), so no model hub or tokenizer is needed; the
figures depend on the shapes, not on the text. pretrain.train runs through torchrun with the
given ZeRO stage and each block compiled (``--no-compile`` for eager); tokens/s and MFU (the
formula is in pretrain/metrics.py) are averaged over the log windows after the first.
Prints a table and writes benchmarks/results/gpu_train.json.
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

from benchmarks.common import CACHE, free_port, table, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
VOCAB, EOS = 50257, 50256


def synthetic_shards(tokens: int, seed: int = 0) -> Path:
    """Train and valid shards of about ``tokens`` and ``tokens // 20`` tokens, cached."""
    import numpy as np

    from reddit_pretrain.shards import SHARDS_DIR, ShardWriter, new_manifest, write_manifest

    folder = CACHE / f"gpu-shards-{tokens}-{seed}"
    if (folder / "manifest.json").exists():
        return folder
    rng = np.random.default_rng(seed)
    entries = []
    for split, target in (("train", tokens), ("valid", max(tokens // 20, 100_000))):
        writer = ShardWriter(str(folder / SHARDS_DIR), f"{split}-00000", split, VOCAB, 20_000_000)
        written = 0
        while written < target:
            turns = rng.integers(2, 6, 4096)
            lengths = np.clip(rng.lognormal(3.3, 0.7, (4096, 5)).astype(np.int64), 2, 200)  # about 35 tokens a turn
            docs = [lengths[i, : turns[i]] + 1 for i in range(4096)]  # each turn closed by EOS
            doc_lengths = np.array([d.sum() for d in docs])
            ids = rng.zipf(1.2, int(doc_lengths.sum())) % (VOCAB - 1)
            ids[np.cumsum(np.concatenate(docs)) - 1] = EOS
            mask = np.concatenate([np.repeat([0] + [1] * (len(d) - 1), d) for d in docs]).astype(np.uint8)
            writer.add_batch(ids, mask, doc_lengths)
            written += int(doc_lengths.sum())
        entries += writer.close()
    write_manifest(str(folder), new_manifest(tokenizer={"name": "synthetic-gpt2-vocab", "sha256": "none"},
                                             vocab_size=VOCAB, eos_id=EOS, shards=entries))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="gpt2-124m")
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--micro-batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--log-interval", type=int, default=10)
    parser.add_argument("--nproc", type=int, default=1)
    parser.add_argument("--zero", default="zero1")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                        help="model.compile (torch.compile of each block); --no-compile for eager")
    parser.add_argument("--extra", nargs="*", default=[], help="more pretrain.train overrides")
    args = parser.parse_args()
    import torch

    on_gpu = torch.cuda.is_available()
    shards = synthetic_shards(max(args.steps * args.micro_batch * args.nproc * args.seq_len * 2, 2_000_000))
    out = tempfile.mkdtemp(prefix="bench-gpu-train-")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **({} if on_gpu else {"DS_ACCELERATOR": "cpu"})}
    overrides = [f"model={args.model}", f"model.dropout={args.dropout}", f"model.compile={str(args.compile).lower()}",
                 f"data.shards={shards}", f"data.seq_len={args.seq_len}",
                 f"deepspeed={args.zero}", f"deepspeed.precision={args.precision}", f"trainer.out_dir={out}",
                 f"trainer.micro_batch_size_per_gpu={args.micro_batch}", "trainer.gradient_accumulation_steps=1",
                 f"trainer.max_steps={args.steps}", f"trainer.log_interval={args.log_interval}",
                 f"trainer.eval_interval={args.steps}", "trainer.eval_batches=2", f"trainer.checkpoint_interval={10**9}",
                 "trainer.sample_max_new_tokens=1", "trainer.tensorboard=false", *args.extra]
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={args.nproc}",
                             f"--master_port={free_port()}", "-m", "pretrain.train", *overrides], cwd=REPO, env=env,
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"training failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    records = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    windows = [r for r in records if r["kind"] == "train" and "tokens_per_s" in r][1:]  # the first holds the warm-up
    row = {"model": args.model, "compile": args.compile, "seq_len": args.seq_len, "micro_batch": args.micro_batch,
           "processes": args.nproc,
           "zero": args.zero, "device": torch.cuda.get_device_name(0) if on_gpu else "cpu",
           "tokens_per_s": sum(r["tokens_per_s"] for r in windows) / len(windows),
           "tokens_per_s_per_gpu": sum(r["tokens_per_s"] for r in windows) / len(windows) / args.nproc,
           "mfu": sum(r["mfu"] for r in windows) / len(windows) if on_gpu else None,
           "final_loss": windows[-1]["loss"]}
    print(table([row], list(row)))
    precision = next((line for line in result.stdout.splitlines() if line.startswith("[train] world")), "")
    print(precision)
    print(f"results: {write_results('gpu_train', {'steps': args.steps, 'run': precision, 'rows': [row]})}")


if __name__ == "__main__":
    main()
