"""DialoGPT's filter rules (and a few more) as plain Python, tested without Spark.

Two kinds of rule:

* turn rules judge one comment. A comment that fails one cannot be a turn: the chain is cut
  where it stands, and what remains of the chain is still used when long enough. They are
  ``deleted`` (``[deleted]``/``[removed]`` bodies), ``bots`` and ``quotes``.
* session rules judge a whole session (context turns + the response, its last turn); a session
  that fails one is set aside with the name of the first rule it failed, in ``SESSION_RULES``
  order. ``bland`` and the duplicate rules need the whole corpus and are applied by Spark
  (``extraction.chains``), after these.

Every rule has a switch and its thresholds in ``FiltersConfig`` (``conf/extract.yaml``), and
lists are plain files whose paths the user sets (examples in ``conf/lists/``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Callable

from extraction import CONF_DIR

@dataclass
class FiltersConfig:
    """Which rules run and their thresholds. DialoGPT's published values are the defaults."""

    deleted: bool = True
    """Turn rule: body ``[deleted]`` or ``[removed]`` cuts the chain (released extractor)."""
    bots: bool = True
    """Turn rule: bot authors cut the chain (listed in ``bot_authors_path`` or ending in a suffix)."""
    bot_authors_path: str = "lists/bot_authors.txt"
    bot_suffixes: list[str] = field(default_factory=lambda: ["bot", "_bot", "-bot"])
    quotes: bool = True
    """Turn rule: a comment quoting another (``>`` or ``&gt;`` at a line start) cuts the chain."""

    subreddit_blocklist: bool = True
    subreddit_blocklist_path: str = "lists/subreddit_blocklist.txt"
    nsfw: bool = True
    """Drops sessions whose submission is ``over_18`` or whose subreddit is in ``nsfw_subreddits_path``."""
    nsfw_subreddits_path: str = "lists/nsfw_subreddits.txt"
    url: bool = True
    """DialoGPT 1: a URL in the source or the target."""
    markup: bool = True
    """DialoGPT 4: the response contains one of ``markup_chars`` (the paper: ``[ ]``; the extractor adds ``( )``)."""
    markup_chars: str = "[]()"
    max_words: bool = True
    """DialoGPT 5: source + target longer than ``max_words_total`` words."""
    max_words_total: int = 200
    long_word: bool = True
    """Released extractor: any turn with a word longer than ``max_word_chars`` characters."""
    max_word_chars: int = 30
    shouting: bool = True
    """Released extractor: any turn matching ``shouting_pattern``."""
    shouting_pattern: str = "[A-Z]{5,}"
    min_words: bool = True
    """Released extractor: a response of fewer than ``min_response_words`` words."""
    min_response_words: int = 2
    word_repeat: bool = True
    """DialoGPT 2: the response repeats a word ``word_repeat_times`` times in a row."""
    word_repeat_times: int = 3
    common_word: bool = True
    """DialoGPT 3: the response has none of the words in ``common_words_path`` (likely not English)."""
    common_words_path: str = "lists/top50_english.txt"
    offensive: bool = True
    """DialoGPT 6: the response contains a phrase from ``offensive_phrases_path``."""
    offensive_phrases_path: str = "lists/offensive_phrases.txt"
    min_score: bool = True
    """Released extractor: the response's score is below ``min_target_score`` (a missing score passes)."""
    min_target_score: int = 1

    bland: bool = True
    """DialoGPT 7: at least ``bland_fraction`` of the response's word trigrams occur more than
    ``bland_min_count`` times among all comment bodies of the input (a distributed count)."""
    bland_min_count: int = 1000
    bland_fraction: float = 0.9
    duplicate_session: bool = True
    """Exact duplicate sessions (same turns): the one with the smallest session id is kept."""
    duplicate_response: bool = True
    """Exact duplicate responses: the session with the smallest session id is kept."""

    def validate(self) -> None:
        if self.max_words_total < 1 or self.max_word_chars < 1 or self.word_repeat_times < 2:
            raise ValueError("max_words_total, max_word_chars must be >= 1 and word_repeat_times >= 2")
        if not 0 < self.bland_fraction <= 1:
            raise ValueError("bland_fraction must be in (0, 1]")
        re.compile(self.shouting_pattern)


def resolve_list_path(path: str) -> str:
    """A list path as given, else relative to the project's ``conf/`` folder."""
    if "://" in path or os.path.isabs(path) or os.path.exists(path):
        return path
    return os.path.join(CONF_DIR, path)


def read_list(path: str) -> list[str]:
    """Lines of a list file, lower-cased, without blanks and ``#`` comments."""
    import fsspec

    with fsspec.open(resolve_list_path(path), "rt", encoding="utf-8") as f:
        items = [line.strip().lower() for line in f]
    return [item for item in items if item and not item.startswith("#")]


_URL = re.compile(r"https?://|www\.|\b[\w-]+\.(?:com|org|net|io|co|uk|de|gov|edu|ly|gl|be|me|tv)(?:/|\b)", re.I)
_WORD_CHARS = re.compile(r"[a-z']+")
_QUOTE = re.compile(r"(?:^|\n)\s*(?:>|&gt;)")


def words(text: str) -> list[str]:
    """Whitespace-separated words: the unit of every word count and trigram here."""
    return text.split()


@dataclass(frozen=True)
class Rule:
    """One rule, declared once. ``name`` is its switch in ``FiltersConfig``, its ``drop_reason``
    (``cut_<name>`` as a chain end for turn rules) and its row in the report; the order of ``RULES``
    is the order in which rules are tried (a session is counted under the first it fails)."""

    name: str
    kind: str
    """``turn`` (one comment; failing cuts the chain), ``session`` or ``corpus`` (needs the whole input)."""
    reads: str
    """Which text it reads: ``comment``, ``author``, ``subreddit``, ``response``, ``any turn``
    (the title included), ``comment turns`` (every turn but a title), ``corpus``."""
    feature: str | None
    """The per-comment feature (``extraction.features.text_features``) the vectorised form reads, if any."""
    thresholds: tuple[str, ...] = ()
    """The ``FiltersConfig`` fields that tune it."""
    fails: Callable | None = None
    """Session rules: the vectorised test, ``fails(view) -> bool array`` over a bucket's sessions
    (``extraction.threads.SessionView``); ``Rules.session_reason`` is its plain-Python reference."""


RULES: tuple[Rule, ...] = (
    Rule("deleted", "turn", "comment", "cut"),
    Rule("bots", "turn", "author", "cut", ("bot_authors_path", "bot_suffixes")),
    Rule("quotes", "turn", "comment", "cut"),
    Rule("subreddit_blocklist", "session", "subreddit", None, ("subreddit_blocklist_path",),
         lambda v: v.subreddit_in(v.rules.blocked_subreddits)),
    Rule("nsfw", "session", "subreddit and submission", None, ("nsfw_subreddits_path",),
         lambda v: v.over_18 | v.subreddit_in(v.rules.nsfw_subreddits)),
    Rule("url", "session", "any turn", "url", (), lambda v: v.any_turn("url")),
    Rule("markup", "session", "response", "markup", ("markup_chars",), lambda v: v.response("markup")),
    Rule("max_words", "session", "any turn", "n_words", ("max_words_total",),
         lambda v: v.total("n_words") > v.cfg.max_words_total),
    Rule("long_word", "session", "comment turns", "long_word", ("max_word_chars",), lambda v: v.any_turn("long_word")),
    Rule("shouting", "session", "comment turns", "shouting", ("shouting_pattern",), lambda v: v.any_turn("shouting")),
    Rule("min_words", "session", "response", "n_words", ("min_response_words",),
         lambda v: v.response("n_words") < v.cfg.min_response_words),
    Rule("word_repeat", "session", "response", "word_repeat", ("word_repeat_times",), lambda v: v.response("word_repeat")),
    Rule("common_word", "session", "response", "common_word", ("common_words_path",), lambda v: ~v.response("common_word")),
    Rule("offensive", "session", "response", "offensive", ("offensive_phrases_path",), lambda v: v.response("offensive")),
    Rule("min_score", "session", "response", None, ("min_target_score",),
         lambda v: v.response_score_known & (v.response_score < v.cfg.min_target_score)),
    Rule("bland", "corpus", "response", "trigrams", ("bland_min_count", "bland_fraction")),
    Rule("duplicate_session", "corpus", "any turn", None),
    Rule("duplicate_response", "corpus", "response", None),
)
RULES_BY_NAME = {rule.name: rule for rule in RULES}
TURN_RULES = tuple(r.name for r in RULES if r.kind == "turn")
SESSION_RULES = tuple(r.name for r in RULES if r.kind == "session")
CORPUS_RULES = tuple(r.name for r in RULES if r.kind == "corpus")
"""Applied after the session rules, in this order."""


@dataclass
class Rules:
    """The rules of a FiltersConfig with their lists loaded: the plain-Python reference.

    ``turn_reason`` and ``session_reason`` judge one comment or one session; the ``is_``/``has_``
    methods are the per-text checks they are made of, which ``extraction.features`` also calls
    for the texts its vectorised forms cannot judge exactly like Python."""

    cfg: FiltersConfig
    bot_authors: frozenset[str] = frozenset()
    blocked_subreddits: frozenset[str] = frozenset()
    nsfw_subreddits: frozenset[str] = frozenset()
    common_words: frozenset[str] = frozenset()
    offensive: re.Pattern | None = None
    url_pattern: re.Pattern = _URL

    @classmethod
    def load(cls, cfg: FiltersConfig) -> "Rules":
        cfg.validate()
        phrases = read_list(cfg.offensive_phrases_path) if cfg.offensive else []
        return cls(
            cfg,
            frozenset(read_list(cfg.bot_authors_path)) if cfg.bots else frozenset(),
            frozenset(read_list(cfg.subreddit_blocklist_path)) if cfg.subreddit_blocklist else frozenset(),
            frozenset(read_list(cfg.nsfw_subreddits_path)) if cfg.nsfw else frozenset(),
            frozenset(read_list(cfg.common_words_path)) if cfg.common_word else frozenset(),
            re.compile(r"\b(?:" + "|".join(re.escape(p) for p in phrases) + r")\b") if phrases else None,
        )

    # -- per-text checks ---------------------------------------------------------------------

    def is_deleted(self, body: str | None) -> bool:
        return body is None or body.strip() in ("[deleted]", "[removed]")

    def is_bot(self, author: str | None) -> bool:
        if author is None:
            return False
        name = author.lower()
        return name in self.bot_authors or any(name.endswith(s) for s in self.cfg.bot_suffixes)

    def is_quote(self, body: str) -> bool:
        return _QUOTE.search(body) is not None

    def has_url(self, text: str) -> bool:
        return self.url_pattern.search(text) is not None

    def has_markup(self, text: str) -> bool:
        return any(ch in text for ch in self.cfg.markup_chars)

    def has_long_word(self, text: str) -> bool:
        return any(len(w) > self.cfg.max_word_chars for w in words(text))

    def is_shouting(self, text: str) -> bool:
        return re.search(self.cfg.shouting_pattern, text) is not None

    def has_repeat(self, text: str) -> bool:
        return _has_repeat(words(text), self.cfg.word_repeat_times)

    def has_common_word(self, text: str) -> bool:
        return bool(set(_WORD_CHARS.findall(text.lower())) & self.common_words)

    def is_offensive(self, text: str) -> bool:
        return self.offensive is not None and self.offensive.search(text.lower()) is not None

    def subreddit_reason(self, subreddit: str | None, over_18: bool | None) -> str | None:
        sub = (subreddit or "").lower()
        if self.cfg.subreddit_blocklist and sub in self.blocked_subreddits:
            return "subreddit_blocklist"
        if self.cfg.nsfw and (over_18 is True or sub in self.nsfw_subreddits):
            return "nsfw"
        return None

    # -- turn rules --------------------------------------------------------------------------

    def turn_reason(self, body: str | None, author: str | None) -> str | None:
        """Name of the first turn rule this comment fails, or None if it can be a turn."""
        cfg = self.cfg
        if cfg.deleted and self.is_deleted(body):
            return "deleted"
        if cfg.bots and self.is_bot(author):
            return "bots"
        if cfg.quotes and body is not None and self.is_quote(body):
            return "quotes"
        return None

    # -- session rules -----------------------------------------------------------------------

    def session_reason(
        self,
        turns: list[str],
        subreddit: str | None,
        over_18: bool | None,
        response_score: int | None,
        first_turn_is_title: bool = False,
    ) -> str | None:
        """Name of the first session rule (SESSION_RULES order) the session fails, or None.

        ``turns`` are the texts, the response last. A submission title used as the first turn
        is context like any other, but the word-level rules for "any turn" skip it (titles are
        not comments and DialoGPT's rules were written for comments).
        """
        cfg = self.cfg
        response = turns[-1]
        comment_turns = turns[1:] if first_turn_is_title else turns
        reason = self.subreddit_reason(subreddit, over_18)
        if reason:
            return reason
        if cfg.url and any(self.has_url(t) for t in turns):
            return "url"
        if cfg.markup and self.has_markup(response):
            return "markup"
        if cfg.max_words and sum(len(words(t)) for t in turns) > cfg.max_words_total:
            return "max_words"
        if cfg.long_word and any(self.has_long_word(t) for t in comment_turns):
            return "long_word"
        if cfg.shouting and any(self.is_shouting(t) for t in comment_turns):
            return "shouting"
        if cfg.min_words and len(words(response)) < cfg.min_response_words:
            return "min_words"
        if cfg.word_repeat and self.has_repeat(response):
            return "word_repeat"
        if cfg.common_word and not self.has_common_word(response):
            return "common_word"
        if cfg.offensive and self.is_offensive(response):
            return "offensive"
        if cfg.min_score and response_score is not None and response_score < cfg.min_target_score:
            return "min_score"
        return None


def _has_repeat(tokens: list[str], times: int) -> bool:
    run = 1
    for previous, current in zip(tokens, tokens[1:]):
        run = run + 1 if current.lower() == previous.lower() else 1
        if run >= times:
            return True
    return False


def trigrams(text: str) -> list[str]:
    """Lower-cased word trigrams of a text, as the blandness rule counts them."""
    ws = text.lower().split()
    return [f"{a} {b} {c}" for a, b, c in zip(ws, ws[1:], ws[2:])]
