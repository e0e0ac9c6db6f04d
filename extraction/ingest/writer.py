"""An ingest task's Parquet files: its rows by month and piece of the thread hash space
(``month=YYYY-MM/bucket=NNNNN``), held back until a row group fills, rolled at a row limit, each
file written under a temporary name and renamed (so a task's completion record lists it)."""

from __future__ import annotations
import pyarrow as pa
import pyarrow.compute as pc
from reddit_pretrain import layout, storage


class _PartitionedParquet:
    """Parquet files of one input file's rows, one folder per month and thread bucket
    (``month=YYYY-MM/bucket=NNNNN``), rolled at a row limit."""

    def __init__(self, table_dir: str, file_index: int, schema: pa.Schema, max_rows_per_file: int, partition: bool,
                 buckets: int = 1, bucket_key: str | None = None, piece: int | None = None):
        self.table_dir = table_dir
        self.stem = f"part-{file_index:06d}" + (f"-{piece:03d}" if piece is not None else "")
        """``part-<file>[-<piece>]``: names sort in line order (a piece's rows follow the piece before)."""
        self.buckets = buckets
        self.bucket_key = bucket_key
        self.file_index = file_index
        self.schema = schema.remove(schema.get_field_index("month")) if partition else schema
        self.max_rows_per_file = max_rows_per_file
        self.partition = partition
        self._open: dict[str, list] = {}  # folder -> [writer, sink, final URL, rows]
        self._sequence: dict[str, int] = {}
        self._pending: dict[str, list[pa.RecordBatch]] = {}  # folder -> slices not yet written
        self._pending_rows: dict[str, int] = {}
        self.rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        self.rows += batch.num_rows
        if not self.partition:
            self._write_part("", batch)
            return
        import numpy as np

        from extraction.sessions.thread_keys import thread_bucket

        months = pc.dictionary_encode(batch.column("month"))
        names = months.dictionary.to_pylist()
        key = pc.fill_null(months.indices, len(names)).to_numpy(zero_copy_only=False).astype(np.int64) * self.buckets
        key += thread_bucket(batch.column(self.bucket_key), self.buckets)
        order = np.argsort(key, kind="stable")
        data = batch.drop_columns(["month"]).take(pa.array(order, pa.int64()))
        key = key[order]
        bounds = np.flatnonzero(np.diff(key)) + 1
        for start, end in zip(np.concatenate([[0], bounds]), np.concatenate([bounds, [len(key)]])):
            month, bucket = divmod(int(key[start]), self.buckets)
            self._add(layout.bucket_folder(names[month] if month < len(names) else None, bucket), data.slice(start, end - start))
        if sum(self._pending_rows.values()) > PENDING_ROWS:
            for folder in list(self._pending):
                self._flush(folder)

    def _add(self, folder: str, batch: pa.RecordBatch) -> None:
        """A block's rows of one piece wait for more (a block cut into thousands of pieces leaves a
        few rows in each: one row group each would make a file that costs ten times as much to read);
        they are written in row groups of ``ROW_GROUP_ROWS``, or when all pieces together hold
        ``PENDING_ROWS``, in line order either way."""
        self._pending.setdefault(folder, []).append(batch)
        self._pending_rows[folder] = self._pending_rows.get(folder, 0) + batch.num_rows
        if self._pending_rows[folder] >= ROW_GROUP_ROWS:
            self._flush(folder)

    def _flush(self, folder: str) -> None:
        batches = self._pending.pop(folder, None)
        self._pending_rows.pop(folder, None)
        if batches:
            self._write_part(folder, pa.Table.from_batches(batches).combine_chunks())

    def _write_part(self, folder: str, rows) -> None:
        """``rows`` (a batch or a table) into the folder's open file, one row group, rolling to the
        next file at ``max_rows_per_file``."""
        while rows.num_rows > self.max_rows_per_file > 0:
            room = self.max_rows_per_file - (self._open[folder][3] if folder in self._open else 0)
            if room <= 0:
                self._close(folder)
                continue
            self._write_one(folder, rows.slice(0, room))
            rows = rows.slice(room)
        self._write_one(folder, rows)

    def _write_one(self, folder: str, batch) -> None:
        import pyarrow.parquet as pq

        state = self._open.get(folder)
        if state is not None and state[3] + batch.num_rows > self.max_rows_per_file:
            self._close(folder)
            state = None
        if state is None:
            sequence = self._sequence.get(folder, 0)
            self._sequence[folder] = sequence + 1
            name = f"{self.stem}-{sequence:04d}.parquet"
            final = storage.join(self.table_dir, folder, name) if folder else storage.join(self.table_dir, name)
            fs, path = storage.filesystem(final)
            fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            sink = fs.open(path + ".tmp", "wb")
            state = self._open[folder] = [pq.ParquetWriter(sink, self.schema, compression="zstd"), sink, final, 0]
        if isinstance(batch, pa.Table):
            state[0].write_table(batch, row_group_size=max(1, batch.num_rows))
        else:
            state[0].write_batch(batch)
        state[3] += batch.num_rows

    def _close(self, folder: str) -> None:
        writer, sink, final, _ = self._open.pop(folder)
        try:
            writer.close()
        finally:
            sink.close()  # the file is closed even when the footer could not be written (a full disk)
        storage.rename(final + ".tmp", final)

    def close(self) -> None:
        """Writes the rows still waiting, closes every open file (all of them, even after one
        fails), then raises the first error."""
        first = None
        try:
            for folder in list(self._pending):
                self._flush(folder)
        except Exception as exc:
            first = exc
        for folder in list(self._open):
            try:
                self._close(folder)
            except Exception as exc:
                first = first or exc
        if first is not None:
            raise first


ROW_GROUP_ROWS = 65_536
"""Rows of one piece written together as a Parquet row group (``_PartitionedParquet``)."""
PENDING_ROWS = 1 << 18
"""Rows an ingest task holds back over all its pieces before writing them (its memory for it)."""
