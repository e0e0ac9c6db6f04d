"""What verifying a dump's published sha256 while it is read costs the ingest job.

    python benchmarks/bench_checksum.py [--comments 1000000] [--pairs 5] [--master local[2]]

The generated month's comments and submissions dumps, ingested on Spark without a checksum list
and with one (``ingest.checksums``: every dump listed, so every byte is hashed), the two alternated
pair by pair after a warm-up. Prints each pair, the median ratio and its spread, and where the time
goes: sha256 over the same compressed bytes on its own (hashlib, one core), against the ingest's
wall time. Writes benchmarks/results/checksum.json.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine, synthetic_month, table, write_results  # noqa: E402


def main() -> None:
    from extraction.ingest.job import IngestConfig, run_ingest
    from extraction.spark import SparkConfig, build_spark

    parser = argparse.ArgumentParser()
    parser.add_argument("--comments", type=int, default=1_000_000)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--master", default="local[2]")
    args = parser.parse_args()
    month = synthetic_month(args.comments)
    dumps = [month / "RC_2015-01.zst", month / "RS_2015-01.zst"]
    work = Path(tempfile.mkdtemp(prefix="bench-checksum-"))
    sums = work / "SHA256SUMS"
    started = time.perf_counter()
    sums.write_text("".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n" for p in dumps))
    hash_alone = time.perf_counter() - started
    compressed = sum(p.stat().st_size for p in dumps)
    spark = build_spark(SparkConfig(master=args.master, log_level="ERROR", conf={"spark.ui.showConsoleProgress": "false"},
                                    in_process_below_bytes=0))
    inputs = [str(p) for p in dumps]

    def ingest(checked: bool) -> float:
        t = time.perf_counter()
        report = run_ingest(IngestConfig(inputs=inputs, output=str(work / "out"), force=True,
                                         checksums=str(sums) if checked else None), spark)
        assert report["totals"]["failed_files"] == 0
        return time.perf_counter() - t

    try:
        ingest(False)  # warm-up: the JVM, the Python workers, the page cache
        ingest(True)
        rows = []
        for pair in range(args.pairs):
            off = ingest(False)
            on = ingest(True)
            rows.append({"pair": pair + 1, "without_s": off, "with_s": on, "ratio": on / off})
    finally:
        spark.stop()
        shutil.rmtree(work, ignore_errors=True)
    ratios = [r["ratio"] for r in rows]
    off_median = statistics.median(r["without_s"] for r in rows)
    summary = {"median_ratio": statistics.median(ratios), "min_ratio": min(ratios), "max_ratio": max(ratios),
               "without_median_s": off_median, "with_median_s": statistics.median(r["with_s"] for r in rows),
               "sha256_alone_s": hash_alone, "compressed_bytes": compressed,
               "sha256_share_of_ingest": hash_alone / off_median}
    print(table(rows, ["pair", "without_s", "with_s", "ratio"]))
    print(f"with checksums / without: median {summary['median_ratio']:.3f} (min {summary['min_ratio']:.3f}, max "
          f"{summary['max_ratio']:.3f}) over {args.pairs} alternated pairs; sha256 alone of the {compressed / 1e6:.0f} MB "
          f"compressed: {hash_alone:.3f} s, {summary['sha256_share_of_ingest']:.1%} of the ingest's {off_median:.2f} s")
    path = write_results("checksum", {"machine": machine(), "comments": args.comments, "master": args.master,
                                      "pairs": rows, "summary": summary})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
