"""The extract job's near-duplicate task sets (``extraction.sessions.near_sessions`` holds the steps): texts
looked up for the candidate pairs, pairs verified, and the clusters of verified pairs, in this
process when the links are few (``_near_clusters_task``) or in rounds of Spark tasks
(``_clusters_in_rounds``, ``extraction.sessions.clusters``)."""

from __future__ import annotations
import functools
import pyarrow as pa
from extraction.sessions import ExtractError
from extraction.sessions.reddit_threads import Timer
from extraction.sessions.near_sessions import (ND_PAIRS, ND_PAIRS_A, ND_VERIFIED, near_duplicate_clusters,
                                               unique_pairs, verify_pairs, with_texts)
from extraction.spark import exchange
from extraction.sessions.work import _Settings, _all, _np, _work_file


def _near_texts_task(settings: _Settings, task: dict) -> tuple[dict, bytes | None]:
    """Near duplicates, first lookup: the candidate pairs whose ``a`` is in this task, with a's text,
    passed on to the task of ``b``."""

    timer = Timer()
    read = exchange.Reader()
    t = task["task"]
    pairs = read.partition(_all(settings, "nd_pairs", task["reducers"]), t, ND_PAIRS)
    pairs = unique_pairs(pairs)  # a pair sharing several bands comes from several reduce tasks: looked up once
    pairs = with_texts(pairs, read.table(_work_file(settings, "nd_texts", t)), "a")
    exchange.write_partitioned(_work_file(settings, "nd_pairs_a", t), pairs, _np(pairs.column("b_bucket")), settings.tasks)
    timer.lap("near duplicates: texts")
    return {"task": t, "pairs": pairs.num_rows, "opened": read.opened, "seconds": timer.seconds}, None


def _near_verify_task(settings: _Settings, task: dict) -> tuple[dict, bytes | None]:
    """Near duplicates, second lookup: the pairs whose ``b`` is in one range of tasks, with b's
    text, verified."""

    timer = Timer()
    read = exchange.Reader()
    k, first, last = task["reducer"], task["first"], task["last"]
    pairs = read.partitions(_all(settings, "nd_pairs_a"), first, last, ND_PAIRS_A)
    texts = pa.concat_tables([read.table(_work_file(settings, "nd_texts", b)) for b in range(first, last)])  # (never empty)
    pairs = with_texts(pairs, texts, "b")
    timer.lap("near duplicates: texts")
    verified = verify_pairs(pairs, settings.filters.near_duplicate_shingle, settings.filters.near_duplicate_threshold)
    link_bytes = exchange.write_table(_work_file(settings, "nd_verified", k), verified)
    timer.lap("near duplicates: verify")
    return {"reducer": k, "pairs": pairs.num_rows, "verified": verified.num_rows, "link_bytes": link_bytes,
            "opened": read.opened, "seconds": timer.seconds}, None


def _near_clusters_task(settings: _Settings, task: dict) -> tuple[dict, bytes | None]:
    """Near duplicates, last step, in one task (run in the driver while the links are few): the
    clusters of the verified pairs, the dropped members passed on to their tasks."""

    timer = Timer()
    read = exchange.Reader()
    verified = read.partition(task["links"], 0, ND_VERIFIED)
    dropped, summary = near_duplicate_clusters(verified)
    exchange.write_partitioned(_work_file(settings, "nd_dropped", 0), dropped, _np(dropped.column("bucket")), settings.tasks)
    timer.lap("near duplicates: clusters")
    return {"near_duplicates": summary, "verified": verified.num_rows, "dropped": dropped.num_rows, "files": 1,
            "opened": read.opened, "seconds": timer.seconds}, None


MAX_CLUSTER_ROUNDS = 64
"""Hash-to-Min ends in O(log n) rounds; a run that has not settled in this many is a fault."""


def _clusters_in_rounds(settings: _Settings, job, reducers: int, links: list[str]) -> tuple[dict, list]:
    """``_near_clusters_task``'s result, by Spark tasks in rounds (``extraction.sessions.clusters``):
    the driver holds a fingerprint a round and the examples' summary, nothing that grows with the corpus."""
    from extraction.sessions import clusters

    shares = [links[lo:hi] for lo, hi in exchange.ranges(len(links), reducers)]
    spans = exchange.ranges(settings.tasks, reducers)
    results = job("near duplicates: cluster links", [{"reducer": k, "links": share} for k, share in enumerate(shares)],
                  functools.partial(_cc_links_task, settings))
    rows = sum(r["links"] for r, _ in results)
    previous, n = None, 0
    while True:
        done = job("near duplicates: cluster rounds", [{"reducer": k, "first": lo, "last": hi, "round": n, "sets": len(shares)}
                                                       for k, (lo, hi) in enumerate(spans)],
                   functools.partial(_cc_round_task, settings))
        results += done
        parts = [r["fingerprint"] for r, _ in done]
        fp = [sum(f[0] for f in parts), sum(f[1] for f in parts) % 2**64, sum(f[2] for f in parts) % 2**64]
        if fp == previous:
            break  # round n read the sets round n - 1 read: a fixed point
        if n + 1 >= MAX_CLUSTER_ROUNDS:
            raise ExtractError(f"near-duplicate clusters did not settle in {MAX_CLUSTER_ROUNDS} rounds")
        previous, n = fp, n + 1
    final = job("near duplicates: clusters", [{"reducer": k, "first": lo, "last": hi, "round": n, "sets": len(shares),
                                               "nodes": len(shares)} for k, (lo, hi) in enumerate(spans)],
                functools.partial(_cc_finish_task, settings))
    results += final
    parts = [r["summary"] for r, _ in final]
    wanted = sorted(clusters.wanted_ids(parts))
    texts: dict[str, str] = {}
    if wanted:
        found = job("near duplicates: examples", [{"reducer": k, "links": share, "wanted": wanted}
                                                  for k, share in enumerate(shares)], functools.partial(_cc_texts_task, settings))
        results += found
        best: dict[str, tuple] = {}
        for r, _ in found:
            for sid, hits in r["hits"].items():
                for side, row, text in hits:
                    key = (side, r["reducer"], row)
                    if sid not in best or key < best[sid][0]:
                        best[sid] = (key, text)
        texts = {sid: text for sid, (_, text) in best.items()}
    near = {"near_duplicates": clusters.merge_summary(parts, texts), "verified": rows,
            "dropped": sum(r["dropped"] for r, _ in final), "files": len(spans), "rounds": n + 1, "seconds": {}}
    return near, [({"seconds": r["seconds"]}, None) for r, _ in results]


def _cc_links_task(settings: _Settings, task: dict) -> tuple[dict, bytes | None]:
    from extraction.sessions import clusters

    timer = Timer()
    read = exchange.Reader()
    links = read.partition(task["links"], 0, ND_VERIFIED)
    sets, where, nodes, node_where = clusters.first_sets(links, settings.tasks)
    exchange.write_partitioned(_work_file(settings, "cc_sets_0", task["reducer"]), sets, where, settings.tasks)
    exchange.write_partitioned(_work_file(settings, "cc_nodes", task["reducer"]), nodes, node_where, settings.tasks)
    timer.lap("near duplicates: clusters")
    return {"links": links.num_rows, "opened": read.opened, "seconds": timer.seconds}, None


def _cc_round_task(settings: _Settings, task: dict) -> tuple[dict, bytes | None]:
    from extraction.sessions import clusters

    timer = Timer()
    read = exchange.Reader()
    n = task["round"]
    sets = read.partitions(_all(settings, f"cc_sets_{n}", task["sets"]), task["first"], task["last"], clusters.SETS)
    sent, where, fp = clusters.next_sets(sets, settings.tasks)
    exchange.write_partitioned(_work_file(settings, f"cc_sets_{n + 1}", task["reducer"]), sent, where, settings.tasks)
    timer.lap("near duplicates: clusters")
    return {"fingerprint": fp, "opened": read.opened, "seconds": timer.seconds}, None


def _cc_finish_task(settings: _Settings, task: dict) -> tuple[dict, bytes | None]:
    from extraction.sessions import clusters

    timer = Timer()
    read = exchange.Reader()
    sets = read.partitions(_all(settings, f"cc_sets_{task['round']}", task["sets"]), task["first"], task["last"], clusters.SETS)
    nodes = read.partitions(_all(settings, "cc_nodes", task["nodes"]), task["first"], task["last"], clusters.NODES)
    dropped, where, summary = clusters.finish(sets, nodes, settings.tasks)
    exchange.write_partitioned(_work_file(settings, "nd_dropped", task["reducer"]), dropped, where, settings.tasks)
    timer.lap("near duplicates: clusters")
    return {"summary": summary, "dropped": dropped.num_rows, "opened": read.opened, "seconds": timer.seconds}, None


def _cc_texts_task(settings: _Settings, task: dict) -> tuple[dict, bytes | None]:
    from extraction.sessions import clusters

    timer = Timer()
    read = exchange.Reader()
    links = read.partition(task["links"], 0, ND_VERIFIED)
    hits = clusters.text_hits(links, set(task["wanted"]))
    timer.lap("near duplicates: clusters")
    return {"reducer": task["reducer"], "hits": hits, "opened": read.opened, "seconds": timer.seconds}, None
