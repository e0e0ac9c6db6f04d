"""A corpus's batches extracted one after another (``ExtractConfig.batch``): the sessions whose last
turn is in the new batch, against everything the batches before it hold.

``extract input=<corpus> batch=<name>`` writes ``<corpus>/extract/<name>/``: an extract output
(sessions, rejects, report, marker) and its ``state/``, what the corpus rules of every later batch
read. The batches are extracted in name order (month-named batches: in time order); the earlier
ones must each have their extract, and none may be extracted after a later one.

What a batch's run reads and decides:

- **Its threads whole.** A task reads the batch's comments (and submissions) of its pieces of the
  thread hash space and, from every earlier batch, the rows of the threads those comments touch
  (one column read first, the rest only of files that hold one of them: a file at a time, so the
  memory follows the batch, not the corpus). Sessions are built over both; only those whose last
  turn is a comment of this batch are candidates (a comment id an earlier batch holds is that
  batch's). The stats, trigram counts and the accounting cover this batch's comments.
- **The corpus rules against the whole corpus.** ``bland`` counts each trigram over every batch's
  comments so far (each batch keeps its own counts in ``state/trigrams/``, summed at read); the
  exact duplicate rules see every earlier session alive after the session rules (their keys and
  ``created_utc``-ordered ids in ``state/keys/``) as earlier than any of this batch: a copy here of
  a session there is dropped naming the earliest (``duplicate_of``), and no earlier decision changes.
- **What differs from one run over all the months**, counted in the report's ``batch`` entry:
  ``replied_later``, the earlier batches' sessions whose last turn gained a reply here (a single
  run would have emitted the longer session only; both are in the corpus now, the earlier one in
  its batch); a copy here of such a session is dropped, where one run would have kept it.
  ``bland`` uses the counts known when each batch ran: an earlier batch's decisions are not taken
  again with the later counts.

Layout of ``state/`` (Arrow IPC files, one per reduce task of the batch's run and kind, named by
the range of the top 32 bits of the hash they hold, ``<lo>-<hi>.arrow`` in hex, ``hi`` exclusive)::

    state/keys/<lo>-<hi>.arrow      _rkey, _skey, session_id, bucket, _order of every session alive
                                    after the session rules (``_rkey``: the response's hash)
    state/trigrams/<lo>-<hi>.arrow  h, n: the batch's word-trigram hashes and counts

Near duplicates across batches are not checked yet: a batch's run refuses the near-duplicate rules.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from reddit_pretrain import layout, storage
from extraction.sessions import ExtractError
from extraction.spark import exchange

KEYS, TRIGRAMS = "keys", "trigrams"


def extract_folder(corpus: str, batch: str) -> str:
    return storage.join(corpus, layout.CORPUS_EXTRACT, batch)


def batch_roots(corpus: str, batch: str, near_duplicates: bool) -> tuple[str, list[str], list[str]]:
    """(the batch's ingest folder, the earlier batches' ingest folders, their extract folders), or an
    ExtractError saying what is missing: the batch, an earlier batch's marker or extract, or the order."""
    from extraction.ingest.corpus import batch_folder, batches, is_corpus

    if not is_corpus(corpus):
        raise ExtractError(f"batch={batch}: input must be a corpus folder (ingest corpus=...), and {corpus} is not one")
    if near_duplicates:
        raise ExtractError(f"batch={batch}: near duplicates are not yet checked against earlier batches; set "
                           "filters.near_duplicate=false filters.near_duplicate_session=false for a batch's run")
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
    """The rows of ``files`` whose ``key`` is in ``wanted``: ``key`` read first, the other columns
    only of a file that holds one, a file at a time."""
    import pyarrow.parquet as pq

    tables = []
    for url in files:
        fs, path = storage.filesystem(url)
        with fs.open(path, "rb") as f:
            parquet = pq.ParquetFile(f)
            hit = pc.is_in(parquet.read(columns=[key], use_threads=False).column(key), value_set=wanted)
            if not pc.any(hit).as_py():
                continue
            names = parquet.schema_arrow.names
            tables.append(parquet.read(columns=[c for c in columns if c in names], use_threads=False).filter(hit))
    return pa.concat_tables(tables, promote_options="permissive") if tables else None


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
    h, inverse = np.unique(grams.column("h").to_numpy(), return_inverse=True)
    n = np.bincount(inverse, weights=grams.column("n").to_numpy(), minlength=len(h)).astype(np.int64)
    return pa.table({"h": pa.array(h, pa.uint64()), "n": pa.array(n, pa.int64())})


def write_state(staging: str, kind: str, lo: int, hi: int, table: pa.Table) -> None:
    exchange.write_table(storage.join(staging, layout.EXTRACT_STATE, kind, f"{lo:09x}-{hi:09x}.arrow"), table)


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
    tables, opened, wanted = [], 0, keys.column("_rkey").combine_chunks()
    for table in _state_files(folders, KEYS, lo, hi):
        opened += 1
        tables.append(table.filter(pc.is_in(table.column("_rkey"), value_set=wanted)).select(schema.names).cast(schema))
    return (pa.concat_tables(tables) if tables else schema.empty_table()), opened


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
    every earlier session ordered before this batch's (``bucket`` -1: not this batch's)."""
    def ordered(table: pa.Table, mark: str) -> pa.Table:
        order = pc.binary_join_element_wise(pa.array([mark] * table.num_rows, pa.string()), table.column("_order"), "")
        return table.set_column(table.column_names.index("_order"), "_order", order)

    stored = stored.set_column(stored.column_names.index("bucket"), "bucket", pa.array(np.full(stored.num_rows, -1), pa.int64()))
    return pa.concat_tables([ordered(stored, "0"), ordered(keys, "1")])
