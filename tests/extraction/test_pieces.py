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
from extraction.sessions.work import MIN_PARTITIONS
from extraction.sessions.thread_keys import piece_of, thread_bucket, thread_places
from extraction.spark import SparkConfig, exchange
from reddit_pretrain_app.synth import SynthConfig, write_month


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
    # Reduce tasks follow the exchanged bytes and the cores: a multiple of the cores.
    assert reduce_tasks(0, 2, 64) == 2 and reduce_tasks(64 * 10 + 1, 2, 64) == 12 and reduce_tasks(64 * 10 + 1, 1, 64) == 11
    assert reduce_tasks(64 * 5, 4, 64) == 8 and reduce_tasks(64 * 3, 4, 64) == 4


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
    """The same month ingested into 4 and into 256 pieces, extracted on Spark (every task set a
    Spark job; the near-duplicate clusters in the driver, then by Spark tasks in rounds) and in
    this process with other task and reduce sizes: the same sessions and rejects; the tasks and the
    files the exchanges open follow the data, not the pieces."""
    write_month(str(tmp_path / "dumps"), SynthConfig(comments=12_000, seed=8, megathreads=1, megathread_comments=2000,
                                                     copypasta_clusters=6))
    filters = FiltersConfig(bland_min_count=15, near_duplicate_session=True)
    reports, rows = {}, {}
    for pieces in (4, 256):
        run_ingest(IngestConfig(inputs=[str(tmp_path / "dumps" / "*.zst")], output=str(tmp_path / f"i{pieces}"),
                                thread_buckets=pieces))
        # At 256 pieces the near-duplicate clusters are made by Spark tasks in rounds (as over years
        # of links), at 4 in the driver: the same rows and report either way.
        reports[pieces] = run_extract(ExtractConfig(input=str(tmp_path / f"i{pieces}"), output=str(tmp_path / f"x{pieces}"),
                                                    filters=filters, clusters_in_driver_bytes=0 if pieces == 256 else 256 << 20,
                                                    spark=SparkConfig(in_process_below_bytes=0)), spark)
        rows[pieces] = _sorted_rows(tmp_path / f"x{pieces}")
    assert rows[4].num_rows > 1000 and rows[256].equals(rows[4])
    coarse, fine = reports[4]["exchange"], reports[256]["exchange"]
    assert coarse["tasks"] == 4 and fine["pieces"] > 200 and fine["tasks"] == MIN_TASKS  # a small month: the fewest tasks
    for ex in (coarse, fine):
        t, r, steps = ex["tasks"], ex["reduce_tasks"], ex["steps"]
        assert r == 2  # the cores: the month's exchange is far below reduce_bytes
        assert steps["corpus rules"]["files_opened"] == 3 * r * t  # trigrams, keys, bands: each task's file once per reducer
        near = r if "near duplicates: cluster rounds" in steps else 1  # the rounds' drops by partition, or the driver's file
        assert steps["write"]["files_opened"] == t * (2 * r + 1 + near)  # candidates, the reducers' drops and frequent trigrams, the near drops
        assert steps["near duplicates: verify"]["files_opened"] == r * t + t
    assert reports[256]["sessions"] == reports[4]["sessions"] and reports[256]["rules"] == reports[4]["rules"]
    assert reports[256]["near_duplicates"] == reports[4]["near_duplicates"]
    assert fine["steps"]["near duplicates: cluster rounds"]["tasks"] >= 2 * fine["reduce_tasks"]
    assert "near duplicates: cluster rounds" not in coarse["steps"]

    # Tasks and reduce tasks of another size (in this process): still the same rows.
    many = run_extract(ExtractConfig(input=str(tmp_path / "i256"), output=str(tmp_path / "many"), filters=filters,
                                     task_bytes=100_000, reduce_bytes=1))
    # (a reduce task per partition of the corpus rules' exchanges, at least MIN_PARTITIONS of them; the
    # near-duplicate lookups' reduce tasks take ranges of the first set's tasks: one each)
    assert many["exchange"]["tasks"] > 10 and many["exchange"]["reduce_tasks"] == max(MIN_PARTITIONS, many["exchange"]["tasks"])
    assert many["exchange"]["steps"]["near duplicates: verify"]["tasks"] == many["exchange"]["tasks"]
    assert _sorted_rows(tmp_path / "many").equals(rows[4])


def _simulated_rounds(links: pa.Table, partitions: int, shares: int):
    """``extraction.sessions.clusters`` run as the job runs it, in this process: links in shares,
    sets exchanged by partition, rounds until the fingerprint repeats."""
    from extraction.sessions import clusters

    def split(table, where):
        return [table.filter(pa.array(where == p)) for p in range(partitions)]

    cuts = exchange.ranges(links.num_rows, shares)
    share_tables = [links.slice(lo, hi - lo) for lo, hi in cuts]
    sets_by_p, nodes_by_p = [[] for _ in range(partitions)], [[] for _ in range(partitions)]
    for t in share_tables:
        sets, where, nodes, node_where = clusters.first_sets(t, partitions)
        for p, part in enumerate(split(sets, where)):
            sets_by_p[p].append(part)
        for p, part in enumerate(split(nodes, node_where)):
            nodes_by_p[p].append(part)
    previous, rounds = None, 0
    while True:
        nxt, fp = [[] for _ in range(partitions)], [0, 0, 0]
        for p in range(partitions):
            sent, where, f = clusters.next_sets(pa.concat_tables(sets_by_p[p]), partitions)
            fp = [fp[0] + f[0], (fp[1] + f[1]) % 2**64, (fp[2] + f[2]) % 2**64]
            for q, part in enumerate(split(sent, where)):
                nxt[q].append(part)
        if fp == previous:
            break
        previous, rounds = fp, rounds + 1
        last, sets_by_p = sets_by_p, nxt
    dropped, parts = [], []
    for p in range(partitions):
        d, _, summary = clusters.finish(pa.concat_tables(sets_by_p[p]), pa.concat_tables(nodes_by_p[p]), partitions)
        dropped.append(d)
        parts.append(summary)
    texts = {}
    wanted = clusters.wanted_ids(parts)
    best = {}
    for k, t in enumerate(share_tables):
        for sid, hits in clusters.text_hits(t, wanted).items():
            for side, row, text in hits:
                if sid not in best or (side, k, row) < best[sid][0]:
                    best[sid] = ((side, k, row), text)
    texts = {sid: text for sid, (_, text) in best.items()}
    return pa.concat_tables(dropped), clusters.merge_summary(parts, texts), rounds


@pytest.mark.parametrize("partitions,shares", [(1, 1), (3, 2), (8, 5)])
def test_clusters_in_rounds_are_the_one_step_clusters(partitions, shares):
    """Hash-to-Min over partitioned sets gives ``near_duplicate_clusters``'s drops, histogram and
    examples (texts included), for replies and sessions alike, however the links are shared."""
    from extraction.sessions.near_sessions import ND_VERIFIED, SESSION_KIND, near_duplicate_clusters

    rng = np.random.default_rng(partitions)
    ids = [np.base_repr(int(v), 36).lower() for v in rng.choice(10**7, 400, replace=False)]
    rows = []
    for i in range(500):  # groups of 1 to 40 ids, random links within: components of many sizes and shapes
        group = int(rng.integers(0, 30))
        size = 1 + group + (group // 10) * 5
        lo = group * 12
        a, b = ids[lo + int(rng.integers(0, size))], ids[lo + int(rng.integers(0, size))]
        if a == b:
            continue
        kind = SESSION_KIND if i % 7 == 0 else ""
        text = None if i % 5 == 0 else f"text {i}"
        rows.append({"a": kind + a, "a_bucket": hash(a) % 4, "b": kind + b, "b_bucket": hash(b) % 4, "jaccard": 0.9,
                     "a_text": text, "b_text": None if i % 4 == 0 else f"other {i}"})
    buckets = {}
    for r in rows:  # an id's bucket is one
        r["a_bucket"] = buckets.setdefault(r["a"].lstrip(SESSION_KIND), r["a_bucket"])
        r["b_bucket"] = buckets.setdefault(r["b"].lstrip(SESSION_KIND), r["b_bucket"])
    links = pa.Table.from_pylist(rows, schema=ND_VERIFIED)
    want_dropped, want_summary = near_duplicate_clusters(links)
    got_dropped, got_summary, rounds = _simulated_rounds(links, partitions, shares)
    key = [("reason", "ascending"), ("session_id", "ascending")]
    assert got_dropped.sort_by(key).equals(want_dropped.sort_by(key))
    assert got_summary == want_summary and want_summary["clusters"] > 5 and want_summary["sessions"]["clusters"] > 1
    assert 2 <= rounds <= 12
