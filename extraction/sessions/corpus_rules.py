"""The corpus rules' decisions, once every task's counts are in: the duplicate groups of one range of
hashes (``resolve_duplicates``: the earliest session of each group stays), the frequent trigrams
(``frequent_trigrams``), and, back in each task, the decisions applied to its candidates with the
report's counts (``finish_bucket``, ``bland_responses``, ``bucket_report``)."""

from __future__ import annotations
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from reddit_pretrain.layout import SPLITS
from extraction.sessions.chains import ALL_SESSION_REASONS
from extraction.sessions.features import Texts, as_array
from extraction.sessions.filters import FiltersConfig
from extraction.sessions.thread_keys import _np
from extraction.sessions.near_sessions import ND_DROPPED
from extraction.sessions.reddit_threads import Timer, WORD_EDGES


def resolve_duplicates(keys: pa.Table, on_sessions: bool, on_responses: bool) -> pa.Table:
    """Step 2 for one range of response hashes: rows (``_rkey``, ``_skey``, ``session_id``, ``bucket``) of
    surviving sessions -> those dropped as ``duplicate_session`` or ``duplicate_response``, each with
    the session it duplicates (``duplicate_of``, the one kept).

    Sessions with the same turns have the same response, so every duplicate group lies inside one
    response group and one range of response hashes holds everything both rules need. In each
    group of equal turns the earliest session stays (``_order``: ``earliest_keys``; the session id
    when absent; before it ``_first`` when present: a batch's, the earlier batches' sessions first);
    among those, the earliest of each response."""
    empty = pa.table({"bucket": pa.array([], pa.int64()), "session_id": pa.array([], pa.string()),
                      "reason": pa.array([], pa.string()), "duplicate_of": pa.array([], pa.string())})
    if keys.num_rows == 0:
        return empty
    if "_order" not in keys.column_names:  # (no order keys: by session id)
        keys = keys.append_column("_order", keys.column("session_id"))
    first_keys = [("_first", "ascending")] if "_first" in keys.column_names else []  # (a batch's: the earlier batches' first)
    keys = keys.take(pc.sort_indices(keys, sort_keys=[("_rkey", "ascending"), ("_skey", "ascending")] + first_keys
                                     + [("_order", "ascending")]))
    r, s = _np(keys.column("_rkey")), _np(keys.column("_skey"))
    n = keys.num_rows
    reason = np.zeros(n, dtype=np.int8)  # 1: duplicate_session, 2: duplicate_response (``_REASONS``)
    of = np.zeros(n, dtype=np.int64)  # the row of the session each duplicates
    new_session = np.ones(n, dtype=bool)
    new_session[1:] = (r[1:] != r[:-1]) | (s[1:] != s[:-1])
    if on_sessions:
        reason[~new_session] = 1
        of[~new_session] = np.maximum.accumulate(np.where(new_session, np.arange(n), 0))[~new_session]
    if on_responses:
        keepers = np.flatnonzero(reason == 0)
        order_by = [("_rkey", "ascending")] + first_keys + [("_order", "ascending")]
        by_id = pc.sort_indices(keys.select([k for k, _ in order_by]).take(pa.array(keepers, pa.int64())), sort_keys=order_by)
        keepers = keepers[_np(by_id)]
        first = np.ones(len(keepers), dtype=bool)
        first[1:] = r[keepers][1:] != r[keepers][:-1]
        reason[keepers[~first]] = 2
        group_first = keepers[np.maximum.accumulate(np.where(first, np.arange(len(keepers)), 0))]
        of[keepers[~first]] = group_first[~first]
    dropped = np.flatnonzero(reason)
    if not len(dropped):
        return empty
    idx = pa.array(dropped, pa.int64())
    return pa.table({"bucket": pc.take(keys.column("bucket"), idx), "session_id": pc.take(keys.column("session_id"), idx),
                     "reason": pc.take(_REASONS, pa.array(reason[dropped], pa.int64())),
                     "duplicate_of": pc.take(keys.column("session_id"), pa.array(of[dropped], pa.int64()))})


_REASONS = pa.array([None, "duplicate_session", "duplicate_response"], pa.string())


# -- near duplicates (extraction.sessions.neardup): the steps between the buckets ---------------------------

def bland_responses(responses: pa.Array, frequent: np.ndarray, fraction: float) -> np.ndarray:
    """Responses at least ``fraction`` of whose word trigrams are ``frequent`` (sorted hashes)."""
    grams, row = Texts(responses).words.trigram_hashes()
    n = len(responses)
    if not len(grams) or not len(frequent):
        return np.zeros(n, dtype=bool)
    pos = np.minimum(np.searchsorted(frequent, grams), len(frequent) - 1)
    hit = frequent[pos] == grams
    total = np.bincount(row, minlength=n)
    hits = np.bincount(row, weights=hit, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (total > 0) & (hits / np.maximum(total, 1) >= fraction)


def finish_bucket(candidates: pa.Table, dropped: pa.Table, frequent: np.ndarray | None, filters: FiltersConfig,
                  comments: int, valid: int, timer: Timer | None = None, near: pa.Table | None = None) -> tuple[pa.Table, dict]:
    """Step 3 for one bucket: ``bland`` (``frequent``: the sorted frequent trigram hashes), then the
    duplicates ``dropped`` by ``resolve_duplicates``, then the near duplicates ``near`` (``ND_DROPPED``
    rows of this bucket: near-duplicate responses, then sessions). Returns the sessions with their final ``drop_reason`` and ``duplicate_of``
    (private columns removed) and the bucket's report counts."""
    timer = timer or Timer()
    reason = np.array(as_array(candidates.column("drop_reason")).to_pylist() if candidates.num_rows else [], dtype=object)
    alive = np.flatnonzero(reason == None)  # noqa: E711
    turns = as_array(candidates.column("turns"))
    if filters.bland and frequent is not None and len(alive):
        if "_rtext" in candidates.column_names:  # scrubbed text: the rules read its plain-word form
            responses = pc.take(as_array(candidates.column("_rtext")), pa.array(alive, pa.int64()))
        else:
            offsets = _np(turns.offsets)
            responses = pc.take(turns.values, pa.array(offsets[1:][alive] - 1, pa.int64()))
        reason[alive[bland_responses(responses, frequent, filters.bland_fraction)]] = "bland"
    timer.lap("corpus rules")
    duplicate_of = np.full(len(reason), None, dtype=object)
    ids = as_array(candidates.column("session_id"))
    near = near if near is not None else ND_DROPPED.empty_table()
    by_rule = [near.filter(pc.equal(near.column("reason"), rule)) for rule in ("near_duplicate_response", "near_duplicate_session")]
    for table in (dropped, *by_rule):  # exact duplicates, then near ones in rule order: the first rule that drops a session names it
        if not table.num_rows:
            continue
        where = _np(pc.index_in(table.column("session_id"), value_set=ids), -1)
        dup_reason = np.array(table.column("reason").to_pylist(), dtype=object)
        of = np.array(table.column("duplicate_of").to_pylist(), dtype=object)
        ok = np.flatnonzero(where >= 0)
        ok = ok[reason[where[ok]] == None]  # noqa: E711  (bland stays bland)
        reason[where[ok]] = dup_reason[ok]
        duplicate_of[where[ok]] = of[ok]
    final = candidates.set_column(candidates.column_names.index("drop_reason"), "drop_reason", pa.array(reason, pa.string()))
    final = final.append_column("duplicate_of", pa.array(duplicate_of, pa.string()))
    stats = bucket_report(final, reason, comments, valid)
    timer.lap("corpus rules")
    return final.drop_columns([c for c in ("_rows", "_words", "_rkey", "_skey", "_order", "_rtext") if c in final.column_names]), stats


def bucket_report(sessions: pa.Table, reason: np.ndarray, comments: int, valid: int) -> dict:
    """The report's counts for one bucket; ``extraction.sessions.job.merge_reports`` adds them up."""
    reasons = pa.array(reason, pa.string())
    kept = _np(pc.is_null(reasons))
    rank = _np(pc.index_in(reasons, value_set=pa.array(ALL_SESSION_REASONS, pa.string())), len(ALL_SESSION_REASONS))
    by_reason = {ALL_SESSION_REASONS[r]: int(c) for r, c in zip(*np.unique(rank[~kept], return_counts=True))}
    kept_rows = sessions.filter(pa.array(kept))
    per_split = {r["values"]: r["counts"] for r in pc.value_counts(kept_rows.column("split")).to_pylist()}
    per_split = {s: per_split[s] for s in SPLITS if s in per_split}
    by_sub = pa.table({"subreddit": sessions.column("subreddit"), "kept": pa.array(kept.astype(np.int64))}) \
        .group_by("subreddit", use_threads=False).aggregate([("kept", "count"), ("kept", "sum")])
    subs = {name: [int(n), int(k)] for name, n, k in zip(by_sub.column("subreddit").to_pylist(),
                                                          by_sub.column("kept_count").to_pylist(), by_sub.column("kept_sum").to_pylist())}
    num_turns = _np(kept_rows.column("num_turns"))
    words = np.searchsorted(WORD_EDGES, _np(kept_rows.column("_words")), side="right") - 1
    pairs = kept_rows.select(["link_id", "split"]).group_by(["link_id", "split"], use_threads=False).aggregate([]).num_rows
    two_splits = pairs - pc.count_distinct(kept_rows.column("link_id"), mode="all").as_py() if kept_rows.num_rows else 0

    # Where every comment went: used in a kept session, else the best-ranked rule that dropped a
    # session holding it, else in no session at all.
    rows = as_array(sessions.column("_rows"))
    offsets = _np(rows.offsets)
    flat = _np(rows.values)
    owner = np.repeat(np.arange(sessions.num_rows), np.diff(offsets))
    is_comment = flat < comments
    used = np.zeros(comments, dtype=bool)
    used[flat[is_comment & kept[owner]]] = True
    best = np.full(comments, len(ALL_SESSION_REASONS), dtype=np.int64)
    pick = is_comment & ~kept[owner]
    np.minimum.at(best, flat[pick], rank[owner[pick]])
    in_rejected = np.bincount(best[~used & (best < len(ALL_SESSION_REASONS))], minlength=len(ALL_SESSION_REASONS))
    used_count = int(used.sum())
    return {
        "by_reason": by_reason, "candidates": int(sessions.num_rows), "per_split": per_split,
        "subreddits": subs, "num_turns": np.bincount(num_turns).tolist() if len(num_turns) else [],
        "words": np.bincount(words, minlength=len(WORD_EDGES)).tolist(), "threads_in_two_splits": int(two_splits),
        "used_in_sessions": used_count,
        "only_in_rejected_sessions": {ALL_SESSION_REASONS[i]: int(c) for i, c in enumerate(in_rejected) if c},
        "not_in_any_session": valid - used_count - int(in_rejected.sum()),
    }


def frequent_trigrams(hashes: np.ndarray, counts: np.ndarray, min_count: int) -> np.ndarray:
    """Sorted trigram hashes whose summed count is above ``min_count`` (partial counts in, any order)."""
    if not len(hashes):
        return np.zeros(0, np.uint64)
    unique, inverse = np.unique(hashes, return_inverse=True)
    totals = np.bincount(inverse, weights=counts, minlength=len(unique))
    return unique[totals > min_count]
