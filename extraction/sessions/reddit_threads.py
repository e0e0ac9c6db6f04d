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
2. ``corpus_rules.resolve_duplicates``: for one range of response hashes, across every bucket, the duplicate
   sessions and responses (the earliest session of each group stays: ``earliest_keys``).
3. ``corpus_rules.finish_bucket``: the corpus decisions applied (``bland`` from the frequent trigrams,
   then the duplicates), and the report's counts for the bucket.

Nothing here knows about Spark, paths or files: ``extraction.sessions.job`` reads and writes and runs
the buckets as Spark tasks. The plain-Python reference of all of it is ``tests.kit.reference``;
``tests/extraction/test_reddit_threads.py`` checks the two agree.

Parents are looked up within the thread (same ``link_id``): a comment whose parent is in another
thread counts as having a missing parent (Reddit never links across threads).
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from reddit_pretrain.layout import TEST, TRAIN, VALID

from extraction.sessions.chains import ALL_SESSION_REASONS, ChainsConfig, SplitConfig, hash_split
from extraction.sessions.features import (Texts, as_array, combine_hashes, comment_words, is_absent, text_features,
                                          text_hashes, turn_cut, unescape_html)
from extraction.sessions.filters import TURN_RULES, FiltersConfig, LoadedRules
from extraction.sessions.language import UNDETERMINED, common_word_counts, languages_of
from extraction.sessions.privacy import KINDS as PII_KINDS, Privacy, pseudonymize_column, scrub_column
from extraction.sessions.thread_keys import _np, cycle_members, dedupe_by_id, earliest_keys, longest_ends

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


class Timer:
    """Seconds per stage, summed over the tasks into the report."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self._last
        self._last = now


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
    parent: np.ndarray
    """Each comment's parent comment row (-1: none, in another thread, or a link on a cycle)."""


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
                     privacy: Privacy | None = None, earlier: pa.Array | None = None,
                     rows: int | None = None) -> tuple[pa.Table, dict, np.ndarray, np.ndarray]:
    """Step 1 for one bucket. Returns (candidate sessions sorted by session_id, stats, trigram
    hashes, their counts); the candidates carry ``drop_reason`` (null = alive so far), ``split``
    and the private columns ``_rows`` (turn row indices), ``_words``, ``_rkey``, ``_skey``.
    ``privacy`` (``extraction.sessions.privacy``): the rules read the scrubbed text, the sessions store it
    with placeholders, and the authors are pseudonymised after the turn rules (bots) read them.

    ``earlier`` (a corpus's batch, ``extraction.sessions.batches``): the ids of the comments that
    earlier batches hold, among ``comments`` as the earlier turns of this batch's sessions. Only
    the sessions whose last turn is a comment of this batch are candidates; the stats, the trigram
    counts and the accounting cover this batch's comments alone (``rows``: its rows read), and
    ``stats["replied_later"]`` counts the earlier batches' session ends that gained a reply here."""
    timer = timer or Timer()
    chains.validate()
    privacy = privacy or Privacy(False, False, "")
    pii = dict.fromkeys(PII_KINDS, 0)
    comments, body, repeats, new = read_comments(comments, filters, privacy, pii, earlier)
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
    grams, gram_counts = bucket_trigrams(texts, filters, new)
    del texts
    timer.lap("features")
    walk = walk_chains(comments, cut, long_turn, chains)
    replied_later = 0
    if new < comments.num_rows:  # a batch: its sessions end at its own comments
        replied_later = _replied_later(walk, new, chains)
        keep = walk.ends < new
        walk = Walk(walk.ends[keep], walk.M[keep], walk.end_code[keep], walk.num_turns[keep], walk.valid, walk.on_cycle,
                    walk.link, walk.link_code, walk.parent)
    titles = attach_titles(submissions, comments, walk, chains, filters, privacy, pii)
    timer.lap("chains")
    reason, view, ext = session_rules(comments, body, walk, titles, feats, common_words, chains, filters, rules)
    total_words = view.total("n_words")
    timer.lap("session rules")
    session_split = split_sessions(comments, walk, split)
    timer.lap("split")
    table = session_table(comments, body, walk, titles, ext, reason, view, total_words, session_split, chains, filters, privacy)
    rows = len(body) + repeats if rows is None else rows
    stats = {"rows": rows, "comments": new, "duplicate_ids": rows - new, "valid": int(walk.valid[:new].sum()),
             "parent_cycles": int(walk.on_cycle[:new].sum()), "pii": pii,
             "cut_by_turn_rule": {r: int((cut[:new] == i + 1).sum()) for i, r in enumerate(TURN_RULES)},
             "candidates": len(walk.ends)}
    if new < len(body) or earlier is not None:
        stats["earlier_comments"] = len(body) - new
        stats["replied_later"] = replied_later
    timer.lap("sessions")
    return table, stats, grams, gram_counts.astype(np.int64)


def read_comments(comments: pa.Table, filters: FiltersConfig, privacy: Privacy, pii: dict,
                  earlier: pa.Array | None = None) -> tuple[pa.Table, pa.Array, int, int]:
    """One row per id, HTML entities unescaped, PII scrubbed (counted into ``pii``). Returns the
    comments as the sessions store them, the bodies as the rules read them, the repeated ids, and
    how many of the rows are new: all of them, or (``earlier``: ids an earlier batch holds) those
    whose id is not in ``earlier``, ordered first (the earlier batches' rows after them, their
    PII not counted again)."""
    for name in MARK_COLUMNS:
        if name not in comments.column_names:
            comments = comments.append_column(name, pa.nulls(comments.num_rows, _MARK_TYPES[name]))
    comments, repeats = dedupe_by_id(comments.select(COMMENT_COLUMNS + MARK_COLUMNS))
    new = comments.num_rows
    if earlier is not None:
        old = _np(pc.is_in(comments.column("id"), value_set=as_array(earlier)), False)
        new = int((~old).sum())
        if old[:new].any():  # (as read, the earlier rows come last: moved only when a repeated id reordered them)
            comments = comments.take(pa.array(np.argsort(old, kind="stable"), pa.int64()))
    if filters.unescape_html:
        comments = comments.set_column(comments.column_names.index("body"), "body", unescape_html(comments.column("body")))
    body = as_array(comments.column("body"))
    if privacy.active:  # the rules read ``body``; the sessions keep ``stored``
        parts = [scrub_column(body.slice(0, new), privacy)]
        if new < len(body):
            parts.append(scrub_column(body.slice(new), privacy))
        stored = pa.concat_arrays([as_array(p[0]) for p in parts])
        body = pa.concat_arrays([as_array(p[1]) for p in parts])
        comments = comments.set_column(comments.column_names.index("body"), "body", stored)
        for kind in pii:
            pii[kind] += parts[0][2][kind]
    return comments, body, repeats, new


def _replied_later(walk: Walk, new: int, chains: ChainsConfig) -> int:
    """Comments of earlier batches (rows ``new`` on) that ended a session there, a leaf of them,
    and have a reply in this batch: sessions a single run over all the months would not emit (the
    parent links of the walk: a reply it would have walked through)."""
    if chains.mode not in ("leaves", "longest"):
        return 0
    parent = walk.parent
    n = len(parent)
    child = walk.valid & (parent >= 0)
    rows = np.arange(n)
    had_child, gained = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    had_child[parent[child & (rows >= new)]] = True
    gained[parent[child & (rows < new)]] = True
    return int((walk.valid & (rows >= new) & ~had_child & gained).sum())


def bucket_trigrams(texts: Texts, filters: FiltersConfig, rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The bucket's distinct word-trigram hashes and their counts (the ``bland`` rule's input; empty when it is off),
    of the first ``rows`` texts (all by default)."""
    if not filters.bland:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    hashes, row = texts.words.trigram_hashes()
    if rows is not None:
        hashes = hashes[row < rows]
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
    return Walk(ends, M, end_code, (M >= 0).sum(axis=1), valid, on_cycle, link, link_code, pidx)


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


