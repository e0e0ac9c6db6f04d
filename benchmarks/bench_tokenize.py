"""Tokenization throughput of the Spark job against plain batch encoding, and reader throughput.

    python benchmarks/bench_tokenize.py [--comments 200000]

1. The tokenizer's own batch encoding (tokenizers, one process, parallelism off) over every turn
   of the train split: the floor. 2. The tokenize job on Spark local[1] over the same sessions
   (it also writes shards, checksums and the manifest). Both per core.
3. The shard reader: packed windows of 128 tokens in the trainer's shuffled order (windows/s and
   tokens/s, one process), next to the tokens/s one training step consumes (from metrics.jsonl
   of a training run, when --train-metrics points at one).
Prints a table and writes benchmarks/results/tokenize.json.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ["TOKENIZERS_PARALLELISM"] = "false"

from benchmarks.common import CACHE, synthetic_month, table, write_results  # noqa: E402


def prepare(comments: int, spark) -> tuple[Path, Path]:
    from extraction.sessions.job import ExtractConfig, run_extract
    from extraction.sessions.filters import FiltersConfig
    from extraction.ingest.job import IngestConfig, run_ingest
    from extraction.tokenize.train_tokenizer import train_tokenizer

    root = CACHE / f"tokenize-{comments}"
    folder = synthetic_month(comments, seed=3)
    run_ingest(IngestConfig(inputs=[str(folder / "*.zst")], output=str(root / "ingest")), spark)
    run_extract(ExtractConfig(input=str(root / "ingest"), output=str(root / "extract"),
                              filters=FiltersConfig(bland_min_count=50)), spark)
    if not (root / "tokenizer" / "tokenizer.json").exists():
        train_tokenizer(str(root / "extract" / "sessions"), str(root / "tokenizer"), vocab_size=8000)
    return root / "extract", root / "tokenizer"


def plain(extract: Path, tokenizer: Path) -> dict:
    import pyarrow.parquet as pq
    from tokenizers import Tokenizer

    turns = []
    for path in sorted(glob.glob(str(extract / "sessions" / "split=*" / "*.parquet"))):
        for sessions in pq.read_table(path, columns=["turns"]).column("turns").to_pylist():
            turns.extend(sessions)
    tok = Tokenizer.from_file(str(tokenizer / "tokenizer.json"))
    encode = getattr(tok, "encode_batch_fast", tok.encode_batch)
    started = time.perf_counter()
    tokens = sum(len(e.ids) for e in encode(turns, add_special_tokens=False))
    seconds = time.perf_counter() - started
    return {"run": "tokenizers encode_batch, 1 process", "cores": 1, "seconds": seconds, "tokens": tokens,
            "tokens_per_s_per_core": tokens / seconds}


def job(extract: Path, tokenizer: Path, spark, cores: int) -> dict:
    from extraction.tokenize.job import TokenizeConfig, run_tokenize

    out = Path(tempfile.mkdtemp(prefix="bench-tokenize-"))
    try:
        cfg = TokenizeConfig(input=str(extract), output=str(out), tokenizer=str(tokenizer), max_session_tokens=100_000)
        run_tokenize(cfg, spark)  # warm-up
        cfg.force = True
        started = time.perf_counter()
        manifest = run_tokenize(cfg, spark)
        seconds = time.perf_counter() - started
        import numpy as np

        from reddit_pretrain.shards import ShardSet

        tokens = eos = 0
        for split, counts in manifest["splits"].items():
            if counts["written"]:
                for shard in ShardSet(str(out), split).shards:
                    tokens += len(shard.tokens)
                    eos += int(np.count_nonzero(np.asarray(shard.tokens) == manifest["eos_id"]))
        reader = read(out)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    # Turn tokens only (each turn is closed by one EOS), to compare with the plain encoding.
    return {"run": f"tokenize job, Spark local[{cores}] (shards + manifest)", "cores": cores, "seconds": seconds,
            "tokens": tokens - eos, "tokens_per_s_per_core": (tokens - eos) / seconds / cores}, reader


def read(shards: Path, seq_len: int = 128, micro: int = 8) -> dict:
    from pretrain.data import Mixture, SampleSource, micro_batch
    from reddit_pretrain.shards import ShardSet

    source = SampleSource(ShardSet(str(shards), "train"), "packed", seq_len, True)
    mixture = Mixture([source], ["train"], [1.0], 0)
    batches = min(2000, source.num_samples // micro)
    started = time.perf_counter()
    for b in range(batches):
        micro_batch(mixture, b * micro, 0, 0, 1, micro)
    seconds = time.perf_counter() - started
    return {"windows_per_s": batches * micro / seconds, "tokens_per_s": batches * micro * seq_len / seconds,
            "seq_len": seq_len, "micro_batch": micro}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--comments", type=int, default=200_000)
    parser.add_argument("--train-metrics", default="out/demo/train/metrics.jsonl")
    args = parser.parse_args()
    from extraction.spark import SparkConfig, build_spark

    spark = build_spark(SparkConfig(master="local[1]", log_level="ERROR", conf={"spark.ui.showConsoleProgress": "false"}))
    extract, tokenizer = prepare(args.comments, spark)
    rows = [plain(extract, tokenizer)]
    result, reader = job(extract, tokenizer, spark, 1)
    rows.append(result)
    spark.stop()
    rows[0]["vs_plain"] = 1.0
    rows[1]["vs_plain"] = rows[1]["tokens_per_s_per_core"] / rows[0]["tokens_per_s_per_core"]
    print(table(rows, ["run", "cores", "tokens", "seconds", "tokens_per_s_per_core", "vs_plain"]))
    consumed = None
    if os.path.exists(args.train_metrics):
        speeds = [json.loads(line).get("tokens_per_s") for line in open(args.train_metrics)]
        speeds = [s for s in speeds if s]
        consumed = max(speeds) if speeds else None
    reader["training_tokens_per_s"] = consumed
    print(f"reader: {reader['windows_per_s']:,.0f} windows/s ({reader['tokens_per_s']:,.0f} tokens/s) of {reader['seq_len']} "
          f"tokens, one process; a training run consumed {consumed or 0:,.0f} tokens/s ({args.train_metrics})")
    print(f"results: {write_results('tokenize', {'comments': args.comments, 'rows': rows, 'reader': reader})}")


if __name__ == "__main__":
    main()
