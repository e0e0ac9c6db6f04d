"""How sessions are cut from comment trees and split: the settings, and the split hash.

A session ends at a comment (a leaf; any reply in ``replies`` mode; in ``longest`` mode the deepest
leaf below each chain head) and walks up through its parents, at most ``max_turns`` of them; a comment that fails a turn rule cuts the chain where it
stands. The walk itself runs in ``extraction.sessions.reddit_threads`` (vectorised, one bucket of whole threads
at a time) and, one comment at a time, in ``tests.kit.reference``.
"""

from __future__ import annotations

from dataclasses import dataclass

from reddit_pretrain.errors import SettingError
from reddit_pretrain.layout import TEST, TRAIN, VALID
from extraction.sessions.filters import CORPUS_RULES, SESSION_RULES

CHAIN_REASONS = ("min_turns", "max_turns")
"""Sessions dropped for their length, before any filter rule."""
ALL_SESSION_REASONS = CHAIN_REASONS + SESSION_RULES + CORPUS_RULES


@dataclass
class ChainsConfig:
    """How sessions are cut from comment trees. Defaults follow DialoGPT."""

    mode: str = "leaves"
    """``leaves``: one session per leaf (root-to-leaf path), as DialoGPT. ``replies``: one per
    reply, with its ancestors as context, as PolyAI's conversational-datasets. ``longest``: one per
    chain head (a top-level comment, or the comment just below a cut), its longest path down to a
    leaf (the earliest leaf of the longest: its created_utc, then its id as a base-36 number), as
    Dolma's Reddit threads: sibling leaves no longer
    repeat their shared context in session after session."""
    min_turns: int = 2
    max_turns: int = 5
    long_chains: str = "keep_last"
    """Chains longer than max_turns: ``keep_last`` keeps the last max_turns turns, ``drop`` drops them."""
    include_title: bool = False
    """Use the submission title as the first turn, when the chain reaches the top level and fits."""
    include_selftext: bool = False
    """With include_title: append the submission's self text to the title turn."""
    max_turn_words: int = 0
    """A comment of more whitespace words than this (backslashes removed) stops the walk up: it and
    every turn above it are left out, and a leaf over it gives no session (DialoGPT's released
    extractor: 30). It stays in the tree, so its parent is no leaf. 0: no limit."""

    def validate(self) -> None:
        if self.mode not in ("leaves", "replies", "longest"):
            raise SettingError(f"chains.mode must be 'leaves', 'replies' or 'longest', not {self.mode!r}")
        if self.long_chains not in ("keep_last", "drop"):
            raise SettingError(f"chains.long_chains must be 'keep_last' or 'drop', not {self.long_chains!r}")
        if self.max_turn_words < 0:
            raise SettingError("chains.max_turn_words must be >= 0 (0: no limit)")
        if not 1 <= self.min_turns <= self.max_turns:
            raise SettingError("need 1 <= chains.min_turns <= chains.max_turns")


@dataclass
class SplitConfig:
    """train / valid / test, always by whole threads so no thread is in two splits."""

    method: str = "hash"
    """``hash``: by a hash of the thread id (link_id). ``date``: by the thread's first comment time."""
    valid_fraction: float = 0.01
    test_fraction: float = 0.01
    valid_from: str | None = None
    """``date`` method: threads starting on or after this UTC date (YYYY-MM-DD) go to valid..."""
    test_from: str | None = None
    """...and on or after this one to test."""

    def validate(self) -> None:
        if self.method == "hash":
            if self.valid_fraction < 0 or self.test_fraction < 0 or self.valid_fraction + self.test_fraction >= 1:
                raise SettingError("split fractions must be >= 0 and leave room for train")
        elif self.method == "date":
            if not self.valid_from or not self.test_from or self.valid_from > self.test_from:
                raise SettingError("split.method=date needs valid_from <= test_from (YYYY-MM-DD)")
        else:
            raise SettingError(f"split.method must be 'hash' or 'date', not {self.method!r}")


# ---------------------------------------------------------------------------------------------
# Spark stages


def hash_split(link_id: str, cfg: SplitConfig) -> str:
    """The hash split of ``assign_split`` in plain Python."""
    import hashlib

    u = int(hashlib.sha256(link_id.encode()).hexdigest()[:8], 16) / 2**32
    return TEST if u < cfg.test_fraction else VALID if u < cfg.test_fraction + cfg.valid_fraction else TRAIN


def histogram_labels(edges: list[int]) -> list[str]:
    """A histogram's bin labels from its lower edges: ``3`` for a one-value bin, ``4-7``, and ``N+``
    for the last (the report's turns, words and cluster sizes)."""
    return [f"{edges[i]}" if edges[i + 1] - edges[i] == 1 else f"{edges[i]}-{edges[i + 1] - 1}"
            for i in range(len(edges) - 1)] + [f"{edges[-1]}+"]
