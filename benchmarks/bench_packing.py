"""The three data modes on the demo's shards: padding share, non-padding tokens per second, and the
loss reached in a fixed number of non-padding tokens.

    python benchmarks/bench_packing.py [--tokens 300000] [--seq-len 128] [--repeats 2]

The demo's month (``reddit-pretrain pipeline`` up to ``tokenize``, in this process) gives the shards;
the demo model (``model=demo``) trains from scratch on one CPU process per mode, ``padded``,
``packed`` and ``packed_sessions`` in turn, ``--repeats`` rounds, each run for as many steps as
``--tokens`` non-padding input tokens need (the mode's mean per sample). Reported per mode: the
padding share of its samples (all of them), the trainer's own non-padding tokens/s (median of the
rounds, and its ratio to padded), and the loss on the test split's reply tokens of the exported
model, each session scored alone (``pretrain.evaluate.perplexity``: the same measure for every
mode). Writes benchmarks/results/packing.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine, table, write_results  # noqa: E402

MODES = ("padded", "packed", "packed_sessions")
GLOBAL_BATCH = 16  # the demo trainer's micro batch 8 x accumulation 2 on one process


def shards(work: Path) -> Path:
    from reddit_pretrain_app.pipeline import PipelineConfig, run_pipeline

    cfg = PipelineConfig(out=str(work / "demo"), stop_after="tokenize")
    run_pipeline(cfg)
    return work / "demo" / "shards"


def padding_and_tokens(folder: Path, mode: str, seq_len: int) -> tuple[float, float]:
    """(padding share of every sample of the train split, mean non-padding input tokens per sample)."""
    from pretrain.data import SampleSource
    from reddit_pretrain.shards import ShardSet

    source = SampleSource(ShardSet(str(folder), "train"), mode, seq_len, True)
    tokens = [source.tokens(i) for i in range(source.num_samples)]
    return 1 - sum(tokens) / (seq_len * len(tokens)), sum(tokens) / len(tokens)


def train_and_score(folder: Path, work: Path, mode: str, seq_len: int, steps: int, tag: str) -> dict:
    from transformers import AutoTokenizer, GPT2LMHeadModel

    from pretrain.evaluate import perplexity, test_sessions

    out = work / f"train_{tag}"
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pretrain.train", f"data.shards={folder}", f"data.mode={mode}",
                    f"data.seq_len={seq_len}", f"trainer.out_dir={out}", f"trainer.max_steps={steps}",
                    f"trainer.log_interval={steps}", f"trainer.eval_interval={steps}", f"trainer.checkpoint_interval={steps}",
                    "trainer.micro_batch_size_per_gpu=8", "trainer.gradient_accumulation_steps=2",
                    "trainer.sample_max_new_tokens=2", "trainer.tensorboard=false", "deepspeed=zero0"],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    records = [json.loads(line) for line in open(out / "metrics.jsonl")]
    train = [r for r in records if r["kind"] == "train"][-1]
    subprocess.run([sys.executable, "-m", "pretrain.export", str(out / "checkpoints"), str(out / "model")], check=True,
                   env=env, stdout=subprocess.DEVNULL)
    model, tokenizer = GPT2LMHeadModel.from_pretrained(out / "model").eval(), AutoTokenizer.from_pretrained(out / "model")
    scored = perplexity(model, tokenizer, test_sessions(str(folder.parent / "extract")))
    shutil.rmtree(out, ignore_errors=True)
    return {"tokens_per_s": train["tokens_per_s"], "wall_s": wall, "test_loss": scored["loss"],
            "test_tokens": scored["tokens"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=300_000, help="non-padding input tokens each run trains on")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-packing-"))
    try:
        folder = shards(work)
        shape = {m: padding_and_tokens(folder, m, args.seq_len) for m in MODES}
        steps = {m: max(1, round(args.tokens / (GLOBAL_BATCH * shape[m][1]))) for m in MODES}
        runs: dict[str, list[dict]] = {m: [] for m in MODES}
        for round_ in range(args.repeats):
            for mode in MODES:  # the modes alternate, round after round
                runs[mode].append(train_and_score(folder, work, mode, args.seq_len, steps[mode], f"{mode}_{round_}"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = statistics.median(r["tokens_per_s"] for r in runs["padded"])
    rows = []
    for mode in MODES:
        speeds = [r["tokens_per_s"] for r in runs[mode]]
        rows.append({"mode": mode, "padding_share": shape[mode][0], "tokens_per_sample": shape[mode][1],
                     "steps": steps[mode], "tokens_per_s": statistics.median(speeds),
                     "tokens_per_s_range": f"{min(speeds):,.0f}-{max(speeds):,.0f}",
                     "vs_padded": statistics.median(speeds) / base,
                     "test_loss": statistics.median(r["test_loss"] for r in runs[mode]),
                     "test_loss_range": f"{min(r['test_loss'] for r in runs[mode]):.4f}-{max(r['test_loss'] for r in runs[mode]):.4f}"})
    print(table(rows, ["mode", "padding_share", "tokens_per_sample", "steps", "tokens_per_s", "tokens_per_s_range",
                       "vs_padded", "test_loss", "test_loss_range"]))
    path = write_results("packing", {"machine": machine(), "tokens": args.tokens, "seq_len": args.seq_len,
                                     "repeats": args.repeats, "rows": rows, "runs": runs})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
