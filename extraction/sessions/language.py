"""The language of each comment and of each session, for the ``language`` rule.

Per comment, in three steps, the first that decides wins:

1. fewer than ``language_min_letters`` letters (``lol``, ``same``, ``+1``): undetermined (``und``),
   which no rule holds against a session;
2. a cheap pass that settles most English text without an identifier: no letter outside A-Z (emoji
   and curly quotes are no letters) and at least 3 distinct words of the top-50 English list
   (words split on whitespace, lower-cased, with their punctuation stripped): English, confidence 1;
3. CLD2 (``pycld2``: Google's compact language detector, its model inside the wheel): its first
   language and percent when it calls the result reliable, else undetermined.

Per session, over its comment turns (a title is left out): each determined turn votes for its
language with its letters; the language with the most letters wins (the earliest turn on a tie),
and the session's confidence is the letters of the turns that agree, weighted by their confidence,
over the letters of every determined turn. The rule drops a session whose language is not in
``filters.languages`` with a confidence of at least ``filters.language_min_confidence``.

``comment_languages`` is the vectorised step 1-2 over an Arrow column (CLD2 runs only on the rows
they leave); ``comment_language`` is the plain-Python reference, and ``session_language`` combines
either the same way. The extract job counts each comment's common words with the other features
(``common_word_counts``), and the rest (letters, CLD2, the vote) only for the comment turns of the
sessions that reach the rule: it is tried after every other session rule but the classifier, and
a session dropped before it carries no language.
"""

from __future__ import annotations

import string

import numpy as np

UNDETERMINED = "und"
_PUNCTUATION = string.punctuation + "“”‘’«»…"


def _cld2(text: str) -> tuple[str, float]:
    import pycld2

    try:
        reliable, _, details = pycld2.detect(text)
    except Exception:  # pycld2.error on bytes it cannot read (lone surrogates): nothing to tell
        return UNDETERMINED, 0.0
    code, percent = details[0][1], details[0][2]
    if not reliable or code in ("un", "xxx"):
        return UNDETERMINED, 0.0
    return code.split("-")[0], percent / 100.0


def comment_language(text: str | None, common: frozenset[str], min_letters: int) -> tuple[str, float, int]:
    """(ISO 639-1 code or ``und``, confidence in [0, 1], letters) of one comment: the reference."""
    if not text:
        return UNDETERMINED, 0.0, 0
    letters = sum(c.isalpha() for c in text)
    if letters < min_letters:
        return UNDETERMINED, 0.0, letters
    if sum(c.isalpha() and c.isascii() for c in text) == letters and \
            len({w.strip(_PUNCTUATION) for w in text.lower().split()} & common) >= 3:
        return "en", 1.0, letters
    code, confidence = _cld2(text)
    return code, confidence, letters


def _letters(column) -> tuple[np.ndarray, np.ndarray]:
    """(letters, letters outside A-Z) of each text, as ``str.isalpha`` counts them (Unicode's L
    categories): A-Z from the UTF-8 bytes at once (one sum per row), the rows with other characters
    in Python."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(column)
    letters, other = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    if not n:
        return letters, other
    filled = pc.fill_null(column, "")
    filled = filled.combine_chunks() if isinstance(filled, pa.ChunkedArray) else filled
    offsets = np.frombuffer(filled.buffers()[1], dtype=np.int32)[filled.offset: filled.offset + n + 1].astype(np.int64)
    data = np.frombuffer(filled.buffers()[2], dtype=np.uint8) if filled.buffers()[2] is not None else np.zeros(0, np.uint8)
    starts, ends = offsets[:-1] - offsets[0], offsets[1:] - offsets[0]
    segment = data[int(offsets[0]): int(offsets[-1])]
    is_letter = (np.bitwise_or(segment, 0x20) - np.uint8(ord("a"))) < 26  # uint8 wraps below "a"
    filled_rows = np.flatnonzero(ends > starts)
    if len(filled_rows):  # the rows with bytes have increasing starts: one reduceat sums each row
        letters[filled_rows] = np.add.reduceat(is_letter, starts[filled_rows], dtype=np.int64)
    slow = np.flatnonzero(~pc.string_is_ascii(filled).to_numpy(zero_copy_only=False))
    if len(slow):  # Python's own count (RE2's \pL knows letters newer than Python's Unicode tables)
        values = pc.take(filled, pa.array(slow, pa.int64())).to_pylist()
        total = np.fromiter((sum(map(str.isalpha, v)) for v in values), dtype=np.int64, count=len(values))
        other[slow] = total - letters[slow]  # the bytes counted A-Z
        letters[slow] = total
    return letters, other


def common_word_counts(texts, common: frozenset[str]) -> np.ndarray:
    """How many distinct words of ``common`` each text of an ``extraction.sessions.features.Texts`` holds
    (its words lower-cased, their punctuation stripped): the cheap pass's count, for every row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(texts.texts)
    distinct = np.zeros(n, dtype=np.int64)
    if not common or not n:
        return distinct
    words = texts.words
    stripped = pc.utf8_trim(words.vocabulary, _PUNCTUATION)
    in_common = pc.fill_null(pc.index_in(stripped, value_set=pa.array(sorted(common), pa.string())), -1).to_numpy(
        zero_copy_only=False)
    which = in_common[words.code] if len(words.code) else np.zeros(0, np.int64)
    hit = np.flatnonzero(which >= 0)
    if len(hit) and len(common) <= 64:  # a row's distinct common words as the bits of one integer
        bits = np.left_shift(np.uint64(1), which[hit].astype(np.uint64))
        rows = words.row[hit]  # each row's words are contiguous
        starts = np.flatnonzero(np.concatenate([[True], rows[1:] != rows[:-1]]))
        distinct[rows[starts]] = _popcount(np.bitwise_or.reduceat(bits, starts))
    elif len(hit):  # a longer list: distinct (row, word) pairs
        pairs = np.unique(words.row[hit].astype(np.int64) * len(common) + which[hit])
        distinct = np.bincount(pairs // len(common), minlength=n)
    return distinct


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # numpy >= 2
        return np.bitwise_count(x).astype(np.int64)
    return np.array([int(m).bit_count() for m in x], dtype=np.int64)


def languages_of(column, distinct: np.ndarray, min_letters: int, rows: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``comment_language`` of the texts ``rows`` (all when None) of an Arrow string column, given each
    text's ``common_word_counts``: (codes as objects, confidence, letters), one entry per row asked;
    CLD2 runs only on the rows steps 1-2 leave."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if rows is not None:
        column, distinct = pc.take(column, pa.array(rows, pa.int64())), distinct[rows]
    n = len(column)
    codes = np.full(n, UNDETERMINED, dtype=object)
    confidence = np.zeros(n, dtype=np.float64)
    letters, other = _letters(column)
    enough = letters >= min_letters
    english = enough & (other == 0) & (distinct >= 3)
    codes[english], confidence[english] = "en", 1.0
    doubtful = np.flatnonzero(enough & ~english)
    if len(doubtful):  # what the cheap pass leaves: CLD2, one text at a time
        for i, text in zip(doubtful, pc.take(column, pa.array(doubtful, pa.int64())).to_pylist()):
            codes[i], confidence[i] = _cld2(text)
    return codes, confidence, letters


def comment_languages(texts, common: frozenset[str], min_letters: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``comment_language`` of every text of an ``extraction.sessions.features.Texts``, vectorised."""
    return languages_of(texts.texts, common_word_counts(texts, common), min_letters)


def session_language(codes, confidence, letters) -> tuple[str, float]:
    """(language, confidence) of a session from its comment turns' (in turn order)."""
    determined = [(c, p, n) for c, p, n in zip(codes, confidence, letters) if c != UNDETERMINED]
    if not determined:
        return UNDETERMINED, 0.0
    total = float(sum(n for _, _, n in determined))
    votes: dict[str, float] = {}
    for c, _, n in determined:
        votes[c] = votes.get(c, 0.0) + n
    best = max(votes.values())
    winner = next(c for c, _, _ in determined if votes[c] == best)
    return winner, float(np.round(sum(p * n for c, p, n in determined if c == winner) / total, 3))  # numpy's rounding, as the vectorised form
