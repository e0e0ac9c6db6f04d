"""The extract job's near-duplicate task sets (``extraction.sessions.near_sessions`` holds the steps): texts
looked up for the candidate pairs, pairs verified, and the clusters of verified pairs, in this
process when the links are few (``_near_clusters_task``) or in rounds of Spark tasks
(``_clusters_in_rounds``, ``extraction.sessions.clusters``)."""

from __future__ import annotations
import functools
import numpy as np
import pyarrow as pa
from extraction.sessions import ExtractError
from extraction.sessions.reddit_threads import Timer
from extraction.sessions import batches
from extraction.sessions.near_sessions import (ND_BANDS, ND_PAIRS, ND_PAIRS_A, ND_VERIFIED, near_duplicate_clusters,
                                               near_duplicate_pairs, unique_pairs, verify_pairs, with_texts)
from extraction.spark import exchange
from extraction.sessions.features import distinct
from extraction.sessions.work import _Settings, _all, _np, _work_file


def _near_pairs(settings: _Settings, read: exchange.Reader, k: int, first: int, last: int) -> dict:
    """The corpus task's near-duplicate part for one range of band keys: the candidate pairs, passed
    on to the task of their ``a``, and the links of equal texts. A corpus's batch keeps its band rows
    in its state and pairs them with the earlier batches' that share a key: its pairs and links with
    an earlier session (as ``b``) are looked up in the earlier batches' state (``_near_verify_task``)."""
    bands = read.partitions(_all(settings, "nd_bands"), first, last, ND_BANDS)
    stored = 0
    if settings.batch:
        lo, hi = batches.hash_range(first, last, settings.partitions)
        keys = _np(bands.column("band"))
        order = batches.sorted_order(keys)  # (the state sorted by band key: a lookup is a sorted merge)
        earlier, stored = batches.earlier_bands(list(settings.earlier), lo, hi, distinct(keys[order], presorted=True))
        new = batches.new_texts(bands, earlier)  # (a text an earlier batch keeps is kept once)
        bands, state = batches.pairing_rows(bands, order, earlier, new)  # (bucket -1: ordered first, no pair of two made)
        batches.write_state(settings.staging, batches.NEAR_BANDS, lo, hi, state)
    pairs, same = near_duplicate_pairs(bands, settings.filters.near_duplicate_max_group, settings.filters.near_duplicate_threshold)
    same_earlier = ND_VERIFIED.empty_table()
    if settings.batch:
        pairs = pa.concat_tables(batches.with_marks(batches.split_earlier(pairs)))  # (``a`` is this batch's: looked up by its task)
        same, same_earlier = batches.with_marks(batches.split_earlier(same))
        exchange.write_partitioned(_work_file(settings, "nd_same_e", k), same_earlier,
                                   batches.id_partition(same_earlier.column("b"), settings.tasks), settings.tasks)
    exchange.write_partitioned(_work_file(settings, "nd_pairs", k), pairs, _np(pairs.column("a_bucket")), settings.tasks)
    return {"link_bytes": exchange.write_table(_work_file(settings, "nd_same", k), same),
            "near_pairs": pairs.num_rows + same_earlier.num_rows, "stored": stored}


def _near_texts_task(settings: _Settings, task: dict) -> tuple[dict, bytes | None]:
    """Near duplicates, first lookup: the candidate pairs whose ``a`` is in this task, with a's text,
    passed on to the task of ``b``."""

    timer = Timer()
    read = exchange.Reader()
    t = task["task"]
    pairs = read.partition(_all(settings, "nd_pairs", task["reducers"]), t, ND_PAIRS)
    pairs = unique_pairs(pairs)  # a pair sharing several bands comes from several reduce tasks: looked up once
    texts = read.table(_work_file(settings, "nd_texts", t))
    pairs = with_texts(pairs, texts, "a")
    if settings.batch:  # pairs with an earlier batch's session (not one ``a`` continues): to the task of its ids
        pairs, earlier = batches.split_earlier(pairs)
        earlier = batches.not_continued(earlier, texts)
        exchange.write_partitioned(_work_file(settings, "nd_pairs_e", t), earlier,
                                   batches.id_partition(earlier.column("b"), settings.tasks), settings.tasks)
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
    stored = earlier_links = 0
    if settings.earlier:  # a corpus's batch: its pairs and links with an earlier session of this range of ids
        earlier = read.partitions(_all(settings, "nd_pairs_e"), first, last, ND_PAIRS_A)
        same = read.partitions(_all(settings, "nd_same_e", task["reducers"]), first, last, ND_VERIFIED)
        lo, hi = batches.hash_range(first, last, settings.tasks)
        state, stored = batches.earlier_texts(list(settings.earlier), lo, hi,
                                              pa.concat_arrays([earlier.column("b").combine_chunks(), same.column("b").combine_chunks()]))
        checked = verify_pairs(with_texts(earlier, state, "b"), settings.filters.near_duplicate_shingle,
                               settings.filters.near_duplicate_threshold)
        links = batches.to_roots(pa.concat_tables([checked, same]), state)  # (joined to the earliest of its cluster there)
        verified, earlier_links = pa.concat_tables([verified, links]), links.num_rows
    link_bytes = exchange.write_table(_work_file(settings, "nd_verified", k), verified)
    timer.lap("near duplicates: verify")
    return {"reducer": k, "pairs": pairs.num_rows, "verified": verified.num_rows, "link_bytes": link_bytes,
            "earlier_links": earlier_links, "opened": read.opened + stored, "seconds": timer.seconds}, None


def _near_clusters_task(settings: _Settings, task: dict) -> tuple[dict, bytes | None]:
    """Near duplicates, last step, in one task (run in the driver while the links are few): the
    clusters of the verified pairs, the dropped members passed on to their tasks."""

    timer = Timer()
    read = exchange.Reader()
    verified = read.partition(task["links"], 0, ND_VERIFIED)
    dropped, summary = near_duplicate_clusters(verified)
    dropped, where, bridged = _earlier_roots_out(dropped, _np(dropped.column("bucket")))
    exchange.write_partitioned(_work_file(settings, "nd_dropped", 0), dropped, where, settings.tasks)
    timer.lap("near duplicates: clusters")
    return {"near_duplicates": summary, "verified": verified.num_rows, "dropped": dropped.num_rows, "files": 1,
            "bridged": bridged, "opened": read.opened, "seconds": timer.seconds}, None


def _earlier_roots_out(dropped: pa.Table, where):
    """The dropped members of this batch and their partitions, and how many earlier batches' roots a
    cluster of this batch joined to an earlier one (bucket -1: the earlier cluster bridged, not dropped)."""
    mine = where >= 0
    return dropped.filter(pa.array(mine)), where[mine], int((~mine).sum())


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
            "dropped": sum(r["dropped"] for r, _ in final), "bridged": sum(r["bridged"] for r, _ in final), "files": len(spans),
            "rounds": n + 1, "seconds": {}}
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
    dropped, where, bridged = _earlier_roots_out(dropped, where)
    exchange.write_partitioned(_work_file(settings, "nd_dropped", task["reducer"]), dropped, where, settings.tasks)
    timer.lap("near duplicates: clusters")
    return {"summary": summary, "dropped": dropped.num_rows, "bridged": bridged, "opened": read.opened,
            "seconds": timer.seconds}, None


def _cc_texts_task(settings: _Settings, task: dict) -> tuple[dict, bytes | None]:
    from extraction.sessions import clusters

    timer = Timer()
    read = exchange.Reader()
    links = read.partition(task["links"], 0, ND_VERIFIED)
    hits = clusters.text_hits(links, set(task["wanted"]))
    timer.lap("near duplicates: clusters")
    return {"reducer": task["reducer"], "hits": hits, "opened": read.opened, "seconds": timer.seconds}, None


def _near_state_task(settings: _Settings, task: dict) -> tuple[dict, bytes | None]:
    """A corpus's batch, after its writes: ``state/near_texts`` of one range of session-id hashes, from
    every write task's rows (``batches.near_state``)."""

    timer = Timer()
    read = exchange.Reader()
    first, last = task["first"], task["last"]
    rows = read.partitions(_all(settings, "nd_state"), first, last, batches.NEAR_STATE)
    batches.write_state(settings.staging, batches.NEAR_TEXTS, *batches.hash_range(first, last, settings.tasks), rows)
    timer.lap("near duplicates: state")
    return {"rows": rows.num_rows, "opened": read.opened, "seconds": timer.seconds}, None
