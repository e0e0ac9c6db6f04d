"""Near-duplicate replies: MinHash signatures, LSH bands, verified pairs and clusters.

The ``near_duplicate_response`` rule (``filters.near_duplicate``) drops every reply but one of each
cluster of replies that are near copies of each other, across the whole corpus:

1. **Text.** A reply is read as the rules read it (PII masked to plain words, so two replies that
   differ in a masked address are alike), lower-cased, every run of characters that are neither
   letters nor digits made one space. Its shingles are its word ``near_duplicate_shingle``-grams
   (4), hashed to 64 bits. A reply of fewer words than that has no shingle and is not judged: its
   copies are exact duplicates, which ``duplicate_response`` removes.
2. **Signature.** ``near_duplicate_bands`` x ``near_duplicate_rows`` (20 x 5) MinHash values per
   reply: the minimum over its shingles of each of that many 16-bit hash functions (multiply-shift
   in 32 bits: the top 16 bits of ``a * x + b`` modulo 2**32, ``a`` odd, of the shingle's splitmix64
   hash folded to 32 bits), computed vectorised over a whole bucket.
3. **Bands.** The values of each band hash to one 64-bit band key; two replies that share a band
   key are candidates. The probability that a pair of Jaccard ``s`` shares a band is
   ``1 - (1 - s**r)**b`` (the S-curve; ``s_curve``): with 20 x 5 at the threshold 0.8, 0.9996, so a
   pair at the threshold is missed 4 times in 10,000; a pair at 0.5 becomes a candidate with
   probability 0.47 and at 0.3 with 0.05 (candidates are verified, so this costs time only).
4. **Pairs.** Replies equal once normalised are linked to the earliest session among them at
   once (Jaccard 1): in their bucket, and across buckets through the hash of the normalised text
   carried with each band key. Band keys are exchanged between the Spark tasks by key range
   (``extraction.spark.exchange``, nothing goes to the driver). In each group of the other replies
   sharing a key, every pair is a candidate when the group has at most ``near_duplicate_max_group``
   (8) replies; in a larger group each reply is paired with the group's earliest session only,
   so a group of n replies gives n - 1 pairs, never n x n. A pair whose shingle counts alone rule
   the threshold out (Jaccard <= smaller / larger) is dropped there.
5. **Verify.** The two texts of each candidate pair are looked up (by the bucket of one side, then
   of the other) with the sketches of their signatures (``sketch``: a byte of each value); a pair
   whose sketches agree in fewer values than ``agreement_cutoff`` allows (a pair at the threshold
   falls below it once in a million) is let go, and for the others the exact Jaccard of their
   shingle sets is computed, vectorised; pairs at ``near_duplicate_threshold`` (0.8) or above are
   near duplicates.
6. **Clusters.** Near duplicates are linked transitively (A ~ B and B ~ C put A, B and C in one
   cluster even when A and C differ more): the connected components of the verified pairs, in the
   driver over those pairs alone (by Spark tasks in rounds when they are many:
   ``extraction.sessions.clusters``). The earliest session of each cluster is kept (the extract
   job's ids are order keys, ``threads.earliest_keys``: the reply's time, then the id as a base-36
   number), every other is dropped with ``duplicate_of`` naming it. The same on every run and with any number of
   tasks.

``tests.kit.reference`` does steps 1, 5 and 6 over every pair, without LSH.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from extraction.sessions.features import as_array, splitmix64, word_hash
from extraction.sessions.thread_keys import BASE36, order_key_integers

_MASK32 = np.uint64(0xFFFFFFFF)


def normalize(texts) -> pa.Array:
    """Lower-cased, every run of non-letters-or-digits one space, trimmed (null: empty).

    ASCII texts (most of Reddit) are done byte by byte in numpy (``_normalize_ascii``), the others
    by Arrow's lower-casing and one RE2 replacement; both give the same text for an ASCII text."""

    texts = pc.fill_null(as_array(texts), "")
    if texts.type != pa.string():
        texts = texts.cast(pa.string())
    ascii_rows = pc.string_is_ascii(texts).to_numpy(zero_copy_only=False)
    if ascii_rows.all():
        return _normalize_ascii(texts)
    if not ascii_rows.any():
        return _normalize_unicode(texts)
    ascii_at, other_at = np.flatnonzero(ascii_rows), np.flatnonzero(~ascii_rows)
    both = pa.concat_arrays([_normalize_ascii(pc.take(texts, pa.array(ascii_at, pa.int64()))),
                             _normalize_unicode(pc.take(texts, pa.array(other_at, pa.int64())))])
    place = np.empty(len(texts), dtype=np.int64)  # row i of the input is row place[i] of ``both``
    place[ascii_at] = np.arange(len(ascii_at))
    place[other_at] = len(ascii_at) + np.arange(len(other_at))
    return pc.take(both, pa.array(place, pa.int64()))


def _normalize_unicode(texts: pa.Array) -> pa.Array:
    out = pc.replace_substring_regex(pc.utf8_lower(texts), r"[^\p{L}\p{N}]+", " ")
    return pc.utf8_trim_whitespace(out)


_ASCII_MAP = np.full(256, 32, dtype=np.uint8)  # every byte that is no ASCII letter or digit: a space
_ASCII_MAP[48:58] = np.arange(48, 58)
_ASCII_MAP[97:123] = np.arange(97, 123)
_ASCII_MAP[65:91] = np.arange(97, 123)


def _normalize_ascii(texts: pa.Array) -> pa.Array:
    """``normalize`` of texts that are all ASCII (no nulls), vectorised over their bytes: letters
    lower-cased, other bytes spaces, a space kept only where it is the first after a word and
    another word follows in the same text."""
    n = len(texts)
    offsets = np.frombuffer(texts.buffers()[1], np.int32)[texts.offset: texts.offset + n + 1].astype(np.int64)
    data = texts.buffers()[2]
    if data is None or offsets[-1] == offsets[0]:
        return pa.array([""] * n, pa.string())
    mapped = _ASCII_MAP[np.frombuffer(data, np.uint8)[offsets[0]: offsets[-1]]]
    offsets -= offsets[0]
    word = mapped != 32
    nonempty = offsets[:-1] < offsets[1:]
    starts, ends = offsets[:-1][nonempty], offsets[1:][nonempty]  # the first byte and the end of each non-empty text
    after_word = np.empty(len(word), dtype=bool)  # the byte before is a word byte of the same text
    after_word[0] = False
    after_word[1:] = word[:-1]
    after_word[starts] = False
    keep = word | after_word  # words, and the first byte of each run of others after a word ...
    position = np.where(word, np.arange(len(word), dtype=np.int32), np.int32(-1))
    last_word = np.maximum.reduceat(position, starts)  # ... but the run that ends a text
    trailing = (~word[ends - 1]) & (last_word >= starts)
    keep[last_word[trailing] + 1] = False
    per_text = np.zeros(n, dtype=np.int64)
    per_text[nonempty] = np.add.reduceat(keep.view(np.uint8), starts, dtype=np.int64)
    kept = np.concatenate([[0], np.cumsum(per_text)])  # (never more bytes than the int32 offsets held)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(kept.astype(np.int32).tobytes()),
                                                  pa.py_buffer(mapped[keep].tobytes())])


def words(texts, normalized: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(hash, row) of every word of the normalised texts, in order (``normalized``: the texts are
    ``normalize``'s already)."""

    normalized = pc.fill_null(as_array(texts), "") if normalized else normalize(texts)
    split = pc.utf8_split_whitespace(normalized)
    lengths = pc.list_value_length(split).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = pc.list_flatten(split)
    empty = pc.equal(normalized, "").to_numpy(zero_copy_only=False)
    if empty.any():  # (an empty text splits into one empty word)
        flat = pc.filter(flat, pa.array(np.repeat(~empty, lengths)))
        lengths[empty] = 0
    if not len(flat):
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    encoded = pc.dictionary_encode(flat)
    h = word_hash(encoded.dictionary)[encoded.indices.to_numpy(zero_copy_only=False)]
    return h, np.repeat(np.arange(len(lengths)), lengths)


def shingles(texts, k: int, normalized: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(hash, row) of every word ``k``-gram of the normalised texts (rows with fewer words have none);
    ``normalized``: the texts are ``normalize``'s already."""
    return word_shingles(*words(texts, normalized), k)


def word_shingles(h: np.ndarray, row: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``shingles`` from ``words``' (hash, row)."""
    n = len(h) - k + 1
    if n <= 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    acc = np.full(n, np.uint64(k), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(k):
            acc = splitmix64(acc ^ h[j:j + n])
    same = row[k - 1:] == row[:n]
    return acc[same], row[:n][same]


def text_hashes(h: np.ndarray, row: np.ndarray, n: int) -> np.ndarray:
    """A 64-bit hash of each of ``n`` normalised texts from ``words``' (hash, row): equal texts (the
    same words in the same order) get equal hashes, in every process; a text without words 0."""
    out = np.zeros(n, dtype=np.uint64)
    if not len(h):
        return out
    first = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])
    length = np.diff(np.r_[first, len(h)])
    position = np.arange(len(h)) - np.repeat(first, length)
    with np.errstate(over="ignore"):
        mixed = splitmix64(h ^ splitmix64(position.astype(np.uint64)))
        total = np.add.reduceat(mixed, first)
        out[row[first]] = splitmix64(total ^ length.astype(np.uint64))
    return out


def distinct_per_row(hashes: np.ndarray, row: np.ndarray, n: int) -> np.ndarray:
    """How many distinct shingles each of ``n`` rows has (``rows`` ascending, as ``shingles`` gives
    them): one sort of (row, hash) packed in 64 bits, the hash cut to what the row leaves."""
    if not len(row):
        return np.zeros(n, np.int64)
    bits = max(1, int(n).bit_length())
    packed = (row.astype(np.uint64) << np.uint64(64 - bits)) | (hashes >> np.uint64(bits))
    packed.sort()
    new = np.ones(len(packed), dtype=bool)
    new[1:] = packed[1:] != packed[:-1]
    return np.bincount((packed[new] >> np.uint64(64 - bits)).astype(np.int64), minlength=n)


def shingle_set(text: str | None, k: int) -> set[int]:
    """The shingle hashes of one text (the reference, and the verification of a pair)."""
    h, _ = shingles(pa.array([text or ""], pa.string()), k)
    return set(h.tolist())


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


def signatures(hashes: np.ndarray, rows: np.ndarray, n: int, num_perm: int, block: int = 1 << 15,
               per: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """MinHash signatures (``num_perm`` 16-bit values, held as uint32) of the rows that have
    shingles, and which rows those are.

    ``hashes``/``rows`` as ``shingles`` gives them (rows in order). Each hash function is 32-bit
    multiply-shift over the shingle's splitmix64 hash folded to 32 bits: the top 16 bits of
    ``a * x + b`` modulo 2**32 (``a`` odd). In 32 bits numpy multiplies with SIMD, far faster than
    in 64; 16 bits make two different minima equal 1 time in 65,536, which adds (1 - J) / 65,536
    to a pair's agreement. The work goes in pieces of whole rows of about ``block`` shingles, ``per``
    functions at a time, so each piece stays in the CPU's cache (memory, not arithmetic, was the
    cost of one pass over a whole bucket) and memory is bounded whatever the bucket."""
    present = np.unique(rows)
    if not len(present):
        return np.zeros((0, num_perm), np.uint32), present
    starts = np.searchsorted(rows, present)
    seeds = splitmix64(np.arange(1, 2 * num_perm + 1, dtype=np.uint64))
    mult = (seeds[:num_perm] & _MASK32).astype(np.uint32)[:, None] | np.uint32(1)  # odd multipliers
    add = (seeds[num_perm:] >> np.uint64(32)).astype(np.uint32)[:, None]
    mixed = splitmix64(hashes)
    x = ((mixed >> np.uint64(32)) ^ (mixed & _MASK32)).astype(np.uint32)
    out = np.empty((len(present), num_perm), dtype=np.uint32)
    ends = np.append(starts[1:], len(x))
    first = 0
    with np.errstate(over="ignore"):
        while first < len(starts):  # rows first..last-1: whole rows of about ``block`` shingles
            last = max(first + 1, int(np.searchsorted(ends, starts[first] + block, side="right")))
            lo, hi = int(starts[first]), int(ends[last - 1])
            piece, local = x[lo:hi], starts[first:last] - lo
            for p in range(0, num_perm, per):
                values = piece[None, :] * mult[p:p + per]  # (functions, shingles)
                values += add[p:p + per]
                values >>= np.uint32(16)
                out[first:last, p:p + per] = np.minimum.reduceat(values, local, axis=1).T
            first = last
    return out, present


def band_keys(sig: np.ndarray, bands: int, rows_per_band: int) -> np.ndarray:
    """One 64-bit key per band per signature, shape (n, bands); keys of different bands never meet."""
    n = len(sig)
    out = np.empty((n, bands), dtype=np.uint64)
    for b in range(bands):
        acc = np.full(n, splitmix64(np.array([b + 1], np.uint64))[0], dtype=np.uint64)
        for j in range(rows_per_band):
            acc = splitmix64(acc ^ sig[:, b * rows_per_band + j].astype(np.uint64))
        out[:, b] = acc
    return out


SKETCH_MISS = 1e-6
"""The chance that a pair at the threshold is left out by its signatures' agreement (``agreement_cutoff``)."""


def sketch(sig: np.ndarray) -> np.ndarray:
    """The lowest 8 bits of each signature value, one byte each (n, num_perm): what travels with a
    reply's text to the verification. Two replies' bytes agree where their values do, and by
    chance 1 time in 256 where not."""
    return (sig & np.uint32(0xFF)).astype(np.uint8)


def agreement_cutoff(threshold: float, values: int, miss: float = SKETCH_MISS) -> int:
    """The fewest agreeing sketch bytes a candidate pair needs to be verified: the largest ``c``
    such that a pair at the threshold (each byte agreeing with probability at least the threshold,
    independently: one hash function each) has fewer than ``c`` with probability at most ``miss``."""
    from math import comb

    p = min(1.0, threshold)
    below = 0.0
    for c in range(values + 1):  # below = P(agreeing < c)
        term = comb(values, c) * p ** c * (1 - p) ** (values - c)
        if below + term > miss:
            return c
        below += term
    return values


def s_curve(s: float, bands: int, rows_per_band: int) -> float:
    """The probability that a pair of Jaccard ``s`` shares at least one band."""
    return 1.0 - (1.0 - s ** rows_per_band) ** bands


def candidate_pairs(keys: np.ndarray, ids, max_group: int, skip: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs (index a, index b), a's id above b's, from rows (band key, session id):
    every pair of a group of at most ``max_group`` rows sharing a key, else each row with the
    group's smallest id. Each pair once. ``ids``: the session ids, or integers in their order
    (``id_order``'s); ``skip``: rows no pair of two of which is made (an earlier batch's, decided there)."""
    if not len(keys):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    rank = ids if isinstance(ids, np.ndarray) else id_order(ids)
    order = np.lexsort((rank, keys))
    k = keys[order]
    start = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    size = np.diff(np.r_[start, len(k)])
    a_out, b_out = [], []
    for n in np.unique(size[(size > 1) & (size <= max_group)]):  # groups of one size at once: every pair
        starts = start[size == n]
        members = order[starts[:, None] + np.arange(n)[None, :]]  # (groups, n), each row sorted by id
        i, j = np.triu_indices(n, 1)
        a_out.append(members[:, j].ravel())
        b_out.append(members[:, i].ravel())
    big = size > max_group  # a star: each member with the group's smallest id
    if big.any():
        counts = size[big]
        firsts = start[big]
        within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        rows = np.repeat(firsts, counts) + within
        keep = within > 0
        a_out.append(order[rows[keep]])
        b_out.append(order[np.repeat(firsts, counts)[keep]])
    if not a_out:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    a, b = np.concatenate(a_out), np.concatenate(b_out)
    if skip is not None:
        made = ~(skip[a] & skip[b])
        a, b = a[made], b[made]
    if not len(a):
        return a, b
    by = np.lexsort((rank[b], rank[a]))  # stable: the first row of each pair of ids stays
    ra, rb = rank[a][by], rank[b][by]
    first = np.ones(len(by), dtype=bool)
    first[1:] = (ra[1:] != ra[:-1]) | (rb[1:] != rb[:-1])
    return a[by[first]], b[by[first]]


_ID_PLACES = 12
"""Base-36 ids up to this long pack into 64 bits (37 ** 12 < 2 ** 63: ``near_sessions._ranks`` sets the top bit)."""
_ID_SYMBOL = np.where(BASE36 < 36, BASE36 + 1, 0).astype(np.uint8)  # (1-36; 0: not a base-36 character)
_ID_PLACE = np.uint64(37) ** np.arange(_ID_PLACES - 1, -1, -1, dtype=np.uint64)


def id_order(ids: pa.Array) -> np.ndarray:
    """One integer per id whose order and equality are the ids' string order and equality.

    Reddit's ids are base 36 (``0-9a-z``, digits below letters as in ASCII), seven characters
    today: up to ``_ID_PLACES`` of them pack into a uint64, a place per character holding 1-36, or
    0 past the id's end, so a shorter id sorts before the longer ones it starts (``a`` < ``a0`` <
    ``b``), as strings do; no string sort. Order keys (``thread_keys.order_key_integers``) by their
    parts. Any other id (a null, another character, a longer id): each id's rank among the distinct
    ids, by a dictionary and a string sort."""
    ids = as_array(ids)
    if ids.type == pa.string() and not ids.null_count and len(ids):
        offsets = np.frombuffer(ids.buffers()[1], np.int32, len(ids) + 1, ids.offset * 4)
        data = np.frombuffer(ids.buffers()[2], np.uint8) if ids.buffers()[2] is not None else np.zeros(0, np.uint8)
        lengths = np.diff(offsets)
        width = int(lengths.max())
        if width <= _ID_PLACES:
            out = np.zeros(len(ids), dtype=np.uint64)
            at, past = np.empty(len(ids), dtype=np.int64), np.empty(len(ids), dtype=bool)
            for place in range(width):  # Horner's rule, a place at a time, 0 past an id's end
                np.minimum(np.add(offsets[:-1], place, out=at), max(len(data) - 1, 0), out=at)
                code = _ID_SYMBOL[np.take(data, at)]
                np.less_equal(lengths, place, out=past)
                if ((code == 0) & ~past).any():  # a character outside 0-9a-z
                    break
                code[past] = 0
                out *= np.uint64(37)
                out += code
            else:
                out *= _ID_PLACE[width - 1]
                return out
    packed = order_key_integers(ids)  # (the extract job's ids are order keys)
    if packed is not None:
        return packed
    encoded = pc.dictionary_encode(ids)
    order = pc.sort_indices(encoded.dictionary).to_numpy(zero_copy_only=False)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank[encoded.indices.to_numpy(zero_copy_only=False)]


def components(a: pa.Array, b: pa.Array) -> tuple[pa.Array, pa.Array]:
    """The connected components of the pairs (a[i], b[i]) of session ids: (member, the smallest id
    of its component) for every id that is not that smallest one, sorted by member."""
    ids = pa.concat_arrays([as_array(a), as_array(b)]) if len(a) else pa.array([], pa.string())
    member, root = component_rows(id_order(ids), len(a))
    return pc.take(ids, pa.array(member, pa.int64())), pc.take(ids, pa.array(root, pa.int64()))


def component_rows(keys: np.ndarray, pairs: int) -> tuple[np.ndarray, np.ndarray]:
    """``components`` as positions in ``a`` followed by ``b`` (an id's first place there): the
    members', sorted by member id, and their roots'. ``keys``: ``id_order`` of ``a`` followed by
    ``b``, ``pairs`` long each (integers for Reddit's ids: no string sort, no dictionary of strings)."""
    if not len(keys):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)  # ids in string order
    u, v = inverse[:pairs], inverse[pairs:]
    label = np.arange(len(first))
    while True:  # min-label propagation with pointer jumping: labels only fall, so it ends
        before = label.copy()
        low = np.minimum(label[u], label[v])
        np.minimum.at(label, u, low)
        np.minimum.at(label, v, low)
        label = label[label]
        if np.array_equal(label, before):
            break
    members = np.flatnonzero(label != np.arange(len(first)))  # in string order: sorted by member
    return first[members], first[label[members]]
