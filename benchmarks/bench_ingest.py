"""Ingest throughput against the single-process floor (zstd decompression + orjson parsing).

    python benchmarks/bench_ingest.py [--comments 1000000]

Prints a table and writes benchmarks/results/ingest.json. "Per core" divides by the Spark
cores the run used (local[N]).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import floor, synthetic_month, table, write_results  # noqa: E402


def ingest(paths: list[Path], cores: int, repeats: int) -> dict:
    from extraction.ingest.job import IngestConfig, run_ingest
    from extraction.spark import SparkConfig, build_spark

    spark = build_spark(SparkConfig(master=f"local[{cores}]", log_level="ERROR",
                                    conf={"spark.ui.showConsoleProgress": "false"}))
    out = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        # Warm the JVM and Python workers on a tiny input so start-up is not timed.
        inputs = [str(p) for p in paths]
        run_ingest(IngestConfig(inputs=inputs, output=str(out / "warm")), spark)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            report = run_ingest(IngestConfig(inputs=inputs, output=str(out / "run"), force=True), spark)
            times.append(time.perf_counter() - started)
    finally:
        spark.stop()
        shutil.rmtree(out, ignore_errors=True)
    seconds = statistics.median(times)
    t = report["totals"]
    return {"run": f"ingest job, Spark local[{cores}], {len(paths)} RC file(s)", "cores": cores, "seconds": seconds,
            "lines": t["lines"], "lines_per_s_per_core": t["lines"] / seconds / cores,
            "mb_per_s_per_core": t["decompressed_bytes"] / 1e6 / seconds / cores}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--comments", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    mega = min(100_000, args.comments // 10)
    rc = synthetic_month(args.comments, megathreads=1, megathread_comments=mega) / "RC_2015-01.zst"
    rc2 = synthetic_month(args.comments, seed=1, month="2015-02", megathreads=1, megathread_comments=mega) / "RC_2015-02.zst"
    # One file on one core, then two files on two cores: one Spark task per dump.
    rows = [floor(rc, args.repeats), ingest([rc], 1, args.repeats), ingest([rc, rc2], 2, args.repeats)]
    rows[0]["vs_floor"] = 1.0
    for r in rows[1:]:
        r["vs_floor"] = r["lines_per_s_per_core"] / rows[0]["lines_per_s_per_core"]
    columns = ["run", "cores", "lines", "seconds", "lines_per_s_per_core", "mb_per_s_per_core", "vs_floor"]
    print(table(rows, columns))
    path = write_results("ingest", {"comments": args.comments, "input_bytes": rc.stat().st_size, "rows": rows})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
