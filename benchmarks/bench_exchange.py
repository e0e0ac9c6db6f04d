"""The extract job's exchange carried two ways: Arrow files in the staging folder, or Spark's shuffle.

    python benchmarks/bench_exchange.py [--mb 250] [--tasks 4,32] [--reducers 2] [--repeats 3] [--cores 2]

The same rows each way: ``--tasks`` map tasks each make their share of ``--mb`` MB of exchanged
rows shaped as the extract job's (trigram counts: two 64-bit columns; duplicate keys: two 64-bit
hashes, a session id and a task number; near-duplicate bands: a 64-bit band, a session id and
three small integers), seeded by the task number, and partition them by hash into one partition
per map task; ``--reducers`` reduce tasks each take a contiguous range of partitions and add up
what they got. Both ways are two Spark jobs' worth of tasks on ``local[--cores]``:

* files (what ``extraction.spark.exchange`` does): each map task writes one Arrow IPC file per
  table, a record batch per partition; each reduce task reads its range of batches from every
  file, one open each;
* Spark's shuffle: each map task yields (partition, Arrow IPC bytes of the batch) pairs, Spark's
  sort-based shuffle carries them (``partitionBy`` with the same ranges), each reduce task reads
  its pairs back into Arrow.

The ways alternate over ``--repeats`` rounds (the order reversed every other round); the table
gives the median seconds, the spread and files against Spark's shuffle. Writes
benchmarks/results/exchange.json.
"""

from __future__ import annotations

import argparse
import functools
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import table, write_results  # noqa: E402

_ROW_BYTES = {"trigrams": 16, "keys": 36, "bands": 32}
"""About what a row of each table costs in Arrow (ids of 7 characters)."""


def _tables(task: int, tasks: int, mb: float):
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(task)
    share = mb * 1e6 / tasks / 3  # each table a third
    out = {}
    n = int(share / _ROW_BYTES["trigrams"])
    out["trigrams"] = pa.table({"h": rng.integers(0, 2**63, n, dtype=np.uint64), "n": rng.integers(1, 50, n)})
    n = int(share / _ROW_BYTES["keys"])
    ids = pa.array(np.char.mod("c%06x", rng.integers(0, 2**24, n)).astype(object), pa.string())
    out["keys"] = pa.table({"_rkey": rng.integers(0, 2**63, n, dtype=np.uint64), "_skey": rng.integers(0, 2**63, n, dtype=np.uint64),
                            "session_id": ids, "bucket": np.full(n, task, dtype=np.int64)})
    n = int(share / _ROW_BYTES["bands"])
    ids = pa.array(np.char.mod("c%06x", rng.integers(0, 2**24, n)).astype(object), pa.string())
    out["bands"] = pa.table({"band": rng.integers(0, 2**63, n, dtype=np.uint64), "session_id": ids,
                             "bucket": np.full(n, task, dtype=np.int64), "shingles": rng.integers(0, 100, n).astype(np.int32)})
    return out


def _key(name: str, t):
    return t.column({"trigrams": "h", "keys": "_rkey", "bands": "band"}[name])


def _summary(tables) -> list[int]:
    import pyarrow.compute as pc

    return [(name, sum(t.num_rows for t in tables[name]),
             sum(int(pc.sum(pc.bit_wise_and(_key(name, t), 0xFFFF)).as_py() or 0) for t in tables[name])) for name in sorted(tables)]


# -- files ----------------------------------------------------------------------------------------

def _files_map(work: str, tasks: int, mb: float, task: int):
    from extraction.spark import exchange

    for name, t in _tables(task, tasks, mb).items():
        keys = _key(name, t).to_numpy()
        exchange.write_partitioned(f"{work}/{name}/{task:06d}.arrow", t, exchange.hash_partition(keys, tasks), tasks)
    return task


def _files_reduce(work: str, tasks: int, span):
    import pyarrow as pa

    from extraction.spark import exchange

    first, last = span
    read = exchange.Reader()
    got = {}
    for name in _ROW_BYTES:
        urls = [f"{work}/{name}/{t:06d}.arrow" for t in range(tasks)]
        with pa.ipc.open_file(urls[0]) as f:
            schema = f.schema
        got[name] = [read.partitions(urls, first, last, schema)]
    return _summary(got), read.opened


def run_files(sc, work: str, tasks: int, reducers: int, mb: float):
    from extraction.spark import exchange

    shutil.rmtree(work, ignore_errors=True)
    sc.parallelize(range(tasks), tasks).map(functools.partial(_files_map, work, tasks, mb)).collect()
    spans = exchange.ranges(tasks, reducers)
    results = sc.parallelize(spans, len(spans)).map(functools.partial(_files_reduce, work, tasks)).collect()
    return [r[0] for r in results], sum(r[1] for r in results)


# -- Spark's shuffle ------------------------------------------------------------------------------

def _shuffle_map(tasks: int, mb: float, task: int):
    import numpy as np
    import pyarrow as pa

    from extraction.spark import exchange

    for name, t in _tables(task, tasks, mb).items():
        part = exchange.hash_partition(_key(name, t).to_numpy(), tasks)
        order = np.argsort(part, kind="stable")
        ordered = t.take(pa.array(order)).combine_chunks()
        bounds = np.searchsorted(part[order], np.arange(tasks + 1))
        for p in range(tasks):
            piece = ordered.slice(bounds[p], bounds[p + 1] - bounds[p])
            if not piece.num_rows:
                continue
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, piece.schema, options=pa.ipc.IpcWriteOptions(compression="lz4")) as writer:
                writer.write_table(piece)
            yield p, (name, sink.getvalue().to_pybytes())


def _shuffle_reduce(rows):
    import pyarrow as pa

    got = {name: [] for name in _ROW_BYTES}
    for _, (name, blob) in rows:
        got[name].append(pa.ipc.open_stream(blob).read_all())
    got = {name: [pa.concat_tables(ts)] if ts else [] for name, ts in got.items()}
    yield _summary(got)


def run_shuffle(sc, tasks: int, reducers: int, mb: float):
    from extraction.spark import exchange

    spans = exchange.ranges(tasks, reducers)
    owner = [k for k, (lo, hi) in enumerate(spans) for _ in range(lo, hi)]
    pairs = sc.parallelize(range(tasks), tasks).flatMap(functools.partial(_shuffle_map, tasks, mb))
    return pairs.partitionBy(len(spans), lambda p: owner[p]).mapPartitions(_shuffle_reduce).collect(), None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=250)
    ap.add_argument("--tasks", default="4,32")
    ap.add_argument("--reducers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cores", type=int, default=2)
    args = ap.parse_args()

    from extraction.spark import SparkConfig, build_spark

    spark = build_spark(SparkConfig(master=f"local[{args.cores}]", log_level="ERROR"))
    sc = spark.sparkContext
    work = tempfile.mkdtemp(prefix="bench_exchange_")
    times: dict[tuple[int, str], list[float]] = {}
    opened = {}
    for tasks in (int(t) for t in args.tasks.split(",")):
        results = {}
        for round_ in range(args.repeats):
            for way in (("files", "shuffle") if round_ % 2 == 0 else ("shuffle", "files")):
                t = time.time()
                if way == "files":
                    summaries, opened[tasks] = run_files(sc, f"{work}/x", tasks, args.reducers, args.mb)
                else:
                    summaries, _ = run_shuffle(sc, tasks, args.reducers, args.mb)
                times.setdefault((tasks, way), []).append(time.time() - t)
                results[way] = summaries
                print(f"[bench] {tasks} map tasks, round {round_ + 1}: {way} {times[(tasks, way)][-1]:.2f} s", flush=True)
        assert results["files"] == results["shuffle"], "the two ways carried different rows"
    rows = []
    for tasks in sorted({t for t, _ in times}):
        files, shuffle = statistics.median(times[(tasks, "files")]), statistics.median(times[(tasks, "shuffle")])
        for way, med in (("files", files), ("Spark shuffle", shuffle)):
            spread = times[(tasks, "files" if way == "files" else "shuffle")]
            rows.append({"map tasks": tasks, "reduce tasks": args.reducers, "way": way, "seconds (median)": round(med, 2),
                         "spread": f"{min(spread):.2f}-{max(spread):.2f}", "vs files": round(med / files, 2),
                         "files opened": opened[tasks] if way == "files" else ""})
    print(table(rows, list(rows[0])))
    path = write_results("exchange", {"mb": args.mb, "cores": args.cores, "repeats": args.repeats, "rows": rows,
                                      "times": {f"{t}-{w}": v for (t, w), v in times.items()}})
    print(f"[bench] wrote {path}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
