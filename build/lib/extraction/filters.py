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

from extraction import CONF_DIR

TURN_RULES = ("deleted", "bots", "quotes")
SESSION_RULES = (
    "subreddit_blocklist",
    "nsfw",
    "url",
    "markup",
    "max_words",
    "long_word",
    "shouting",
    "min_words",
    "word_repeat",
    "common_word",
    "offensive",
    "min_score",
)
CORPUS_RULES = ("bland", "duplicate_session", "duplicate_response")
"""Applied by Spark after the session rules, in this order."""


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


@dataclass
class Rules:
    """The rules of a FiltersConfig with their lists loaded, ready to judge turns and sessions."""

    cfg: FiltersConfig
    bot_authors: frozenset[str] = frozenset()
    blocked_subreddits: frozenset[str] = frozenset()
    nsfw_subreddits: frozenset[str] = frozenset()
    common_words: frozenset[str] = frozenset()
    offensive: re.Pattern | None = None

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

    # -- turn rules --------------------------------------------------------------------------

    def turn_reason(self, body: str | None, author: str | None) -> str | None:
        """Name of the first turn rule this comment fails, or None if it can be a turn."""
        cfg = self.cfg
        if cfg.deleted and (body is None or body.strip() in ("[deleted]", "[removed]")):
            return "deleted"
        if cfg.bots and author is not None:
            name = author.lower()
            if name in self.bot_authors or any(name.endswith(s) for s in cfg.bot_suffixes):
                return "bots"
        if cfg.quotes and body is not None and _QUOTE.search(body):
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
        sub = (subreddit or "").lower()
        if cfg.subreddit_blocklist and sub in self.blocked_subreddits:
            return "subreddit_blocklist"
        if cfg.nsfw and (over_18 is True or sub in self.nsfw_subreddits):
            return "nsfw"
        if cfg.url and any(_URL.search(t) for t in turns):
            return "url"
        if cfg.markup and any(ch in response for ch in cfg.markup_chars):
            return "markup"
        turn_words = [words(t) for t in turns]
        if cfg.max_words and sum(len(w) for w in turn_words) > cfg.max_words_total:
            return "max_words"
        comment_words = turn_words[1:] if first_turn_is_title else turn_words
        if cfg.long_word and any(len(w) > cfg.max_word_chars for ws in comment_words for w in ws):
            return "long_word"
        if cfg.shouting and any(re.search(cfg.shouting_pattern, t) for t in comment_turns):
            return "shouting"
        response_words = turn_words[-1]
        if cfg.min_words and len(response_words) < cfg.min_response_words:
            return "min_words"
        if cfg.word_repeat and _has_repeat(response_words, cfg.word_repeat_times):
            return "word_repeat"
        if cfg.common_word and not (set(_WORD_CHARS.findall(response.lower())) & self.common_words):
            return "common_word"
        if cfg.offensive and self.offensive is not None and self.offensive.search(response.lower()):
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
