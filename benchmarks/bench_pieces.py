"""The same month cut into more and more pieces of the thread hash space: extract must not care.

    python benchmarks/bench_pieces.py [--comments 1000000] [--pieces 4,1024,16384] [--repeats 3] [--cores 2]

The month (the extract benchmark's generated month: one megathread, one deep chain) is ingested
once per piece count (``thread_buckets``), then extracted with the default rules on Spark
(``local[--cores]``, ``spark.in_process_below_bytes=0``: every task set is a Spark job), the piece
counts alternated, ``--repeats`` rounds (the order reversed every other round). Per piece count:
the ingest's files, the extract's tasks and reduce tasks, its wall time (median and spread of the
rounds, and the median against the first piece count's), the Spark jobs' seconds, and the files
each exchange opened against its tasks (from the report's ``exchange`` table). The outputs are
compared: every piece count must give the same sessions and rejects (rows in session_id order;
file names may differ). Prints tables and writes benchmarks/results/pieces.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import synthetic_month, table, write_results  # noqa: E402


def _rows(folder: Path):
    import pyarrow.parquet as pq
    import pyarrow as pa

    out = {}
    for part in ("sessions", "rejects"):
        files = sorted((folder / part).rglob("*.parquet"))
        tables = []
        for f in files:
            t = pq.read_table(f)
            if "split" not in t.column_names:  # sessions: the split is the folder
                t = t.append_column("split", pa.array([f.parent.name.split("=", 1)[1]] * t.num_rows, pa.string()))
            tables.append(t)
        whole = pa.concat_tables(tables, promote_options="permissive")
        out[part] = whole.sort_by("session_id")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--comments", type=int, default=1_000_000)
    ap.add_argument("--pieces", default="4,1024,16384")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--work", default=None, help="folder for the ingest and extract outputs (a temporary one by default)")
    args = ap.parse_args()
    pieces = [int(p) for p in args.pieces.split(",")]

    from extraction.ingest.job import IngestConfig, run_ingest
    from extraction.sessions.job import ExtractConfig, run_extract
    from extraction.spark import SparkConfig, build_spark

    month = synthetic_month(args.comments, seed=0, megathreads=1, megathread_comments=min(100_000, args.comments // 10),
                            deep_chains=1, deep_chain_depth=3000)
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_pieces_"))
    spark_cfg = SparkConfig(master=f"local[{args.cores}]", in_process_below_bytes=0)
    spark = build_spark(spark_cfg)
    ingests = {}
    for p in pieces:
        t = time.time()
        run_ingest(IngestConfig(inputs=[str(month / "*.zst")], output=str(work / f"ingest_{p}"), thread_buckets=p,
                                spark=spark_cfg), spark)
        ingests[p] = {"seconds": round(time.time() - t, 2),
                      "files": sum(1 for _ in (work / f"ingest_{p}").rglob("*.parquet"))}
        print(f"[bench] ingest into {p:,} pieces: {ingests[p]['files']:,} Parquet files, {ingests[p]['seconds']} s", flush=True)

    runs = {p: [] for p in pieces}
    reports = {}
    for round_ in range(args.repeats):
        for p in (pieces if round_ % 2 == 0 else pieces[::-1]):
            cfg = ExtractConfig(input=str(work / f"ingest_{p}"), output=str(work / f"extract_{p}"), force=True, spark=spark_cfg)
            t = time.time()
            report = run_extract(cfg, spark)
            seconds = time.time() - t
            runs[p].append(seconds)
            reports[p] = report
            print(f"[bench] round {round_ + 1}: {p:,} pieces, extract {seconds:.1f} s", flush=True)

    first = _rows(work / f"extract_{pieces[0]}")
    same = {p: all(_rows(work / f"extract_{p}")[k].equals(first[k]) for k in first) for p in pieces}
    base = statistics.median(runs[pieces[0]])
    rows, exchanges = [], []
    for p in pieces:
        rep = reports[p]
        ex = rep.get("exchange", {})
        med = statistics.median(runs[p])
        rows.append({"pieces": p, "ingest files": ingests[p]["files"], "tasks": ex.get("tasks"),
                     "reduce tasks": ex.get("reduce_tasks"), "extract s (median)": round(med, 1),
                     "spread": f"{min(runs[p]):.1f}-{max(runs[p]):.1f}", "vs first": round(med / base, 3),
                     "Spark jobs s": round(sum(rep.get("job_seconds", {}).values()), 1),
                     "exchange MB": round(rep.get("exchange_bytes", 0) / 1e6, 1), "same rows": same[p]})
        for name, e in ex.get("steps", {}).items():
            exchanges.append({"pieces": p, "exchange": name, "tasks": e["tasks"], "files opened": e["files_opened"],
                              "per task": round(e["files_opened"] / max(1, e["tasks"]), 1)})
    print(table(rows, list(rows[0])))
    if exchanges:
        print(table(exchanges, list(exchanges[0])))
    path = write_results("pieces", {"comments": args.comments, "cores": args.cores, "repeats": args.repeats,
                                    "ingest": ingests, "runs": runs, "rows": rows, "exchanges": exchanges,
                                    "job_seconds": {p: reports[p].get("job_seconds") for p in pieces},
                                    "stage_seconds": {p: reports[p].get("stage_seconds") for p in pieces}})
    print(f"[bench] wrote {path}")


if __name__ == "__main__":
    main()
