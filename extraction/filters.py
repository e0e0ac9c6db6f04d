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

import numpy as np

from reddit_pretrain import CONF_DIR

@dataclass
class FiltersConfig:
    """Which rules run and their thresholds. DialoGPT's published values are the defaults."""

    unescape_html: bool = True
    """Pushshift texts are HTML-escaped as Reddit's API returns them (``&amp;``, ``&lt;``, ``&gt;``):
    undo that once, before every rule and in the stored sessions."""
    normalize: str = "none"
    """``none``: rules read the clean text. ``dialogpt``: the rules that read words and characters
    (url, markup, max_words, long_word, shouting, min_words, word_repeat) judge each turn as DialoGPT's
    released extractor normalised it (``extraction.dialogpt``); the sessions keep the clean text."""
    deleted: bool = True
    """Turn rule: a body in ``deleted_bodies`` (or none at all) cuts the chain."""
    deleted_bodies: list[str] = field(default_factory=lambda: ["[deleted]", "[removed]"])
    """The released extractor removes ``[deleted]`` only."""
    bots: bool = True
    """Turn rule: bot authors cut the chain (listed in ``bot_authors_path`` or ending in a suffix)."""
    bot_authors_path: str = "lists/bot_authors.txt"
    bot_suffixes: list[str] = field(default_factory=lambda: ["bot", "_bot", "-bot"])
    quotes: bool = True
    """Turn rule: a comment quoting another (``>`` or ``&gt;`` at a line start) cuts the chain."""
    quotes_anywhere: bool = False
    """The quote rule matches ``>`` or ``&gt;`` anywhere in the body (the released extractor)."""
    short_comment: bool = False
    """Turn rule: a comment of fewer than ``min_comment_words`` whitespace words (backslashes
    removed) cuts the chain (the released extractor: 2)."""
    min_comment_words: int = 2
    thread_comments: bool = False
    """Drops every session of a thread whose submission says fewer than ``min_thread_comments``
    comments, or is missing (the released extractor reads only such threads). Needs submissions."""
    min_thread_comments: int = 2

    subreddit_blocklist: bool = True
    subreddit_blocklist_path: str = "lists/subreddit_blocklist.txt"
    nsfw: bool = True
    """Drops sessions whose submission is ``over_18`` or whose subreddit is in ``nsfw_subreddits_path``."""
    nsfw_subreddits_path: str = "lists/nsfw_subreddits.txt"
    language: bool = True
    """Drops a session whose comment turns are, together, in a language not in ``languages`` with a
    confidence of at least ``language_min_confidence`` (``extraction.language``: a cheap English pass,
    then CLD2). Turns of fewer than ``language_min_letters`` letters are undetermined and count for
    nothing, so "lol" or "same" never make a session foreign."""
    languages: list[str] = field(default_factory=lambda: ["en"])
    """ISO 639-1 codes of the languages kept."""
    language_min_confidence: float = 0.5
    language_min_letters: int = 20
    url: bool = True
    """DialoGPT 1: a URL in the source or the target."""
    markup: bool = True
    """DialoGPT 4: the response contains one of ``markup_chars`` (the paper: ``[ ]``; the extractor adds ``( )``)."""
    markup_chars: str = "[]()"
    markup_turns: str = "response"
    """Which turns the markup rule reads: ``response`` (the paper) or ``any`` comment turn (the released extractor)."""
    max_words: bool = True
    """DialoGPT 5: source + target longer than ``max_words_total`` words."""
    max_words_total: int = 200
    long_word: bool = True
    """Released extractor: any turn with a word longer than ``max_word_chars`` characters."""
    max_word_chars: int = 30
    long_word_turns: str = "any"
    """Which turns the long-word rule reads: ``any`` comment turn, or the ``response`` (the released extractor)."""
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
    missing_score_passes: bool = True
    """A response without a score passes the score rule; false counts it as 0 (the released extractor)."""

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
        if self.language and (not self.languages or not 0 <= self.language_min_confidence <= 1 or self.language_min_letters < 1):
            raise ValueError("filters.languages must name a language, language_min_confidence be in [0, 1] and "
                             "language_min_letters >= 1")
        re.compile(self.shouting_pattern)
        for name, value, allowed in (("normalize", self.normalize, ("none", "dialogpt")),
                                     ("markup_turns", self.markup_turns, ("response", "any")),
                                     ("long_word_turns", self.long_word_turns, ("any", "response"))):
            if value not in allowed:
                raise ValueError(f"filters.{name} must be one of {allowed}, not {value!r}")


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
_WORD_CHARS = re.compile(r"[a-z]+")
"""The common-word rule's words: runs of letters, so a contraction matches its parts ("it's": "it", "s")."""
_QUOTE = re.compile(r"(?:^|\n)\s*(?:>|&gt;)")


_HTML_ESCAPES = (("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&"))
"""Reddit's escaping, undone in this order (``&amp;`` last, so ``&amp;gt;`` becomes ``&gt;``)."""
ABSENT_TEXTS = ("[removed]", "[deleted]")
"""Bodies and self texts that stand for a text that is gone."""


def unescape_html(text: str | None) -> str | None:
    """Undoes Reddit's HTML escaping of a text once."""
    if text is None:
        return None
    for escaped, plain in _HTML_ESCAPES:
        text = text.replace(escaped, plain)
    return text


def escape_html(text: str) -> str:
    """Reddit's escaping again (for rules that must see the text as the dumps hold it): the same
    table, backwards (``&`` first)."""
    for escaped, plain in reversed(_HTML_ESCAPES):
        text = text.replace(plain, escaped)
    return text


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

    def reads_in(self, cfg: "FiltersConfig") -> str:
        """What this rule reads under ``cfg`` (``off`` when switched off), for the docs and the report."""
        if not getattr(cfg, self.name):
            return "off"
        turns = {"markup": cfg.markup_turns, "long_word": cfg.long_word_turns}.get(self.name)
        reads = self.reads.split(" (")[0] if turns is None else "response" if turns == "response" else "comment turns"
        if cfg.normalize == "dialogpt" and self.name in NORMALIZED_RULES:
            reads += ", in DialoGPT's normalised form"
        return reads


def _turns(v, feature: str, which: str) -> np.ndarray:
    return v.response(feature) if which == "response" else v.any_turn(feature)


RULES: tuple[Rule, ...] = (
    Rule("deleted", "turn", "comment", "cut", ("deleted_bodies",)),
    Rule("bots", "turn", "author", "cut", ("bot_authors_path", "bot_suffixes")),
    Rule("quotes", "turn", "comment", "cut", ("quotes_anywhere",)),
    Rule("short_comment", "turn", "comment", "cut", ("min_comment_words",)),
    Rule("thread_comments", "session", "submission", None, ("min_thread_comments",),
         lambda v: v.thread_comments < v.cfg.min_thread_comments if v.thread_comments is not None else v.none()),
    Rule("subreddit_blocklist", "session", "subreddit", None, ("subreddit_blocklist_path",),
         lambda v: v.subreddit_in(v.rules.blocked_subreddits)),
    Rule("nsfw", "session", "subreddit and submission", None, ("nsfw_subreddits_path",),
         lambda v: v.over_18 | v.subreddit_in(v.rules.nsfw_subreddits)),
    Rule("language", "session", "comment turns", None, ("languages", "language_min_confidence", "language_min_letters"),
         lambda v: v.foreign),
    Rule("url", "session", "any turn", "url", (), lambda v: v.any_turn("url")),
    Rule("markup", "session", "response (markup_turns)", "markup", ("markup_chars", "markup_turns"),
         lambda v: _turns(v, "markup", v.cfg.markup_turns)),
    Rule("max_words", "session", "any turn", "n_words", ("max_words_total",),
         lambda v: v.total("n_words") + (2 * v.num_turns - 2 if v.cfg.normalize == "dialogpt" else 0) > v.cfg.max_words_total),
    Rule("long_word", "session", "comment turns (long_word_turns)", "long_word", ("max_word_chars", "long_word_turns"),
         lambda v: _turns(v, "long_word", v.cfg.long_word_turns)),
    Rule("shouting", "session", "comment turns", "shouting", ("shouting_pattern",), lambda v: v.any_turn("shouting")),
    Rule("min_words", "session", "response", "n_words", ("min_response_words",),
         lambda v: v.response("n_words") < v.cfg.min_response_words),
    Rule("word_repeat", "session", "response", "word_repeat", ("word_repeat_times",), lambda v: v.response("word_repeat")),
    Rule("common_word", "session", "response", "common_word", ("common_words_path",), lambda v: ~v.response("common_word")),
    Rule("offensive", "session", "response", "offensive", ("offensive_phrases_path",), lambda v: v.response("offensive")),
    Rule("min_score", "session", "response", None, ("min_target_score", "missing_score_passes"),
         lambda v: (v.response_score_known | ~np.bool_(v.cfg.missing_score_passes)) & (v.response_score < v.cfg.min_target_score)),
    Rule("bland", "corpus", "response", "trigrams", ("bland_min_count", "bland_fraction")),
    Rule("duplicate_session", "corpus", "any turn", None),
    Rule("duplicate_response", "corpus", "response", None),
)
RULES_BY_NAME = {rule.name: rule for rule in RULES}
NORMALIZED_RULES = ("url", "markup", "max_words", "long_word", "shouting", "min_words", "word_repeat")
"""The rules that judge the normalised form with ``normalize=dialogpt`` (``extraction.dialogpt``)."""
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
    english_words: frozenset[str] = frozenset()
    """The language rule's cheap English pass reads the common-word list too."""
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
            english_words=frozenset(read_list(cfg.common_words_path)) if cfg.language else frozenset(),
        )

    # -- per-text checks ---------------------------------------------------------------------

    def is_deleted(self, body: str | None) -> bool:
        return body is None or body.strip() in self.cfg.deleted_bodies

    def is_bot(self, author: str | None) -> bool:
        if author is None:
            return False
        name = author.lower()
        return name in self.bot_authors or any(name.endswith(s) for s in self.cfg.bot_suffixes)

    def is_quote(self, body: str) -> bool:
        if self.cfg.quotes_anywhere:
            return ">" in body or "&gt;" in body
        return _QUOTE.search(body) is not None

    def is_short(self, body: str) -> bool:
        from extraction.dialogpt import comment_words

        return comment_words(body) < self.cfg.min_comment_words

    def normalized_features(self, text: str) -> dict:
        """``filters.normalize=dialogpt``: the rules' features of one turn in the released extractor's form."""
        from extraction import dialogpt

        raw = escape_html(text) if self.cfg.unescape_html else text
        cfg = self.cfg
        return dialogpt.features(dialogpt.normalize(raw), cfg.max_word_chars, cfg.word_repeat_times, cfg.markup_chars,
                                 cfg.shouting_pattern)

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

    def session_language(self, comment_turns: list[str]) -> tuple[str, float]:
        """(language, confidence) of a session from its comment turns (``extraction.language``)."""
        from extraction.language import comment_language, session_language

        per_turn = [comment_language(t, self.english_words, self.cfg.language_min_letters) for t in comment_turns]
        return session_language([p[0] for p in per_turn], [p[1] for p in per_turn], [p[2] for p in per_turn])

    def is_foreign(self, comment_turns: list[str]) -> bool:
        from extraction.language import UNDETERMINED

        language, confidence = self.session_language(comment_turns)
        return language != UNDETERMINED and language not in self.cfg.languages and confidence >= self.cfg.language_min_confidence

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
        if cfg.short_comment and body is not None and self.is_short(body):
            return "short_comment"
        return None

    # -- session rules -----------------------------------------------------------------------

    def session_reason(
        self,
        turns: list[str],
        subreddit: str | None,
        over_18: bool | None,
        response_score: int | None,
        first_turn_is_title: bool = False,
        thread_comments: int | None = None,
    ) -> str | None:
        """Name of the first session rule (SESSION_RULES order) the session fails, or None.

        ``turns`` are the texts, the response last. A submission title used as the first turn
        is context like any other, but the word-level rules for "any turn" skip it (titles are
        not comments and DialoGPT's rules were written for comments). ``thread_comments``: the
        submission's ``num_comments`` (-1 when the submission is missing; None without submissions).
        """
        cfg = self.cfg
        response = turns[-1]
        if cfg.thread_comments and thread_comments is not None and thread_comments < cfg.min_thread_comments:
            return "thread_comments"
        reason = self.subreddit_reason(subreddit, over_18)
        if reason:
            return reason
        if cfg.language and self.is_foreign(turns[1:] if first_turn_is_title else turns):
            return "language"
        if cfg.normalize == "dialogpt":
            f = [self.normalized_features(t) for t in turns]
            url = [x["url"] for x in f]
            markup = [x["markup"] for x in f]
            n_words = [x["n_words"] for x in f]
            long_word = [x["long_word"] for x in f]
            shouting = [x["shouting"] for x in f]
            repeat = f[-1]["word_repeat"]
            extra_words = 2 * len(turns) - 2
        else:
            url = [self.has_url(t) for t in turns]
            markup = [self.has_markup(t) for t in turns]
            n_words = [len(words(t)) for t in turns]
            long_word = [self.has_long_word(t) for t in turns]
            shouting = [self.is_shouting(t) for t in turns]
            repeat = self.has_repeat(response)
            extra_words = 0
        first = 1 if first_turn_is_title else 0
        if cfg.url and any(url):
            return "url"
        if cfg.markup and (markup[-1] if cfg.markup_turns == "response" else any(markup[first:])):
            return "markup"
        if cfg.max_words and sum(n_words) + extra_words > cfg.max_words_total:
            return "max_words"
        if cfg.long_word and (long_word[-1] if cfg.long_word_turns == "response" else any(long_word[first:])):
            return "long_word"
        if cfg.shouting and any(shouting[first:]):
            return "shouting"
        if cfg.min_words and n_words[-1] < cfg.min_response_words:
            return "min_words"
        if cfg.word_repeat and repeat:
            return "word_repeat"
        if cfg.common_word and not self.has_common_word(response):
            return "common_word"
        if cfg.offensive and self.is_offensive(response):
            return "offensive"
        if cfg.min_score and (response_score is not None or not cfg.missing_score_passes) \
                and (response_score or 0) < cfg.min_target_score:
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
