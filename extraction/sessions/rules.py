"""What a rule is made of (``Setting``, ``Feature``, ``Rule``; ``Session``, what a session rule
sees), and the text helpers the rules share (lists, words, trigrams, HTML entities). The rules
themselves, the loaded set and the configuration they make are ``extraction.sessions.filters``."""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from reddit_pretrain import CONF_DIR
from reddit_pretrain.errors import SettingError
from extraction.sessions.features import HTML_ESCAPES

if TYPE_CHECKING:  # (annotations only: filters imports this module)
    from extraction.sessions.filters import FiltersConfig, LoadedRules


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


def unescape_html(text: str | None) -> str | None:
    """Undoes Reddit's HTML escaping of a text once."""
    if text is None:
        return None
    for escaped, plain in HTML_ESCAPES:
        text = text.replace(escaped, plain)
    return text


def escape_html(text: str) -> str:
    """Reddit's escaping again (for rules that must see the text as the dumps hold it): the same
    table, backwards (``&`` first)."""
    for escaped, plain in reversed(HTML_ESCAPES):
        text = text.replace(plain, escaped)
    return text


def words(text: str) -> list[str]:
    """Whitespace-separated words: the unit of every word count and trigram here."""
    return text.split()


# -- declarations ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One ``filters.<name>`` setting of a rule, with its default and its documentation."""

    name: str
    type: Any
    default: Any
    doc: str = ""
    choices: tuple = ()
    """The values allowed, when only some are."""
    minimum: float | None = None
    maximum: float | None = None

    def as_field(self) -> dataclasses.Field:
        if isinstance(self.default, (list, dict, set)):
            value = self.default
            return field(default_factory=lambda: type(value)(value))
        return field(default=self.default)

    def check(self, value) -> None:
        if self.choices and value not in self.choices:
            raise SettingError(f"filters.{self.name} must be one of {self.choices}, not {value!r}")
        if self.minimum is not None and value < self.minimum:
            raise SettingError(f"filters.{self.name} must be >= {self.minimum}, not {value!r}")
        if self.maximum is not None and value > self.maximum:
            raise SettingError(f"filters.{self.name} must be <= {self.maximum}, not {value!r}")


@dataclass(frozen=True)
class Feature:
    """A value computed once per text that session rules read: ``reference(rules, text)`` is the
    plain-Python form, ``vectorised(texts, rules)`` the same over a column
    (``extraction.sessions.features.Texts``); the parity tests compare the two on every declared feature."""

    name: str
    reference: Callable
    vectorised: Callable
    dtype: Any = bool
    titles: bool = False
    """Computed for a submission title used as a turn too; otherwise a title's value is False (0)."""
    normalized: bool = False
    """With ``filters.normalize=dialogpt`` it is read from the released extractor's form of the text."""


@dataclass(frozen=True)
class Rule:
    """One rule, declared once. ``name`` is its switch in ``FiltersConfig``, its ``drop_reason``
    (``cut_<name>`` as a chain end for turn rules) and its row in the report."""

    name: str
    kind: str
    """``turn`` (one comment; failing cuts the chain), ``session`` or ``corpus`` (needs the whole input)."""
    reads: str
    """Which text it reads: ``comment``, ``author``, ``subreddit``, ``response``, ``any turn``
    (the title included), ``comment turns`` (every turn but a title), ``corpus``."""
    doc: str
    """What the rule does: the documentation of its switch."""
    settings: tuple[Setting, ...] = ()
    on: bool = True
    """Switched on in the project's rule set (``filters.rules`` unset)."""
    feature: Feature | None = None
    """The per-text feature the session test reads, if any."""
    check: Callable | None = None
    """The plain-Python reference: turn rules ``check(rules, body, author)``, session rules
    ``check(rules, session)`` (a ``Session``); True when the comment or session fails."""
    fails: Callable | None = None
    """The vectorised form: turn rules ``fails(texts, authors, rules)`` over a column of comments,
    session rules ``fails(view)`` over a bucket's sessions (``extraction.sessions.reddit_threads.SessionView``)."""
    load: Callable | None = None
    """``load(cfg) -> {name: value}``: what the rule needs loaded (lists), set on ``LoadedRules``."""
    turns_setting: str | None = None
    """The setting that says whether it reads the ``response`` or the comment turns."""
    validate: Callable | None = None
    """``validate(cfg)``: raises ValueError on settings that make no sense together."""
    switch_name: str | None = None
    """Its switch in ``FiltersConfig`` when that is not its name."""
    explain: Callable | None = None
    """``explain(row) -> str``: what decided a rejected session when its text does not show it (the
    report's examples; ``row`` holds ``extraction.sessions.report.EXAMPLE_COLUMNS``)."""
    marks: tuple[str, ...] = ()
    """The ingest columns of today's dumps a turn rule reads besides the text (``MARK_COLUMNS``):
    its ``check(rules, body, author, **marks)`` and ``fails(texts, authors, rules, comments)``, the
    comments' table (a mark a month lacks is null)."""

    @property
    def switch(self) -> str:
        """Its switch in ``FiltersConfig``: ``filters.<switch>``."""
        return self.switch_name or self.name

    def is_on(self, cfg) -> bool:
        return bool(getattr(cfg, self.switch))

    @property
    def thresholds(self) -> tuple[str, ...]:
        """The ``FiltersConfig`` fields that tune it."""
        return tuple(s.name for s in self.settings)

    @property
    def normalized(self) -> bool:
        return self.feature is not None and self.feature.normalized

    def reads_in(self, cfg: "FiltersConfig") -> str:
        """What this rule reads under ``cfg`` (``off`` when switched off), for the docs and the report."""
        if not self.is_on(cfg):
            return "off"
        reads = self.reads.split(" (")[0]
        if self.turns_setting:
            reads = "response" if getattr(cfg, self.turns_setting) == "response" else "comment turns"
        if cfg.normalize == "dialogpt" and self.normalized:
            reads += ", in DialoGPT's normalised form"
        return reads


@dataclass
class Session:
    """One session as the session rules' references read it (``LoadedRules.session_reason``)."""

    rules: "LoadedRules"
    turns: list[str]
    """The texts, the response last."""
    subreddit: str | None
    over_18: bool | None
    response_score: int | None
    first_turn_is_title: bool = False
    thread_comments: int | None = None
    """The submission's ``num_comments`` (-1 when the submission is missing; None without submissions)."""
    response_marks: dict | None = None
    """The response's marks of today's dumps (``threads.MARK_COLUMNS``; absent ones null)."""
    _normalized: list | None = None

    def response_mark(self, name: str):
        return (self.response_marks or {}).get(name)

    @property
    def cfg(self) -> "FiltersConfig":
        return self.rules.cfg

    @property
    def response(self) -> str:
        return self.turns[-1]

    @property
    def comment_turns(self) -> list[str]:
        return self.turns[1:] if self.first_turn_is_title else self.turns

    def values(self, feature: Feature) -> list:
        """``feature`` of every turn, a title's False (0) unless the feature reads titles."""
        if self.cfg.normalize == "dialogpt" and feature.normalized:
            if self._normalized is None:
                self._normalized = [self.rules.normalized_features(t) for t in self.turns]
            values = [f[feature.name] for f in self._normalized]
        else:
            values = [feature.reference(self.rules, t) for t in self.turns]
        if self.first_turn_is_title and not feature.titles:
            values[0] = feature.dtype(0)
        return values

    def turns_value(self, feature: Feature, which: str) -> bool:
        """The response's value (``which == "response"``), else whether any comment turn has it."""
        values = self.values(feature)
        return bool(values[-1]) if which == "response" else any(values)


def _read_set(path_setting: str) -> Callable:
    return lambda cfg: frozenset(read_list(getattr(cfg, path_setting)))


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
