"""The extract job's steps in one process (``run_local``): what ``extraction.sessions.job`` does
across Spark tasks, over any number of thread buckets, for tests that check a step's output
against the references without a Spark session."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from extraction.sessions.chains import ChainsConfig, SplitConfig
from extraction.sessions.filters import FiltersConfig, LoadedRules
from extraction.sessions.privacy import Privacy
from extraction.sessions.reddit_threads import build_candidates
from extraction.sessions.corpus_rules import finish_bucket, frequent_trigrams, resolve_duplicates
from extraction.sessions.near_sessions import (ND_BANDS, ND_DROPPED, ND_VERIFIED, near_duplicate_clusters,
                                               near_duplicate_inputs, near_duplicate_pairs, near_duplicates_on,
                                               unique_pairs, verify_pairs, with_texts)
from extraction.sessions.thread_keys import thread_bucket


def run_local(comments: pa.Table, submissions: pa.Table | None, chains: ChainsConfig, filters: FiltersConfig,
              split: SplitConfig, buckets: int = 1, privacy: Privacy | None = None) -> tuple[pa.Table, list[dict], list[dict]]:
    """The three steps in one process over ``buckets`` thread buckets: what the extract job does
    across Spark tasks. Returns every candidate session with its final
    ``drop_reason``, and the per-bucket counts of steps 1 and 3."""
    rules = LoadedRules.load(filters)
    in_comments = thread_bucket(comments.column("link_id"), buckets)
    in_subs = thread_bucket(submissions.column("id"), buckets) if submissions is not None else None
    built, grams, counts, keys, bands, texts, aliases = {}, [], [], [], [], {}, []
    for b in range(buckets):
        part = comments.filter(pa.array(in_comments == b))
        if not part.num_rows:
            continue
        subs = submissions.filter(pa.array(in_subs == b)) if submissions is not None else None
        candidates, stats, g, n = build_candidates(part, subs, chains, filters, split, rules, privacy=privacy)
        built[b] = (candidates, stats)
        grams.append(g)
        counts.append(n)
        alive = candidates.filter(pc.is_null(candidates.column("drop_reason")))
        keys.append(pa.table({"_rkey": alive.column("_rkey"), "_skey": alive.column("_skey"),
                              "session_id": alive.column("session_id"), "bucket": pa.array(np.full(alive.num_rows, b)),
                              "_order": alive.column("_order")}))
        if near_duplicates_on(filters):
            band_rows, texts[b], alias = near_duplicate_inputs(candidates, b, filters)
            bands.append(band_rows)
            aliases.append(alias)
    frequent = frequent_trigrams(np.concatenate(grams), np.concatenate(counts), filters.bland_min_count) if grams else None
    dropped = resolve_duplicates(pa.concat_tables(keys), filters.duplicate_session, filters.duplicate_response) if keys \
        else resolve_duplicates(pa.table({"_rkey": [], "_skey": [], "session_id": [], "bucket": []}), False, False)
    near, near_summary = ND_DROPPED.empty_table(), None
    if near_duplicates_on(filters):
        pairs, same = near_duplicate_pairs(pa.concat_tables(bands) if bands else ND_BANDS.empty_table(),
                                           filters.near_duplicate_max_group, filters.near_duplicate_threshold)
        verified = list(aliases) + [same]
        for b in sorted(texts):  # the two lookups of the Spark job, by bucket
            mine = with_texts(unique_pairs(pairs.filter(pc.equal(pairs.column("a_bucket"), b))), texts[b], "a")
            for b2 in sorted(texts):
                theirs = with_texts(mine.filter(pc.equal(mine.column("b_bucket"), b2)), texts[b2], "b")
                verified.append(verify_pairs(theirs, filters.near_duplicate_shingle, filters.near_duplicate_threshold))
        near, near_summary = near_duplicate_clusters(pa.concat_tables(verified) if verified else ND_VERIFIED.empty_table())
    sessions, finished = [], []
    for b, (candidates, stats) in built.items():
        mine = dropped.filter(pc.equal(dropped.column("bucket"), b))
        final, report = finish_bucket(candidates, mine, frequent, filters, stats["comments"], stats["valid"],
                                      near=near.filter(pc.equal(near.column("bucket"), b)))
        sessions.append(final)
        finished.append({"bucket": b, "report": report, "seconds": {}})
    if near_summary is not None:
        finished.append({"near_duplicates": near_summary})  # corpus-wide: one entry, no bucket
    stats = [{"bucket": b, "stats": s, "seconds": {}} for b, (_, s) in built.items()]
    return pa.concat_tables(sessions) if sessions else None, stats, finished
