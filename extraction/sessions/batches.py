"""A corpus's batches extracted one after another (``ExtractConfig.batch``): the sessions whose last
turn is in the new batch, against everything the batches before it hold.

``extract input=<corpus> batch=<name>`` writes ``<corpus>/extract/<name>/``: an extract output
(sessions, rejects, report, marker) and its ``state/``, what the corpus rules of every later batch
read. The batches are extracted in name order (month-named batches: in time order); the earlier
ones must each have their extract, and none may be extracted after a later one.

What a batch's run reads and decides:

- **Its threads whole.** A task reads the batch's comments (and submissions) of its pieces of the
  thread hash space and, from every earlier batch, the rows of the threads those comments touch
  (one column read first, the rest only of the row groups that hold one of them: a file at a time, so the
  memory follows the batch, not the corpus). Sessions are built over both; only those whose last
  turn is a comment of this batch are candidates (a comment id an earlier batch holds is that
  batch's). The stats, trigram counts and the accounting cover this batch's comments.
- **The corpus rules against the whole corpus.** ``bland`` counts each trigram over every batch's
  comments so far (each batch keeps its own counts in ``state/trigrams/``, summed at read); the
  exact duplicate rules see every earlier session alive after the session rules (their keys and
  ``created_utc``-ordered ids in ``state/keys/``) as earlier than any of this batch: a copy here of
  a session there is dropped naming the earliest (``duplicate_of``), and no earlier decision changes.
  The near-duplicate rules pair this batch's band keys with the earlier batches' that share one
  (``state/near_bands``), verify each pair with the earlier text (``state/near_texts``) and link this
  batch's session to the root of the earlier one's cluster there, ordered before every session of
  this batch (``thread_keys.EARLIER_MARK``): a cluster of this batch that meets an earlier one is
  dropped whole naming the earliest root. A session is never a near duplicate of an earlier session
  it continues (its turns hold that session's last one).
- **What differs from one run over all the months**, counted in the report's ``batch`` entry:
  ``replied_later``, the earlier batches' sessions whose last turn gained a reply here (a single
  run would have emitted the longer session only; both are in the corpus now, the earlier one in
  its batch); a copy here of such a session is dropped, where one run would have kept it.
  ``bland`` uses the counts known when each batch ran: an earlier batch's decisions are not taken
  again with the later counts. ``bridged_clusters``: earlier near-duplicate clusters that this
  batch's sessions join to another earlier one (one run would have made them one cluster, dropping
  all but the earliest root; here both earlier clusters stay as they were decided).

Layout of ``state/`` (uncompressed Arrow IPC files, one per reduce task of the batch's run and kind, named by
the range of the top 32 bits of the hash they hold, ``<lo>-<hi>.arrow`` in hex, ``hi`` exclusive)::

    state/keys/<lo>-<hi>.arrow      _rkey, _skey, session_id, bucket, _order of every session alive
                                    after the session rules (``_rkey``: the response's hash; sorted by it)
    state/trigrams/<lo>-<hi>.arrow  h, n: the batch's word-trigram hashes (sorted) and counts
    state/near_bands/<lo>-<hi>.arrow   the near-duplicate band keys (``near_sessions.ND_BANDS`` but
                                    ``bucket``; the range: of the band key; sorted by it) of every text
                                    the rules compared that no earlier batch's state holds
    state/near_texts/<lo>-<hi>.arrow   session_id, text, sketch, root (``NEAR_STATE``; the range: of
                                    ``features.word_hash`` of the session_id, an order key): each compared
                                    text, normalised, its signature's sketch and its cluster's root
"""

from __future__ import annotations

import bisect

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from reddit_pretrain import layout, storage
from extraction.sessions import ExtractError
from extraction.sessions.features import as_array, distinct
from extraction.sessions.thread_keys import _np
from extraction.spark import exchange

KEYS, TRIGRAMS, NEAR_BANDS, NEAR_TEXTS = "keys", "trigrams", "near_bands", "near_texts"


def extract_folder(corpus: str, batch: str) -> str:
    return storage.join(corpus, layout.CORPUS_EXTRACT, batch)


def batch_roots(corpus: str, batch: str) -> tuple[str, list[str], list[str]]:
    """(the batch's ingest folder, the earlier batches' ingest folders, their extract folders), or an
    ExtractError saying what is missing: the batch, an earlier batch's marker or extract, or the order."""
    from extraction.ingest.corpus import batch_folder, batches, is_corpus

    if not is_corpus(corpus):
        raise ExtractError(f"batch={batch}: input must be a corpus folder (ingest corpus=...), and {corpus} is not one")
    done, unfinished = batches(corpus)
    if batch not in done:
        raise ExtractError(f"{corpus} has no complete batch {batch} (complete: {', '.join(done) or 'none'})")
    waiting = [n for n in unfinished if n < batch]
    if waiting:
        raise ExtractError(f"{corpus}: batch {waiting[0]} comes before {batch} and has no marker: finish its ingest "
                           "first (batches are extracted in name order)")
    earlier = [n for n in done if n < batch]
    missing = [n for n in earlier if not storage.exists(storage.join(extract_folder(corpus, n), layout.EXTRACT_DONE))]
    if missing:
        raise ExtractError(f"{corpus}: extract batch={missing[0]} first (batches are extracted in name order; "
                           f"{batch} is judged against every batch before it)")
    return (batch_folder(corpus, batch), [batch_folder(corpus, n) for n in earlier],
            [extract_folder(corpus, n) for n in earlier])


def check_none_later(corpus: str, batch: str) -> None:
    """Refuses to extract a batch when a batch after it is extracted already (it was judged without this one)."""
    from extraction.ingest.corpus import batches

    later = [n for n in batches(corpus)[0]
             if n > batch and storage.exists(storage.join(extract_folder(corpus, n), layout.EXTRACT_DONE))]
    if later:
        raise ExtractError(f"{corpus}: batch {later[0]} comes after {batch} and is extracted already: a batch is "
                           "extracted before the batches after it (remove their extracts to run them again)")


RULES_KEY = "extract"
"""The corpus record's entry (``_CORPUS.json``) of what every batch's extract must match."""
_NOT_RULES = ("input", "earlier", "task_bytes", "sessions_per_file")
"""The parts of an extract's material that may differ between batches (where it reads, how its files are cut)."""


def rules_of(material: dict) -> dict:
    """What every batch of a corpus is judged by: the rules and their lists, the chains, the split,
    the privacy settings and the salt's digest, and the code version."""
    import json

    return json.loads(json.dumps({k: v for k, v in material.items() if k not in _NOT_RULES}))


def check_rules(corpus: str, rules: dict) -> None:
    """Refuses a batch's run whose rules differ from the corpus's (set by its first batch's extract),
    naming what differs."""
    from extraction.ingest.corpus import read_corpus
    from extraction.spark.stage import differences

    recorded = (read_corpus(corpus) or {}).get(RULES_KEY)
    if recorded is not None and recorded != rules:
        raise ExtractError(f"{corpus}: its batches are extracted with other settings ({differences(recorded, rules)}); "
                           "every batch of a corpus is judged by the same rules, salt and code: use them, or start a new corpus")


def record_rules(corpus: str, rules: dict) -> None:
    """Records the rules of the corpus's first extracted batch in its ``_CORPUS.json``."""
    from extraction.ingest.corpus import record

    record(corpus, RULES_KEY, rules)


def read_threads(files: list[str], columns: list[str], key: str, wanted: pa.Array) -> pa.Table | None:
    """The rows of ``files`` whose ``key`` is in ``wanted``: ``key`` read first, of the row groups
    whose smallest and largest ``key`` (the file's statistics) leave room for one of ``wanted``, the
    other columns only of the row groups that hold one, a file at a time. (Reddit's ids grow with
    time and most threads are short-lived: a new month's threads meet few row groups of an old one.)"""
    import pyarrow.parquet as pq

    ordered = pc.drop_null(wanted)
    ordered = pc.take(ordered, pc.sort_indices(ordered)).to_pylist()
    tables = []
    for url in files:
        with storage.arrow_input(url) as f:
            parquet = pq.ParquetFile(f)
            names = parquet.schema_arrow.names
            groups = [g for g in range(parquet.num_row_groups) if _may_hold(parquet.metadata.row_group(g).column(names.index(key)),
                                                                              ordered, wanted.null_count > 0)]
            if not groups:
                continue
            sizes = [parquet.metadata.row_group(g).num_rows for g in groups]
            hit = _np(pc.is_in(parquet.read_row_groups(groups, columns=[key], use_threads=False).column(key),
                               value_set=wanted)).astype(bool)
            bounds = np.cumsum([0] + sizes)
            held = [i for i in range(len(groups)) if hit[bounds[i]:bounds[i + 1]].any()]
            if not held:
                continue
            rows = parquet.read_row_groups([groups[i] for i in held], columns=[c for c in columns if c in names], use_threads=False)
            tables.append(rows.filter(pa.array(np.concatenate([hit[bounds[i]:bounds[i + 1]] for i in held]))))
    return pa.concat_tables(tables, promote_options="permissive") if tables else None


def _may_hold(column, ordered: list, nulls: bool) -> bool:
    """Whether a row group's column (``ColumnChunkMetaData``) may hold one of ``ordered`` (sorted,
    no null; ``nulls``: a null is wanted too), by its statistics (none: it may)."""
    stats = column.statistics
    if stats is None or not stats.has_min_max or not isinstance(stats.min, type(ordered[0]) if ordered else str):
        return True
    if nulls and stats.null_count:
        return True
    at = bisect.bisect_left(ordered, stats.min)
    return at < len(ordered) and ordered[at] <= stats.max


def with_earlier(comments: pa.Table, submissions: pa.Table | None, task: dict, comment_columns: list[str],
                 submission_columns: list[str]) -> tuple[pa.Table, pa.Table | None, pa.Array]:
    """A task's comments with the earlier batches' rows of the threads they touch after them, its
    submissions with theirs, and the ids of the earlier comments."""
    links = pc.unique(comments.column("link_id").combine_chunks())
    old = read_threads(task["earlier_comments"], comment_columns, "link_id", links)
    ids = old.column("id").combine_chunks() if old is not None else pa.array([], pa.string())
    if old is not None:
        comments = pa.concat_tables([comments, old], promote_options="permissive")
    if task["earlier_submissions"]:
        subs = read_threads(task["earlier_submissions"], submission_columns, "id", links)
        if subs is not None:
            submissions = subs if submissions is None else pa.concat_tables([submissions, subs], promote_options="permissive")
    return comments, submissions, ids


# -- state/: what later batches are judged against ------------------------------------------------------

def hash_range(first: int, last: int, partitions: int) -> tuple[int, int]:
    """The top-32-bit hash values of exchange partitions ``first`` to ``last - 1`` (``exchange.hash_partition``)."""
    return -(-(first << 32) // partitions), -(-(last << 32) // partitions)


def summed(grams: pa.Table) -> pa.Table:
    """Trigram counts (``h``, ``n``) with one row per hash, sorted."""
    h = _np(grams.column("h")).astype(np.uint64)
    order = sorted_order(h)
    h, n = h[order], _np(grams.column("n")).astype(np.int64)[order]
    first = np.flatnonzero(np.r_[True, h[1:] != h[:-1]]) if len(h) else np.zeros(0, np.int64)
    n = np.add.reduceat(n, first) if len(h) else n
    return pa.table({"h": pa.array(h[first], pa.uint64()), "n": pa.array(n, pa.int64())})


def write_state(staging: str, kind: str, lo: int, hi: int, table: pa.Table, key: str | None = None) -> None:
    """One state file of this batch's run (sorted by its ``key`` column: a lookup is a sorted merge),
    uncompressed: every later batch reads it, through a memory map without a decode (an LZ4 file of
    band rows took 5 ms a read against 0.5 ms, for a third more bytes)."""
    if key is not None:
        table = table.take(pa.array(sorted_order(_np(table.column(key))), pa.int64()))
    exchange.write_table(storage.join(staging, layout.EXTRACT_STATE, kind, f"{lo:09x}-{hi:09x}.arrow"), table, compressed=False)


def _state_files(folders: list[str], kind: str, lo: int, hi: int):
    """The earlier batches' state files of ``kind`` whose hash range meets [lo, hi), read one at a time."""
    for folder in folders:
        root = storage.join(folder, layout.EXTRACT_STATE, kind)
        for name in sorted(storage.list_dir(root)):
            if not name.endswith(".arrow"):
                continue
            a, b = (int(x, 16) for x in name[:-len(".arrow")].split("-"))
            if b > lo and a < hi:
                yield exchange.Reader().table(storage.join(root, name))


def earlier_keys(folders: list[str], lo: int, hi: int, keys: pa.Table, schema: pa.Schema) -> tuple[pa.Table, int]:
    """The earlier batches' session keys of the responses among ``keys`` (this batch's, of one hash
    range [lo, hi)): a duplicate group without one of this batch's sessions decides nothing here.
    And the files opened."""
    tables, opened, wanted = [], 0, distinct(keys.column("_rkey").to_numpy())
    for table in _state_files(folders, KEYS, lo, hi):
        opened += 1
        tables.append(table.filter(_among(table.column("_rkey").to_numpy(), wanted)).select(schema.names).cast(schema))
    return (pa.concat_tables(tables) if tables else schema.empty_table()), opened


def sorted_order(keys: np.ndarray) -> np.ndarray:
    """The permutation that sorts the uint64 ``keys``: one sort of their top bits with the row number
    in the bits below (about twice as fast as an argsort), an argsort only when two keys that differ
    share those top bits."""
    bits = max(1, len(keys).bit_length())
    packed = (keys >> np.uint64(bits) << np.uint64(bits)) | np.arange(len(keys), dtype=np.uint64)
    packed.sort()
    order = (packed & np.uint64((1 << bits) - 1)).astype(np.int64)
    ordered = keys[order]
    return order if (ordered[1:] >= ordered[:-1]).all() else np.argsort(keys, kind="stable")


def _among(values: np.ndarray, wanted: np.ndarray) -> pa.Array:
    """Which ``values`` (64-bit hashes) are in ``wanted`` (sorted): a binary search each, a merge
    when ``values`` are sorted too (the state files are), far faster than a hash set of ``wanted``.
    Unsorted ``values`` first meet a table of ``wanted``'s low bits (16 slots a key): the binary
    searches of random values miss the cache, and only the values whose slot is taken need one
    (a third of the time for a batch's text hashes)."""
    if not len(wanted):
        return pa.array(np.zeros(len(values), bool))
    if len(values) > 1 and not (values[1:] >= values[:-1]).all():
        mask = np.uint64((1 << max(16, (16 * len(wanted)).bit_length())) - 1)
        taken = np.zeros(int(mask) + 1, dtype=bool)
        taken[wanted & mask] = True
        found = taken[values & mask]
        maybe = np.flatnonzero(found)
        at = np.minimum(np.searchsorted(wanted, values[maybe]), len(wanted) - 1)
        found[maybe] = wanted[at] == values[maybe]
        return pa.array(found)
    at = np.minimum(np.searchsorted(wanted, values), len(wanted) - 1)
    return pa.array(wanted[at] == values)


def earlier_counts(folders: list[str], lo: int, hi: int, hashes: np.ndarray) -> tuple[np.ndarray, int]:
    """The earlier batches' counts of each trigram of ``hashes`` (sorted, unique, in [lo, hi) by
    their top 32 bits), from their state (each file's hashes sorted); and the files opened."""
    counts, opened = np.zeros(len(hashes), np.int64), 0
    for table in _state_files(folders, TRIGRAMS, lo, hi):
        opened += 1
        h, n = table.column("h").to_numpy(), table.column("n").to_numpy()
        if not len(h):
            continue
        at = np.minimum(np.searchsorted(h, hashes), len(h) - 1)
        hit = h[at] == hashes
        counts[hit] += n[at[hit]]
    return counts, opened


def counted_so_far(staging: str, folders: list[str], lo: int, hi: int, grams: pa.Table, min_count: int) -> tuple[pa.Table, int, int]:
    """This batch's trigram counts of one hash range [lo, hi) kept in its state, then summed with
    every earlier batch's; the files opened, and the trigrams frequent (count above ``min_count``)
    only with this batch's counts (their earlier batches' bland is not decided again)."""
    grams = summed(grams)
    write_state(staging, TRIGRAMS, lo, hi, grams)
    before, opened = earlier_counts(folders, lo, hi, grams.column("h").to_numpy())
    total = grams.column("n").to_numpy() + before
    newly = int(((before <= min_count) & (total > min_count)).sum()) if folders else 0
    return grams.set_column(1, "n", pa.array(total, pa.int64())), opened, newly


def earlier_first(stored: pa.Table, keys: pa.Table) -> pa.Table:
    """The earlier batches' session keys and this batch's as one table for ``resolve_duplicates``,
    every earlier session ordered before this batch's (``_first`` 0; ``bucket`` -1: not this batch's)."""
    stored = stored.set_column(stored.column_names.index("bucket"), "bucket", pa.array(np.full(stored.num_rows, -1), pa.int64()))
    first = pa.array(np.r_[np.zeros(stored.num_rows, np.int8), np.ones(keys.num_rows, np.int8)])
    return pa.concat_tables([stored, keys.cast(stored.schema)]).append_column("_first", first)


# -- near duplicates against the earlier batches --------------------------------------------------------
# In a batch's near-duplicate steps an earlier batch's session is its id with ``EARLIER_MARK`` before the
# order key (after ``SESSION_KIND`` for the session rule): it sorts before every id of the batch, so a
# cluster with one is rooted at the earliest of the earlier batches' roots, as in one run over all.


def marked(ids) -> pa.Array:
    """Ids of an earlier batch's state (order keys, ``SESSION_KIND`` first for the session rule) as
    this batch's steps see them."""
    from extraction.sessions.near_sessions import SESSION_KIND, without_kind
    from extraction.sessions.thread_keys import EARLIER_MARK

    ids = as_array(ids)
    kind = pc.if_else(pc.starts_with(ids, SESSION_KIND), pa.scalar(SESSION_KIND), pa.scalar(""))
    return pc.binary_join_element_wise(kind, pa.array([EARLIER_MARK] * len(ids), pa.string()), without_kind(ids), "")


def unmarked(ids) -> pa.Array:
    """``marked``'s ids back as the state keeps them (any other id as it is)."""
    from extraction.sessions.near_sessions import SESSION_KIND
    from extraction.sessions.thread_keys import EARLIER_MARK

    ids = as_array(ids)
    session = pc.starts_with(ids, SESSION_KIND + EARLIER_MARK)
    ids = pc.if_else(session, pc.utf8_slice_codeunits(ids, len(SESSION_KIND) + len(EARLIER_MARK)), ids)
    ids = pc.if_else(pc.starts_with(ids, EARLIER_MARK), pc.utf8_slice_codeunits(ids, len(EARLIER_MARK)), ids)
    return pc.if_else(session, pc.binary_join_element_wise(pa.scalar(SESSION_KIND), ids, ""), ids)


def id_partition(ids, partitions: int) -> np.ndarray:
    """The hash partition of each session id (marked or not): where ``state/near_texts`` keeps it
    (``features.word_hash``, vectorised: a BLAKE2b per id in Python was a tenth of a batch's near-duplicate time)."""
    from extraction.sessions.features import word_hash

    return exchange.hash_partition(word_hash(unmarked(ids)), partitions)


def earlier_bands(folders: list[str], lo: int, hi: int, wanted: np.ndarray) -> tuple[pa.Table, int]:
    """The earlier batches' near-duplicate band rows (``ND_BANDS``) of one range of band keys [lo, hi)
    that share a key with this batch's (``wanted``, sorted: no other can pair with one of its
    sessions), ``bucket`` -1 (ordered before this batch's rows, ``near_sessions.near_duplicate_pairs``;
    the ids not ``marked``: ``with_marks`` marks those of the pairs); and the files opened."""
    from extraction.sessions.near_sessions import ND_BANDS

    tables, opened = [], 0
    for table in _state_files(folders, NEAR_BANDS, lo, hi):
        opened += 1
        table = table.filter(_among(table.column("band").to_numpy(), wanted))
        tables.append(table.add_column(2, "bucket", pa.array(np.full(table.num_rows, -1), pa.int64())).select(ND_BANDS.names).cast(ND_BANDS))
    return (pa.concat_tables(tables) if tables else ND_BANDS.empty_table()), opened


def new_texts(bands: pa.Table, earlier: pa.Table) -> np.ndarray:
    """Which of this batch's band rows (``ND_BANDS``) hold a text that no earlier batch's state holds
    (``earlier``: ``earlier_bands``' rows of the same range of band keys). Equal texts have equal band
    keys, so an earlier row of a text is read wherever this batch has one of its rows; a text an
    earlier batch keeps stands for this batch's copies: they are linked to it (Jaccard 1) and a later
    batch finds it there; each text is kept once, not once a month."""
    if not earlier.num_rows:
        return np.ones(bands.num_rows, bool)
    return ~np.asarray(_among(_np(bands.column("text_hash")), distinct(_np(earlier.column("text_hash")))))


def pairing_rows(bands: pa.Table, order: np.ndarray, earlier: pa.Table, new: np.ndarray) -> tuple[pa.Table, pa.Table]:
    """This batch's band rows (``bands``, ``order`` sorting their keys) and the earlier batches'
    (``earlier_bands``') that can give a pair or a link, as one table: the same pairs and links as of
    all of them, from about half the rows. ``new``: this batch's rows of texts no earlier batch keeps
    (``new_texts``). A text an earlier batch keeps stands for this batch's copies in every group (it
    is ordered first), so of those copies only the first band's rows stay, to be linked to it; and
    two earlier rows are never paired, so a group without a new text gives nothing: the earlier rows
    stay in the groups of a new text's keys and of the first band's keys (the links' group).
    And this batch's ``state/near_bands`` rows: those of its new texts, sorted by key."""
    keys = _np(bands.column("band"))
    first = _np(bands.column("band_index")) == 0
    wanted = distinct(keys[order][(new | first)[order]], presorted=True)
    mine = bands.take(pa.array(order[new[order]], pa.int64()))
    copies = bands.filter(pa.array(first & ~new))  # (the first band's rows of the copies of earlier texts: their links)
    kept = earlier.filter(_among(_np(earlier.column("band")), wanted))
    return pa.concat_tables([mine, copies, kept]), mine.drop_columns(["bucket"])


def split_earlier(links: pa.Table) -> tuple[pa.Table, pa.Table]:
    """Candidate pairs or links (``a``, ``a_bucket``, ``b``, ``b_bucket``, ...) over this batch's
    and earlier batches' sessions as (those within the batch, those with an earlier session, that one
    as ``b``); pairs of two earlier sessions were their batches' to decide and are left out."""
    a_old, b_old = _np(pc.less(links.column("a_bucket"), 0)).astype(bool), _np(pc.less(links.column("b_bucket"), 0)).astype(bool)
    mine = links.filter(pa.array(~a_old & ~b_old))
    flipped = links.filter(pa.array(a_old & ~b_old))
    names = links.column_names
    other = {n: {"a": "b", "b": "a"}[n[0]] + n[1:] for n in names if n[:2] in ("a", "a_", "b", "b_")}
    swap = {n: other[n] if other.get(n) in names else n for n in names}  # (a pair in one direction only: none flipped)
    flipped = flipped.rename_columns([swap[n] for n in names]).select(names)
    return mine, pa.concat_tables([links.filter(pa.array(~a_old & b_old)), flipped])


def with_marks(split: tuple[pa.Table, pa.Table]) -> tuple[pa.Table, pa.Table]:
    """``split_earlier``'s two tables with the earlier sessions' ids (``b`` of the second) ``marked``."""
    mine, theirs = split
    return mine, theirs.set_column(theirs.column_names.index("b"), "b", marked(theirs.column("b")))


def earlier_texts(folders: list[str], lo: int, hi: int, ids) -> tuple[pa.Table, int]:
    """The state rows (``NEAR_STATE``, ids ``marked``) of the earlier sessions ``ids`` (marked) that
    hash into [lo, hi); and the files opened. An id no state holds means a damaged state."""
    wanted = pc.unique(unmarked(ids))
    tables, opened = [], 0
    for table in _state_files(folders, NEAR_TEXTS, lo, hi):
        opened += 1
        tables.append(table.filter(pc.is_in(table.column("session_id"), value_set=wanted)).cast(NEAR_STATE))
    found = pa.concat_tables(tables) if tables else NEAR_STATE.empty_table()
    if found.num_rows < len(wanted):
        raise ExtractError(f"the earlier batches' state/{NEAR_TEXTS} lacks {len(wanted) - found.num_rows:,} sessions that "
                           f"their state/{NEAR_BANDS} holds: an earlier batch's state is damaged; extract it again")
    return found.set_column(0, "session_id", marked(found.column("session_id"))), opened


def to_roots(links: pa.Table, texts: pa.Table) -> pa.Table:
    """``links`` whose ``b`` is an earlier session (``marked``) with ``b`` its cluster's root there
    (from ``texts``, ``earlier_texts``' rows): a cluster of this batch is joined to the earliest."""
    where = pc.index_in(links.column("b"), value_set=as_array(texts.column("session_id")))
    return links.set_column(links.column_names.index("b"), "b", marked(pc.take(as_array(texts.column("root")), where)))


def near_state(texts: pa.Table, near: pa.Table, partitions: int) -> tuple[pa.Table, np.ndarray]:
    """A task's rows of ``state/near_texts`` (``NEAR_STATE``) and their hash partitions: each text
    this batch's near-duplicate steps compared (``texts``, ``ND_TEXTS``: order keys) with the root of
    its cluster (``near``: the task's ``ND_DROPPED`` rows; a session no rule dropped is its own)."""
    from extraction.sessions.near_sessions import SESSION_KIND, without_kind
    from extraction.sessions.thread_keys import plain_ids

    ids = as_array(texts.column("session_id"))
    session = pc.starts_with(ids, SESSION_KIND)
    rule = pc.if_else(session, pa.scalar("near_duplicate_session"), pa.scalar("near_duplicate_response"))
    mine = pc.binary_join_element_wise(rule, plain_ids(without_kind(ids)), "/")
    theirs = pc.binary_join_element_wise(as_array(near.column("reason")), as_array(near.column("session_id")), "/")
    root = pc.take(as_array(near.column("root")), pc.index_in(mine, value_set=theirs))
    root = pc.if_else(session, pc.binary_join_element_wise(pa.scalar(SESSION_KIND), root, ""), root)
    table = pa.table({"session_id": ids, "text": texts.column("text"), "sketch": texts.column("sketch"),
                      "root": unmarked(pc.coalesce(root, ids))}, schema=NEAR_STATE)
    return table, id_partition(ids, partitions)


NEAR_STATE = pa.schema([("session_id", pa.string()), ("text", pa.string()), ("sketch", pa.binary()), ("root", pa.string())])
"""``state/near_texts``: each compared text's session (an order key, ``SESSION_KIND`` first for the
session rule), its normalised text and signature sketch (as ``ND_TEXTS``), and its cluster's root."""


def continuing(texts: pa.Table, candidates: pa.Table, earlier: pa.Array) -> pa.Table:
    """A task's near-duplicate texts (``ND_TEXTS``) with ``continues``: the earlier batches' comments
    among each session's turns (``earlier``: their ids), the earlier sessions it continues. A session
    is never a near duplicate of one it continues (one run over all the months has only the longer)."""
    from extraction.sessions.near_sessions import without_kind

    ids = without_kind(texts.column("session_id"))
    turns = pc.take(as_array(candidates.column("turn_ids")), pc.index_in(ids, value_set=as_array(candidates.column("_order"))))
    flat, parent = pc.list_flatten(turns), pc.list_parent_indices(turns).to_numpy()
    hit = _np(pc.is_in(flat, value_set=earlier)).astype(bool)
    offsets = np.searchsorted(parent[hit], np.arange(len(ids) + 1)).astype(np.int32)
    return texts.append_column("continues", pa.ListArray.from_arrays(pa.array(offsets), flat.filter(pa.array(hit))))


def not_continued(pairs: pa.Table, texts: pa.Table) -> pa.Table:
    """``pairs`` whose ``a`` (in ``texts``, ``continuing``'s) does not continue ``b`` (an earlier session, marked)."""
    from extraction.sessions.near_sessions import without_kind
    from extraction.sessions.thread_keys import plain_ids

    if "continues" not in texts.column_names or not pairs.num_rows:
        return pairs
    b = plain_ids(without_kind(unmarked(pairs.column("b"))))
    cont = pc.take(as_array(texts.column("continues")), pc.index_in(pairs.column("a"), value_set=as_array(texts.column("session_id"))))
    flat, parent = pc.list_flatten(cont), pc.list_parent_indices(cont).to_numpy()
    same = _np(pc.equal(flat, pc.take(b, pa.array(parent, pa.int64()))), False).astype(bool)
    keep = np.ones(pairs.num_rows, bool)
    keep[parent[same]] = False
    return pairs.filter(pa.array(keep))
