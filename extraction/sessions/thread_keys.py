"""Where a thread lives and which copy of a comment counts: a thread's place in the fixed hash space
(``thread_places``, ``piece_of``), the order that keeps the earliest copy (``earliest_keys``), ids
without their prefix, cycles of parent links and the longest chains (the chain walk's helpers),
and one row per id (``dedupe_by_id``). Arrays in, arrays out: no Spark, no files."""

from __future__ import annotations
import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from extraction.sessions.features import as_array

_DIGITS36 = np.array(list("0123456789abcdefghijklmnopqrstuvwxyz"), dtype=object)
BASE36 = np.full(256, 255, dtype=np.uint8)
BASE36[np.frombuffer("".join(_DIGITS36).encode(), np.uint8)] = np.arange(36, dtype=np.uint8)
"""Each byte's value as a base-36 digit (Reddit's ids), 255 for a byte that is not one."""


def _np(array, fill=None) -> np.ndarray:
    array = as_array(array)
    if fill is not None:
        array = pc.fill_null(array, fill)
    return array.to_numpy(zero_copy_only=False)


def thread_places(keys) -> np.ndarray:
    """Each thread id's place in the fixed 64-bit hash space: the first 8 bytes of its blake2b
    (little-endian), the same everywhere and in every run (no per-process seed, no dependence on
    the corpus), so a month added later puts a thread where its earlier months did."""
    keys = as_array(keys)
    if len(keys) == 0:
        return np.zeros(0, dtype=np.uint64)
    encoded = pc.dictionary_encode(keys)
    names = encoded.dictionary.to_pylist()
    per_name = np.fromiter((int.from_bytes(hashlib.blake2b(k.encode(), digest_size=8).digest(), "little") for k in names),
                           dtype=np.uint64, count=len(names))
    per_name = np.append(per_name, np.uint64(0))  # null ids: place 0
    return per_name[pc.fill_null(encoded.indices, len(names)).to_numpy(zero_copy_only=False)]


def piece_of(places: np.ndarray, pieces: int) -> np.ndarray:
    """The piece (0..pieces-1) of each place when the hash space is cut into ``pieces`` contiguous
    ranges of equal width: ``floor(place * pieces / 2**64)``. Pieces of a power-of-two count nest
    (piece ``i`` of 2^k is pieces ``2i`` and ``2i + 1`` of 2^(k+1)), and piece order is place order,
    so contiguous pieces are a contiguous range of the space."""
    places = np.asarray(places, dtype=np.uint64)
    if pieces <= 1:
        return np.zeros(len(places), dtype=np.int64)
    if pieces & (pieces - 1) == 0:
        return (places >> np.uint64(64 - pieces.bit_length() + 1)).astype(np.int64)
    hi, lo = places >> np.uint64(32), places & np.uint64(0xFFFFFFFF)  # 128-bit product, by halves
    n = np.uint64(pieces)
    return ((hi * n + ((lo * n) >> np.uint64(32))) >> np.uint64(32)).astype(np.int64)


def thread_bucket(keys, buckets: int) -> np.ndarray:
    """The piece (0..buckets-1) of each thread id's place (``thread_places``, ``piece_of``)."""
    return piece_of(thread_places(keys), buckets)


ORDER_MARK = "!"
"""The first character of an order key (``earliest_keys``): below every base-36 character."""
ORDER_CHARS = 12
"""Characters of an order key before the session id it ends with."""
def earliest_keys(ids, created) -> pa.Array:
    """One string per session whose string order is the order in which the corpus rules keep copies,
    the earliest first: the last turn's ``created_utc``, then the id read as a base-36 number (a
    shorter id first, then by its characters; Reddit's ids have no leading zero). It is
    ``ORDER_MARK``, 10 digits of seconds, the id's length as one base-36 digit, and the id
    (``plain_ids`` takes it back), so a later month never changes which copy is the earliest."""
    ids = as_array(ids)
    seconds = pc.utf8_lpad(pc.cast(pc.fill_null(as_array(created), 0), pa.string()), 10, "0")
    length = pa.array(_DIGITS36[np.minimum(_np(pc.utf8_length(ids), 0), 35)], pa.string())
    return pc.binary_join_element_wise(pa.array([ORDER_MARK] * len(ids), pa.string()), seconds, length, ids, "")


EARLIER_MARK = " "
"""Before an order key: a session of an earlier batch of a corpus, in the near-duplicate steps of a
later batch's run (``extraction.sessions.batches``): ordered before every session of that batch."""

_MARK = ord(ORDER_MARK)
_MAX_PREFIXES = 8


def order_key_integers(ids: pa.Array) -> np.ndarray | None:
    """One integer below 2**63 per order key (``earliest_keys``, after a prefix of at most two
    characters such as ``EARLIER_MARK``) whose order and equality are the keys' string order and
    equality; None when a key is not one, or the integers would not fit (then sort the strings).

    A key is (prefix, seconds, id length, id), compared in that order: the prefixes ranked among
    the few there are, the seconds as they are (or ranked, when their span is too wide), the id as
    a base-36 number offset by the numbers of all shorter ids. No string sort, no dictionary."""
    from numpy.lib.stride_tricks import sliding_window_view

    n = len(ids)
    if not n or ids.type != pa.string() or ids.null_count or ids.buffers()[2] is None:
        return None
    offsets = np.frombuffer(ids.buffers()[1], np.int32, n + 1, ids.offset * 4)
    start, lengths = offsets[:-1].astype(np.int64), np.diff(offsets)
    if lengths.min() < ORDER_CHARS + 1:
        return None
    window = 2 + int(lengths.max())  # (a key moved back by its prefix still ends within it)
    buffer, used = ids.buffers()[2], int(offsets[-1])
    if buffer.size >= used + window:  # (Arrow pads its buffers: no copy)
        data = np.frombuffer(buffer, np.uint8, used + window)
    else:
        data = np.zeros(used + window, np.uint8)
        data[:used] = np.frombuffer(buffer, np.uint8, used)
    rows = sliding_window_view(data, window)[start]  # each key's characters, then whatever follows it
    h0, h1, h2 = rows[:, 0], rows[:, 1], rows[:, 2]
    at0 = h0 == _MARK  # the mark is within the first three characters, a prefix before it
    at1 = ~at0 & (h1 == _MARK) & (h0 >= 32)
    at2 = ~at0 & ~at1 & (h2 == _MARK) & (h0 >= 32) & (h1 >= 32)
    if not (at0 | at1 | at2).all():
        return None
    plen = at1.astype(np.int64) + 2 * at2
    packed = np.where(at0, _MARK << 16, np.where(at1, (h0.astype(np.int32) << 16) | (_MARK << 8),
                                                 (h0.astype(np.int32) << 16) | (h1.astype(np.int32) << 8) | _MARK))
    prefixes, rest = [], packed  # (prefix and mark, zero-padded: in string order as integers)
    while len(rest) and len(prefixes) <= _MAX_PREFIXES:
        prefixes.append(int(rest[0]))
        rest = rest[rest != rest[0]]
    if len(rest):
        return None
    prefix = np.searchsorted(np.sort(prefixes), packed).astype(np.uint64)
    width = lengths - plen - ORDER_CHARS  # the id's characters
    low, high = int(width.min()), int(width.max())
    if high > 12:
        return None
    key = rows[:, :ORDER_CHARS + high]
    for p in (1, 2):  # (the keys after a prefix, moved to their mark)
        if (plen == p).any():
            key[plen == p] = rows[plen == p, p:p + ORDER_CHARS + high]
    digits = key[:, 1:ORDER_CHARS - 1] - np.uint8(48)
    if (digits > 9).any() or (BASE36[key[:, ORDER_CHARS - 1]] != width).any():
        return None
    seconds = (digits @ (10.0 ** np.arange(ORDER_CHARS - 3, -1, -1))).astype(np.int64)  # (exact in a double: < 2**53)
    chars = BASE36[key[:, ORDER_CHARS:]]
    if low < high:
        chars[np.arange(high)[None, :] >= width[:, None]] = 0
    if (chars == 255).any():
        return None
    if high <= 10:  # 36**10 < 2**53
        value = (chars @ (36.0 ** np.arange(high - 1, -1, -1))).astype(np.uint64)
    else:
        value = chars.astype(np.uint64) @ (np.uint64(36) ** np.arange(high - 1, -1, -1, dtype=np.uint64))
    if low < high:  # left-aligned: the number, then the numbers of every shorter id below it
        value //= np.uint64(36) ** (high - width).astype(np.uint64)
    below = np.cumsum(np.r_[0, 36 ** np.arange(high, dtype=np.uint64)]).astype(np.uint64)
    value += below[width] - below[low]
    room = int(below[high] - below[low]) + 36 ** high
    seconds -= seconds.min()
    if len(prefixes) * (int(seconds.max()) + 1) * room >= 2 ** 63:
        ordered = np.sort(seconds)
        seconds = np.searchsorted(ordered[np.r_[True, ordered[1:] != ordered[:-1]]], seconds)
        if len(prefixes) * (int(seconds.max()) + 1) * room >= 2 ** 63:
            return None
    span = np.uint64(int(seconds.max()) + 1)
    return (prefix * span + seconds.astype(np.uint64)) * np.uint64(room) + value


def plain_ids(ids) -> pa.Array:
    """The session ids of ``earliest_keys`` (any other id as it is; an ``EARLIER_MARK`` taken off)."""
    ids = as_array(ids)
    ids = pc.if_else(pc.starts_with(ids, EARLIER_MARK), pc.utf8_slice_codeunits(ids, len(EARLIER_MARK)), ids)
    return pc.if_else(pc.starts_with(ids, ORDER_MARK), pc.utf8_slice_codeunits(ids, ORDER_CHARS), ids)


def cycle_members(pidx: np.ndarray) -> np.ndarray:
    """Which nodes lie on a cycle of the parent-index array ``pidx`` (-1: no parent). Pointer
    doubling: after 2^k >= n + 1 steps every walk has reached the root's sink or a cycle, and the
    nodes walks land on are exactly the cycles' (a step maps each cycle onto itself)."""
    n = len(pidx)
    if n == 0:
        return np.zeros(0, dtype=bool)
    jump = np.append(np.where(pidx >= 0, pidx, n), n)
    steps = 1
    while steps <= n:
        jump = jump[jump]
        steps *= 2
    on = np.zeros(n + 1, dtype=bool)
    on[jump[:n]] = True
    return on[:n]


def longest_ends(leaves: np.ndarray, pidx: np.ndarray, usable: np.ndarray, ids: pa.Array, created=None) -> np.ndarray:
    """``chains.mode=longest``: of the ``leaves`` (not ``usable`` ones give no turn and are left out),
    per chain head the one with the longest walk up through ``usable`` comments, ties to the earliest
    (``created``, then the id as a base-36 number: ``earliest_keys``; the smallest id without
    ``created``); sorted. The head and the length of every walk by pointer doubling (log2(n) steps)."""
    n = len(pidx)
    leaves = leaves[usable[leaves]]
    if not len(leaves):
        return leaves
    up = np.where((pidx >= 0) & usable[np.maximum(pidx, 0)], pidx, -1)
    jump = np.where(up >= 0, up, np.arange(n))
    dist = (up >= 0).astype(np.int64)
    steps = 1
    while steps < n:
        dist = dist + dist[jump]
        jump = jump[jump]
        steps *= 2
    head, depth = jump[leaves], dist[leaves]
    leaf_ids = pc.take(ids, pa.array(leaves, pa.int64()))
    if created is not None:
        leaf_ids = earliest_keys(leaf_ids, pc.take(as_array(created), pa.array(leaves, pa.int64())))
    rank = np.unique(np.array(leaf_ids.to_pylist(), dtype=str), return_inverse=True)[1]
    order = np.lexsort((rank, -depth, head))  # per head: the deepest, then the earliest
    first = np.ones(len(order), dtype=bool)
    first[1:] = head[order][1:] != head[order][:-1]
    return np.sort(leaves[order[first]])


def dedupe_by_id(table: pa.Table) -> tuple[pa.Table, int]:
    """One row per id: the smallest by the other columns in order (nulls first), as Spark's
    ``min(struct(...))`` picks it. Returns the table and how many rows were repeats."""
    ids = as_array(table.column("id"))
    if pc.count_distinct(ids, mode="all").as_py() == table.num_rows:
        return table, 0
    try:  # null placement per key (pyarrow >= 25); before that, for all keys at once
        order = pc.sort_indices(table, sort_keys=[(c, "ascending", "at_start") for c in table.column_names])
    except (TypeError, ValueError, pa.ArrowInvalid):
        order = pc.sort_indices(table, sort_keys=[(c, "ascending") for c in table.column_names], null_placement="at_start")
    ordered = table.take(order)
    sorted_ids = as_array(ordered.column("id"))
    first = np.ones(len(sorted_ids), dtype=bool)
    first[1:] = pc.not_equal(sorted_ids[1:], sorted_ids[:-1]).to_numpy(zero_copy_only=False)
    kept = ordered.filter(pa.array(first))
    return kept, table.num_rows - kept.num_rows
