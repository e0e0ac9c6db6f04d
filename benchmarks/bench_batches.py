"""A corpus kept up to date (issue 45): extracting a new batch B against earlier batches A, against
extracting B alone.

    .venv/bin/python benchmarks/bench_batches.py --comments 2000000 --repeats 3

One generated month of ``--comments`` comments (time-ordered lines) is cut by time into five equal
"months" 2015-01 .. 2015-05 (comments, and the submissions of each time range), so threads run
across the cuts as they do across real months. B is the last. Three extracts of B, each on Spark
(``local[--cores]``, ``spark.in_process_below_bytes=0``), the default rules (``--no-near``: the
near-duplicate rules off) in all three:

- ``alone``: B's dumps ingested on their own, extracted as one input;
- ``after 1x``: a corpus of the batches 2015-04 (A, as large as B) and 2015-05, A extracted first,
  then ``extract batch=2015-05``;
- ``after 4x``: a corpus of the batches 2015-01 .. 2015-05, the four before B extracted first.

The three are timed in turn, the order reversed every other round (``--repeats`` rounds, each run
``force=true``); the table gives each one's median seconds (``run_extract`` wall in one Spark
session, which the three share), the ratio to ``alone`` within each round (median and spread), the
largest Python worker's peak memory, and where the time went (the task sets' seconds). Results in
``benchmarks/results/batches-<comments>[-no-near].json``.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import RESULTS, machine, synthetic_month  # noqa: E402

MONTHS = ["2015-01", "2015-02", "2015-03", "2015-04", "2015-05"]


def _lines(path: Path) -> list[bytes]:
    import zstandard

    with open(path, "rb") as f:
        return io.BufferedReader(zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(f)).read().splitlines(keepends=True)


def _write(path: Path, lines: list[bytes]) -> None:
    import zstandard

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(zstandard.ZstdCompressor(level=3, write_content_size=False).compress(b"".join(lines)))


def cut_months(month: Path, out: Path) -> None:
    """The month's comments cut into five equal runs of lines (they are in time order), its
    submissions by the same times; each run a month's dumps ``<out>/<month>/RC_<month>.zst``."""
    if (out / MONTHS[-1] / f"RS_{MONTHS[-1]}.zst").exists():
        return
    comments = _lines(month / "RC_2015-01.zst")
    submissions = _lines(month / "RS_2015-01.zst")
    times = [float(json.loads(s)["created_utc"]) for s in submissions]
    n = len(comments)
    bounds = [n * i // len(MONTHS) for i in range(len(MONTHS) + 1)]
    starts = [float(json.loads(comments[b])["created_utc"]) for b in bounds[1:-1]]
    for i, name in enumerate(MONTHS):
        lo = starts[i - 1] if i else float("-inf")
        hi = starts[i] if i < len(starts) else float("inf")
        _write(out / name / f"RS_{name}.zst", [s for s, t in zip(submissions, times) if lo <= t < hi])
        _write(out / name / f"RC_{name}.zst", comments[bounds[i]:bounds[i + 1]])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--comments", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--work", default="/tmp/bench_batches")
    parser.add_argument("--no-near", action="store_true", help="the near-duplicate rules off")
    args = parser.parse_args()

    from extraction.ingest.job import IngestConfig, run_ingest
    from extraction.sessions.filters import FiltersConfig
    from extraction.sessions.job import ExtractConfig, run_extract
    from extraction.spark import SparkConfig, build_spark

    work = Path(args.work) / str(args.comments)
    shutil.rmtree(work / "run", ignore_errors=True)
    months = work / "months"
    cut_months(synthetic_month(args.comments), months)
    spark_cfg = SparkConfig(master=f"local[{args.cores}]", in_process_below_bytes=0)
    spark = build_spark(spark_cfg)
    filters = FiltersConfig(near_duplicate=False) if args.no_near else FiltersConfig()
    run = work / "run"
    b = MONTHS[-1]

    def dumps(name: str) -> list[str]:
        return [str(months / name / f"RC_{name}.zst"), str(months / name / f"RS_{name}.zst")]

    t = time.time()
    run_ingest(IngestConfig(inputs=dumps(b), output=str(run / "alone_ingest"), spark=spark_cfg), spark)
    for corpus, before in (("corpus_1x", MONTHS[3:4]), ("corpus_4x", MONTHS[:4])):
        for name in before + [b]:  # the corpus's pieces: those of its first batch (automatic)
            run_ingest(IngestConfig(inputs=dumps(name), corpus=str(run / corpus), spark=spark_cfg), spark)
        for name in before:
            run_extract(ExtractConfig(input=str(run / corpus), batch=name, filters=filters, spark=spark_cfg), spark)
    print(f"set up in {time.time() - t:.0f} s", flush=True)

    cases = {
        "alone": ExtractConfig(input=str(run / "alone_ingest"), output=str(run / "alone_extract"), filters=filters,
                               spark=spark_cfg, force=True),
        "after 1x": ExtractConfig(input=str(run / "corpus_1x"), batch=b, filters=filters, spark=spark_cfg, force=True),
        "after 4x": ExtractConfig(input=str(run / "corpus_4x"), batch=b, filters=filters, spark=spark_cfg, force=True),
    }
    runs: dict[str, list[dict]] = {name: [] for name in cases}
    run_extract(cases["alone"], spark)  # (a warm-up: the first Spark jobs of a session are slower)
    for r in range(args.repeats):
        order = list(cases) if r % 2 == 0 else list(reversed(cases))
        for name in order:
            t = time.time()
            report = run_extract(cases[name], spark)
            seconds = time.time() - t
            runs[name].append({"round": r, "seconds": round(seconds, 3), "job_seconds": report["job_seconds"],
                               "worker_peak_rss": report["exchange"]["worker_peak_rss"],
                               "comments": report["comments"]["comments"], "kept": report["sessions"]["kept"],
                               "batch": report.get("batch"), "tasks": report["exchange"]["tasks"]})
            print(f"round {r + 1}: {name:9s} {seconds:6.2f} s", flush=True)

    rows = []
    for name, done in runs.items():
        ratios = [d["seconds"] / runs["alone"][i]["seconds"] for i, d in enumerate(done)]
        first = done[0]
        rows.append({"case": name, "seconds_median": round(statistics.median(d["seconds"] for d in done), 2),
                     "ratio_median": round(statistics.median(ratios), 3), "ratio_min": round(min(ratios), 3),
                     "ratio_max": round(max(ratios), 3), "worker_peak_mib": round(max(d["worker_peak_rss"] for d in done) / 2**20),
                     "comments": first["comments"], "kept": first["kept"], "tasks": first["tasks"],
                     "earlier_comments_read": (first["batch"] or {}).get("earlier_comments_read", 0),
                     "job_seconds": {k: round(statistics.median(d["job_seconds"][k] for d in done), 2) for k in first["job_seconds"]}})
    print()
    print("| case | B's comments | earlier comments read | tasks | extract s, median | **vs alone** | spread | worker peak MiB | task sets s (median) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        sets = ", ".join(f"{k} {v:.1f}" for k, v in row["job_seconds"].items())
        print(f"| {row['case']} | {row['comments']:,} | {row['earlier_comments_read']:,} | {row['tasks']} | {row['seconds_median']:.2f} | "
              f"**{row['ratio_median']:.2f}** | {row['ratio_min']:.2f}-{row['ratio_max']:.2f} | {row['worker_peak_mib']:,} | {sets} |")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"batches-{args.comments}{'-no-near' if args.no_near else ''}.json"
    out.write_text(json.dumps({"machine": machine(), "time": time.strftime("%Y-%m-%d %H:%M"), "args": vars(args),
                               "rows": rows, "runs": runs}, indent=1))
    print(f"\nwritten {out}")


if __name__ == "__main__":
    main()
