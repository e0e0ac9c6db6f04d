"""Near-duplicate clusters found by Spark tasks in rounds, for links too many for one process.

``threads.near_duplicate_clusters`` clusters every verified link in one step (the extract job runs
it in the driver while the links are few). Over years of dumps the links grow with the corpus, so
above ``ExtractConfig.clusters_in_driver_bytes`` the job runs this instead: the same clusters,
drops, histogram and examples, with nothing in the driver but a few numbers a round.

The rounds are Hash-to-Min (Rastogi et al., "Finding connected components in map-reduce in
logarithmic rounds", 2013) over sets ``C(x)``, kept as (x, y) rows partitioned by a hash of ``x``:
``C(x)`` starts as ``x`` and its neighbours; in a round every ``x`` sends all of ``C(x)`` to
``m = min C(x)`` and ``m`` to every member of ``C(x)``. At the fixed point, ``C(m)`` is the whole
component of its smallest id ``m`` and every other member's set is ``{m}``. Ids compare as strings
(the order ``neardup.id_order`` packs into integers); the extract job's ids are order keys
(``threads.earliest_keys``), so ``m`` is the earliest copy, the one the one-step clustering keeps. A round's sets are compared with the last round's by an order-free fingerprint (count and
two sums of 64-bit hashes of the rows), added up by the driver.

Links of ``near_duplicate_session`` (ids prefixed with ``threads.SESSION_KIND``) never meet a reply's,
so their components come out of the same rounds; the last step tells them apart by the prefix.
Nothing here knows about Spark: ``extraction.sessions.job`` runs the steps as task sets.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from extraction.sessions.features import as_array
from extraction.sessions.chains import histogram_labels
from extraction.sessions.near_sessions import CLUSTER_EDGES, ND_DROPPED, SESSION_KIND, without_kind
from extraction.sessions.thread_keys import EARLIER_MARK, ORDER_CHARS, ORDER_MARK, plain_ids, thread_places
from extraction.spark import exchange

SETS = pa.schema([("x", pa.string()), ("y", pa.string())])
NODES = pa.schema([("x", pa.string()), ("bucket", pa.int64())])
EXAMPLES = 3
"""Largest clusters shown in the report, per rule (as ``near_duplicate_clusters``)."""
_SHOWN = 3
"""Dropped members shown with each example."""


def _np(array) -> np.ndarray:
    return as_array(array).to_numpy(zero_copy_only=False)


def _partition(ids, partitions: int) -> np.ndarray:
    return exchange.hash_partition(thread_places(ids), partitions)


def first_sets(links: pa.Table, partitions: int) -> tuple[pa.Table, np.ndarray, pa.Table, np.ndarray]:
    """The starting sets of one share of the links (``a``, ``a_bucket``, ``b``, ``b_bucket``): rows
    (x, y) for each link both ways and (x, x) for each end; and each end's (x, bucket). Both with
    the partition of their ``x``."""
    a, b = as_array(links.column("a")), as_array(links.column("b"))
    ends = pa.concat_arrays([a, b])
    sets = pa.table({"x": pa.concat_arrays([a, b, ends]), "y": pa.concat_arrays([b, a, ends])}, schema=SETS)
    nodes = pa.table({"x": ends, "bucket": pa.concat_arrays([as_array(links.column("a_bucket")),
                                                             as_array(links.column("b_bucket"))])}, schema=NODES)
    nodes = nodes.group_by("x", use_threads=False).aggregate([("bucket", "min")]).rename_columns(["x", "bucket"])
    return sets, _partition(sets.column("x"), partitions), nodes, _partition(nodes.column("x"), partitions)


def _grouped(sets: pa.Table) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """The distinct rows sorted by (x, y), each row's group (one per x) and each group's first row."""
    sets = sets.group_by(["x", "y"], use_threads=False).aggregate([]).sort_by([("x", "ascending"), ("y", "ascending")])
    x = as_array(sets.column("x"))
    if not len(x):
        return sets, np.zeros(0, np.int64), np.zeros(0, np.int64)
    changes = _np(pc.not_equal(x.slice(1), x.slice(0, len(x) - 1))).astype(bool)
    starts = np.concatenate([[0], np.flatnonzero(changes) + 1])
    group = np.cumsum(np.concatenate([[True], changes])) - 1
    return sets, group, starts


def fingerprint(sets: pa.Table) -> list[int]:
    """Count and two sums (mod 2^64) of hashes of the distinct rows: equal for equal sets."""
    if not sets.num_rows:
        return [0, 0, 0]
    h = thread_places(pc.binary_join_element_wise(sets.column("x"), sets.column("y"), "\x00"))
    with np.errstate(over="ignore"):
        mixed = (h ^ (h >> np.uint64(31))) * np.uint64(0x9E3779B97F4A7C15)
    return [int(len(h)), int(h.sum(dtype=np.uint64)), int(mixed.sum(dtype=np.uint64))]


def next_sets(sets: pa.Table, partitions: int) -> tuple[pa.Table, np.ndarray, list[int]]:
    """One round for the sets of some x's (all rows of each): every x sends C(x) to m = min C(x) and
    m to every member. Returns the rows sent, their partitions, and the fingerprint of the sets read."""
    sets, group, starts = _grouped(sets)
    y = as_array(sets.column("y"))
    m = pc.take(y, pa.array(starts[group], pa.int64())) if len(group) else y
    sent = pa.table({"x": pa.concat_arrays([m, y]), "y": pa.concat_arrays([y, m])}, schema=SETS)
    return sent, _partition(sent.column("x"), partitions), fingerprint(sets)


def finish(sets: pa.Table, nodes: pa.Table, partitions: int) -> tuple[pa.Table, np.ndarray, dict]:
    """At the fixed point, for some x's: the dropped members (``ND_DROPPED``, partitioned by their
    bucket) and the summary parts of the components whose smallest id is among them (per rule:
    clusters, size histogram, the largest ``EXAMPLES`` with their first members)."""
    sets, group, starts = _grouped(sets)
    x, y = as_array(sets.column("x")), as_array(sets.column("y"))
    ids = pc.take(x, pa.array(starts, pa.int64())) if len(starts) else x
    mins = pc.take(y, pa.array(starts, pa.int64())) if len(starts) else y
    sizes = np.diff(np.append(starts, len(group)))
    dropped_at = np.flatnonzero(_np(pc.not_equal(ids, mins)).astype(bool)) if len(starts) else np.zeros(0, np.int64)
    member, root = pc.take(ids, pa.array(dropped_at, pa.int64())), pc.take(mins, pa.array(dropped_at, pa.int64()))
    where = _np(pc.index_in(member, value_set=as_array(nodes.column("x"))))
    bucket = _np(nodes.column("bucket"))[where] if len(where) else np.zeros(0, np.int64)
    is_session = _np(pc.starts_with(member, SESSION_KIND)).astype(bool) if len(member) else np.zeros(0, bool)
    dropped = pa.table({"bucket": pa.array(bucket, pa.int64()), "session_id": plain_ids(without_kind(member)),
                        "duplicate_of": plain_ids(without_kind(root)),
                        "reason": pa.array(np.where(is_session, "near_duplicate_session", "near_duplicate_response"),
                                           pa.string()), "root": without_kind(root)}, schema=ND_DROPPED)
    summary = {}
    roots = np.flatnonzero(_np(pc.equal(ids, mins)).astype(bool) & (sizes > 1)) if len(starts) else np.zeros(0, np.int64)
    root_ids = pc.take(ids, pa.array(roots, pa.int64()))
    root_session = _np(pc.starts_with(root_ids, SESSION_KIND)).astype(bool) if len(roots) else np.zeros(0, bool)
    for kind, mask in (("replies", ~root_session), ("sessions", root_session)):
        chosen = roots[mask]
        if not len(chosen):
            continue
        size = sizes[chosen]
        hist = np.bincount(np.searchsorted(CLUSTER_EDGES, size, side="right") - 1, minlength=len(CLUSTER_EDGES))
        names = pc.take(ids, pa.array(chosen, pa.int64())).to_pylist()
        top = sorted(range(len(chosen)), key=lambda i: (-int(size[i]), names[i]))[:EXAMPLES]
        examples = []
        for i in top:
            start = int(starts[chosen[i]])
            members = [v for v in y.slice(start, int(size[i])).to_pylist() if v != names[i]][:_SHOWN]
            examples.append({"size": int(size[i]), "kept": names[i], "members": members})
        summary[kind] = {"clusters": int(len(chosen)), "hist": hist.tolist(), "top": examples}
    return dropped, _np(dropped.column("bucket")), summary


def text_hits(links: pa.Table, wanted: set[str]) -> dict[str, list]:
    """For each wanted id, its first link row (in this share's order) carrying its text, on each
    side: {id: [[side, row, text], ...]} (side 0: ``a``, 1: ``b``)."""
    hits: dict[str, list] = {}
    if not wanted or not links.num_rows:
        return hits
    value_set = pa.array(sorted(wanted), pa.string())
    for side, (column, text) in enumerate((("a", "a_text"), ("b", "b_text"))):
        ok = pc.and_(pc.is_in(links.column(column), value_set=value_set), pc.is_valid(links.column(text)))
        rows = np.flatnonzero(_np(pc.fill_null(ok, False)).astype(bool))
        ids = pc.take(links.column(column), pa.array(rows, pa.int64())).to_pylist()
        texts = pc.take(links.column(text), pa.array(rows, pa.int64())).to_pylist()
        seen = set()
        for row, sid, t in zip(rows.tolist(), ids, texts):
            if sid not in seen:
                seen.add(sid)
                hits.setdefault(sid, []).append([side, row, t])
    return hits


def merge_summary(parts: list[dict], texts: dict[str, str]) -> dict:
    """The report's ``near_duplicates`` entry from the final tasks' summaries (``texts``: the
    examples' texts by id, prefixed ids for sessions), as ``threads.near_duplicate_clusters`` makes it."""
    same = "(the kept text, once normalised)"
    labels = histogram_labels(CLUSTER_EDGES)

    def one(kind: str) -> dict:
        entries = [p[kind] for p in parts if kind in p]
        hist = np.sum([e["hist"] for e in entries], axis=0) if entries else np.zeros(len(CLUSTER_EDGES), np.int64)
        top = sorted((t for e in entries for t in e["top"]), key=lambda t: (-t["size"], t["kept"]))[:EXAMPLES]
        cut = len(SESSION_KIND) if kind == "sessions" else 0

        def plain(key: str) -> str:
            key = key[cut:].removeprefix(EARLIER_MARK)
            return key[ORDER_CHARS:] if key.startswith(ORDER_MARK) else key

        return {"clusters": int(sum(e["clusters"] for e in entries)), "sizes": dict(zip(labels, [int(v) for v in hist])),
                "examples": [{"kept": plain(t["kept"]), "kept_text": texts.get(t["kept"], same), "size": t["size"],
                              "dropped": [{"session_id": plain(m), "text": texts.get(m, same)} for m in t["members"]]}
                             for t in top]}

    summary = one("replies")
    if any("sessions" in p for p in parts):
        summary["sessions"] = one("sessions")
    return summary


def wanted_ids(parts: list[dict]) -> set[str]:
    """The ids whose texts the examples show (the largest clusters' kept ids and shown members)."""
    out = set()
    for kind in ("replies", "sessions"):
        top = sorted((t for p in parts if kind in p for t in p[kind]["top"]), key=lambda t: (-t["size"], t["kept"]))[:EXAMPLES]
        for t in top:
            out.update([t["kept"], *t["members"]])
    return out
