"""One bucket of whole threads -> candidate sessions with their drop reasons: the extract job's data path.

The ingest job writes comments bucketed by thread (``thread_bucket`` of ``link_id``; submissions by
``id``), so every comment of a thread, from every month and every input file, is in the same
bucket. A bucket is then processed alone, in memory, with pyarrow and numpy, in three steps:

1. ``build_candidates``: one row per id (``dedupe_by_id``), the turn rules and every feature the
   session rules read, computed once per comment (``extraction.sessions.features``); the chain walk as
   ``max_turns - 1`` vectorised steps over a parent-index array; the session rules as array
   expressions over the turn-index matrix; the split; and what the corpus rules need: the
   bucket's trigram counts (64-bit hashes) and, per surviving session, hashes of its turns and
   of its response.
2. ``resolve_duplicates``: for one range of response hashes, across every bucket, the duplicate
   sessions and responses (the earliest session of each group stays: ``earliest_keys``).
3. ``finish_bucket``: the corpus decisions applied (``bland`` from the frequent trigrams,
   then the duplicates), and the report's counts for the bucket.

Nothing here knows about Spark, paths or files: ``extraction.sessions.job`` reads and writes and runs
the buckets as Spark tasks. The plain-Python reference of all of it is ``tests.kit.reference``;
``tests/extraction/test_reddit_threads.py`` checks the two agree.

Parents are looked up within the thread (same ``link_id``): a comment whose parent is in another
thread counts as having a missing parent (Reddit never links across threads).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from reddit_pretrain.layout import SPLITS, TEST, TRAIN, VALID

from extraction.sessions import neardup
from extraction.sessions.chains import ALL_SESSION_REASONS, ChainsConfig, SplitConfig, hash_split
from extraction.sessions.features import (Texts, as_array, combine_hashes, splitmix64, comment_words, is_absent, text_features, text_hashes,
                                 turn_cut, unescape_html)
from extraction.sessions.filters import TURN_RULES, FiltersConfig, LoadedRules
from extraction.sessions.language import UNDETERMINED, common_word_counts, languages_of
from extraction.sessions.privacy import KINDS as PII_KINDS, Privacy, pseudonymize_column, scrub_column

COMMENT_COLUMNS = ["id", "link_id", "parent_id", "parent_kind", "subreddit", "author", "body", "score", "created_utc"]
MARK_COLUMNS = ["distinguished", "stickied", "collapsed_reason_code"]
"""The marks of today's dumps the rules read (``filters.Rule.marks``); null where an ingest output
(an older one, or a month without them) has none."""
_MARK_TYPES = {"distinguished": pa.string(), "stickied": pa.bool_(), "collapsed_reason_code": pa.string()}
SUBMISSION_COLUMNS = ["id", "title", "selftext", "over_18", "num_comments", "author", "score", "created_utc"]
SESSION_COLUMNS = ["session_id", "link_id", "subreddit", "turn_ids", "turns", "authors", "created_utc", "scores",
                   "num_turns", "has_title", "over_18", "chain_end", "language", "language_confidence",
                   "classifier_score"]

# chain_end codes
_OPEN, _ROOT, _MISSING, _TRUNCATED, _LONG, _CYCLE, _CUT = 0, 1, 2, 3, 4, 5, 6  # _CUT + index of the turn rule
CHAIN_ENDS = ["", "root", "missing_parent", "truncated", "long_turn", "parent_cycle"] + [f"cut_{r}" for r in TURN_RULES]
"""Why a session's walk up stopped. ``parent_cycle``: at a comment on a cycle of parent links (its
own parent, or A -> B -> A): its parent link is cut, so no comment is walked twice."""
WORD_EDGES = [0, 5, 10, 20, 40, 80, 120, 160, 200, 300]
"""Edges of the report's histogram of words per kept session (the last bucket is open)."""
REASONS = [None] + list(ALL_SESSION_REASONS)
"""drop_reason codes: 0 kept, i the i-th reason of ``ALL_SESSION_REASONS`` (+1)."""


def thread_places(keys) -> np.ndarray:
    """Each thread id's place in the fixed 64-bit hash space: the first 8 bytes of its blake2b
    (little-endian), the same everywhere and in every run (no per-process seed, no dependence on
    the corpus), so a month added later puts a thread where its earlier months did."""
    keys = as_array(keys)
    if len(keys) == 0:
        return np.zeros(0, dtype=np.uint64)
    encoded = pc.dictionary_encode(keys)
    names = encoded.dictionary.to_pylist()
    per_name = np.fromiter((int.from_bytes(hashlib.blake2b(k.encode(), digest_size=8).digest(), "little") for k in names),
                           dtype=np.uint64, count=len(names))
    per_name = np.append(per_name, np.uint64(0))  # null ids: place 0
    return per_name[pc.fill_null(encoded.indices, len(names)).to_numpy(zero_copy_only=False)]


def piece_of(places: np.ndarray, pieces: int) -> np.ndarray:
    """The piece (0..pieces-1) of each place when the hash space is cut into ``pieces`` contiguous
    ranges of equal width: ``floor(place * pieces / 2**64)``. Pieces of a power-of-two count nest
    (piece ``i`` of 2^k is pieces ``2i`` and ``2i + 1`` of 2^(k+1)), and piece order is place order,
    so contiguous pieces are a contiguous range of the space."""
    places = np.asarray(places, dtype=np.uint64)
    if pieces <= 1:
        return np.zeros(len(places), dtype=np.int64)
    if pieces & (pieces - 1) == 0:
        return (places >> np.uint64(64 - pieces.bit_length() + 1)).astype(np.int64)
    hi, lo = places >> np.uint64(32), places & np.uint64(0xFFFFFFFF)  # 128-bit product, by halves
    n = np.uint64(pieces)
    return ((hi * n + ((lo * n) >> np.uint64(32))) >> np.uint64(32)).astype(np.int64)


def thread_bucket(keys, buckets: int) -> np.ndarray:
    """The piece (0..buckets-1) of each thread id's place (``thread_places``, ``piece_of``)."""
    return piece_of(thread_places(keys), buckets)


ORDER_MARK = "!"
"""The first character of an order key (``earliest_keys``): below every base-36 character."""
ORDER_CHARS = 12
"""Characters of an order key before the session id it ends with."""
_DIGITS36 = np.array(list("0123456789abcdefghijklmnopqrstuvwxyz"), dtype=object)


def earliest_keys(ids, created) -> pa.Array:
    """One string per session whose string order is the order in which the corpus rules keep copies,
    the earliest first: the last turn's ``created_utc``, then the id read as a base-36 number (a
    shorter id first, then by its characters; Reddit's ids have no leading zero). It is
    ``ORDER_MARK``, 10 digits of seconds, the id's length as one base-36 digit, and the id
    (``plain_ids`` takes it back), so a later month never changes which copy is the earliest."""
    ids = as_array(ids)
    seconds = pc.utf8_lpad(pc.cast(pc.fill_null(as_array(created), 0), pa.string()), 10, "0")
    length = pa.array(_DIGITS36[np.minimum(_np(pc.utf8_length(ids), 0), 35)], pa.string())
    return pc.binary_join_element_wise(pa.array([ORDER_MARK] * len(ids), pa.string()), seconds, length, ids, "")


def plain_ids(ids) -> pa.Array:
    """The session ids of ``earliest_keys`` (any other id as it is)."""
    ids = as_array(ids)
    return pc.if_else(pc.starts_with(ids, ORDER_MARK), pc.utf8_slice_codeunits(ids, ORDER_CHARS), ids)


def cycle_members(pidx: np.ndarray) -> np.ndarray:
    """Which nodes lie on a cycle of the parent-index array ``pidx`` (-1: no parent). Pointer
    doubling: after 2^k >= n + 1 steps every walk has reached the root's sink or a cycle, and the
    nodes walks land on are exactly the cycles' (a step maps each cycle onto itself)."""
    n = len(pidx)
    if n == 0:
        return np.zeros(0, dtype=bool)
    jump = np.append(np.where(pidx >= 0, pidx, n), n)
    steps = 1
    while steps <= n:
        jump = jump[jump]
        steps *= 2
    on = np.zeros(n + 1, dtype=bool)
    on[jump[:n]] = True
    return on[:n]


def longest_ends(leaves: np.ndarray, pidx: np.ndarray, usable: np.ndarray, ids: pa.Array, created=None) -> np.ndarray:
    """``chains.mode=longest``: of the ``leaves`` (not ``usable`` ones give no turn and are left out),
    per chain head the one with the longest walk up through ``usable`` comments, ties to the earliest
    (``created``, then the id as a base-36 number: ``earliest_keys``; the smallest id without
    ``created``); sorted. The head and the length of every walk by pointer doubling (log2(n) steps)."""
    n = len(pidx)
    leaves = leaves[usable[leaves]]
    if not len(leaves):
        return leaves
    up = np.where((pidx >= 0) & usable[np.maximum(pidx, 0)], pidx, -1)
    jump = np.where(up >= 0, up, np.arange(n))
    dist = (up >= 0).astype(np.int64)
    steps = 1
    while steps < n:
        dist = dist + dist[jump]
        jump = jump[jump]
        steps *= 2
    head, depth = jump[leaves], dist[leaves]
    leaf_ids = pc.take(ids, pa.array(leaves, pa.int64()))
    if created is not None:
        leaf_ids = earliest_keys(leaf_ids, pc.take(as_array(created), pa.array(leaves, pa.int64())))
    rank = np.unique(np.array(leaf_ids.to_pylist(), dtype=str), return_inverse=True)[1]
    order = np.lexsort((rank, -depth, head))  # per head: the deepest, then the earliest
    first = np.ones(len(order), dtype=bool)
    first[1:] = head[order][1:] != head[order][:-1]
    return np.sort(leaves[order[first]])


def dedupe_by_id(table: pa.Table) -> tuple[pa.Table, int]:
    """One row per id: the smallest by the other columns in order (nulls first), as Spark's
    ``min(struct(...))`` picks it. Returns the table and how many rows were repeats."""
    ids = as_array(table.column("id"))
    if pc.count_distinct(ids, mode="all").as_py() == table.num_rows:
        return table, 0
    try:  # null placement per key (pyarrow >= 25); before that, for all keys at once
        order = pc.sort_indices(table, sort_keys=[(c, "ascending", "at_start") for c in table.column_names])
    except (TypeError, ValueError, pa.ArrowInvalid):
        order = pc.sort_indices(table, sort_keys=[(c, "ascending") for c in table.column_names], null_placement="at_start")
    ordered = table.take(order)
    sorted_ids = as_array(ordered.column("id"))
    first = np.ones(len(sorted_ids), dtype=bool)
    first[1:] = pc.not_equal(sorted_ids[1:], sorted_ids[:-1]).to_numpy(zero_copy_only=False)
    kept = ordered.filter(pa.array(first))
    return kept, table.num_rows - kept.num_rows


class Timer:
    """Seconds per stage, summed over the tasks into the report."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self._last
        self._last = now


def _np(array, fill=None) -> np.ndarray:
    array = as_array(array)
    if fill is not None:
        array = pc.fill_null(array, fill)
    return array.to_numpy(zero_copy_only=False)


def _lists(offsets: np.ndarray, values) -> pa.ListArray:
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values)


class SessionView:
    """What the session rules' vectorised tests (``filters.Rule.fails``) read, for a bucket's sessions:
    per-turn features through the turn matrix ``M`` (a title turn has only ``url`` and ``n_words``),
    the response's, the subreddit and the submission's ``over_18``."""

    def __init__(self, cfg: FiltersConfig, rules: LoadedRules, ext: dict, M: np.ndarray, ends: np.ndarray, feats: dict,
                 subreddit: pa.Array, over_18: np.ndarray, response_score: np.ndarray, response_score_known: np.ndarray,
                 thread_comments: np.ndarray | None, num_turns: np.ndarray, common_words: np.ndarray | None = None,
                 texts: pa.Array | None = None, alive=None):
        self.cfg, self.rules, self._ext, self._M, self._ends, self._feats = cfg, rules, ext, M, ends, feats
        self._texts = texts
        """Every comment's text as the rules read it."""
        self._alive = alive
        """``alive()``: the sessions no rule has dropped yet."""
        self.classifier_score = np.full(len(ends), np.nan)
        """The ``classifier`` rule's score of each response it judged (NaN: not judged)."""
        self._common_words = common_words
        """Each comment's ``extraction.sessions.language.common_word_counts`` (None: the language rule is off)."""
        self.language = np.full(len(ends), None, dtype=object)
        self.language_confidence = np.full(len(ends), None, dtype=object)
        """The ``language`` rule's language and confidence of each session it judged (None: not judged)."""
        self._subreddit = subreddit
        self.over_18 = over_18
        self.response_score = response_score
        self.response_score_known = response_score_known
        self.thread_comments = thread_comments
        """The submission's ``num_comments`` (-1: no submission); None when the input has no submissions."""
        self.num_turns = num_turns
        self.response_marks: dict[str, pa.Array] = {}
        """The responses' marks of today's dumps (``MARK_COLUMNS``)."""

    def response_mark_is(self, name: str, value) -> np.ndarray:
        mark = self.response_marks.get(name)
        if mark is None:
            return self.none()
        return _np(pc.fill_null(pc.equal(mark, value), False)).astype(bool)

    def none(self) -> np.ndarray:
        return np.zeros(len(self._ends), dtype=bool)

    def any_turn(self, feature: str) -> np.ndarray:
        return self._ext[feature][self._M].any(axis=1)

    def total(self, feature: str) -> np.ndarray:
        return self._ext[feature][self._M].sum(axis=1)

    def response(self, feature: str) -> np.ndarray:
        return self._feats[feature][self._ends]

    def turns(self, feature: str, which: str) -> np.ndarray:
        """The response's ``feature`` (``which == "response"``), else whether any turn has it."""
        return self.response(feature) if which == "response" else self.any_turn(feature)

    def classifier_scores(self) -> np.ndarray:
        """The classifier's score of the response of every session still alive (``extraction.sessions.classifier``),
        each distinct response once, in batches; NaN for the others (no rule holds NaN against a session)."""
        rows = np.flatnonzero(self._alive())
        comments, inverse = np.unique(self._ends[rows], return_inverse=True)
        texts = pc.take(self._texts, pa.array(comments, pa.int64())).to_pylist()
        self.classifier_score[rows] = self.rules.classifier.scores(texts)[inverse]
        return self.classifier_score

    def foreign(self) -> np.ndarray:
        """Sessions still alive whose comment turns are in a language the config does not keep
        (``extraction.sessions.language``): the letters and CLD2 for those turns alone."""
        rows = np.flatnonzero(self._alive())
        foreign = np.zeros(len(self._ends), dtype=bool)
        if not len(rows):
            return foreign
        M, n = self._M[rows], len(self._texts)
        is_comment = (M >= 0) & (M < n)  # a title (index >= n) has no vote
        turns = np.unique(M[is_comment])
        local = np.where(is_comment, np.searchsorted(turns, np.where(is_comment, M, 0)), -1)
        language = languages_of(self._texts, self._common_words, self.cfg.language_min_letters, turns)
        lang, conf, foreign[rows] = _session_languages(language, local, len(turns), self.cfg)
        self.language[rows], self.language_confidence[rows] = lang, conf
        return foreign

    def subreddit_in(self, names: frozenset) -> np.ndarray:
        """Sessions whose subreddit, lower-cased, is in ``names``."""
        encoded = pc.dictionary_encode(self._subreddit)
        values = encoded.dictionary.to_pylist()
        hit = np.array([(v or "").lower() in names for v in values] + ["" in names])
        return hit[pc.fill_null(encoded.indices, len(values)).to_numpy(zero_copy_only=False)]


@dataclass
class Walk:
    """A bucket's chains, walked up from where each session ends (``walk_chains``)."""

    ends: np.ndarray
    """The comment row each session ends at (its response), one per session."""
    M: np.ndarray
    """The turn matrix, sessions x ``max_turns``: comment rows (a title: ``n`` + submission row), right-aligned, -1 no turn."""
    end_code: np.ndarray
    """Why each walk stopped (``CHAIN_ENDS``)."""
    num_turns: np.ndarray
    valid: np.ndarray
    """Comments no turn rule cut."""
    on_cycle: np.ndarray
    """Comments whose parent link is on a cycle (cut)."""
    link: pa.DictionaryArray
    """Each comment's ``link_id``, dictionary-encoded; ``link_code`` its indices (-1: null)."""
    link_code: np.ndarray


@dataclass
class Titles:
    """What the submissions add to a bucket's sessions (``attach_titles``)."""

    has_title: np.ndarray
    over_18: pa.Array
    thread_comments: np.ndarray | None = None
    """The submission's ``num_comments`` per session (-1: no submission); None without submissions."""
    columns: dict | None = None
    """The submissions' columns as turns (id, author, text, score, created_utc), when titles are turns."""
    text_read: pa.Array | None = None
    """The title turns' text as the rules read it (scrubbed of PII when privacy is on)."""


def build_candidates(comments: pa.Table, submissions: pa.Table | None, chains: ChainsConfig, filters: FiltersConfig,
                     split: SplitConfig, rules: LoadedRules, timer: Timer | None = None,
                     privacy: Privacy | None = None) -> tuple[pa.Table, dict, np.ndarray, np.ndarray]:
    """Step 1 for one bucket. Returns (candidate sessions sorted by session_id, stats, trigram
    hashes, their counts); the candidates carry ``drop_reason`` (null = alive so far), ``split``
    and the private columns ``_rows`` (turn row indices), ``_words``, ``_rkey``, ``_skey``.
    ``privacy`` (``extraction.sessions.privacy``): the rules read the scrubbed text, the sessions store it
    with placeholders, and the authors are pseudonymised after the turn rules (bots) read them."""
    timer = timer or Timer()
    chains.validate()
    privacy = privacy or Privacy(False, False, "")
    pii = dict.fromkeys(PII_KINDS, 0)
    comments, body, repeats = read_comments(comments, filters, privacy, pii)
    timer.lap("read")
    texts = Texts(body)
    cut = turn_cut(texts, comments.column("author"), rules, comments)
    if privacy.pseudonymize_authors:  # after the bot rule has read the real names
        comments = comments.set_column(comments.column_names.index("author"), "author",
                                       pseudonymize_column(comments.column("author"), privacy.salt))
    long_turn = comment_words(texts) > chains.max_turn_words if chains.max_turn_words else np.zeros(len(body), dtype=bool)
    timer.lap("turn rules")
    feats = text_features(texts, rules)
    common_words = common_word_counts(texts, rules.english_words) if filters.language else None  # the language's cheap pass
    grams, gram_counts = bucket_trigrams(texts, filters)
    del texts
    timer.lap("features")
    walk = walk_chains(comments, cut, long_turn, chains)
    titles = attach_titles(submissions, comments, walk, chains, filters, privacy, pii)
    timer.lap("chains")
    reason, view, ext = session_rules(comments, body, walk, titles, feats, common_words, chains, filters, rules)
    total_words = view.total("n_words")
    timer.lap("session rules")
    session_split = split_sessions(comments, walk, split)
    timer.lap("split")
    table = session_table(comments, body, walk, titles, ext, reason, view, total_words, session_split, chains, filters, privacy)
    stats = {"rows": len(body) + repeats, "comments": len(body), "duplicate_ids": repeats, "valid": int(walk.valid.sum()),
             "parent_cycles": int(walk.on_cycle.sum()), "pii": pii,
             "cut_by_turn_rule": {r: int((cut == i + 1).sum()) for i, r in enumerate(TURN_RULES)},
             "candidates": len(walk.ends)}
    timer.lap("sessions")
    return table, stats, grams, gram_counts.astype(np.int64)


def read_comments(comments: pa.Table, filters: FiltersConfig, privacy: Privacy, pii: dict) -> tuple[pa.Table, pa.Array, int]:
    """One row per id, HTML entities unescaped, PII scrubbed (counted into ``pii``). Returns the
    comments as the sessions store them, the bodies as the rules read them, and the repeated ids."""
    for name in MARK_COLUMNS:
        if name not in comments.column_names:
            comments = comments.append_column(name, pa.nulls(comments.num_rows, _MARK_TYPES[name]))
    comments, repeats = dedupe_by_id(comments.select(COMMENT_COLUMNS + MARK_COLUMNS))
    if filters.unescape_html:
        comments = comments.set_column(comments.column_names.index("body"), "body", unescape_html(comments.column("body")))
    body = as_array(comments.column("body"))
    if privacy.active:
        stored, body, found = scrub_column(body, privacy)  # the rules read ``body``; the sessions keep ``stored``
        comments = comments.set_column(comments.column_names.index("body"), "body", stored)
        for kind in pii:
            pii[kind] += found[kind]
    return comments, body, repeats


def bucket_trigrams(texts: Texts, filters: FiltersConfig) -> tuple[np.ndarray, np.ndarray]:
    """The bucket's distinct word-trigram hashes and their counts (the ``bland`` rule's input; empty when it is off)."""
    if not filters.bland:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    hashes, _ = texts.words.trigram_hashes()
    return np.unique(hashes, return_counts=True)


def walk_chains(comments: pa.Table, cut: np.ndarray, long_turn: np.ndarray, chains: ChainsConfig) -> Walk:
    """Where sessions end (``chains.mode``) and their turns, walked up the parent links in
    ``max_turns - 1`` vectorised steps. A parent in another thread counts as missing; a cycle of
    parent links is cut, so a walk never repeats a comment; a cut or long turn stops the walk below it."""
    n = comments.num_rows
    kind = _np(comments.column("parent_kind"), "")
    is_comment_parent = kind == "comment"
    is_top = kind == "submission"
    link = pc.dictionary_encode(as_array(comments.column("link_id")))
    link_code = _np(link.indices, -1)
    pidx = _np(pc.index_in(comments.column("parent_id"), value_set=as_array(comments.column("id"))), -1).astype(np.int64)
    pidx[~is_comment_parent] = -1
    cross = (pidx >= 0) & (link_code[np.maximum(pidx, 0)] != link_code)
    pidx[cross] = -1
    on_cycle = cycle_members(pidx)  # parent links that loop: cut, so a walk never repeats a comment
    pidx[on_cycle] = -1
    valid = cut == 0
    if chains.mode in ("leaves", "longest"):
        has_valid_child = np.zeros(n, dtype=bool)
        has_valid_child[pidx[valid & (pidx >= 0)]] = True
        ends = np.flatnonzero(valid & ~has_valid_child)
        if chains.mode == "longest":
            ends = longest_ends(ends, pidx, valid & ~long_turn, as_array(comments.column("id")), comments.column("created_utc"))
    else:
        ends = np.flatnonzero(valid)
    T = chains.max_turns
    ns = len(ends)
    M = np.full((ns, T), -1, dtype=np.int64)
    M[:, T - 1] = np.where(long_turn[ends], -1, ends)  # a leaf over max_turn_words gives no turn
    node = ends.copy()
    active = is_comment_parent[ends] & ~long_turn[ends]
    end_code = np.where(active, _OPEN, np.where(is_top[ends], _ROOT, _MISSING)).astype(np.int8)
    end_code[long_turn[ends]] = _LONG
    for step in range(T - 1):
        a = np.flatnonzero(active)
        if not len(a):
            break
        p = pidx[node[a]]
        missing = a[p < 0]
        end_code[missing] = np.where(on_cycle[node[missing]], _CYCLE, _MISSING)
        found, pf = a[p >= 0], p[p >= 0]
        parent_cut = cut[pf]
        end_code[found[parent_cut > 0]] = _CUT - 1 + parent_cut[parent_cut > 0]
        usable, pu = found[parent_cut == 0], pf[parent_cut == 0]
        end_code[usable[long_turn[pu]]] = _LONG  # a turn over max_turn_words stops the walk below it
        usable, pu = usable[~long_turn[pu]], pu[~long_turn[pu]]
        M[usable, T - 2 - step] = pu
        node[usable] = pu
        end_code[usable[is_top[pu]]] = _ROOT
        end_code[usable[~is_top[pu] & ~is_comment_parent[pu]]] = _MISSING
        active[:] = False
        active[usable[is_comment_parent[pu]]] = True
    end_code[active] = _TRUNCATED
    return Walk(ends, M, end_code, (M >= 0).sum(axis=1), valid, on_cycle, link, link_code)


def attach_titles(submissions: pa.Table | None, comments: pa.Table, walk: Walk, chains: ChainsConfig,
                  filters: FiltersConfig, privacy: Privacy, pii: dict) -> Titles:
    """Each session's submission: ``over_18``, ``num_comments``, and (``chains.include_title``) the
    title, with the self text when ``include_selftext``, as the first turn of a session whose walk
    reached the root and has room for it (``walk.M`` and ``walk.num_turns`` are updated)."""
    ns, n, T = len(walk.ends), comments.num_rows, chains.max_turns
    titles = Titles(np.zeros(ns, dtype=bool), pa.nulls(ns, pa.bool_()))
    if submissions is None:
        return titles
    subs, _ = dedupe_by_id(submissions.select([c for c in SUBMISSION_COLUMNS if c in submissions.column_names]))
    if filters.unescape_html:
        for name in ("title", "selftext"):
            subs = subs.set_column(subs.column_names.index(name), name, unescape_html(subs.column(name)))
    rule_title = {}  # what the rules read of the title and self text, when it differs from what is stored
    if privacy.active:
        for name in ("title", "selftext"):
            stored, rule_title[name], found = scrub_column(as_array(subs.column(name)), privacy)
            subs = subs.set_column(subs.column_names.index(name), name, stored)
            for kind in pii:
                pii[kind] += found[kind]
    if privacy.pseudonymize_authors:
        subs = subs.set_column(subs.column_names.index("author"), "author", pseudonymize_column(subs.column("author"), privacy.salt))
    end_links = pc.take(as_array(comments.column("link_id")), pa.array(walk.ends, pa.int64()))
    sidx = _np(pc.index_in(end_links, value_set=as_array(subs.column("id"))), -1).astype(np.int64)
    titles.over_18 = pc.take(as_array(subs.column("over_18")), pa.array(np.where(sidx >= 0, sidx, None), pa.int64()))
    counts = np.append(_np(subs.column("num_comments"), -1) if "num_comments" in subs.column_names
                       else np.full(subs.num_rows, -1), -1)
    titles.thread_comments = counts[sidx]  # sidx -1: no submission, so -1
    title = as_array(subs.column("title"))
    title_read = rule_title.get("title", title)
    if chains.include_selftext:
        self_text = as_array(subs.column("selftext"))
        has_self = ~is_absent(self_text)  # a [removed] or [deleted] self text is no text
        joined = pc.binary_join_element_wise(title, self_text, "\n\n")
        title = pc.if_else(pa.array(has_self), joined, title)
        joined_read = pc.binary_join_element_wise(title_read, rule_title.get("selftext", self_text), "\n\n")
        title_read = pc.if_else(pa.array(has_self), joined_read, title_read)
    if chains.include_title:
        title_ok = _np(pc.is_valid(title), False)
        titles.has_title = (walk.end_code == _ROOT) & (sidx >= 0) & title_ok[np.maximum(sidx, 0)] & (walk.num_turns < T)
        rows = np.flatnonzero(titles.has_title)
        walk.M[rows, T - 1 - walk.num_turns[rows]] = n + sidx[rows]
        walk.num_turns = walk.num_turns + titles.has_title
        titles.columns = {
            "id": pc.binary_join_element_wise("t3_", as_array(subs.column("id")), ""),
            "author": as_array(subs.column("author")), "text": title,
            "score": as_array(subs.column("score")), "created_utc": as_array(subs.column("created_utc")),
        }
        titles.text_read = title_read
    return titles


def session_rules(comments: pa.Table, body: pa.Array, walk: Walk, titles: Titles, feats: dict, common_words,
                  chains: ChainsConfig, filters: FiltersConfig, rules: LoadedRules) -> tuple[np.ndarray, SessionView, dict]:
    """The session rules in their order, as array expressions over the turn matrix; the first that
    fails names a session's drop reason. Returns (reason codes into ``REASONS``, the view the rules
    read, with the classifier's and language's judgements, the per-turn features with titles)."""
    ext = {name: np.append(values, values.dtype.type(0)) for name, values in feats.items()}  # index -1: no turn
    if titles.columns is not None:
        title_feats = text_features(Texts(titles.text_read), rules, title=True)
        ext = {name: np.concatenate([feats[name], title_feats[name], [feats[name].dtype.type(0)]]) for name in feats}
    ends = walk.ends
    reason = np.zeros(len(ends), dtype=np.int16)
    code = {r: i for i, r in enumerate(REASONS)}

    def drop(name: str, fails: np.ndarray) -> None:
        reason[(reason == 0) & fails] = code[name]

    drop("min_turns", walk.num_turns < chains.min_turns)
    drop("max_turns", (walk.end_code == _TRUNCATED) & (chains.long_chains == "drop"))
    view = SessionView(filters, rules, ext, walk.M, ends, feats,
                       pc.take(as_array(comments.column("subreddit")), pa.array(ends, pa.int64())),
                       _np(titles.over_18, False).astype(bool),
                       _np(comments.column("score"), 0)[ends], _np(pc.is_valid(comments.column("score")), False)[ends],
                       titles.thread_comments, walk.num_turns, common_words, body, lambda: reason == 0)
    view.response_marks = {name: pc.take(as_array(comments.column(name)), pa.array(ends, pa.int64())) for name in MARK_COLUMNS}
    for rule in rules.on("session"):
        drop(rule.name, np.asarray(rule.fails(view), dtype=bool))
    return reason, view, ext


def split_sessions(comments: pa.Table, walk: Walk, split: SplitConfig) -> np.ndarray:
    """Each session's split, decided per thread (``link_id``) so no thread spans two splits: by a
    hash of the id, or by the day the thread's first comment in the bucket was written."""
    names = walk.link.dictionary.to_pylist()
    link_code = walk.link_code
    if split.method == "hash":
        per_link = np.array([hash_split(x, split) for x in names] + [TRAIN], dtype=object)
    else:
        created = _np(comments.column("created_utc"), np.iinfo(np.int64).max)
        start = np.full(len(names) + 1, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(start, np.where(link_code >= 0, link_code, len(names)), created)
        day = np.where(start == np.iinfo(np.int64).max, np.iinfo(np.int64).min, start // 86400)
        epoch = dt.date(1970, 1, 1)
        valid_day = (dt.date.fromisoformat(split.valid_from) - epoch).days
        test_day = (dt.date.fromisoformat(split.test_from) - epoch).days
        known = start != np.iinfo(np.int64).max
        per_link = np.where(known & (day >= test_day), TEST, np.where(known & (day >= valid_day), VALID, TRAIN)).astype(object)
    return per_link[np.where(link_code[walk.ends] >= 0, link_code[walk.ends], len(names))]


def session_table(comments: pa.Table, body: pa.Array, walk: Walk, titles: Titles, ext: dict, reason: np.ndarray,
                  view: SessionView, total_words: np.ndarray, session_split: np.ndarray, chains: ChainsConfig,
                  filters: FiltersConfig, privacy: Privacy) -> pa.Table:
    """The candidate sessions, sorted by session id, with what the corpus rules need: for each
    session still alive the hash of its response (``_rkey``) and of all its turns (``_skey``)."""
    M, ends, num_turns = walk.M, walk.ends, walk.num_turns
    ns = len(ends)
    flat = M[M >= 0]
    offsets = np.concatenate([[0], np.cumsum(num_turns)]).astype(np.int64)
    flat_arr = pa.array(flat, pa.int64())
    s_cols = titles.columns

    def ext_column(name: str, comment_name: str | None = None) -> pa.Array:
        base = as_array(comments.column(comment_name or name))
        if s_cols is not None:
            base = pa.concat_arrays([base.cast(s_cols[name].type) if base.type != s_cols[name].type else base, s_cols[name]])
        return pc.take(base, flat_arr)

    ends_arr = pa.array(ends, pa.int64())
    alive = reason == 0
    rkey = np.zeros(ns, dtype=np.uint64)
    skey = np.zeros(ns, dtype=np.uint64)
    turn_texts = ext_column("text", "body")
    if filters.duplicate_session or filters.duplicate_response:
        alive_rows = np.flatnonzero(alive)
        used = np.unique(M[alive_rows][M[alive_rows] >= 0])
        row_hash = np.zeros(len(ext["n_words"]), dtype=np.uint64)
        base_text = as_array(comments.column("body"))
        if s_cols is not None:
            base_text = pa.concat_arrays([base_text, s_cols["text"]])
        row_hash[used] = text_hashes(pc.take(base_text, pa.array(used, pa.int64())))
        rkey[alive_rows] = row_hash[ends[alive_rows]]
        skey[alive_rows] = combine_hashes(row_hash[M[alive_rows]])
    table = pa.table({
        "session_id": pc.take(as_array(comments.column("id")), ends_arr),
        "link_id": pc.take(as_array(comments.column("link_id")), ends_arr),
        "subreddit": pc.take(as_array(comments.column("subreddit")), ends_arr),
        "turn_ids": _lists(offsets, ext_column("id")),
        "turns": _lists(offsets, turn_texts),
        "authors": _lists(offsets, ext_column("author")),
        "created_utc": _lists(offsets, ext_column("created_utc")),
        "scores": _lists(offsets, ext_column("score")),
        "num_turns": pa.array(num_turns, pa.int32()),
        "has_title": pa.array(titles.has_title),
        "over_18": titles.over_18,
        "chain_end": pa.array(np.array(CHAIN_ENDS, dtype=object)[walk.end_code], pa.string()),
        "language": pa.array(view.language, pa.string()),
        "language_confidence": pa.array(view.language_confidence, pa.float64()),
        "classifier_score": pa.array(view.classifier_score, pa.float64(), from_pandas=True),
        "drop_reason": pa.array(np.array(REASONS, dtype=object)[reason], pa.string()),
        "split": pa.array(session_split, pa.string()),
        "_rows": _lists(offsets, pa.array(flat, pa.int64())),
        "_words": pa.array(total_words, pa.int64()),
        "_rkey": pa.array(rkey, pa.uint64()),
        "_skey": pa.array(skey, pa.uint64()),
        "_order": earliest_keys(pc.take(as_array(comments.column("id")), ends_arr),
                                pc.take(as_array(comments.column("created_utc")), ends_arr)),
        **({"_rtext": pc.take(body, ends_arr)} if privacy.scrub_pii else {}),  # the response as the rules read it
    })
    return table.take(pc.sort_indices(table, sort_keys=[("session_id", "ascending")]))


def _session_languages(language, M: np.ndarray, n: int, filters: FiltersConfig):
    """(language, confidence, is it foreign) of each session from its comment turns' languages
    (``extraction.sessions.language.session_language``, vectorised over the turn matrix; a title, index >= n,
    counts for nothing)."""
    ns = len(M)
    codes, confidence, letters = language
    names, code_index = np.unique(np.append(codes, UNDETERMINED).astype(str), return_inverse=True)
    und = int(np.searchsorted(names, UNDETERMINED))
    is_comment = (M >= 0) & (M < n)
    rows = np.where(is_comment, M, n)  # n: the appended undetermined entry
    code = code_index[rows]
    weight = np.where(is_comment & (code != und), np.append(letters, 0)[rows], 0).astype(np.float64)
    conf = np.append(confidence, 0.0)[rows]
    same = code[:, :, None] == code[:, None, :]  # [session, t, u]: turns t and u in one language
    votes = (same * weight[:, None, :]).sum(axis=2)
    votes = np.where(weight > 0, votes, -1.0)
    winner = np.argmax(votes, axis=1)  # the first turn of the most letters
    total = weight.sum(axis=1)
    win_code = code[np.arange(ns), winner]
    agree = code == win_code[:, None]
    score = (weight * conf * agree).sum(axis=1)
    has = total > 0
    session_conf = np.where(has, np.round(score / np.where(has, total, 1.0), 3), 0.0)  # rounded as session_language does
    session_lang = np.where(has, names[win_code], UNDETERMINED).astype(object)
    kept = np.isin(session_lang.astype(str), list(filters.languages))
    foreign = has & ~kept & (session_conf >= filters.language_min_confidence)
    return session_lang, session_conf, foreign


def resolve_duplicates(keys: pa.Table, on_sessions: bool, on_responses: bool) -> pa.Table:
    """Step 2 for one range of response hashes: rows (``_rkey``, ``_skey``, ``session_id``, ``bucket``) of
    surviving sessions -> those dropped as ``duplicate_session`` or ``duplicate_response``, each with
    the session it duplicates (``duplicate_of``, the one kept).

    Sessions with the same turns have the same response, so every duplicate group lies inside one
    response group and one range of response hashes holds everything both rules need. In each
    group of equal turns the earliest session stays (``_order``: ``earliest_keys``; the session id
    when absent); among those, the earliest of each response."""
    empty = pa.table({"bucket": pa.array([], pa.int64()), "session_id": pa.array([], pa.string()),
                      "reason": pa.array([], pa.string()), "duplicate_of": pa.array([], pa.string())})
    if keys.num_rows == 0:
        return empty
    if "_order" not in keys.column_names:  # (no order keys: by session id)
        keys = keys.append_column("_order", keys.column("session_id"))
    keys = keys.take(pc.sort_indices(keys, sort_keys=[("_rkey", "ascending"), ("_skey", "ascending"), ("_order", "ascending")]))
    r, s = _np(keys.column("_rkey")), _np(keys.column("_skey"))
    ids = np.array(keys.column("session_id").to_pylist(), dtype=object)
    reason = np.full(keys.num_rows, None, dtype=object)
    of = np.full(keys.num_rows, None, dtype=object)
    new_session = np.ones(len(r), dtype=bool)
    new_session[1:] = (r[1:] != r[:-1]) | (s[1:] != s[:-1])
    if on_sessions:
        reason[~new_session] = "duplicate_session"
        of[~new_session] = ids[np.maximum.accumulate(np.where(new_session, np.arange(len(r)), 0))][~new_session]
    if on_responses:
        keepers = np.flatnonzero(reason == None)  # noqa: E711
        by_id = pc.sort_indices(keys.select(["_rkey", "_order"]).take(pa.array(keepers, pa.int64())),
                                sort_keys=[("_rkey", "ascending"), ("_order", "ascending")])
        keepers = keepers[_np(by_id)]
        first = np.ones(len(keepers), dtype=bool)
        first[1:] = r[keepers][1:] != r[keepers][:-1]
        reason[keepers[~first]] = "duplicate_response"
        group_first = keepers[np.maximum.accumulate(np.where(first, np.arange(len(keepers)), 0))]
        of[keepers[~first]] = ids[group_first[~first]]
    dropped = np.flatnonzero(reason != None)  # noqa: E711
    if not len(dropped):
        return empty
    idx = pa.array(dropped, pa.int64())
    return pa.table({"bucket": pc.take(keys.column("bucket"), idx), "session_id": pc.take(keys.column("session_id"), idx),
                     "reason": pa.array(reason[dropped], pa.string()), "duplicate_of": pa.array(of[dropped], pa.string())})


# -- near duplicates (extraction.sessions.neardup): the steps between the buckets ---------------------------

ND_BANDS = pa.schema([("band", pa.uint64()), ("session_id", pa.string()), ("bucket", pa.int64()), ("shingles", pa.int32()),
                      ("text_hash", pa.uint64()), ("band_index", pa.int8())])
"""A band key of a response, with what step 2 needs besides: its count of distinct shingles (the
size bound), the hash of its normalised text (equal texts are linked without a lookup, by the
task that holds their first band) and which band it is."""
ND_TEXTS = pa.schema([("session_id", pa.string()), ("text", pa.string()), ("sketch", pa.binary())])
"""A reply's normalised text and its signature's sketch (``extraction.sessions.neardup.sketch``)."""
ND_PAIRS = pa.schema([("a", pa.string()), ("a_bucket", pa.int64()), ("b", pa.string()), ("b_bucket", pa.int64())])
ND_PAIRS_A = ND_PAIRS.append(pa.field("a_text", pa.string())).append(pa.field("a_sketch", pa.binary()))
ND_VERIFIED = ND_PAIRS.append(pa.field("jaccard", pa.float64())).append(pa.field("a_text", pa.string())) \
    .append(pa.field("b_text", pa.string()))
ND_DROPPED = pa.schema([("bucket", pa.int64()), ("session_id", pa.string()), ("duplicate_of", pa.string()),
                        ("reason", pa.string())])
SESSION_KIND = "~"
"""``near_duplicate_session`` runs through the same steps, and in the same jobs, as the response rule:
its session ids carry this prefix (after every base-36 character, so the order among them is the
ids' own), and its band keys and text hashes are mixed with ``_SESSION_SALT``, so no row of one
rule ever meets a row of the other. The clusters step takes the prefix off again."""
_SESSION_SALT = np.uint64(0x5E55_10A5_0F7E_57ED)


def near_duplicates_on(filters: FiltersConfig) -> bool:
    """Whether either near-duplicate rule runs (they share the jobs)."""
    return bool(filters.near_duplicate or filters.near_duplicate_session)
EXAMPLE_CHARS = 300
"""Texts of the report's example clusters are cut to this."""


def response_texts(candidates: pa.Table, rows: np.ndarray) -> pa.Array:
    """The response of each candidate in ``rows`` as the rules read it (PII as plain words)."""
    idx = pa.array(rows, pa.int64())
    if "_rtext" in candidates.column_names:
        return pc.take(as_array(candidates.column("_rtext")), idx)
    turns = as_array(candidates.column("turns"))
    return pc.take(turns.values, pa.array(_np(turns.offsets)[1:][rows] - 1, pa.int64()))


def session_texts(candidates: pa.Table, rows: np.ndarray) -> pa.Array:
    """The turns of each candidate in ``rows`` joined by a newline, as stored."""
    return pc.binary_join(pc.take(as_array(candidates.column("turns")), pa.array(rows, pa.int64())), "\n")


def near_duplicate_inputs(candidates: pa.Table, bucket: int, filters: FiltersConfig) -> tuple[pa.Table, pa.Table, pa.Table]:
    """Step 1's part for one bucket: ``_near_inputs`` of the responses (``near_duplicate_response``) and
    of the whole sessions (``near_duplicate_session``, their ids prefixed with ``SESSION_KIND``), the
    tables of the rules switched on, one after the other."""
    alive = np.flatnonzero(_np(pc.is_null(candidates.column("drop_reason"))))
    if "_order" in candidates.column_names:  # the earliest copy first: the ids are order keys (earliest_keys)
        order = pc.take(as_array(candidates.column("_order")), pa.array(alive, pa.int64()))
        earliest_first = pc.sort_indices(order)
        alive, ids = alive[_np(earliest_first)], pc.take(order, earliest_first)
    else:  # (sorted by session_id)
        ids = pc.take(as_array(candidates.column("session_id")), pa.array(alive, pa.int64()))
    parts = []
    if filters.near_duplicate:
        parts.append(_near_inputs(response_texts(candidates, alive), ids, bucket, filters))
    if filters.near_duplicate_session:
        parts.append(_near_inputs(session_texts(candidates, alive), pc.binary_join_element_wise(SESSION_KIND, ids, ""),
                                  bucket, filters, _SESSION_SALT))
    if not parts:
        return ND_BANDS.empty_table(), ND_TEXTS.empty_table(), ND_VERIFIED.empty_table()
    return tuple(pa.concat_tables(tables) for tables in zip(*parts))


def _near_inputs(raw: pa.Array, ids_all: pa.Array, bucket: int, filters: FiltersConfig,
                 salt: np.uint64 = np.uint64(0)) -> tuple[pa.Table, pa.Table, pa.Table]:
    """Over the texts ``raw`` (of the sessions ``ids_all``, in id order) that have a shingle: the
    band keys (``ND_BANDS``) and texts (``ND_TEXTS``) of one text per normalised text (the smallest
    session id), and the others, already near duplicates of it (Jaccard 1), as verified pairs
    (``ND_VERIFIED``). Texts equal once normalised never reach the pairs: a text repeated hundreds
    of times is one signature. ``salt`` is mixed into the band keys and text hashes (one rule's rows
    never meet another's)."""
    texts = neardup.normalize(raw)  # compared, stored and shown normalised from here on
    normalized = pc.dictionary_encode(texts)
    codes = _np(normalized.indices)
    _, first = np.unique(codes, return_index=True)  # the first of each normalised text: its smallest session id
    reps = np.sort(first)
    word_hashes, word_row = neardup.words(pc.take(texts, pa.array(reps, pa.int64())), normalized=True)
    hashes, row = neardup.word_shingles(word_hashes, word_row, filters.near_duplicate_shingle)
    sig, present = neardup.signatures(hashes, row, len(reps), filters.near_duplicate_bands * filters.near_duplicate_rows)
    keys = neardup.band_keys(sig, filters.near_duplicate_bands, filters.near_duplicate_rows)
    judged = reps[present]  # indices into alive
    ids = pc.take(ids_all, pa.array(judged, pa.int64()))
    sizes = neardup.distinct_per_row(hashes, row, len(reps))[present]  # (for the pairs' size bound)
    each = np.repeat(np.arange(len(judged)), filters.near_duplicate_bands)
    text_hash = neardup.text_hashes(word_hashes, word_row, len(reps))[present]  # (judged: one per text)
    bands = pa.table({"band": pa.array(keys.ravel() ^ salt, pa.uint64()), "session_id": pc.take(ids, pa.array(each, pa.int64())),
                      "bucket": pa.array(np.full(keys.size, bucket, dtype=np.int64)),
                      "shingles": pa.array(sizes[each].astype(np.int32)), "text_hash": pa.array(text_hash[each] ^ salt, pa.uint64()),
                      "band_index": pa.array(np.tile(np.arange(filters.near_duplicate_bands), len(judged)).astype(np.int8))},
                     schema=ND_BANDS)
    rep_of = first[codes]
    has_shingles = np.zeros(len(raw), dtype=bool)
    has_shingles[judged] = True
    alias = np.flatnonzero((rep_of != np.arange(len(raw))) & has_shingles[rep_of])
    cut = lambda rows: pc.utf8_slice_codeunits(pc.take(texts, pa.array(rows, pa.int64())), 0, EXAMPLE_CHARS)  # noqa: E731
    aliases = pa.table({"a": pc.take(ids_all, pa.array(alias, pa.int64())), "a_bucket": pa.array(np.full(len(alias), bucket), pa.int64()),
                        "b": pc.take(ids_all, pa.array(rep_of[alias], pa.int64())),
                        "b_bucket": pa.array(np.full(len(alias), bucket), pa.int64()),
                        "jaccard": pa.array(np.ones(len(alias))), "a_text": cut(alias), "b_text": cut(rep_of[alias])}, schema=ND_VERIFIED)
    sketches = neardup.sketch(sig)
    sketch_column = pa.Array.from_buffers(pa.binary(), len(sketches), [None, pa.py_buffer(
        (np.arange(len(sketches) + 1, dtype=np.int32) * sketches.shape[1]).tobytes()), pa.py_buffer(sketches.tobytes())])
    return bands, pa.table({"session_id": ids, "text": pc.take(texts, pa.array(judged, pa.int64())), "sketch": sketch_column},
                           schema=ND_TEXTS), aliases


def near_duplicate_pairs(bands: pa.Table, max_group: int, threshold: float = 0.0) -> tuple[pa.Table, pa.Table]:
    """Step 2's part for one range of band keys: (candidate pairs ``ND_PAIRS``, ``a`` above ``b``;
    pairs already verified ``ND_VERIFIED``). Responses of one normalised text (from different
    buckets) are linked to the smallest id among them directly (Jaccard 1, texts left null) and only
    that one takes part in the candidate pairs; pairs whose shingle counts alone rule the threshold
    out (Jaccard <= smaller / larger count) are left out."""
    empty = ND_PAIRS.empty_table(), ND_VERIFIED.empty_table()
    # Only rows whose band key another row shares can pair, and copies of one text share every key:
    # the rest (most rows) leave here, before any sort of session ids.
    # One sort of the keys' top bits with the row number in the bits below (far faster than an
    # argsort); two keys equal in their top bits alone only let a row through to the exact grouping.
    key = _np(bands.column("band"))
    bits = max(1, len(key).bit_length())
    packed = (key >> np.uint64(bits) << np.uint64(bits)) | np.arange(len(key), dtype=np.uint64)
    packed.sort()
    top = packed >> np.uint64(bits)
    starts = np.ones(len(key), dtype=bool)
    starts[1:] = top[1:] != top[:-1]
    shared = ~starts
    shared[:-1] |= shared[1:]
    places = np.flatnonzero(shared)
    rows = (packed[places] & np.uint64((1 << bits) - 1)).astype(np.int64)
    # A key shared by copies of one text alone gives no candidate pair: of such a group only the
    # first band's rows stay (they link the copies). In a bigger month more template replies have
    # copies in other buckets, and these rows grow faster than the month; the pairs are the same.
    if len(rows):
        first = starts[places]
        text = _np(bands.column("text_hash"))[rows]
        other_text = np.zeros(len(rows), dtype=bool)
        other_text[1:] = (text[1:] != text[:-1]) & ~first[1:]
        group = np.cumsum(first) - 1
        mixed = np.bincount(group, weights=other_text, minlength=int(group[-1]) + 1)[group] > 0
        rows = rows[mixed | (_np(bands.column("band_index"))[rows] == 0)]
    rows.sort()
    bands = bands.take(pa.array(rows, pa.int64()))
    if not bands.num_rows:
        return empty
    ids = as_array(bands.column("session_id"))
    rank = neardup.id_order(ids)
    text = _np(bands.column("text_hash"))
    order = np.lexsort((rank, text))
    first = np.ones(len(order), dtype=bool)
    first[1:] = text[order][1:] != text[order][:-1]
    rep = order[np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))]  # per row: its text's smallest id
    rep_of = np.empty(len(order), dtype=np.int64)
    rep_of[order] = rep
    take = lambda name, rows: pc.take(as_array(bands.column(name)), pa.array(rows, pa.int64()))  # noqa: E731
    first_band = _np(bands.column("band_index")) == 0  # equal texts share every band key: the first band's task links them
    same_rows = np.flatnonzero((rank != rank[rep_of]) & first_band)
    nulls = pa.nulls(len(same_rows), pa.string())
    same = pa.table({"a": take("session_id", same_rows), "a_bucket": take("bucket", same_rows),
                     "b": take("session_id", rep_of[same_rows]), "b_bucket": take("bucket", rep_of[same_rows]),
                     "jaccard": pa.array(np.ones(len(same_rows))), "a_text": nulls, "b_text": nulls}, schema=ND_VERIFIED)
    keep = np.flatnonzero(rank == rank[rep_of])  # one row per text and band
    bands = bands.take(pa.array(keep, pa.int64()))
    ids = as_array(bands.column("session_id"))
    a, b = neardup.candidate_pairs(_np(bands.column("band")), ids, max_group)
    size = _np(bands.column("shingles")).astype(np.float64)
    possible = np.minimum(size[a], size[b]) >= threshold * np.maximum(size[a], size[b])
    a, b = a[possible], b[possible]  # (``take`` reads the reduced ``bands``: it looks the name up when called)
    pairs = pa.table({"a": take("session_id", a), "a_bucket": take("bucket", a), "b": take("session_id", b),
                      "b_bucket": take("bucket", b)}, schema=ND_PAIRS)
    return pairs, same


def unique_pairs(pairs: pa.Table) -> pa.Table:
    """Each candidate pair once, in a fixed order (a pair sharing several bands comes from several tasks)."""
    if not pairs.num_rows:
        return pairs
    out = pairs.group_by(["a", "a_bucket", "b", "b_bucket"], use_threads=False).aggregate([])
    return out.take(pc.sort_indices(out, sort_keys=[("a", "ascending"), ("b", "ascending")])).select(ND_PAIRS.names).cast(ND_PAIRS)


def with_texts(pairs: pa.Table, texts: pa.Table, side: str) -> pa.Table:
    """``pairs`` with the text and sketch of their ``side`` (``a`` or ``b``) session from ``texts`` (one bucket's)."""
    where = pc.index_in(pairs.column(side), value_set=as_array(texts.column("session_id")))
    pairs = pairs.append_column(f"{side}_text", pc.take(as_array(texts.column("text")), where))
    return pairs.append_column(f"{side}_sketch", pc.take(as_array(texts.column("sketch")), where))


def _sketch_matrix(column) -> np.ndarray:
    """The sketches of a binary column (each ``num_perm`` bytes) as an (n, num_perm) uint8 array."""
    array = as_array(column)
    array = pc.take(array, pa.array(np.arange(len(array)), pa.int64()))  # offsets from 0, values contiguous
    offsets = np.frombuffer(array.buffers()[1], np.int32)[array.offset: array.offset + len(array) + 1]
    width = int(offsets[1] - offsets[0]) if len(array) else 0
    data = np.frombuffer(array.buffers()[2], np.uint8) if width else np.zeros(0, np.uint8)
    return data[offsets[0]: offsets[0] + width * len(array)].reshape(len(array), width)


def verify_pairs(pairs: pa.Table, shingle: int, threshold: float) -> pa.Table:
    """The pairs (with both normalised texts and sketches) whose exact shingle Jaccard is at least
    ``threshold`` (``ND_VERIFIED``). A pair whose sketches agree in fewer values than a pair at the
    threshold would but once in a million (``neardup.agreement_cutoff``) is not verified."""
    if not pairs.num_rows:
        return ND_VERIFIED.empty_table()
    a_sketch, b_sketch = _sketch_matrix(pairs.column("a_sketch")), _sketch_matrix(pairs.column("b_sketch"))
    if a_sketch.shape == b_sketch.shape and a_sketch.shape[1]:
        agree = (a_sketch == b_sketch).sum(axis=1)
        pairs = pairs.filter(pa.array(agree >= neardup.agreement_cutoff(threshold, a_sketch.shape[1])))
    if not pairs.num_rows:
        return ND_VERIFIED.empty_table()
    both = pa.concat_arrays([as_array(pairs.column("a_text")), as_array(pairs.column("b_text"))])
    encoded = pc.dictionary_encode(both)
    jac = pair_jaccard(encoded.dictionary, _np(encoded.indices), shingle, normalized=True)
    keep = jac >= threshold
    out = pairs.filter(pa.array(keep)).append_column("jaccard", pa.array(jac[keep], pa.float64()))
    cut = lambda name: pc.utf8_slice_codeunits(as_array(out.column(name)), 0, EXAMPLE_CHARS)  # noqa: E731
    return pa.table({**{f: out.column(f) for f in ("a", "a_bucket", "b", "b_bucket", "jaccard")},
                     "a_text": cut("a_text"), "b_text": cut("b_text")}, schema=ND_VERIFIED)


def pair_jaccard(texts: pa.Array, code: np.ndarray, shingle: int, normalized: bool = False) -> np.ndarray:
    """The exact shingle Jaccard of pairs of texts, vectorised: pair ``i`` is ``texts[code[i]]`` and
    ``texts[code[n + i]]``. Each text's distinct shingles once, keyed by (text, shingle) in one sorted
    array; each shingle of a pair's first text is looked up under the second text's key."""
    n = len(code) // 2
    hashes, row = neardup.shingles(texts, shingle, normalized)
    keyed = splitmix64(hashes ^ (row.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)))  # (text, shingle) as one key
    keyed, first = np.unique(keyed, return_index=True)
    size = np.bincount(row[first], minlength=len(texts))  # distinct shingles per text
    distinct_row, distinct_hash = row[first], hashes[first]
    by_text = np.argsort(distinct_row, kind="stable")
    start = np.concatenate([[0], np.cumsum(size)])
    a, b = code[:n], code[n:]
    counts = size[a]
    pair_of = np.repeat(np.arange(n), counts)
    offsets = np.repeat(start[a] - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    mine = distinct_hash[by_text[np.arange(counts.sum()) + offsets]]  # each pair's first text's shingles
    query = splitmix64(mine ^ (np.repeat(b, counts).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)))
    at = np.minimum(np.searchsorted(keyed, query), max(len(keyed) - 1, 0))
    hit = keyed[at] == query if len(keyed) else np.zeros(len(query), bool)
    common = np.bincount(pair_of[hit], minlength=n)
    union = size[a] + size[b] - common
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, common / np.maximum(union, 1), 0.0)


CLUSTER_EDGES = [2, 3, 5, 10, 20, 50, 100, 1000]
"""Edges of the report's histogram of near-duplicate cluster sizes (the last bucket is open)."""


def near_duplicate_clusters(verified: pa.Table, examples: int = 3) -> tuple[pa.Table, dict]:
    """The last step, over every verified pair: the clusters (connected components), every member
    but the smallest session id dropped (``ND_DROPPED``), and for the report the histogram of cluster
    sizes and the ``examples`` largest clusters (ties: the smallest kept id) with their texts. The
    links of ``near_duplicate_session`` (ids prefixed with ``SESSION_KIND``) cluster apart: their
    members are dropped with that reason, their prefix taken off, their summary the ``sessions`` entry."""
    is_session = _np(pc.starts_with(as_array(verified.column("a")), SESSION_KIND), False).astype(bool)
    replies = verified.filter(pa.array(~is_session)) if is_session.any() else verified  # (a filter copies the texts)
    dropped, summary = _clusters(replies, examples, "near_duplicate_response")
    if is_session.any():
        by_session, summary["sessions"] = _clusters(verified.filter(pa.array(is_session)), examples, "near_duplicate_session",
                                                    strip=len(SESSION_KIND))
        dropped = pa.concat_tables([dropped, by_session])
    return dropped, summary


def _clusters(verified: pa.Table, examples: int, reason: str, strip: int = 0) -> tuple[pa.Table, dict]:
    """``near_duplicate_clusters`` for the links of one rule (``reason``), their ids without their
    first ``strip`` characters (a prefix all share: the order among them is unchanged)."""
    a, b = as_array(verified.column("a")), as_array(verified.column("b"))
    if strip:
        a, b = pc.utf8_slice_codeunits(a, strip), pc.utf8_slice_codeunits(b, strip)
    keys = neardup.id_order(pa.concat_arrays([a, b]))  # order keys (earliest_keys): the earliest copy is the root
    ids = plain_ids(pa.concat_arrays([a, b]))
    member, root = neardup.component_rows(keys, len(a))
    members, roots = pc.take(ids, pa.array(member, pa.int64())), pc.take(ids, pa.array(root, pa.int64()))
    buckets = np.concatenate([_np(verified.column("a_bucket")), _np(verified.column("b_bucket"))])
    dropped = pa.table({"bucket": buckets[member], "session_id": members, "duplicate_of": roots,
                        "reason": pa.repeat(reason, len(member))}, schema=ND_DROPPED)
    summary = {"clusters": 0, "sizes": dict.fromkeys(histogram_labels(CLUSTER_EDGES), 0), "examples": []}
    if len(members):
        kept, codes = np.unique(root, return_inverse=True)  # the clusters, by their kept id's place
        sizes = np.bincount(codes) + 1  # the kept one
        summary["clusters"] = int(len(kept))
        hist = np.bincount(np.searchsorted(CLUSTER_EDGES, sizes, side="right") - 1, minlength=len(CLUSTER_EDGES))
        summary["sizes"] = dict(zip(histogram_labels(CLUSTER_EDGES), hist.tolist()))
        names = pc.take(ids, pa.array(kept, pa.int64()))
        top = np.lexsort((keys[kept], -sizes))[:examples]  # the largest, ties: the smallest kept id
        texts = (verified.column("a_text"), verified.column("b_text"))  # (the examples' only: not joined into one column)
        has_text = np.concatenate([_np(pc.is_valid(t)) for t in texts])
        for i in top:
            kept_id = names[int(i)].as_py()
            in_cluster = np.flatnonzero(codes == i)[:3]  # (members are sorted)
            shown = [kept_id] + pc.take(members, pa.array(in_cluster, pa.int64())).to_pylist()
            text_of = {}  # (links between equal texts carry none: the first link with a text)
            for sid in shown:
                hit = np.flatnonzero(pc.fill_null(pc.equal(ids, sid), False).to_numpy(zero_copy_only=False) & has_text)
                if len(hit):
                    side, at = divmod(int(hit[0]), verified.num_rows)
                    text_of[sid] = texts[side][at].as_py()
            same = "(the kept text, once normalised)"
            summary["examples"].append({"kept": kept_id, "kept_text": text_of.get(kept_id, same), "size": int(sizes[i]),
                                        "dropped": [{"session_id": m, "text": text_of.get(m, same)} for m in shown[1:]]})
    return dropped, summary


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


def histogram_labels(edges: list[int]) -> list[str]:
    """A histogram's bin labels from its lower edges: ``3`` for a one-value bin, ``4-7``, and ``N+``
    for the last (the report's turns, words and cluster sizes)."""
    return [f"{edges[i]}" if edges[i + 1] - edges[i] == 1 else f"{edges[i]}-{edges[i + 1] - 1}"
            for i in range(len(edges) - 1)] + [f"{edges[-1]}+"]


def frequent_trigrams(hashes: np.ndarray, counts: np.ndarray, min_count: int) -> np.ndarray:
    """Sorted trigram hashes whose summed count is above ``min_count`` (partial counts in, any order)."""
    if not len(hashes):
        return np.zeros(0, np.uint64)
    unique, inverse = np.unique(hashes, return_inverse=True)
    totals = np.bincount(inverse, weights=counts, minlength=len(unique))
    return unique[totals > min_count]
