"""Rows handed from one set of Spark tasks to the next, partitioned, without entering the JVM.

Each task of the first set writes one Arrow IPC file holding one record batch per partition of
the next set (possibly empty), in partition order; task ``p`` of the next set reads batch ``p`` of
every file. That is the layout of Spark's own sort-based shuffle (one data file per map task,
a block per reducer), written by the Python tasks that already hold the rows as Arrow, so the
rows are never converted to and from Spark's row format. Files are written under a temporary
name and renamed, so a retried task replaces its file whole.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from reddit_pretrain import storage

_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")


def hash_partition(hashes: np.ndarray, partitions: int) -> np.ndarray:
    """Partition of each 64-bit hash: its top 32 bits scaled to ``partitions`` ranges (so sorted
    hashes give partitions in order, and each partition a contiguous range of hash values)."""
    return ((hashes.astype(np.uint64) >> np.uint64(32)) * np.uint64(partitions) >> np.uint64(32)).astype(np.int64)


def write_partitioned(url: str, table: pa.Table, partition: np.ndarray, partitions: int) -> None:
    """Writes ``table`` to ``url`` as ``partitions`` record batches, row ``i`` in batch ``partition[i]``
    (rows keep their order within a batch)."""
    order = np.argsort(partition, kind="stable")
    ordered = table.take(pa.array(order, pa.int64())).combine_chunks()
    bounds = np.searchsorted(partition[order], np.arange(partitions + 1))
    fs, path = storage.filesystem(url)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(path + ".tmp", "wb") as sink, pa.ipc.new_file(sink, ordered.schema, options=_OPTIONS) as writer:
        for p in range(partitions):
            piece = ordered.slice(bounds[p], bounds[p + 1] - bounds[p])
            writer.write_batch(piece.to_batches()[0] if piece.num_rows else pa.RecordBatch.from_pylist([], schema=ordered.schema))
    storage.rename(url + ".tmp", url)


def read_partition(urls: list[str], partition: int, schema: pa.Schema) -> pa.Table:
    """Batch ``partition`` of every file in ``urls`` (files that do not exist hold nothing)."""
    batches = []
    for url in urls:
        fs, path = storage.filesystem(url)
        if not fs.exists(path):
            continue
        with fs.open(path, "rb") as source:
            batches.append(pa.ipc.open_file(source).get_batch(partition))
    return pa.Table.from_batches(batches, schema=schema) if batches else schema.empty_table()


def write_table(url: str, table: pa.Table) -> None:
    """A whole table as one Arrow IPC file (a bucket's candidate sessions between two task sets)."""
    write_partitioned(url, table, np.zeros(table.num_rows, dtype=np.int64), 1)


def read_table(url: str) -> pa.Table:
    fs, path = storage.filesystem(url)
    with fs.open(path, "rb") as source:
        return pa.ipc.open_file(source).read_all()
