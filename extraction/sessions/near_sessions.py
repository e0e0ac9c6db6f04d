"""Near-duplicate replies and sessions across the corpus, the steps the extract job runs as task sets:
each task's band keys, texts and sketches (``near_duplicate_inputs``); candidate pairs from the
bands of one range of keys (``near_duplicate_pairs``), verified by their Jaccard similarity
(``verify_pairs``); clusters of verified pairs, of which all but the earliest session are dropped
(``near_duplicate_clusters``). The MinHash and sketch arithmetic is ``extraction.sessions.neardup``;
the files and tasks are ``extraction.sessions.job``'s."""

from __future__ import annotations
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from extraction.sessions import neardup
from extraction.sessions.chains import histogram_labels
from extraction.sessions.features import as_array, splitmix64
from extraction.sessions.filters import FiltersConfig
from extraction.sessions.thread_keys import _np, plain_ids


ND_BANDS = pa.schema([("band", pa.uint64()), ("session_id", pa.string()), ("bucket", pa.int64()), ("shingles", pa.int32()),
                      ("text_hash", pa.uint64()), ("band_index", pa.int8())])
"""A band key of a response, with what step 2 needs besides: its count of distinct shingles (the
size bound), the hash of its normalised text (equal texts are linked without a lookup, by the
task that holds their first band) and which band it is."""
ND_TEXTS = pa.schema([("session_id", pa.string()), ("text", pa.string()), ("sketch", pa.binary())])
"""A reply's normalised text and its signature's sketch (``extraction.sessions.neardup.sketch``)."""
ND_PAIRS = pa.schema([("a", pa.string()), ("a_bucket", pa.int64()), ("b", pa.string()), ("b_bucket", pa.int64())])
ND_PAIRS_A = ND_PAIRS.append(pa.field("a_text", pa.string())).append(pa.field("a_sketch", pa.binary()))
ND_VERIFIED = ND_PAIRS.append(pa.field("jaccard", pa.float64())).append(pa.field("a_text", pa.string())) \
    .append(pa.field("b_text", pa.string()))
ND_DROPPED = pa.schema([("bucket", pa.int64()), ("session_id", pa.string()), ("duplicate_of", pa.string()),
                        ("reason", pa.string()), ("root", pa.string())])
"""A session a near-duplicate rule drops: ``duplicate_of`` the earliest of its cluster (its plain id),
``root`` that session's id in the steps (an order key; a corpus's batch keeps it in its state)."""
SESSION_KIND = "~"
"""``near_duplicate_session`` runs through the same steps, and in the same jobs, as the response rule:
its session ids carry this prefix (after every base-36 character, so the order among them is the
ids' own), and its band keys and text hashes are mixed with ``_SESSION_SALT``, so no row of one
rule ever meets a row of the other. The clusters step takes the prefix off again."""
_SESSION_SALT = np.uint64(0x5E55_10A5_0F7E_57ED)


def without_kind(ids) -> pa.Array:
    """Session ids with ``SESSION_KIND`` taken off where they carry it (a reply's id as it is)."""
    ids = as_array(ids)
    return pc.if_else(pc.starts_with(ids, SESSION_KIND), pc.utf8_slice_codeunits(ids, len(SESSION_KIND)), ids)


def near_duplicates_on(filters: FiltersConfig) -> bool:
    """Whether either near-duplicate rule runs (they share the jobs)."""
    return bool(filters.near_duplicate or filters.near_duplicate_session)
EXAMPLE_CHARS = 300
"""Texts of the report's example clusters are cut to this."""


def response_texts(candidates: pa.Table, rows: np.ndarray) -> pa.Array:
    """The response of each candidate in ``rows`` as the rules read it (PII as plain words)."""
    idx = pa.array(rows, pa.int64())
    if "_rtext" in candidates.column_names:
        return pc.take(as_array(candidates.column("_rtext")), idx)
    turns = as_array(candidates.column("turns"))
    return pc.take(turns.values, pa.array(_np(turns.offsets)[1:][rows] - 1, pa.int64()))


def session_texts(candidates: pa.Table, rows: np.ndarray) -> pa.Array:
    """The turns of each candidate in ``rows`` joined by a newline, as stored."""
    return pc.binary_join(pc.take(as_array(candidates.column("turns")), pa.array(rows, pa.int64())), "\n")


def near_duplicate_inputs(candidates: pa.Table, bucket: int, filters: FiltersConfig) -> tuple[pa.Table, pa.Table, pa.Table]:
    """Step 1's part for one bucket: ``_near_inputs`` of the responses (``near_duplicate_response``) and
    of the whole sessions (``near_duplicate_session``, their ids prefixed with ``SESSION_KIND``), the
    tables of the rules switched on, one after the other."""
    alive = np.flatnonzero(_np(pc.is_null(candidates.column("drop_reason"))))
    if "_order" in candidates.column_names:  # the earliest copy first: the ids are order keys (earliest_keys)
        order = pc.take(as_array(candidates.column("_order")), pa.array(alive, pa.int64()))
        earliest_first = pc.sort_indices(order)
        alive, ids = alive[_np(earliest_first)], pc.take(order, earliest_first)
    else:  # (sorted by session_id)
        ids = pc.take(as_array(candidates.column("session_id")), pa.array(alive, pa.int64()))
    parts = []
    if filters.near_duplicate:
        parts.append(_near_inputs(response_texts(candidates, alive), ids, bucket, filters))
    if filters.near_duplicate_session:
        parts.append(_near_inputs(session_texts(candidates, alive), pc.binary_join_element_wise(SESSION_KIND, ids, ""),
                                  bucket, filters, _SESSION_SALT))
    if not parts:
        return ND_BANDS.empty_table(), ND_TEXTS.empty_table(), ND_VERIFIED.empty_table()
    return tuple(pa.concat_tables(tables) for tables in zip(*parts))


def _near_inputs(raw: pa.Array, ids_all: pa.Array, bucket: int, filters: FiltersConfig,
                 salt: np.uint64 = np.uint64(0)) -> tuple[pa.Table, pa.Table, pa.Table]:
    """Over the texts ``raw`` (of the sessions ``ids_all``, in id order) that have a shingle: the
    band keys (``ND_BANDS``) and texts (``ND_TEXTS``) of one text per normalised text (the smallest
    session id), and the others, already near duplicates of it (Jaccard 1), as verified pairs
    (``ND_VERIFIED``). Texts equal once normalised never reach the pairs: a text repeated hundreds
    of times is one signature. ``salt`` is mixed into the band keys and text hashes (one rule's rows
    never meet another's)."""
    texts = neardup.normalize(raw)  # compared, stored and shown normalised from here on
    normalized = pc.dictionary_encode(texts)
    codes = _np(normalized.indices)
    _, first = np.unique(codes, return_index=True)  # the first of each normalised text: its smallest session id
    reps = np.sort(first)
    word_hashes, word_row = neardup.words(pc.take(texts, pa.array(reps, pa.int64())), normalized=True)
    hashes, row = neardup.word_shingles(word_hashes, word_row, filters.near_duplicate_shingle)
    sig, present = neardup.signatures(hashes, row, len(reps), filters.near_duplicate_bands * filters.near_duplicate_rows)
    keys = neardup.band_keys(sig, filters.near_duplicate_bands, filters.near_duplicate_rows)
    judged = reps[present]  # indices into alive
    ids = pc.take(ids_all, pa.array(judged, pa.int64()))
    sizes = neardup.distinct_per_row(hashes, row, len(reps))[present]  # (for the pairs' size bound)
    each = np.repeat(np.arange(len(judged)), filters.near_duplicate_bands)
    text_hash = neardup.text_hashes(word_hashes, word_row, len(reps))[present]  # (judged: one per text)
    bands = pa.table({"band": pa.array(keys.ravel() ^ salt, pa.uint64()), "session_id": pc.take(ids, pa.array(each, pa.int64())),
                      "bucket": pa.array(np.full(keys.size, bucket, dtype=np.int64)),
                      "shingles": pa.array(sizes[each].astype(np.int32)), "text_hash": pa.array(text_hash[each] ^ salt, pa.uint64()),
                      "band_index": pa.array(np.tile(np.arange(filters.near_duplicate_bands), len(judged)).astype(np.int8))},
                     schema=ND_BANDS)
    rep_of = first[codes]
    has_shingles = np.zeros(len(raw), dtype=bool)
    has_shingles[judged] = True
    alias = np.flatnonzero((rep_of != np.arange(len(raw))) & has_shingles[rep_of])
    cut = lambda rows: pc.utf8_slice_codeunits(pc.take(texts, pa.array(rows, pa.int64())), 0, EXAMPLE_CHARS)  # noqa: E731
    aliases = pa.table({"a": pc.take(ids_all, pa.array(alias, pa.int64())), "a_bucket": pa.array(np.full(len(alias), bucket), pa.int64()),
                        "b": pc.take(ids_all, pa.array(rep_of[alias], pa.int64())),
                        "b_bucket": pa.array(np.full(len(alias), bucket), pa.int64()),
                        "jaccard": pa.array(np.ones(len(alias))), "a_text": cut(alias), "b_text": cut(rep_of[alias])}, schema=ND_VERIFIED)
    sketches = neardup.sketch(sig)
    sketch_column = pa.Array.from_buffers(pa.binary(), len(sketches), [None, pa.py_buffer(
        (np.arange(len(sketches) + 1, dtype=np.int32) * sketches.shape[1]).tobytes()), pa.py_buffer(sketches.tobytes())])
    return bands, pa.table({"session_id": ids, "text": pc.take(texts, pa.array(judged, pa.int64())), "sketch": sketch_column},
                           schema=ND_TEXTS), aliases


def near_duplicate_pairs(bands: pa.Table, max_group: int, threshold: float = 0.0) -> tuple[pa.Table, pa.Table]:
    """Step 2's part for one range of band keys: (candidate pairs ``ND_PAIRS``, ``a`` above ``b``;
    pairs already verified ``ND_VERIFIED``). Responses of one normalised text (from different
    buckets) are linked to the smallest id among them directly (Jaccard 1, texts left null) and only
    that one takes part in the candidate pairs; pairs whose shingle counts alone rule the threshold
    out (Jaccard <= smaller / larger count) are left out."""
    empty = ND_PAIRS.empty_table(), ND_VERIFIED.empty_table()
    # Only rows whose band key another row shares can pair, and copies of one text share every key:
    # the rest (most rows) leave here, before any sort of session ids.
    # One sort of the keys' top bits with the row number in the bits below (far faster than an
    # argsort); two keys equal in their top bits alone only let a row through to the exact grouping.
    key = _np(bands.column("band"))
    bits = max(1, len(key).bit_length())
    packed = (key >> np.uint64(bits) << np.uint64(bits)) | np.arange(len(key), dtype=np.uint64)
    packed.sort()
    top = packed >> np.uint64(bits)
    starts = np.ones(len(key), dtype=bool)
    starts[1:] = top[1:] != top[:-1]
    shared = ~starts
    shared[:-1] |= shared[1:]
    places = np.flatnonzero(shared)
    rows = (packed[places] & np.uint64((1 << bits) - 1)).astype(np.int64)
    # A key shared by copies of one text alone gives no candidate pair: of such a group only the
    # first band's rows stay (they link the copies). In a bigger month more template replies have
    # copies in other buckets, and these rows grow faster than the month; the pairs are the same.
    if len(rows):
        first = starts[places]
        text = _np(bands.column("text_hash"))[rows]
        other_text = np.zeros(len(rows), dtype=bool)
        other_text[1:] = (text[1:] != text[:-1]) & ~first[1:]
        group = np.cumsum(first) - 1
        mixed = np.bincount(group, weights=other_text, minlength=int(group[-1]) + 1)[group] > 0
        rows = rows[mixed | (_np(bands.column("band_index"))[rows] == 0)]
    rows.sort()
    bands = bands.take(pa.array(rows, pa.int64()))
    if not bands.num_rows:
        return empty
    rank, earlier = _ranks(bands)
    text = _np(bands.column("text_hash"))
    order = np.lexsort((rank, text))
    first = np.ones(len(order), dtype=bool)
    first[1:] = text[order][1:] != text[order][:-1]
    rep = order[np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))]  # per row: its text's smallest id
    rep_of = np.empty(len(order), dtype=np.int64)
    rep_of[order] = rep
    take = lambda name, rows: pc.take(as_array(bands.column(name)), pa.array(rows, pa.int64()))  # noqa: E731
    first_band = _np(bands.column("band_index")) == 0  # equal texts share every band key: the first band's task links them
    same_rows = np.flatnonzero((rank != rank[rep_of]) & first_band)
    nulls = pa.nulls(len(same_rows), pa.string())
    same = pa.table({"a": take("session_id", same_rows), "a_bucket": take("bucket", same_rows),
                     "b": take("session_id", rep_of[same_rows]), "b_bucket": take("bucket", rep_of[same_rows]),
                     "jaccard": pa.array(np.ones(len(same_rows))), "a_text": nulls, "b_text": nulls}, schema=ND_VERIFIED)
    keep = np.flatnonzero(rank == rank[rep_of])  # one row per text and band
    bands = bands.take(pa.array(keep, pa.int64()))
    a, b = neardup.candidate_pairs(_np(bands.column("band")), rank[keep], max_group, skip=earlier[keep] if earlier.any() else None)
    size = _np(bands.column("shingles")).astype(np.float64)
    possible = np.minimum(size[a], size[b]) >= threshold * np.maximum(size[a], size[b])
    a, b = a[possible], b[possible]  # (``take`` reads the reduced ``bands``: it looks the name up when called)
    pairs = pa.table({"a": take("session_id", a), "a_bucket": take("bucket", a), "b": take("session_id", b),
                      "b_bucket": take("bucket", b)}, schema=ND_PAIRS)
    return pairs, same


def _ranks(bands: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """Integers in the order of the rows' session ids (``neardup.id_order``), the rows of ``bucket``
    -1 (an earlier batch's, ``extraction.sessions.batches``) before every other; and which rows those
    are. ``id_order``'s integers are below 2**63 (ids packed in base 37, or ranks), so the top bit
    set on the others' puts them after the earlier rows and keeps equality."""
    rank = neardup.id_order(as_array(bands.column("session_id"))).astype(np.uint64)
    earlier = _np(bands.column("bucket")) < 0
    return rank | ((~earlier).astype(np.uint64) << np.uint64(63)), earlier


def unique_pairs(pairs: pa.Table) -> pa.Table:
    """Each candidate pair once, in a fixed order (a pair sharing several bands comes from several tasks)."""
    if not pairs.num_rows:
        return pairs
    out = pairs.group_by(["a", "a_bucket", "b", "b_bucket"], use_threads=False).aggregate([])
    return out.take(pc.sort_indices(out, sort_keys=[("a", "ascending"), ("b", "ascending")])).select(ND_PAIRS.names).cast(ND_PAIRS)


def with_texts(pairs: pa.Table, texts: pa.Table, side: str) -> pa.Table:
    """``pairs`` with the text and sketch of their ``side`` (``a`` or ``b``) session from ``texts`` (one bucket's)."""
    where = pc.index_in(pairs.column(side), value_set=as_array(texts.column("session_id")))
    pairs = pairs.append_column(f"{side}_text", pc.take(as_array(texts.column("text")), where))
    return pairs.append_column(f"{side}_sketch", pc.take(as_array(texts.column("sketch")), where))


def _sketch_matrix(column) -> np.ndarray:
    """The sketches of a binary column (each ``num_perm`` bytes) as an (n, num_perm) uint8 array."""
    array = as_array(column)
    array = pc.take(array, pa.array(np.arange(len(array)), pa.int64()))  # offsets from 0, values contiguous
    offsets = np.frombuffer(array.buffers()[1], np.int32)[array.offset: array.offset + len(array) + 1]
    width = int(offsets[1] - offsets[0]) if len(array) else 0
    data = np.frombuffer(array.buffers()[2], np.uint8) if width else np.zeros(0, np.uint8)
    return data[offsets[0]: offsets[0] + width * len(array)].reshape(len(array), width)


def verify_pairs(pairs: pa.Table, shingle: int, threshold: float) -> pa.Table:
    """The pairs (with both normalised texts and sketches) whose exact shingle Jaccard is at least
    ``threshold`` (``ND_VERIFIED``). A pair whose sketches agree in fewer values than a pair at the
    threshold would but once in a million (``neardup.agreement_cutoff``) is not verified."""
    if not pairs.num_rows:
        return ND_VERIFIED.empty_table()
    a_sketch, b_sketch = _sketch_matrix(pairs.column("a_sketch")), _sketch_matrix(pairs.column("b_sketch"))
    if a_sketch.shape == b_sketch.shape and a_sketch.shape[1]:
        agree = (a_sketch == b_sketch).sum(axis=1)
        pairs = pairs.filter(pa.array(agree >= neardup.agreement_cutoff(threshold, a_sketch.shape[1])))
    if not pairs.num_rows:
        return ND_VERIFIED.empty_table()
    both = pa.concat_arrays([as_array(pairs.column("a_text")), as_array(pairs.column("b_text"))])
    encoded = pc.dictionary_encode(both)
    jac = pair_jaccard(encoded.dictionary, _np(encoded.indices), shingle, normalized=True)
    keep = jac >= threshold
    out = pairs.filter(pa.array(keep)).append_column("jaccard", pa.array(jac[keep], pa.float64()))
    cut = lambda name: pc.utf8_slice_codeunits(as_array(out.column(name)), 0, EXAMPLE_CHARS)  # noqa: E731
    return pa.table({**{f: out.column(f) for f in ("a", "a_bucket", "b", "b_bucket", "jaccard")},
                     "a_text": cut("a_text"), "b_text": cut("b_text")}, schema=ND_VERIFIED)


def pair_jaccard(texts: pa.Array, code: np.ndarray, shingle: int, normalized: bool = False) -> np.ndarray:
    """The exact shingle Jaccard of pairs of texts, vectorised: pair ``i`` is ``texts[code[i]]`` and
    ``texts[code[n + i]]``. Each text's distinct shingles once, keyed by (text, shingle) in one sorted
    array; each shingle of a pair's first text is looked up under the second text's key."""
    n = len(code) // 2
    hashes, row = neardup.shingles(texts, shingle, normalized)
    keyed = splitmix64(hashes ^ (row.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)))  # (text, shingle) as one key
    keyed, first = np.unique(keyed, return_index=True)
    size = np.bincount(row[first], minlength=len(texts))  # distinct shingles per text
    distinct_row, distinct_hash = row[first], hashes[first]
    by_text = np.argsort(distinct_row, kind="stable")
    start = np.concatenate([[0], np.cumsum(size)])
    a, b = code[:n], code[n:]
    counts = size[a]
    pair_of = np.repeat(np.arange(n), counts)
    offsets = np.repeat(start[a] - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    mine = distinct_hash[by_text[np.arange(counts.sum()) + offsets]]  # each pair's first text's shingles
    query = splitmix64(mine ^ (np.repeat(b, counts).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)))
    at = np.minimum(np.searchsorted(keyed, query), max(len(keyed) - 1, 0))
    hit = keyed[at] == query if len(keyed) else np.zeros(len(query), bool)
    common = np.bincount(pair_of[hit], minlength=n)
    union = size[a] + size[b] - common
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, common / np.maximum(union, 1), 0.0)


CLUSTER_EDGES = [2, 3, 5, 10, 20, 50, 100, 1000]
"""Edges of the report's histogram of near-duplicate cluster sizes (the last bucket is open)."""


def near_duplicate_clusters(verified: pa.Table, examples: int = 3) -> tuple[pa.Table, dict]:
    """The last step, over every verified pair: the clusters (connected components), every member
    but the smallest session id dropped (``ND_DROPPED``), and for the report the histogram of cluster
    sizes and the ``examples`` largest clusters (ties: the smallest kept id) with their texts. The
    links of ``near_duplicate_session`` (ids prefixed with ``SESSION_KIND``) cluster apart: their
    members are dropped with that reason, their prefix taken off, their summary the ``sessions`` entry."""
    is_session = _np(pc.starts_with(as_array(verified.column("a")), SESSION_KIND), False).astype(bool)
    replies = verified.filter(pa.array(~is_session)) if is_session.any() else verified  # (a filter copies the texts)
    dropped, summary = _clusters(replies, examples, "near_duplicate_response")
    if is_session.any():
        by_session, summary["sessions"] = _clusters(verified.filter(pa.array(is_session)), examples, "near_duplicate_session",
                                                    strip=len(SESSION_KIND))
        dropped = pa.concat_tables([dropped, by_session])
    return dropped, summary


def _clusters(verified: pa.Table, examples: int, reason: str, strip: int = 0) -> tuple[pa.Table, dict]:
    """``near_duplicate_clusters`` for the links of one rule (``reason``), their ids without their
    first ``strip`` characters (a prefix all share: the order among them is unchanged)."""
    a, b = as_array(verified.column("a")), as_array(verified.column("b"))
    if strip:
        a, b = pc.utf8_slice_codeunits(a, strip), pc.utf8_slice_codeunits(b, strip)
    ends = pa.concat_arrays([a, b])
    keys = neardup.id_order(ends)  # order keys (earliest_keys): the earliest copy is the root
    ids = plain_ids(ends)
    member, root = neardup.component_rows(keys, len(a))
    members, roots = pc.take(ids, pa.array(member, pa.int64())), pc.take(ids, pa.array(root, pa.int64()))
    buckets = np.concatenate([_np(verified.column("a_bucket")), _np(verified.column("b_bucket"))])
    dropped = pa.table({"bucket": buckets[member], "session_id": members, "duplicate_of": roots,
                        "reason": pa.repeat(reason, len(member)), "root": pc.take(ends, pa.array(root, pa.int64()))},
                       schema=ND_DROPPED)
    summary = {"clusters": 0, "sizes": dict.fromkeys(histogram_labels(CLUSTER_EDGES), 0), "examples": []}
    if len(members):
        kept, codes = np.unique(root, return_inverse=True)  # the clusters, by their kept id's place
        sizes = np.bincount(codes) + 1  # the kept one
        summary["clusters"] = int(len(kept))
        hist = np.bincount(np.searchsorted(CLUSTER_EDGES, sizes, side="right") - 1, minlength=len(CLUSTER_EDGES))
        summary["sizes"] = dict(zip(histogram_labels(CLUSTER_EDGES), hist.tolist()))
        names = pc.take(ids, pa.array(kept, pa.int64()))
        top = np.lexsort((keys[kept], -sizes))[:examples]  # the largest, ties: the smallest kept id
        texts = (verified.column("a_text"), verified.column("b_text"))  # (the examples' only: not joined into one column)
        has_text = np.concatenate([_np(pc.is_valid(t)) for t in texts])
        for i in top:
            kept_id = names[int(i)].as_py()
            in_cluster = np.flatnonzero(codes == i)[:3]  # (members are sorted)
            shown = [kept_id] + pc.take(members, pa.array(in_cluster, pa.int64())).to_pylist()
            text_of = {}  # (links between equal texts carry none: the first link with a text)
            for sid in shown:
                hit = np.flatnonzero(pc.fill_null(pc.equal(ids, sid), False).to_numpy(zero_copy_only=False) & has_text)
                if len(hit):
                    side, at = divmod(int(hit[0]), verified.num_rows)
                    text_of[sid] = texts[side][at].as_py()
            same = "(the kept text, once normalised)"
            summary["examples"].append({"kept": kept_id, "kept_text": text_of.get(kept_id, same), "size": int(sizes[i]),
                                        "dropped": [{"session_id": m, "text": text_of.get(m, same)} for m in shown[1:]]})
    return dropped, summary
