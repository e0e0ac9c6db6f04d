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
