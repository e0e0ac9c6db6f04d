"""What every rule needs, computed once per comment over a whole Arrow column (no per-row Python).

The rules themselves are written once, in plain Python, in ``extraction.sessions.filters`` (``LoadedRules``): that
is the reference. This module computes the same per-text features for a whole column with
pyarrow.compute (RE2) and numpy, and agrees with the reference on every text:

* words are Arrow's ``utf8_split_whitespace`` words, which split on exactly the characters
  ``str.split()`` does (checked over every code point in the tests), and whitespace classes in
  the patterns below list those characters;
* lower-casing is Arrow's ``utf8_lower``, equal to ``str.lower`` except on 76 rare code points
  and Greek final sigma: texts holding one of those (``_PY_LOWER``) are judged by the reference;
* patterns using ``\\w``/``\\b`` (URLs, offensive phrases), which RE2 reads as ASCII, are run by
  RE2 on every text and by the reference again on the few non-ASCII texts a relaxed pattern finds.

``tests/extraction/test_features.py`` compares every feature with the reference on generated and
hand-written texts, those edge cases included. Trigrams are those of ``filters.trigrams`` hashed to
64-bit integers (``Words.trigram_hashes``), so corpus-wide counts move as integers.
"""

from __future__ import annotations

import re
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

LoadedRules = "extraction.sessions.filters.LoadedRules"
"""What the ``rules`` argument below is (annotations only: the rules' module imports this one for
their vectorised forms, so this one does not import it back)."""

_PY_SPACE = "\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f \\x85\\xa0\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}"
"""The characters ``str.split()`` splits on, as an RE2 class body."""
_QUOTE_RE2 = rf"(?:^|\n)[{_PY_SPACE}]*(?:>|&gt;)"

HTML_ESCAPES = (("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&"))
"""Reddit's escaping, undone in this order (``&amp;`` last, so ``&amp;gt;`` becomes ``&gt;``)."""
ABSENT_TEXTS = ("[removed]", "[deleted]")
"""Bodies and self texts that stand for a text that is gone."""


_PY_LOWER = "[\\x{130}\\x{3a3}\\x{1c89}\\x{a7cb}-\\x{a7cc}\\x{a7ce}\\x{a7d2}\\x{a7d4}\\x{a7da}\\x{a7dc}-\\x{a7dd}\\x{a7e2}\\x{ab6c}-\\x{ab6d}\\x{10d50}-\\x{10d65}\\x{16ea0}-\\x{16eb8}\\x{1df40}\\x{1df48}\\x{1df4a}\\x{1df4d}\\x{1df51}\\x{1df68}\\x{1df6a}\\x{1df6c}\\x{1df6e}\\x{1df72}\\x{1df74}\\x{1df76}\\x{1df78}\\x{1df7a}\\x{1df7c}\\x{1df7e}]"
"""Texts with one of these go to the reference: İ, capital sigma, and the ranges where this Arrow's
Unicode tables differ from Python's (``tests/extraction/test_features.py`` checks the list)."""


def as_array(column) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    return column


def distinct(values: np.ndarray, presorted: bool = False) -> np.ndarray:
    """``np.unique(values)``, by one sort (``presorted``: none). numpy 2.4's ``np.unique`` without
    ``return_*`` hashes instead, and for millions of distinct 64-bit values that is over ten times
    slower than a sort (4.3 s against 0.3 s for 3 million)."""
    ordered = values if presorted else np.sort(values)
    keep = np.ones(len(ordered), dtype=bool)
    keep[1:] = ordered[1:] != ordered[:-1]
    return ordered[keep]


def _bool(array) -> np.ndarray:
    return pc.fill_null(array, False).to_numpy(zero_copy_only=False).astype(bool)


def python_rows(texts: pa.Array) -> np.ndarray:
    """Rows whose lower-casing only Python gets right (see ``_PY_LOWER``)."""
    non_ascii = np.flatnonzero(~_bool(pc.string_is_ascii(texts)) & _bool(pc.is_valid(texts)))
    out = np.zeros(len(texts), dtype=bool)
    if len(non_ascii):
        sub = pc.take(texts, pa.array(non_ascii, pa.int64()))
        out[non_ascii[_bool(pc.match_substring_regex(sub, _PY_LOWER))]] = True
    return out


def _regex(texts: pa.Array, pattern: str, ignore_case: bool = False) -> np.ndarray | None:
    """RE2 search over every row, or None when RE2 cannot run the pattern (then Python does)."""
    try:
        return _bool(pc.match_substring_regex(texts, pattern, ignore_case=ignore_case))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _take(texts: pa.Array, rows: np.ndarray) -> list:
    return pc.take(texts, pa.array(rows, pa.int64())).to_pylist() if len(rows) else []


def _with_python(values: np.ndarray | None, texts: pa.Array, rows: np.ndarray, fn) -> np.ndarray:
    """``values`` from Arrow, with ``rows`` (a mask; every row if Arrow could not) judged by ``fn``."""
    idx = np.arange(len(texts)) if values is None else np.flatnonzero(rows)
    out = np.zeros(len(texts), dtype=bool) if values is None else values
    for i, text in zip(idx, _take(texts, idx)):
        out[i] = fn(text or "")
    return out


def _ascii_only_pattern(pattern: str) -> bool:
    """Whether RE2 and Python's ``re`` read ``pattern`` alike on any text (no ASCII-vs-Unicode classes, no flags)."""
    return not re.search(r"\\[wWbBsSdD]|\(\?", pattern)


def _unicode_suspects(texts: pa.Array, relaxed: str, ignore_case: bool = False) -> np.ndarray:
    """Non-ASCII rows where ``relaxed`` (the pattern without its ``\\b``/``\\w`` parts) matches."""
    return ~_bool(pc.string_is_ascii(texts)) & (_regex(texts, relaxed, ignore_case) if relaxed else True)


def unescape_html(texts) -> pa.Array:
    """``filters.unescape_html`` over a column."""
    out = as_array(texts)
    for escaped, plain in HTML_ESCAPES:
        out = pc.replace_substring(out, escaped, plain)
    return out


def is_absent(texts) -> np.ndarray:
    """Null, empty, or one of ``ABSENT_TEXTS`` (around spaces)."""
    stripped = pc.utf8_trim_whitespace(pc.fill_null(as_array(texts), ""))
    return _bool(pc.equal(stripped, "")) | _bool(pc.is_in(stripped, value_set=pa.array(list(ABSENT_TEXTS), pa.string())))


# -- words and their hashes --------------------------------------------------------------------


def word_hash(words) -> np.ndarray:
    """Stable 64-bit hashes of strings (an Arrow string array, or a list of str; null hashes as the
    empty string), the same in every process and on every machine. Each string's UTF-8 bytes are
    read 8 at a time (little-endian, the last word zero-padded); each word, mixed with its
    position, goes through splitmix64's finaliser; the sum of a string's words, mixed with its
    length, through it again. Vectorised over all the words of many strings at once (cProfile: a
    Python BLAKE2b per string was 1.0 s of every million comments' extract)."""
    array = as_array(words) if not isinstance(words, list) else pa.array(words, pa.string())
    array = pc.fill_null(array, "")
    if pa.types.is_large_string(array.type):
        array = array.cast(pa.string())
    n = len(array)
    out = np.zeros(n, np.uint64)
    if not n:
        return out
    offsets = np.frombuffer(array.buffers()[1], np.int32)[array.offset: array.offset + n + 1].astype(np.int64)
    start, length = offsets[:-1], np.diff(offsets)
    data = array.buffers()[2]
    padded = np.zeros(int(offsets[-1]) + 8, np.uint8)  # room for the last 8-byte read
    if data is not None and offsets[-1]:
        padded[: offsets[-1]] = np.frombuffer(data, np.uint8, count=int(offsets[-1]))
    # every byte offset as the start of a little-endian 8-byte word (unaligned reads)
    eights = np.ndarray((len(padded) - 7,), dtype="<u8", buffer=padded, strides=(1,))
    chunks = (length + 7) // 8
    ends = np.cumsum(chunks)
    lo = 0
    while lo < n:  # strings in groups of about 4M words: bounded memory
        hi = max(lo + 1, int(np.searchsorted(ends, (ends[lo - 1] if lo else 0) + _GROUP_WORDS, side="right")))
        out[lo:hi] = _hash_group(eights, start[lo:hi], length[lo:hi], chunks[lo:hi])
        lo = hi
    return out


def _hash_group(eights: np.ndarray, start: np.ndarray, length: np.ndarray, chunks: np.ndarray) -> np.ndarray:
    total = int(chunks.sum())
    owner = np.repeat(np.arange(len(start)), chunks)
    first = np.cumsum(chunks) - chunks
    k = np.arange(total) - first[owner]  # the word's place in its string
    word = eights[start[owner] + 8 * k]
    left = length[owner] - 8 * k
    short = left < 8
    with np.errstate(over="ignore"):
        word[short] &= (np.uint64(1) << (left[short].astype(np.uint64) * np.uint64(8))) - np.uint64(1)
        mixed = splitmix64(word ^ (k.astype(np.uint64) * _WORD_PLACE))
        sums = np.zeros(len(start), np.uint64)
        some = chunks > 0
        if total:
            sums[some] = np.add.reduceat(mixed, first[some])
        return splitmix64(sums ^ (length.astype(np.uint64) * _WORD_PLACE + _WORD_SEED))


_WORD_PLACE = np.uint64(0xD6E8FEB86659FD93)
_GROUP_WORDS = 4 << 20
_WORD_SEED = np.uint64(0x243F6A8885A308D3)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's step and finaliser, element-wise on uint64 (the one mixer of every hash here:
    words, shingles, MinHash permutations)."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


class Words:
    """The lower-cased ``str.split()`` words of a column of texts, flattened.

    Each row's words are contiguous and in order; ``row[i]`` is the row of word ``i`` and
    ``code[i]`` its index in ``vocabulary``; ``per_row`` is the number of words of each row."""

    def __init__(self, texts: pa.Array, lowered: pa.Array, slow: np.ndarray):
        n = len(texts)
        # Arrow's split keeps an empty word for leading and trailing whitespace, and one for an
        # empty text: split the trimmed text and drop the words of empty texts.
        trimmed = pc.utf8_trim_whitespace(lowered)
        split = pc.utf8_split_whitespace(trimmed)
        flat = pc.list_flatten(split)
        lengths = pc.fill_null(pc.list_value_length(split), 0).to_numpy(zero_copy_only=False)
        row = np.repeat(np.arange(n), lengths)
        empty = _bool(pc.equal(trimmed, ""))
        slow = slow | empty  # (Python gives empty texts no words)
        slow_idx = np.flatnonzero(slow)
        if len(slow_idx):  # their words again, lower-cased by Python
            keep = ~slow[row]
            split_slow = [(text or "").lower().split() for text in _take(texts, slow_idx)]
            flat = pa.concat_arrays([pc.filter(flat, pa.array(keep)), pa.array([w for ws in split_slow for w in ws], pa.string())])
            row = np.concatenate([row[keep], np.repeat(slow_idx, [len(ws) for ws in split_slow])])
        encoded = pc.dictionary_encode(flat)
        self.row = row
        self.code = encoded.indices.to_numpy(zero_copy_only=False)
        self.vocabulary = encoded.dictionary
        self.per_row = np.bincount(row, minlength=n) if n else np.zeros(0, np.int64)

    def trigram_hashes(self) -> tuple[np.ndarray, np.ndarray]:
        """(hash, row) of every word trigram: the 64-bit form of ``filters.trigrams``."""
        row = self.row
        if len(row) < 3:
            return np.zeros(0, np.uint64), np.zeros(0, np.int64)
        h = word_hash(self.vocabulary)[self.code]
        same = row[2:] == row[:-2]
        with np.errstate(over="ignore"):
            x = h[:-2] * _K1
            x += h[1:-1] * _K2
            x += h[2:] * _K3
        return x[same], row[2:][same]

    def repeats(self, n: int, times: int) -> np.ndarray:
        """Rows where one word comes ``times`` times in a row (case-insensitively)."""
        out = np.zeros(n, dtype=bool)
        if len(self.code) < times:
            return out
        same = self.code[1:] == self.code[:-1]  # word i + 1 repeats word i ...
        same &= self.row[1:] == self.row[:-1]  # ... of the same row
        k = times - 1  # a run of `times` equal words: k equal neighbours in a row
        width = len(same) - k + 1
        run = same[:width].copy()
        for e in range(1, k):
            run &= same[e:e + width]
        out[self.row[k:][run]] = True
        return out


_K1, _K2, _K3 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F), np.uint64(0x165667B19E3779F9)


def _mix3(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """One 64-bit hash from three (a weighted sum, then splitmix64's finaliser)."""
    with np.errstate(over="ignore"):
        x = a * _K1
        x += b * _K2
        x += c * _K3
        x ^= x >> np.uint64(31)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(29)
    return x


def text_hashes(texts: pa.Array) -> np.ndarray:
    """A 64-bit hash of each whole text (null -> hash of the empty text)."""
    return word_hash(texts)


def combine_hashes(columns: np.ndarray) -> np.ndarray:
    """One 64-bit hash per row of a 2-D uint64 array (a session from its turns' hashes, in order)."""
    out = np.full(columns.shape[0], np.uint64(columns.shape[1]), dtype=np.uint64)
    for j in range(columns.shape[1]):
        out = _mix3(out, columns[:, j], np.full_like(out, j + 1))
    return out


# -- the rules' features -------------------------------------------------------------------------


class Texts:
    """A column of texts with what several features share: the lower-cased form, the words, and the
    rows only Python lower-cases right."""

    def __init__(self, texts):
        self.texts = as_array(texts)
        self.lowered = pc.utf8_lower(self.texts)
        self.slow = python_rows(self.texts)
        self.words = Words(self.texts, self.lowered, self.slow)

    def __len__(self) -> int:
        return len(self.texts)


def _null(texts: Texts) -> np.ndarray:
    return pc.is_null(texts.texts).to_numpy(zero_copy_only=False)


def deleted_comments(texts: Texts, authors, rules: LoadedRules) -> np.ndarray:
    """The ``deleted`` turn rule: no body, or one of ``deleted_bodies`` (around spaces)."""
    bodies = texts.texts
    deleted = _bool(pc.is_in(pc.utf8_trim_whitespace(bodies), value_set=pa.array(list(rules.cfg.deleted_bodies), pa.string())))
    return deleted | _null(texts)


def bot_comments(texts: Texts, authors, rules: LoadedRules) -> np.ndarray:
    """The ``bots`` turn rule, judged once per distinct author."""
    encoded = pc.dictionary_encode(as_array(authors))
    names = encoded.dictionary
    lowered = pc.utf8_lower(names)
    is_bot = _bool(pc.is_in(lowered, value_set=pa.array(sorted(rules.bot_authors), pa.string())))
    for suffix in rules.cfg.bot_suffixes:
        is_bot |= _bool(pc.ends_with(lowered, suffix))
    is_bot = np.append(_with_python(is_bot, names, python_rows(names), rules.is_bot), False)
    return is_bot[pc.fill_null(encoded.indices, len(names)).to_numpy(zero_copy_only=False)]


def quote_comments(texts: Texts, authors, rules: LoadedRules) -> np.ndarray:
    bodies = texts.texts
    quote = pc.match_substring_regex(bodies, "&gt;|>") if rules.cfg.quotes_anywhere else pc.match_substring_regex(bodies, _QUOTE_RE2)
    return _bool(quote) & ~_null(texts)


def short_comments(texts: Texts, authors, rules: LoadedRules) -> np.ndarray:
    return (comment_words(texts) < rules.cfg.min_comment_words) & ~_null(texts)


def turn_cut(texts: Texts, authors, rules: LoadedRules, comments: pa.Table | None = None) -> np.ndarray:
    """Index + 1 in ``TURN_RULES`` of the first turn rule each comment fails, 0 when it can be a turn
    (``comments``: the table whose marks the rules with ``marks`` read)."""
    cut = np.zeros(len(texts), dtype=np.int8)
    for rule in reversed(rules.on("turn")):  # assigned last rule first, so the first rule that fails wins
        fails = rule.fails(texts, authors, rules, comments) if rule.marks else rule.fails(texts, authors, rules)
        cut[np.asarray(fails, dtype=bool)] = rules.turn_code(rule.name)
    return cut


def moderator_comments(texts: Texts, authors, rules: LoadedRules, comments: pa.Table | None) -> np.ndarray:
    """The ``moderator`` turn rule: distinguished by a moderator, or stickied (null marks pass)."""
    out = np.zeros(len(texts), dtype=bool)
    if comments is None:
        return out
    if "distinguished" in comments.column_names:
        out |= _bool(pc.fill_null(pc.equal(comments.column("distinguished"), "moderator"), False))
    if "stickied" in comments.column_names:
        out |= _bool(pc.fill_null(comments.column("stickied"), False))
    return out


def comment_words(texts: Texts) -> np.ndarray:
    """``dialogpt.comment_words`` of every text: its words less those made of backslashes only."""
    words = texts.words
    only_backslashes = _bool(pc.match_substring_regex(words.vocabulary, r"^\\+$"))
    return words.per_row - np.bincount(words.row[only_backslashes[words.code]], minlength=len(texts))


# -- the session rules' features: each the vectorised form of a ``filters.Feature`` -------------


def n_words(texts: Texts, rules: LoadedRules) -> np.ndarray:
    return texts.words.per_row.astype(np.int64)


def has_url(texts: Texts, rules: LoadedRules) -> np.ndarray:
    raw = texts.texts
    pattern = rules.url_pattern.pattern
    url = _regex(raw, pattern, ignore_case=True)
    relaxed = r"\.(?:" + pattern.rsplit(r"\.(?:", 1)[1].split(")", 1)[0] + ")" if r"\.(?:" in pattern else ""
    off = np.zeros(len(raw), bool)
    return _with_python(url, raw, _unicode_suspects(raw, relaxed, True) if url is not None else off, rules.has_url)


def has_long_word(texts: Texts, rules: LoadedRules) -> np.ndarray:
    chars = rules.cfg.max_word_chars
    long_word = _regex(texts.texts, f"[^{_PY_SPACE}]{{{chars + 1},}}") if chars < 999 else None
    return _with_python(long_word, texts.texts, np.zeros(len(texts), bool), rules.has_long_word)


def is_shouting(texts: Texts, rules: LoadedRules) -> np.ndarray:
    raw, pattern = texts.texts, rules.cfg.shouting_pattern
    shouting = _regex(raw, pattern)
    off = np.zeros(len(raw), bool)
    suspects = off if _ascii_only_pattern(pattern) else ~_bool(pc.string_is_ascii(raw))
    return _with_python(shouting, raw, suspects if shouting is not None else off, rules.is_shouting)


def has_markup(texts: Texts, rules: LoadedRules) -> np.ndarray:
    chars = rules.cfg.markup_chars
    if not chars:
        return np.zeros(len(texts), bool)
    found = _regex(texts.texts, "[" + "".join("\\x{%x}" % ord(c) for c in chars) + "]")
    return _with_python(found, texts.texts, np.zeros(len(texts), bool), rules.has_markup)


def has_repeat(texts: Texts, rules: LoadedRules) -> np.ndarray:
    return _with_python(texts.words.repeats(len(texts), rules.cfg.word_repeat_times), texts.texts, texts.slow, rules.has_repeat)


def has_common_word(texts: Texts, rules: LoadedRules) -> np.ndarray:
    usable = sorted(w for w in rules.common_words if w and all(c in _WORD_CHARS for c in w))
    found = _regex(texts.lowered, "(?:^|[^a-z])(?:" + "|".join(_re2_escape(w) for w in usable) + ")(?:[^a-z]|$)") \
        if usable else np.zeros(len(texts), bool)
    return _with_python(found, texts.texts, texts.slow, rules.has_common_word)


def is_offensive(texts: Texts, rules: LoadedRules) -> np.ndarray:
    if rules.offensive is None:
        return np.zeros(len(texts), bool)
    pattern = rules.offensive.pattern
    found = _regex(texts.lowered, pattern)
    suspects = texts.slow | _unicode_suspects(texts.lowered, pattern.replace(r"\b", "")) if found is not None \
        else np.zeros(len(texts), bool)
    return _with_python(found, texts.texts, suspects, rules.is_offensive)


def text_features(texts: Texts, rules: LoadedRules, title: bool = False) -> dict[str, np.ndarray]:
    """Every per-text feature the session rules switched on read (``LoadedRules.features``), one value per text.

    Titles are context for the features declared ``titles`` only (``url``, ``n_words``): their
    other features are False (0). Null texts count as empty. With ``filters.normalize=dialogpt``
    the features declared ``normalized`` are computed per text, in Python (the released extractor's
    form needs NLTK's tokenizer)."""
    n = len(texts)
    wanted = [f for f in rules.features()]
    normalized = [f for f in wanted if f.normalized and (f.titles or not title)] if rules.cfg.normalize == "dialogpt" else []
    out = {f.name: np.zeros(n, dtype=f.dtype) for f in normalized}
    if normalized:
        for i, text in enumerate(texts.texts.to_pylist()):
            values = rules.normalized_features(text or "")
            for f in normalized:
                out[f.name][i] = values[f.name]
    for f in wanted:
        if f.name in out:
            continue
        out[f.name] = np.asarray(f.vectorised(texts, rules), dtype=f.dtype) if f.titles or not title else np.zeros(n, dtype=f.dtype)
    return out


_WORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz")


def _re2_escape(word: str) -> str:
    return "".join(c if c.isalnum() else "\\" + c for c in word)
