"""End-to-end extraction (ingest + chains + filters + splits + report) throughput and memory.

    python benchmarks/bench_extract.py [--comments 1000000] [--scaling 250000]

Runs on generated months: the main run at --comments, and a scaling run at 1x, 2x and 4x of
--scaling comments. Peak memory is the largest sum of resident memory over this process and all
its children (the Spark JVM and the Python workers), sampled every 0.2 s.
Prints a table and writes benchmarks/results/extract.json.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import synthetic_month, table, write_results  # noqa: E402


class PeakMemory:
    def __init__(self):
        import psutil

        self.process = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import psutil

        while not self._stop.is_set():
            total = 0
            for p in [self.process] + self.process.children(recursive=True):
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            time.sleep(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def run(spark, folder: Path, comments: int, cores: int) -> dict:
    from extraction.extract import ExtractConfig, run_extract
    from extraction.filters import FiltersConfig
    from extraction.ingest import IngestConfig, run_ingest

    out = Path(tempfile.mkdtemp(prefix="bench-extract-"))
    try:
        started = time.perf_counter()
        ingest = run_ingest(IngestConfig(inputs=[str(folder / "*.zst")], output=str(out / "ingest")), spark)
        middle = time.perf_counter()
        report = run_extract(ExtractConfig(input=str(out / "ingest"), output=str(out / "extract"),
                                           filters=FiltersConfig(bland_min_count=max(20, comments // 4000))), spark)
        done = time.perf_counter()
    finally:
        shutil.rmtree(out, ignore_errors=True)
    seconds = done - started
    return {"comments": ingest["totals"]["comments_rows"], "ingest_s": middle - started, "extract_s": done - middle,
            "seconds": seconds, "comments_per_s_per_core": comments / seconds / cores,
            "sessions_kept": report["sessions"]["kept"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--comments", type=int, default=1_000_000)
    parser.add_argument("--scaling", type=int, default=250_000)
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    from extraction.spark import SparkConfig, build_spark

    spark = build_spark(SparkConfig(master=f"local[{args.cores}]", log_level="ERROR",
                                    conf={"spark.ui.showConsoleProgress": "false"}))
    rows = []
    # Warm the JVM and Python workers on a small input first.
    run(spark, synthetic_month(20_000, seed=9), 20_000, args.cores)
    for label, n in [("1x", args.scaling), ("2x", 2 * args.scaling), ("4x", 4 * args.scaling), ("main", args.comments)]:
        if label == "main" and args.comments == 4 * args.scaling:
            rows.append({**rows[-1], "run": "main (= 4x)"})
            continue
        folder = synthetic_month(n, seed=0, megathreads=1, megathread_comments=min(100_000, n // 10),
                                 deep_chains=1, deep_chain_depth=min(3_000, n // 100))
        with PeakMemory() as memory:
            result = run(spark, folder, n, args.cores)
        rows.append({"run": label, **result, "peak_memory_gib": memory.peak / 2**30})
    base = rows[0]["seconds"] / rows[0]["comments"]
    for r in rows:
        r["seconds_per_comment_vs_1x"] = (r["seconds"] / r["comments"]) / base
    spark.stop()
    columns = ["run", "comments", "ingest_s", "extract_s", "seconds", "comments_per_s_per_core", "sessions_kept",
               "peak_memory_gib", "seconds_per_comment_vs_1x"]
    print(table(rows, columns))
    print(f"results: {write_results('extract', {'cores': args.cores, 'rows': rows})}")


if __name__ == "__main__":
    main()
