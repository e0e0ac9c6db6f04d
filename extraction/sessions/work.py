"""What the extract job's tasks share: their settings (``_Settings``), the schemas of the rows they hand
each other, and their work files under ``<staging>/_work/`` (one per task and kind: ``_work_file``),
read and written through ``extraction.spark.exchange``."""

from __future__ import annotations
from dataclasses import dataclass
import numpy as np
import pyarrow as pa
from reddit_pretrain import storage
from extraction.sessions.chains import ChainsConfig, SplitConfig
from extraction.sessions.filters import FiltersConfig
from extraction.sessions.privacy import Privacy
from extraction.sessions.features import as_array


@dataclass(frozen=True)
class _Settings:
    chains: ChainsConfig
    filters: FiltersConfig
    split: SplitConfig
    work: str
    staging: str
    tasks: int
    """Tasks of the first set (contiguous ranges of the thread hash space): the partitions of the
    exchanges read by a session's task or by an id's hash (drops, candidate pairs, the near-duplicate
    lookups and state), and the names of the output files."""
    partitions: int
    """Partitions of the exchanges the corpus rules read a range of (trigrams, session keys, band
    keys), and of their state's hash ranges: the first-set tasks, at least ``MIN_PARTITIONS``, so that
    any count of reduce tasks gets near-equal ranges (4 reduce tasks over 5 partitions left one of them
    twice the others' work)."""
    sessions_per_file: int
    privacy: Privacy
    batch: bool = False
    """A corpus's batch (``extraction.sessions.batches``): its state is written for later batches."""
    earlier: tuple[str, ...] = ()
    """A batch's run: the earlier batches' extract outputs, whose state the corpus rules read."""


MIN_PARTITIONS = 64
"""The fewest partitions of the corpus rules' exchanges (``_Settings.partitions``): record batches of
a file, most of them small."""


_KEYS = pa.schema([("_rkey", pa.uint64()), ("_skey", pa.uint64()), ("session_id", pa.string()), ("bucket", pa.int64()),
                   ("_order", pa.string())])
_GRAMS = pa.schema([("h", pa.uint64()), ("n", pa.int64())])
_DROPPED = pa.schema([("bucket", pa.int64()), ("session_id", pa.string()), ("reason", pa.string()),
                      ("duplicate_of", pa.string())])
"""(``bucket``, in these tables and the near-duplicate ones: the task of the first set a session is in.)"""
_ROW_GROUP_ROWS = 32_768
"""Parquet row groups of the sessions: the tokenize job's tasks are runs of them."""


def _read_parquet(files: list[str], columns: list[str] | None = None) -> pa.Table | None:
    """The rows of ``files`` (the columns each has of ``columns``), in order. One open and one footer
    read a file (``ParquetFile``, not ``read_table``'s dataset machinery: a task of a finely cut
    input reads hundreds of small files)."""
    import pyarrow.parquet as pq

    tables = []
    for url in files:
        with storage.arrow_input(url) as f:
            parquet = pq.ParquetFile(f)
            names = parquet.schema_arrow.names
            tables.append(parquet.read(columns=[c for c in columns if c in names] if columns else None, use_threads=False))
    return pa.concat_tables(tables, promote_options="permissive") if tables else None


def _work_file(settings: _Settings, kind: str, index: int) -> str:
    return storage.join(settings.work, kind, f"{index:06d}.arrow")


def _all(settings: _Settings, kind: str, count: int | None = None) -> list[str]:
    """The files of ``kind`` written by each task of a set (the first set's by default)."""
    return [_work_file(settings, kind, i) for i in range(settings.tasks if count is None else count)]


def _peak_rss() -> int:
    """This process's largest resident memory so far, in bytes (a Python worker runs its tasks one
    after the other: the largest task's peak, plus the worker itself)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _np(array) -> np.ndarray:

    return as_array(array).to_numpy(zero_copy_only=False)
