"""Rows handed from one set of Spark tasks to the next, partitioned, without entering the JVM.

Each task of the first set writes one Arrow IPC file holding one record batch per partition
(possibly empty), in partition order. A task of the next set takes a contiguous range of
partitions and reads those batches from every file of the first set, opening each file once: a
file's batches are a list of offsets in its footer, so a range of partitions costs one open and
one read per file whatever its width. The number of files opened by an exchange is then the
first set's tasks times the next set's tasks, and the job sizes both by the data (and the next
set by the cores), never by how finely the input happens to be cut. That is the layout of Spark's
own sort-based shuffle (one data file per map task, a block per reducer), written by the Python
tasks that already hold the rows as Arrow, so the rows are never converted to and from Spark's
row format. Files are written under a temporary name and renamed, so a retried task replaces its
file whole, and they stay in the job's staging folder until it commits.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from reddit_pretrain import storage

_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")
_PLAIN = pa.ipc.IpcWriteOptions()


def hash_partition(hashes: np.ndarray, partitions: int) -> np.ndarray:
    """Partition of each 64-bit hash: its top 32 bits scaled to ``partitions`` ranges (so sorted
    hashes give partitions in order, and each partition a contiguous range of hash values)."""
    return ((hashes.astype(np.uint64) >> np.uint64(32)) * np.uint64(partitions) >> np.uint64(32)).astype(np.int64)


def write_partitioned(url: str, table: pa.Table, partition: np.ndarray, partitions: int) -> int:
    """Writes ``table`` to ``url`` as ``partitions`` record batches, row ``i`` in batch ``partition[i]``
    (rows keep their order within a batch); returns the file's size in bytes."""
    order = np.argsort(partition, kind="stable")
    ordered = table.take(pa.array(order, pa.int64())).combine_chunks()
    bounds = np.searchsorted(partition[order], np.arange(partitions + 1))
    return _write(url, ordered, [ordered.slice(bounds[p], bounds[p + 1] - bounds[p]) for p in range(partitions)])


def _write(url: str, table: pa.Table, pieces: list[pa.Table], compressed: bool = True) -> int:
    """``pieces`` (of ``table``, one chunk each) as one record batch each, under a temporary name then
    renamed; LZ4-compressed unless not ``compressed``."""
    fs, path = storage.filesystem(url)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with storage.arrow_output(url + ".tmp") as sink:
        with pa.ipc.new_file(sink, table.schema, options=_OPTIONS if compressed else _PLAIN) as writer:
            for piece in pieces:
                writer.write_batch(piece.to_batches()[0] if piece.num_rows else pa.RecordBatch.from_pylist([], schema=table.schema))
        size = sink.tell()
    storage.rename(url + ".tmp", url)
    return size


def ranges(partitions: int, tasks: int) -> list[tuple[int, int]]:
    """``partitions`` cut into ``tasks`` contiguous ranges [first, last) of near-equal width."""
    tasks = max(1, min(tasks, partitions))
    return [(k * partitions // tasks, (k + 1) * partitions // tasks) for k in range(tasks)]


class Reader:
    """Reads exchanged files, counting the files it opens (the report's files opened per exchange)."""

    def __init__(self) -> None:
        self.opened = 0

    def partitions(self, urls: list[str], first: int, last: int, schema: pa.Schema) -> pa.Table:
        """Batches ``first`` to ``last - 1`` of every file in ``urls`` (files that do not exist hold
        nothing), one open per file."""
        batches = []
        for url in urls:
            if not storage.exists(url):
                continue
            self.opened += 1
            with storage.arrow_input(url) as source:
                reader = pa.ipc.open_file(source)
                batches.extend(reader.get_batch(p) for p in range(first, min(last, reader.num_record_batches)))
        return pa.Table.from_batches(batches, schema=schema) if batches else schema.empty_table()

    def partition(self, urls: list[str], partition: int, schema: pa.Schema) -> pa.Table:
        """Batch ``partition`` of every file in ``urls``."""
        return self.partitions(urls, partition, partition + 1, schema)

    def bytes(self, url: str) -> bytes:
        """A whole file of raw bytes."""
        fs, path = storage.filesystem(url)
        self.opened += 1
        with fs.open(path, "rb") as source:
            return source.read()

    def table(self, url: str) -> pa.Table:
        """A whole file written by ``write_table``."""
        self.opened += 1
        with storage.arrow_input(url) as source:
            return pa.ipc.open_file(source).read_all()


def write_table(url: str, table: pa.Table, compressed: bool = True) -> int:
    """A whole table as one Arrow IPC file of one record batch (a task's candidate sessions between
    two task sets), its rows as they are: no copy but of columns in several chunks. Not ``compressed``:
    a file read many times (a corpus's state), which a memory map then reads without a decode."""
    table = table.combine_chunks()
    return _write(url, table, [table], compressed)
