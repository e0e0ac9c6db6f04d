"""One big dump on all the cores: ingest of a single RC file parsed in pieces, against one task.

    python benchmarks/bench_ingest_file.py [--comments 10000000] [--cores 2]

The dump is one generated month (``benchmarks.common.synthetic_month``: one megathread of a tenth
of the comments, a 2 GiB zstd window), a single file as a per-subreddit dump is. Runs, each
on a fresh output, in this order:

1. the floor: decompression alone, lines counted, nothing parsed (``iter_line_blocks`` told to
   skip every block), one core;
2. Spark ``local[1]``: one task (the automatic piece count on one core);
3. Spark ``local[N]``: the automatic pieces (N for one file);
4. the in-process runner (no Spark) on one core, then with N worker processes.

Each Spark run gets its own SparkSession, started before the clock (ingest time only). Every run
must give the same rows in the same order (a digest of each table's ids and bodies, read as the
extract job reads a bucket: files in name order) and the same report counters; the table prints
each run's seconds against its one-core run, the per-piece seconds (where the time goes: the
last piece decodes the whole file, hands the others their lines and parses its own smaller share)
and the peak resident memory of every process of the run (``bench_extract.PeakMemory``: this
one, Spark's JVM, the Python workers), which shows how many zstd windows were held at once.

Prints a table and writes benchmarks/results/ingest_file.json.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine, synthetic_month, table, write_results  # noqa: E402


def decompress_only(path: Path) -> dict:
    from extraction.ingest.dumps import iter_line_blocks

    started = time.perf_counter()
    lines = decompressed = 0
    for block in iter_line_blocks(str(path), wanted=lambda _: False):
        lines += block.num_lines
        decompressed = block.decompressed_bytes_read
    return {"seconds": time.perf_counter() - started, "lines": lines, "decompressed_bytes": decompressed}


def digest(table_dir: Path) -> str:
    """Of the ids and bodies (or titles) in the order the extract job reads them: files in name
    order, whatever the files' and chunks' boundaries (lengths, bytes and nulls hashed apart)."""
    import numpy as np
    import pyarrow.parquet as pq

    parts: dict[str, hashlib._Hash] = {}

    def update(key: str, data: bytes) -> None:
        parts.setdefault(key, hashlib.sha256()).update(data)

    folder = None
    for f in sorted(table_dir.rglob("*.parquet"), key=lambda p: str(p.relative_to(table_dir))):
        if f.parent != folder:  # the folders in order, each once (a folder holds one file or several)
            folder = f.parent
            update("folders", str(folder.relative_to(table_dir)).encode() + b"\n")
        names = [c for c in ("id", "body", "line_number") if c in pq.read_schema(f).names]
        for name, column in zip(names, pq.read_table(f, columns=names).columns):
            for a in column.chunks:
                update(name + " nulls", np.asarray(a.is_null()).tobytes())
                if a.type == "int64":
                    update(name, a.fill_null(0).to_numpy().tobytes())
                    continue
                offsets = np.frombuffer(a.buffers()[1], np.int32)[a.offset: a.offset + len(a) + 1]
                update(name + " lengths", np.diff(offsets).tobytes())
                if a.buffers()[2] is not None:
                    update(name, a.buffers()[2].to_pybytes()[offsets[0]: offsets[-1]])
    return hashlib.sha256("".join(k + h.hexdigest() for k, h in sorted(parts.items())).encode()).hexdigest()


def run(path: Path, out: Path, master: str, in_process: bool) -> dict:
    from benchmarks.bench_extract import PeakMemory
    from extraction.ingest.job import IngestConfig, run_ingest
    from extraction.spark import SparkConfig, build_spark

    cfg = SparkConfig(master=master, log_level="ERROR", in_process_below_bytes=1 << 50 if in_process else 0,
                      conf={"spark.ui.showConsoleProgress": "false"})
    spark = None if in_process else build_spark(cfg)
    try:
        with PeakMemory() as memory:  # this process, the JVM and every Python worker
            started = time.perf_counter()
            report = run_ingest(IngestConfig(inputs=[str(path)], output=str(out), spark=cfg), spark)
            seconds = time.perf_counter() - started
    finally:
        if spark is not None:
            spark.stop()
    f = report["files"][0]
    return {"run": f"{'in process' if in_process else 'Spark'} {master}", "seconds": round(seconds, 2),
            "pieces": f["pieces"], "piece seconds": f.get("piece_seconds", [f["seconds"]]),
            "peak GiB": round(memory.peak / 2**30, 2), "workers GiB": round(memory.parts["workers"] / 2**30, 2),
            "lines": report["totals"]["lines"], "rows": report["totals"]["comments_rows"],
            "rejects": report["totals"]["rejects"], "digest": {t: digest(out / t)[:16] for t in ("comments", "rejects")}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--comments", type=int, default=10_000_000)
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    month = synthetic_month(args.comments, seed=0, megathreads=1, megathread_comments=args.comments // 10)
    path = month / "RC_2015-01.zst"
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-file-"))
    rows = []
    try:
        floor = decompress_only(path)
        print(f"decompression alone: {floor['seconds']:.1f} s, {floor['lines']:,} lines, "
              f"{floor['decompressed_bytes'] / 1e6:,.0f} MB ({path.stat().st_size / 1e6:,.0f} MB compressed)", flush=True)
        plan = [("local[1]", False), (f"local[{args.cores}]", False), ("local[1]", True), (f"local[{args.cores}]", True)]
        for i, (master, in_process) in enumerate(plan):
            rows.append(run(path, work / f"run{i}", master, in_process))
            shutil.rmtree(work / f"run{i}", ignore_errors=True)
            print(rows[-1], flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for r in rows:
        one = next(x for x in rows if x["run"].split(" local")[0] == r["run"].split(" local")[0] and x["pieces"] == 1)
        r["vs one core"] = round(r["seconds"] / one["seconds"], 3)
        r["vs decompression"] = round(r["seconds"] / floor["seconds"], 2)
    same = len({(r["lines"], r["rows"], r["rejects"], tuple(sorted(r["digest"].items()))) for r in rows}) == 1
    print(table(rows, ["run", "pieces", "seconds", "vs one core", "vs decompression", "piece seconds", "peak GiB",
                       "rows", "rejects"]))
    print(f"same rows, rejects and order in every run: {same}")
    path_out = write_results("ingest_file", {"machine": machine(), "comments": args.comments,
                                             "compressed_bytes": path.stat().st_size, "decompression": floor,
                                             "runs": rows, "same_output": same})
    print(f"results: {path_out}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
