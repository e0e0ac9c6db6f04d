"""The thread hash space, its pieces and the extract tasks that group them (issue 39): the work
follows the data, not how finely the input was cut, and the exchanges open files in proportion
to the tasks."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from extraction.ingest.job import IngestConfig, run_ingest
from extraction.sessions.filters import FiltersConfig
from extraction.sessions.job import MIN_TASKS, BucketPlan, ExtractConfig, reduce_tasks, run_extract
from extraction.sessions.threads import piece_of, thread_bucket, thread_places
from extraction.spark import SparkConfig, exchange
from reddit_pretrain.synth import SynthConfig, write_month


def test_a_threads_place_is_fixed_and_pieces_are_contiguous_ranges():
    # The place is a property of the id alone, the same in every run and corpus (a month added later
    # lands where its thread already is): these values must never change.
    assert [int(x) for x in thread_places(["t3_abc", "t3_2qh1i", "1x9"])] == [
        18026432180363563684, 14732305364089458136, 3115108855966947258]
    places = np.sort(np.random.default_rng(3).integers(0, 2**64, 50_000, dtype=np.uint64, endpoint=False))
    for n in (3, 7, 1000, 1024, 65_536, 100_003, 1 << 20):
        pieces = piece_of(places, n)
        assert (np.diff(pieces) >= 0).all() and pieces.min() >= 0 and pieces.max() < n  # place order is piece order
        assert (pieces == np.array([int(p) * n >> 64 for p in places])).all()  # floor(place * n / 2^64), exactly
    for k in range(2, 20):  # power-of-two cuts nest: piece i of 2^k is pieces 2i and 2i+1 of 2^(k+1)
        assert (piece_of(places, 1 << (k + 1)) // 2 == piece_of(places, 1 << k)).all()
    assert (thread_bucket(pa.array(["t3_abc", None]), 4) == [3, 0]).all()


def _plan(sizes: dict[int, int]) -> BucketPlan:
    return BucketPlan({p: {"comments": [f"c{p}"], "submissions": [], "bytes": b} for p, b in sizes.items()}, False,
                      len(sizes), None, {})


def test_tasks_are_contiguous_pieces_sized_by_their_bytes():
    rng = np.random.default_rng(0)
    sizes = {p: int(b) for p, b in enumerate(rng.integers(1, 1000, 4096)) if p % 7}  # some pieces empty
    sizes[2000] = 500_000  # a megathread's piece: a task alone
    plan = _plan(sizes)
    target = 20_000
    tasks = plan.tasks(target)
    by_number = sorted(tasks, key=lambda t: t["task"])
    assert [t["task"] for t in by_number] == list(range(len(tasks)))
    covered = [p for t in by_number for p in range(t["pieces"][0], t["pieces"][1] + 1) if p in sizes]
    assert covered == sorted(sizes)  # every piece once, in hash order: tasks are contiguous ranges
    assert all(t["bytes"] <= target + 1000 or t["pieces"][0] == t["pieces"][1] for t in tasks)  # at most one piece over
    assert [t for t in tasks if t["pieces"] == [2000, 2000]]  # alone
    assert len(tasks) <= sum(sizes.values()) // target + 3  # sized by the data (+ the big piece and its neighbour)
    assert [t["bytes"] for t in tasks] == sorted((t["bytes"] for t in tasks), reverse=True)  # the largest start first
    # The same data cut 16 times finer gives tasks of the same sizes, not 16 times as many.
    fine = _plan({p * 16 + i: max(1, b // 16) for p, b in sizes.items() for i in range(16)}).tasks(target)
    assert abs(len(fine) - len(tasks)) <= len(tasks) // 4 + 1
    # A small input still has a few tasks (a constant, so any cluster writes the same files).
    assert len(_plan({p: 10 for p in range(64)}).tasks(target)) == MIN_TASKS
    assert len(_plan({0: 10, 5: 10}).tasks(target)) == 2
    # Reduce tasks follow the exchanged bytes and the cores.
    assert reduce_tasks(0, 2, 64) == 2 and reduce_tasks(64 * 10 + 1, 2, 64) == 11


def test_an_exchange_reads_a_range_of_partitions_with_one_open_per_file(tmp_path):
    schema = pa.schema([("h", pa.uint64())])
    urls = []
    for t in range(3):
        h = np.arange(t * 80, t * 80 + 80, dtype=np.uint64) << np.uint64(56)
        urls.append(str(tmp_path / f"{t}.arrow"))
        exchange.write_partitioned(urls[-1], pa.table({"h": h}, schema=schema), exchange.hash_partition(h, 8), 8)
    read = exchange.Reader()
    got = read.partitions(urls + [str(tmp_path / "missing.arrow")], 2, 5, schema)
    assert read.opened == 3
    want = [h for t in range(3) for h in range(t * 80, t * 80 + 80)
            if 2 <= int(exchange.hash_partition(np.array([h], np.uint64) << np.uint64(56), 8)[0]) < 5]
    assert sorted(int(x) >> 56 for x in got.column("h").to_pylist()) == want
    assert exchange.ranges(10, 3) == [(0, 3), (3, 6), (6, 10)] and exchange.ranges(2, 5) == [(0, 1), (1, 2)]


def _sorted_rows(out):
    tables = []
    for folder in ("sessions", "rejects"):
        for f in sorted((out / folder).rglob("*.parquet")):
            t = pq.read_table(f)
            if "split" not in t.column_names:
                t = t.append_column("split", pa.array([f.parent.name.split("=", 1)[1]] * t.num_rows, pa.string()))
            tables.append(t.select(sorted(t.column_names)))
    return pa.concat_tables(tables, promote_options="permissive").sort_by("session_id")


@pytest.mark.slow
def test_the_cut_of_the_hash_space_changes_neither_the_sessions_nor_the_work(spark, tmp_path):
    """The same month ingested into 4 and into 512 pieces, extracted on Spark (every task set a
    Spark job) and in this process with other task and reduce sizes: the same sessions and
    rejects; the tasks and the files the exchanges open follow the data, not the pieces."""
    write_month(str(tmp_path / "dumps"), SynthConfig(comments=12_000, seed=8, megathreads=1, megathread_comments=2000,
                                                     copypasta_clusters=6))
    filters = FiltersConfig(bland_min_count=15, near_duplicate_session=True)
    reports, rows = {}, {}
    for pieces in (4, 512):
        run_ingest(IngestConfig(inputs=[str(tmp_path / "dumps" / "*.zst")], output=str(tmp_path / f"i{pieces}"),
                                thread_buckets=pieces))
        reports[pieces] = run_extract(ExtractConfig(input=str(tmp_path / f"i{pieces}"), output=str(tmp_path / f"x{pieces}"),
                                                    filters=filters, spark=SparkConfig(in_process_below_bytes=0)), spark)
        rows[pieces] = _sorted_rows(tmp_path / f"x{pieces}")
    assert rows[4].num_rows > 1000 and rows[512].equals(rows[4])
    coarse, fine = reports[4]["exchange"], reports[512]["exchange"]
    assert coarse["tasks"] == 4 and fine["pieces"] > 400 and fine["tasks"] == MIN_TASKS  # a small month: the fewest tasks
    for ex in (coarse, fine):
        t, r, steps = ex["tasks"], ex["reduce_tasks"], ex["steps"]
        assert r == 2  # the cores: the month's exchange is far below reduce_bytes
        assert steps["corpus rules"]["files_opened"] == 3 * r * t  # trigrams, keys, bands: each task's file once per reducer
        assert steps["write"]["files_opened"] == t * (r + 3)  # candidates, the reducers' drops, the near drops, frequent
        assert steps["near duplicates: verify"]["files_opened"] == r * t + t
    assert reports[512]["sessions"] == reports[4]["sessions"] and reports[512]["rules"] == reports[4]["rules"]

    # Tasks and reduce tasks of another size (in this process): still the same rows.
    many = run_extract(ExtractConfig(input=str(tmp_path / "i512"), output=str(tmp_path / "many"), filters=filters,
                                     task_bytes=20_000, reduce_bytes=1))
    assert many["exchange"]["tasks"] > 10 and many["exchange"]["reduce_tasks"] == many["exchange"]["tasks"]
    assert _sorted_rows(tmp_path / "many").equals(rows[4])
