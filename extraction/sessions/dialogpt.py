"""The text normalisation of DialoGPT's released extractor, for the rules of ``preset=dialogpt_released``.

DialoGPT's ``reddit_extractor/src/reddit.py`` judges its instances on normalised text, not on the
comments as written (``../shared/DATA.md``, "The released extractor, rule by rule"). With
``filters.normalize=dialogpt`` the rules that read words and characters (``url``, ``markup``,
``max_words``, ``long_word``, ``shouting``, ``min_words``, ``word_repeat``) judge each turn in that
form; the sessions keep the clean text. The form of one text:

1. on the text as the dump holds it (Reddit's HTML escaping put back when the job undid it);
2. whitespace words starting with ``#`` are dropped; a word containing ``http`` (any case) is cut
   there and ``__url__`` follows as a word of its own;
3. backslashes are removed; ``b/c``, ``j/k``, ``w/o`` and ``w/`` are spelled out;
4. the placeholders ``__url__`` and ``__mention__`` are kept, and so are the words ``URL`` and
   ``MENTION`` (the extractor turns them into the placeholders as well);
5. every character outside ``A-Z a-z 0-9 ( ) [ ] : , . ! ? ' “ ”`` and space becomes a space;
6. NLTK's ``TweetTokenizer`` (case kept) splits it; tokens are joined by single spaces.

Each turn of an instance then counts one more token, its weight (``1.0``), and context turns are
joined by an ``EOS`` token: ``max_words`` counts ``sum(tokens) + 2 * turns - 2``, and the response's
tokens for ``word_repeat`` start with the weight.
"""

from __future__ import annotations

import functools
import re

WEIGHT = "1.0"
"""The token the released extractor writes before every turn."""

_SPELLED_OUT = (("b/c", "because"), ("j/k", "just kidding"), ("w/o", "without"), ("w/", "with"))
_OUTSIDE = re.compile(r"[^A-Za-z0-9()\[\]:,.!?'“” ]")
_PLACEHOLDERS = (("__mention__", "MENTION"), ("__url__", "URL"))


@functools.lru_cache(maxsize=1)
def _tokenizer():
    try:
        from nltk.tokenize import TweetTokenizer
    except ImportError as err:  # pragma: no cover - nltk is a dependency
        raise RuntimeError("filters.normalize=dialogpt needs nltk (pip install nltk)") from err
    return TweetTokenizer(preserve_case=True)


def normalize(text: str) -> str:
    """``text`` (as the dump holds it) in the released extractor's normalised form."""
    kept = []
    for word in text.split():
        if word[0] == "#":
            continue
        at = word.lower().find("http")
        if at >= 0:
            word = word[:at] + " __url__"
        kept.append(word.strip())
    text = " ".join(kept).replace("\\", "")
    for short, long in _SPELLED_OUT:
        text = text.replace(short, long)
    for placeholder, word in _PLACEHOLDERS:  # placeholders survive the character filter as words
        text = text.replace(placeholder, word)
    text = _OUTSIDE.sub(" ", text)
    for placeholder, word in _PLACEHOLDERS:
        text = text.replace(word, placeholder)
    return " ".join(" ".join(_tokenizer().tokenize(text)).split())


def comment_words(text: str) -> int:
    """Whitespace words once backslashes are removed: what the released extractor counts for its
    2-word minimum per comment and its 30-word limit per turn."""
    return sum(1 for word in text.split() if word.strip("\\"))


def features(normalized: str, max_word_chars: int = 30, repeat_times: int = 3, markup_chars: str = "[]()",
             shouting_pattern: str = "[A-Z]{5,}") -> dict:
    """The per-turn features the rules read, from one normalised text (the released extractor's
    thresholds by default)."""
    tokens = normalized.split()
    weighted = [WEIGHT] + tokens
    run, repeat = 1, False
    for previous, current in zip(weighted, weighted[1:]):
        run = run + 1 if current == previous else 1  # case-sensitive, as the extractor compares
        repeat = repeat or run >= repeat_times
    return {
        "n_words": len(tokens),
        "url": "__url__" in normalized,
        "markup": any(ch in normalized for ch in markup_chars),
        "shouting": re.search(shouting_pattern, normalized) is not None,
        "long_word": any(len(t) > max_word_chars for t in weighted),
        "word_repeat": repeat,
    }
