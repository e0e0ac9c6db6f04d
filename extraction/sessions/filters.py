"""The filter rules: each one declared once, as a ``Rule``, with its plain-Python reference.

A rule's declaration (``RULES``, in the order the rules are tried) holds everything about it: its
switch ``filters.<name>`` and its settings (``FiltersConfig`` is made from the declarations), what
it reads, its per-text feature with the feature's plain-Python reference and vectorised form, its
session (or comment) test in both forms, the lists it loads, and whether the project's rule set
switches it on. The report's rows, the reject reasons, the chain ends, the configuration reference
and its rules table follow from ``RULES``; presets name the rules they switch on
(``filters.rules``), so a rule added later is off in them.

Three kinds of rule:

* turn rules judge one comment. A comment that fails one cannot be a turn: the chain is cut
  where it stands, and what remains of the chain is still used when long enough.
* session rules judge a whole session (context turns + the response, its last turn); a session
  that fails one is set aside with the name of the first rule it failed, in ``RULES`` order.
* corpus rules (``bland``, the exact duplicates, ``near_duplicate_response``) need the whole corpus:
  the extract job's steps between the thread buckets apply them (``extraction.sessions.reddit_threads``,
  ``extraction.sessions.neardup``), after the session rules.

Your own rule: declare it in a module of yours with ``add_rule(Rule(...), before="offensive")`` and
name the module in ``REDDIT_PRETRAIN_RULES`` (comma-separated modules, importable on the driver and
on the executors: ``extraction.spark`` passes the variable on to them). Its switch and settings are
then ``filters.<name>`` keys like any other, and it is off in the presets that list their rules.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from reddit_pretrain.errors import SettingError

from extraction.sessions import features as vectorised  # each rule's vectorised form
from extraction.sessions.rules import (_QUOTE, _URL, _WORD_CHARS, Feature, Rule, Session, Setting, _has_repeat,
                                      _read_set, escape_html, read_list, words)


class LoadedRules:
    """The rules of a FiltersConfig with their lists loaded: the plain-Python reference.

    ``turn_reason`` and ``session_reason`` judge one comment or one session by each rule's ``check``;
    the ``is_``/``has_`` methods are the per-text checks the features' references are made of, which
    ``extraction.sessions.features`` also calls for the texts its vectorised forms cannot judge like Python."""

    bot_authors: frozenset[str] = frozenset()
    blocked_subreddits: frozenset[str] = frozenset()
    nsfw_subreddits: frozenset[str] = frozenset()
    common_words: frozenset[str] = frozenset()
    offensive: re.Pattern | None = None
    english_words: frozenset[str] = frozenset()
    """The language rule's cheap English pass reads the common-word list too."""
    url_pattern: re.Pattern = _URL
    classifier: Any = None
    """The ``classifier`` rule's model (``extraction.sessions.classifier.Classifier``), loaded at its first use."""

    def __init__(self, cfg: "FiltersConfig", **loaded):
        self.cfg = cfg
        for name, value in loaded.items():
            setattr(self, name, value)

    @classmethod
    def load(cls, cfg: "FiltersConfig") -> "LoadedRules":
        cfg.validate()
        loaded = {}
        for rule in RULES:
            if rule.load is not None and rule.is_on(cfg):
                loaded.update(rule.load(cfg))
        return cls(cfg, **loaded)

    def on(self, kind: str) -> tuple[Rule, ...]:
        """The rules of ``kind`` switched on, in order."""
        return tuple(r for r in RULES if r.kind == kind and r.is_on(self.cfg))

    @staticmethod
    def turn_code(name: str) -> int:
        """The turn rule ``name``'s code in a cut column: its index in ``TURN_RULES`` + 1 (0: not cut)."""
        return TURN_RULES.index(name) + 1

    def features(self) -> list[Feature]:
        """The features the session rules switched on read, each once, ``n_words`` first (the
        report's word counts read it too)."""
        out = [N_WORDS]
        for rule in self.on("session"):
            if rule.feature is not None and rule.feature not in out:
                out.append(rule.feature)
        return out

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
        from extraction.sessions.dialogpt import comment_words

        return comment_words(body) < self.cfg.min_comment_words

    def normalized_features(self, text: str) -> dict:
        """``filters.normalize=dialogpt``: the rules' features of one turn in the released extractor's form."""
        from extraction.sessions import dialogpt

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
        """(language, confidence) of a session from its comment turns (``extraction.sessions.language``)."""
        from extraction.sessions.language import comment_language, session_language

        per_turn = [comment_language(t, self.english_words, self.cfg.language_min_letters) for t in comment_turns]
        return session_language([p[0] for p in per_turn], [p[1] for p in per_turn], [p[2] for p in per_turn])

    def is_foreign(self, comment_turns: list[str]) -> bool:
        from extraction.sessions.language import UNDETERMINED

        language, confidence = self.session_language(comment_turns)
        return language != UNDETERMINED and language not in self.cfg.languages and confidence >= self.cfg.language_min_confidence

    def subreddit_reason(self, subreddit: str | None, over_18: bool | None) -> str | None:
        """The first of the rules that read only the subreddit and the submission that fails."""
        session = Session(self, [""], subreddit, over_18, None)
        for rule in self.on("session"):
            if rule.name in ("subreddit_blocklist", "nsfw") and rule.check(self, session):
                return rule.name
        return None

    # -- the rules ---------------------------------------------------------------------------

    def turn_reason(self, body: str | None, author: str | None, marks: dict | None = None) -> str | None:
        """Name of the first turn rule this comment fails, or None if it can be a turn (``marks``:
        the comment's ``MARK_COLUMNS``, absent ones null)."""
        for rule in self.on("turn"):
            if rule.check(self, body, author, **{m: (marks or {}).get(m) for m in rule.marks}):
                return rule.name
        return None

    def session_reason(self, turns: list[str], subreddit: str | None, over_18: bool | None, response_score: int | None,
                       first_turn_is_title: bool = False, thread_comments: int | None = None,
                       response_marks: dict | None = None) -> str | None:
        """Name of the first session rule (``RULES`` order) the session fails, or None.

        ``turns`` are the texts, the response last. A submission title used as the first turn
        is context like any other, but the word-level rules for "any turn" skip it (titles are
        not comments and DialoGPT's rules were written for comments). ``thread_comments``: the
        submission's ``num_comments`` (-1 when the submission is missing; None without submissions).
        """
        session = Session(self, turns, subreddit, over_18, response_score, first_turn_is_title, thread_comments, response_marks)
        for rule in self.on("session"):
            if rule.check(self, session):
                return rule.name
        return None


N_WORDS = Feature("n_words", lambda r, t: len(words(t)), vectorised.n_words, dtype=np.int64, titles=True, normalized=True)
URL = Feature("url", lambda r, t: r.has_url(t), vectorised.has_url, titles=True, normalized=True)
MARKUP = Feature("markup", lambda r, t: r.has_markup(t), vectorised.has_markup, normalized=True)
LONG_WORD = Feature("long_word", lambda r, t: r.has_long_word(t), vectorised.has_long_word, normalized=True)
SHOUTING = Feature("shouting", lambda r, t: r.is_shouting(t), vectorised.is_shouting, normalized=True)
WORD_REPEAT = Feature("word_repeat", lambda r, t: r.has_repeat(t), vectorised.has_repeat, normalized=True)
COMMON_WORD = Feature("common_word", lambda r, t: r.has_common_word(t), vectorised.has_common_word)
OFFENSIVE = Feature("offensive", lambda r, t: r.is_offensive(t), vectorised.is_offensive)


def _dialogpt_extra_words(cfg, num_turns):
    """The released extractor counts a weight and an EOS token per turn but the first (``max_words``)."""
    return 2 * num_turns - 2 if cfg.normalize == "dialogpt" else 0 * num_turns


def _check_language(cfg) -> None:
    if not cfg.languages:
        raise SettingError("filters.languages must name a language")


_NEAR_SETTINGS = (
    Setting("near_duplicate_threshold", float, 0.8, "The Jaccard of two responses' word shingles at which they "
            "are near duplicates.", minimum=0, maximum=1),
    Setting("near_duplicate_shingle", int, 4, "Words per shingle.", minimum=1),
    Setting("near_duplicate_bands", int, 20, "LSH bands of the MinHash signature.", minimum=1),
    Setting("near_duplicate_rows", int, 5, "MinHash values per band (the signature has bands x rows).", minimum=1),
    Setting("near_duplicate_max_group", int, 8, "A band group of more responses than this is checked against "
            "its earliest session only (n - 1 pairs, not n x n).", minimum=2))
"""The near-duplicate rules' settings (declared by ``near_duplicate_response``, read by both)."""

_DECLARED: list[Rule] = [
    Rule("deleted", "turn", "comment", "A body in ``deleted_bodies`` (or none at all) cuts the chain.",
         (Setting("deleted_bodies", list[str], ["[deleted]", "[removed]"], "The released extractor removes ``[deleted]`` only."),),
         check=lambda r, body, author: r.is_deleted(body), fails=vectorised.deleted_comments),
    Rule("bots", "turn", "author", "Bot authors cut the chain (listed in ``bot_authors_path`` or ending in a suffix).",
         (Setting("bot_authors_path", str, "lists/bot_authors.txt"), Setting("bot_suffixes", list[str], ["bot", "_bot", "-bot"])),
         check=lambda r, body, author: r.is_bot(author), fails=vectorised.bot_comments,
         load=lambda cfg: {"bot_authors": _read_set("bot_authors_path")(cfg)}),
    Rule("moderator", "turn", "comment marks", "A comment a moderator distinguished (``distinguished`` = "
         "``moderator``) or that is stickied cuts the chain, as a bot's does: moderators' boilerplate and pinned notes are "
         "not conversation (the marks of today's dumps; a month without them is not affected). Off in the DialoGPT presets.",
         check=lambda r, body, author, distinguished=None, stickied=None: distinguished == "moderator" or stickied is True,
         fails=vectorised.moderator_comments, marks=("distinguished", "stickied")),
    Rule("quotes", "turn", "comment", "A comment quoting another (``>`` or ``&gt;`` at a line start) cuts the chain.",
         (Setting("quotes_anywhere", bool, False, "The quote rule matches ``>`` or ``&gt;`` anywhere in the body (the released extractor)."),),
         check=lambda r, body, author: body is not None and r.is_quote(body), fails=vectorised.quote_comments),
    Rule("short_comment", "turn", "comment", "A comment of fewer than ``min_comment_words`` whitespace words (backslashes "
         "removed) cuts the chain (the released extractor: 2).", (Setting("min_comment_words", int, 2, minimum=0),), on=False,
         check=lambda r, body, author: body is not None and r.is_short(body), fails=vectorised.short_comments),
    Rule("thread_comments", "session", "submission", "Drops every session of a thread whose submission says fewer than "
         "``min_thread_comments`` comments, or is missing (the released extractor reads only such threads). Needs submissions.",
         (Setting("min_thread_comments", int, 2),), on=False,
         check=lambda r, s: s.thread_comments is not None and s.thread_comments < r.cfg.min_thread_comments,
         fails=lambda v: v.thread_comments < v.cfg.min_thread_comments if v.thread_comments is not None else v.none()),
    Rule("subreddit_blocklist", "session", "subreddit", "Drops sessions of a subreddit listed in ``subreddit_blocklist_path``.",
         (Setting("subreddit_blocklist_path", str, "lists/subreddit_blocklist.txt"),),
         check=lambda r, s: (s.subreddit or "").lower() in r.blocked_subreddits,
         fails=lambda v: v.subreddit_in(v.rules.blocked_subreddits), explain=lambda row: f"r/{row['subreddit']}",
         load=lambda cfg: {"blocked_subreddits": _read_set("subreddit_blocklist_path")(cfg)}),
    Rule("nsfw", "session", "subreddit and submission",
         "Drops sessions whose submission is ``over_18`` or whose subreddit is in ``nsfw_subreddits_path``.",
         (Setting("nsfw_subreddits_path", str, "lists/nsfw_subreddits.txt"),),
         check=lambda r, s: s.over_18 is True or (s.subreddit or "").lower() in r.nsfw_subreddits,
         fails=lambda v: v.over_18 | v.subreddit_in(v.rules.nsfw_subreddits),
         explain=lambda row: f"r/{row['subreddit']}, submission over_18 {row['over_18']}",
         load=lambda cfg: {"nsfw_subreddits": _read_set("nsfw_subreddits_path")(cfg)}),
    Rule("url", "session", "any turn", "DialoGPT 1: a URL in the source or the target.", feature=URL,
         check=lambda r, s: any(s.values(URL)), fails=lambda v: v.any_turn("url")),
    Rule("markup", "session", "response (markup_turns)",
         "DialoGPT 4: the response contains one of ``markup_chars`` (the paper: ``[ ]``; the extractor adds ``( )``).",
         (Setting("markup_chars", str, "[]()"),
          Setting("markup_turns", str, "response", "Which turns the markup rule reads: ``response`` (the paper) or ``any`` "
                  "comment turn (the released extractor).", choices=("response", "any"))),
         feature=MARKUP, turns_setting="markup_turns",
         check=lambda r, s: s.turns_value(MARKUP, r.cfg.markup_turns), fails=lambda v: v.turns("markup", v.cfg.markup_turns)),
    Rule("max_words", "session", "any turn", "DialoGPT 5: source + target longer than ``max_words_total`` words.",
         (Setting("max_words_total", int, 200, minimum=1),), feature=N_WORDS,
         check=lambda r, s: sum(s.values(N_WORDS)) + _dialogpt_extra_words(r.cfg, len(s.turns)) > r.cfg.max_words_total,
         fails=lambda v: v.total("n_words") + _dialogpt_extra_words(v.cfg, v.num_turns) > v.cfg.max_words_total),
    Rule("long_word", "session", "comment turns (long_word_turns)",
         "Released extractor: any turn with a word longer than ``max_word_chars`` characters.",
         (Setting("max_word_chars", int, 30, minimum=1),
          Setting("long_word_turns", str, "any", "Which turns the long-word rule reads: ``any`` comment turn, or the "
                  "``response`` (the released extractor).", choices=("any", "response"))),
         feature=LONG_WORD, turns_setting="long_word_turns",
         check=lambda r, s: s.turns_value(LONG_WORD, r.cfg.long_word_turns), fails=lambda v: v.turns("long_word", v.cfg.long_word_turns)),
    Rule("shouting", "session", "comment turns", "Released extractor: any turn matching ``shouting_pattern``.",
         (Setting("shouting_pattern", str, "[A-Z]{5,}"),), feature=SHOUTING,
         check=lambda r, s: any(s.values(SHOUTING)), fails=lambda v: v.any_turn("shouting"),
         validate=lambda cfg: re.compile(cfg.shouting_pattern)),
    Rule("min_words", "session", "response", "Released extractor: a response of fewer than ``min_response_words`` words.",
         (Setting("min_response_words", int, 2),), feature=N_WORDS,
         check=lambda r, s: s.values(N_WORDS)[-1] < r.cfg.min_response_words,
         fails=lambda v: v.response("n_words") < v.cfg.min_response_words),
    Rule("word_repeat", "session", "response", "DialoGPT 2: the response repeats a word ``word_repeat_times`` times in a row.",
         (Setting("word_repeat_times", int, 3, minimum=2),), feature=WORD_REPEAT,
         check=lambda r, s: bool(s.values(WORD_REPEAT)[-1]), fails=lambda v: v.response("word_repeat")),
    Rule("common_word", "session", "response",
         "DialoGPT 3: the response has none of the words in ``common_words_path`` (likely not English).",
         (Setting("common_words_path", str, "lists/top50_english.txt"),), feature=COMMON_WORD,
         check=lambda r, s: not r.has_common_word(s.response), fails=lambda v: ~v.response("common_word"),
         load=lambda cfg: {"common_words": _read_set("common_words_path")(cfg)}),
    Rule("offensive", "session", "response", "DialoGPT 6: the response contains a phrase from ``offensive_phrases_path``.",
         (Setting("offensive_phrases_path", str, "lists/offensive_phrases.txt"),), feature=OFFENSIVE,
         check=lambda r, s: r.is_offensive(s.response), fails=lambda v: v.response("offensive"),
         load=lambda cfg: {"offensive": _phrases(read_list(cfg.offensive_phrases_path))}),
    Rule("min_score", "session", "response",
         "Released extractor: the response's score is below ``min_target_score`` (a missing score passes).",
         (Setting("min_target_score", int, 1),
          Setting("missing_score_passes", bool, True, "A response without a score passes the score rule; false counts it "
                  "as 0 (the released extractor).")),
         check=lambda r, s: (s.response_score is not None or not r.cfg.missing_score_passes)
         and (s.response_score or 0) < r.cfg.min_target_score,
         fails=lambda v: (v.response_score_known | ~np.bool_(v.cfg.missing_score_passes)) & (v.response_score < v.cfg.min_target_score),
         explain=lambda row: f"reply score {row['scores'][-1] if row['scores'] else None}"),
    Rule("toxic_mark", "session", "response marks",
         "Reddit's own tagger: drops a session whose response Reddit collapsed as ``POTENTIALLY_TOXIC`` "
         "(``collapsed_reason_code``, on comments of 2021-02 to 2025-02 in today's dumps; a month without it is not "
         "affected). Off in the DialoGPT presets.",
         check=lambda r, s: s.response_mark("collapsed_reason_code") == "POTENTIALLY_TOXIC",
         fails=lambda v: v.response_mark_is("collapsed_reason_code", "POTENTIALLY_TOXIC"),
         explain=lambda row: "Reddit marked the reply POTENTIALLY_TOXIC"),
    Rule("language", "session", "comment turns",
         "Drops a session whose comment turns are, together, in a language not in ``languages`` with a confidence of at "
         "least ``language_min_confidence`` (``extraction.sessions.language``: a cheap English pass, then CLD2). Turns of fewer "
         "than ``language_min_letters`` letters are undetermined and count for nothing, so \"lol\" or \"same\" never make "
         "a session foreign. Tried after every other session rule but the classifier (it is the dearer), so a session "
         "dropped before carries no language.",
         (Setting("languages", list[str], ["en"], "ISO 639-1 codes of the languages kept."),
          Setting("language_min_confidence", float, 0.5, minimum=0, maximum=1),
          Setting("language_min_letters", int, 20, minimum=1)),
         check=lambda r, s: r.is_foreign(s.comment_turns), fails=lambda v: v.foreign(),
         load=lambda cfg: {"english_words": _read_set("common_words_path")(cfg)}, validate=_check_language,
         explain=lambda row: f"language {row.get('language')}, confidence {_round(row.get('language_confidence'))}"),
    Rule("classifier", "session", "response",
         "A classifier of yours as a tagger (``extraction.sessions.classifier``): ``classifier_path``, a Hugging Face "
         "text-classification model folder or a fastText ``.bin``, scores each response still kept after the rules "
         "above, in batches inside the Spark tasks; the score is stored as the session's ``classifier_score``, and a "
         "session scored below ``classifier_min_score`` is dropped.",
         (Setting("classifier_path", str, "", "The model: a folder every executor can read, or a fastText file."),
          Setting("classifier_label", str, "", "The label whose probability is the score (unset: a binary model's "
                  "second label, a one-logit model's only one)."),
          Setting("classifier_min_score", float, 0.5, "Sessions whose response scores below this are dropped.",
                  minimum=0, maximum=1),
          Setting("classifier_batch_size", int, 64, minimum=1),
          Setting("classifier_max_length", int, 256, "Tokens of a response the model reads (the rest is cut).", minimum=1),
          Setting("classifier_threads", int, 1, "Torch threads per Spark task.", minimum=1)),
         on=False, check=lambda r, s: r.classifier.score(s.response) < r.cfg.classifier_min_score,
         fails=lambda v: v.classifier_scores() < v.cfg.classifier_min_score,
         load=lambda cfg: {"classifier": _classifier(cfg)},
         validate=lambda cfg: _check_classifier(cfg),
         explain=lambda row: f"classifier score {_round(row.get('classifier_score'))}"),
    Rule("bland", "corpus", "response", "DialoGPT 7: at least ``bland_fraction`` of the response's word trigrams occur more "
         "than ``bland_min_count`` times among all comment bodies of the input (a distributed count).",
         (Setting("bland_min_count", int, 1000, minimum=1), Setting("bland_fraction", float, 0.9, minimum=0, maximum=1)),
         validate=lambda cfg: cfg.bland_fraction > 0 or _raise("filters.bland_fraction must be in (0, 1]")),
    Rule("duplicate_session", "corpus", "any turn", "Exact duplicate sessions (same turns): the earliest is kept (by its "
         "reply's ``created_utc``, ties by the id read as a base-36 number), so a later month never changes the choice."),
    Rule("duplicate_response", "corpus", "response", "Exact duplicate responses: the earliest session is kept (as "
         "``duplicate_session``)."),
    Rule("near_duplicate_response", "corpus", "response",
         "Near-duplicate responses (``extraction.sessions.neardup``): responses whose word-shingle Jaccard is at least "
         "``near_duplicate_threshold`` are linked (MinHash LSH candidates, each pair verified exactly), linked ones "
         "form clusters, and of each cluster the earliest session is kept (as ``duplicate_session``); the others' rejects "
         "name it (``duplicate_of``). Responses of fewer than ``near_duplicate_shingle`` words are not judged.",
         _NEAR_SETTINGS, switch_name="near_duplicate"),
    Rule("near_duplicate_session", "corpus", "any turn",
         "Near-duplicate sessions: ``near_duplicate_response``'s machinery and settings (``near_duplicate_*``) over each "
         "session's turns joined by a newline, as stored (PII placeholders are words like any other): of each cluster "
         "of sessions alike as a whole, the earliest is kept. It finds what the response rule cannot: the "
         "same exchange reposted with its reply reworded. Off in the project's rule set; a session both rules drop is "
         "counted under ``near_duplicate_response``.",
         on=False, validate=lambda cfg: [s.check(getattr(cfg, s.name)) for s in _NEAR_SETTINGS]),
]


def _round(value) -> str:
    return "unknown" if value is None else f"{value:.3f}"


def _raise(message: str):
    raise SettingError(message)


def _check_classifier(cfg) -> None:
    if not cfg.classifier_path:
        raise SettingError("filters.classifier needs filters.classifier_path: a Hugging Face text-classification model "
                         "folder or a fastText .bin")
    if "://" not in cfg.classifier_path and not os.path.exists(cfg.classifier_path):
        raise SettingError(f"filters.classifier_path {cfg.classifier_path!r} does not exist")


def _classifier(cfg):
    from extraction.sessions.classifier import from_config

    return from_config(cfg)


def _phrases(phrases: list[str]) -> re.Pattern | None:
    return re.compile(r"\b(?:" + "|".join(re.escape(p) for p in phrases) + r")\b") if phrases else None


def add_rule(rule: Rule, *, before: str | None = None, after: str | None = None) -> None:
    """Declares a rule of your own (from a module named in ``REDDIT_PRETRAIN_RULES``), tried just
    ``before`` or ``after`` the rule named (last of its kind when neither is given)."""
    if "FiltersConfig" in globals():
        raise RuntimeError("add_rule runs while extraction.sessions.filters is imported: name the module in REDDIT_PRETRAIN_RULES")
    names = [r.name for r in _DECLARED]
    if rule.name in names or not re.fullmatch(r"[a-z][a-z0-9_]*", rule.name):
        raise SettingError(f"a rule needs a new lower-case name, not {rule.name!r}")
    if rule.kind not in ("turn", "session") or rule.check is None or rule.fails is None:
        raise SettingError(f"rule {rule.name!r}: your own rules are turn or session rules with a check and a fails")
    taken = {f.name for f in dataclasses.fields(_FiltersBase)} | set(names) | {s.name for r in _DECLARED for s in r.settings}
    clash = [s.name for s in rule.settings if s.name in taken]
    if clash:
        raise SettingError(f"rule {rule.name!r}: settings {clash} are taken")
    anchor = before or after
    if anchor is not None:
        if anchor not in names:
            raise SettingError(f"rule {rule.name!r}: no rule {anchor!r} to go {'before' if before else 'after'}")
        if _DECLARED[names.index(anchor)].kind != rule.kind:
            raise SettingError(f"rule {rule.name!r} is a {rule.kind} rule: it goes among the {rule.kind} rules")
        index = names.index(anchor) + (0 if before else 1)
    else:
        index = max(i for i, r in enumerate(_DECLARED) if r.kind == rule.kind) + 1
    _DECLARED.insert(index, rule)


@dataclass
class _FiltersBase:
    """Which rules run and their thresholds. DialoGPT's published values are the defaults."""

    unescape_html: bool = True
    """Pushshift texts are HTML-escaped as Reddit's API returns them (``&amp;``, ``&lt;``, ``&gt;``):
    undo that once, before every rule and in the stored sessions."""
    normalize: str = "none"
    """``none``: rules read the clean text. ``dialogpt``: the rules that read words and characters
    (url, markup, max_words, long_word, shouting, min_words, word_repeat) judge each turn as DialoGPT's
    released extractor normalised it (``extraction.sessions.dialogpt``); the sessions keep the clean text."""
    rules: Optional[list[str]] = None
    """The rules switched on, by name: the presets list theirs, so a rule added later is off in them.
    Unset: the project's rule set (every rule declared on). A rule's own switch, ``filters.<rule>``,
    wins over the list."""

    def __post_init__(self):
        listed = None if self.rules is None else set(self.rules)
        for rule in RULES:
            if getattr(self, rule.switch) is None:
                setattr(self, rule.switch, rule.on if listed is None else rule.name in listed)

    def validate(self) -> None:
        if self.normalize not in ("none", "dialogpt"):
            raise SettingError(f"filters.normalize must be one of ('none', 'dialogpt'), not {self.normalize!r}")
        if self.rules is not None:
            unknown = [name for name in self.rules if name not in RULES_BY_NAME]
            if unknown:
                import difflib

                hints = [f"{u!r} (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(u, RULES_BY_NAME, 1)) else repr(u)
                         for u in unknown]
                raise SettingError(f"filters.rules names no such rule: {', '.join(hints)}")
        for rule in RULES:
            if not rule.is_on(self):
                continue
            for setting in rule.settings:
                setting.check(getattr(self, setting.name))
            if rule.validate is not None:
                rule.validate(self)


for _module in filter(None, (m.strip() for m in os.environ.get("REDDIT_PRETRAIN_RULES", "").split(","))):
    importlib.import_module(_module)

RULES: tuple[Rule, ...] = tuple(_DECLARED)
"""Every rule, in the order they are tried: a session is counted under the first it fails."""
RULES_BY_NAME = {rule.name: rule for rule in RULES}


def _make_config() -> type:
    fields, docs = [], {}
    for rule in RULES:
        fields.append((rule.switch, Optional[bool], field(default=None)))
        kind = {"turn": "Turn rule: ", "corpus": "Corpus rule: "}.get(rule.kind, "")
        docs[rule.switch] = kind + " ".join(rule.doc.split()) + " Unset: as ``filters.rules`` says (the project's rule " \
            f"set: {'on' if rule.on else 'off'})."
        for setting in rule.settings:
            fields.append((setting.name, setting.type, setting.as_field()))
            if setting.doc:
                docs[setting.name] = " ".join(setting.doc.split())
    cls = dataclasses.make_dataclass("FiltersConfig", fields, bases=(_FiltersBase,), namespace={"__module__": __name__})
    cls.__doc__ = _FiltersBase.__doc__
    cls.__field_docs__ = docs
    cls.__unset_fields__ = tuple(rule.switch for rule in RULES)
    """Left unset in the Hydra schema (``reddit_pretrain.hydra_job.register_schemas``): they follow ``filters.rules``."""
    """The documentation of the fields made from the rules' declarations (``jobs/config_reference.py``)."""
    return cls


FiltersConfig = _make_config()
"""Made from ``_FiltersBase`` and every rule's switch (``Optional[bool]``: unset follows
``filters.rules``) and settings."""
NORMALIZED_RULES = tuple(r.name for r in RULES if r.normalized)
"""The rules that judge the normalised form with ``normalize=dialogpt`` (``extraction.sessions.dialogpt``)."""
TURN_RULES = tuple(r.name for r in RULES if r.kind == "turn")
SESSION_RULES = tuple(r.name for r in RULES if r.kind == "session")
CORPUS_RULES = tuple(r.name for r in RULES if r.kind == "corpus")
"""Applied after the session rules, in this order."""


