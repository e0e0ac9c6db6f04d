"""Ingest job: Pushshift RC/RS dumps -> Parquet tables of comments, submissions and rejects.

    python -m extraction.ingest.job 'inputs=[/data/RC_2015-01.zst,/data/RS_2015-01.zst]' output=out/ingest

How the work is spread: files run in parallel across executors, largest first (Spark schedules,
retries and reports the tasks). A task streams its file in bounded blocks (``extraction.ingest.dumps``),
each block parsed into Arrow columns (``extraction.ingest.records``) and written straight to Parquet by
pyarrow, partitioned by month, as datatrove's writers do: rows never cross into the JVM, which
measured 2x faster than handing Arrow batches to Spark's own Parquet writer (BENCHMARKS.md).
Only one line of counters per task comes back to the driver.

One big dump (a per-subreddit dump of 100+ GB) need not wait for one core: a zstd frame cannot be
entered in the middle, but decompression runs about 10x faster than parsing, so ``pieces_per_file``
tasks share the file, one decompression between them. The task of the last piece decodes the whole
file once: the blocks of the other pieces (a block belongs to the piece in whose share of the
compressed bytes it ends: ``piece_of``; the last piece's share is smaller, as its task also
decodes: ``decoder_share``) are handed on unsplit, zstd-compressed, through files in the staging folder
(``_relay/<file>-<piece>/``, each written then renamed; ``_Relay``), and it parses its own. The
other pieces' tasks parse those blocks as they appear. One zstd window per file, however many
pieces (each decoder of a Pushshift dump holds 2 GiB). Automatic by default: each file gets its
share of the cores, so a lone dump is parsed on all of them and a month of many dumps runs one task
a file as before. The decoding task comes first in the job (Spark and the worker pool start tasks
in order), and it never waits for the others, so the pieces cannot wait on each other in a circle;
a piece that hears nothing new for ``piece_wait_s`` stops with an error. The relayed blocks stay
until the job ends, so a retried task finds them again. The pieces write
``part-<file>-<piece>-<sequence>.parquet``, which sort in line order, so a bucket's files read in
name order give the rows of one task in the same order (and the extract job the same bytes); their
counters add up to the file's line of the report. The in-process runner parses pieces in as many
worker processes as its master's cores (``local[N]``).

Small inputs (under ``spark.in_process_below_bytes``, local master) run the same task function in
this process, without starting Spark (``extraction.spark.session_for``): the same files, the same bytes.

File names are deterministic (``part-<file index>[-<piece>]-<sequence>.parquet``) and each file appears
by rename, so a retried or speculative task writes the same names with the same bytes.

Re-runs: everything is written under ``<output>/_staging-<run id>/`` and moved into place table
by table; ``<output>/_INGEST_DONE.json`` is written last and holds a fingerprint of the inputs and
config. A run whose fingerprint matches does nothing; an interrupted run leaves no marker, and the
next run clears its staging folder and starts again.

Run::

    python -m extraction.ingest.job 'inputs=[data/RC_2015-01.zst,data/RS_2015-01.zst]' output=out/ingest
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import zstandard

from reddit_pretrain import layout, storage
from reddit_pretrain.errors import UserError
from reddit_pretrain.layout import TABLES
from extraction.ingest.dumps import (
    DEFAULT_READ_SIZE_BYTES,
    ZSTD_MAX_WINDOW_BYTES,
    ChecksumMismatch,
    DumpReadError,
    LineBlock,
    dump_kind,
    iter_line_blocks,
    parse_dump_name,
    record_kind,
)
from extraction.ingest.records import COMMENT_SCHEMA, REJECT_SCHEMA, SUBMISSION_SCHEMA, parse_block, rejects_batch
from extraction.spark import SparkConfig

SCHEMAS = {"RC": COMMENT_SCHEMA, "RS": SUBMISSION_SCHEMA}
DONE_MARKER = layout.INGEST_DONE
REPORT_FILE = layout.INGEST_REPORT


class IngestError(UserError, RuntimeError):
    """A clear, user-facing reason the ingest job stopped."""


@dataclass
class IngestConfig:
    """The ingest job: which dumps, where to, and how to treat bad input."""

    inputs: list[str] = field(default_factory=list)
    """Dump paths or globs (local, s3://, hdfs://, ...): ``RC_*.zst`` comments, ``RS_*.zst`` submissions;
    ``.zst_blocks``, ``.bz2``, ``.xz`` and ``.gz`` dumps too (``extraction.ingest.dumps``)."""
    checksums: str | None = None
    """A checksum list in the releases' format (``sha256sum``'s: a sha256 and a file name a line).
    Each dump named in it is verified while it is read (its compressed bytes hashed as they stream);
    a mismatch is a corrupt file (``on_corrupt_file``: ``fail`` stops naming both digests before any
    row is committed; ``record`` sets the file's rows aside, counted). A dump not in the list is said
    once and read unchecked."""
    output: str = "out/ingest"
    """Folder that receives comments/, submissions/, rejects/ and the report."""
    on_corrupt_file: str = "fail"
    """``fail``: stop with an error naming the file. ``record``: mark the file failed in the
    report, keep the lines read before the damage (a checksum mismatch: none of its lines, which are
    counted as set aside), and let the other files finish."""
    read_size_bytes: int = DEFAULT_READ_SIZE_BYTES
    """Compressed bytes read per step; bounds a task's memory together with the zstd window."""
    max_window_bytes: int = ZSTD_MAX_WINDOW_BYTES
    max_records_per_file: int = 5_000_000
    """Caps Parquet file size: a 40 GB month becomes many files, not one."""
    progress_interval_s: float = 15.0
    """Seconds between progress lines from each running file."""
    pieces_per_file: int = 0
    """Tasks that parse one dump, each its own share of the file; the last one's task decodes the
    whole file once and hands the other shares' lines on (while the job runs the staging folder
    holds them, zstd-compressed). 0: automatic, each file its share of the cores (a single big
    dump on all of them, many dumps one task each), at most 5 (more would wait for the one task
    that decodes the file); 1: one task a file; at most 16 when set."""
    piece_min_bytes: int = 16 << 20
    """A piece is at least this many compressed bytes: smaller dumps are one task."""
    piece_wait_s: float = 900.0
    """How long a piece's task waits for the next block from its file's decoding task before it
    stops with an error (that task lost, not yet started, or stuck)."""
    thread_buckets: int = 0
    """Comments and submissions are written in pieces of the fixed hash space of thread ids
    (``bucket=NNNNN`` folders, piece ``i`` of ``n`` the ``i``-th of ``n`` equal contiguous ranges),
    so the extract job reads whole threads without a shuffle; it groups contiguous pieces into
    tasks by their size. 0 picks a power of two from the size of the comment dumps: about 16 MiB
    compressed (some 250k comments) a piece, at least 4, no cap below 1,048,576."""
    keep_deleted_text: bool = False
    """Keep the text of items deleted or removed after the crawl (``_meta`` of today's dumps): for
    research on deletions only. By default their body and author (a submission's title, self text
    and author) are ``[deleted]`` or ``[removed]`` before anything is written; either way the
    ``deletion`` column says which, and the report counts them per kind."""
    force: bool = False
    """Run again even when the output is complete for the same inputs and config."""
    spark: SparkConfig = field(default_factory=SparkConfig)

    def validate(self) -> None:
        if not self.inputs:
            raise IngestError("no inputs: set inputs=[path/RC_YYYY-MM.zst,...] (paths or globs)")
        if self.on_corrupt_file not in ("fail", "record"):
            raise IngestError(f"on_corrupt_file must be 'fail' or 'record', not {self.on_corrupt_file!r}")
        if self.read_size_bytes < 1024:
            raise IngestError("read_size_bytes must be at least 1024")
        if not 0 <= self.pieces_per_file <= MAX_PIECES:
            raise IngestError(f"pieces_per_file must be between 0 (automatic) and {MAX_PIECES}")
        if self.piece_min_bytes < 1:
            raise IngestError("piece_min_bytes must be positive")
        if self.piece_wait_s <= 0:
            raise IngestError("piece_wait_s must be positive")
        if not 0 <= self.thread_buckets <= MAX_BUCKETS:
            raise IngestError(f"thread_buckets must be between 0 (automatic) and {MAX_BUCKETS}")


# ---------------------------------------------------------------------------------------------
# Executor side


@dataclass(frozen=True)
class _TaskSettings:
    staging: str
    read_size_bytes: int
    max_window_bytes: int
    on_corrupt_file: str
    progress_interval_s: float
    max_records_per_file: int
    thread_buckets: int
    piece_wait_s: float
    keep_deleted_text: bool = False


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

        from extraction.sessions.reddit_threads import thread_bucket

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


# What the task of a file's last piece spends besides parsing, as fractions of the time parsing
# the whole file takes (measured on the 10M-comment generated month: BENCHMARKS.md, "One zstd
# window a file"): decoding the whole file, handing the other pieces' lines on (zstd level 1),
# and what reading them back adds to the other pieces.
DECODE_COST = 0.12
RELAY_COST = 0.13
RELAY_READ_COST = 0.05


def decoder_share(pieces: int) -> float:
    """The share of the file the last piece parses, so that its task (which also decodes the file
    and hands the other pieces their lines) ends with the others: 0.42 of two pieces, 0.09 of
    four, nothing from six on (then the decoding sets the pace)."""
    if pieces == 1:
        return 1.0
    others = (1 + RELAY_READ_COST) / (pieces - 1)
    return max(0.0, (others - DECODE_COST - RELAY_COST) / (1 - RELAY_COST + others))


def piece_of(compressed_bytes_read: int, pieces: int, size: int) -> int:
    """The piece a block belongs to, from the compressed bytes read at its end: of the file's
    ``size`` bytes, pieces 0 to ``pieces - 2`` hold equal shares in order and the last piece, whose
    task also decodes the whole file, what is left (``decoder_share``)."""
    if pieces == 1:
        return 0
    at = max(0, compressed_bytes_read - 1) / max(1, size)  # where the block ends, 0 <= at < 1
    return min(pieces - 1, int(at * (pieces - 1) / (1 - decoder_share(pieces))))


RELAY_FOLDER = "_relay"
RELAY_LEVEL = 1
_RELAY_HEADER = "<5q"  # first line, lines, compressed bytes read, decompressed read, decompressed before
_RELAY_END = "END.json"


class _Relay:
    """The blocks one file's decoding task hands to the task of piece ``piece``: numbered files in
    ``<staging>/_relay/<file>-<piece>/``, each a header and the lines' bytes (zstd level 1: about 6x
    smaller, and here faster to write than the raw bytes), and ``END.json`` last, with how many
    blocks there are and the error that stopped the decoding task, if one did."""

    def __init__(self, staging: str, file_index: int, piece: int):
        self.folder = storage.join(staging, RELAY_FOLDER, f"{file_index:06d}-{piece:03d}")
        self.blocks = 0
        self._compressor = zstandard.ZstdCompressor(level=RELAY_LEVEL)

    def _block(self, seq: int) -> str:
        return storage.join(self.folder, f"{seq:08d}.block")

    def put(self, block: LineBlock, before: int) -> None:
        header = struct.pack(_RELAY_HEADER, block.first_line_number, block.skipped, block.compressed_bytes_read,
                             block.decompressed_bytes_read, before)
        storage.write_bytes_atomic(self._block(self.blocks), header + self._compressor.compress(block.data))
        self.blocks += 1

    def end(self, error: BaseException | None = None) -> None:
        detail = None
        if isinstance(error, DumpReadError):
            detail = {"path": error.path, "line_number": error.line_number, "cause": error.cause,
                      "checksum": isinstance(error, ChecksumMismatch)}
        elif error is not None:
            detail = {"message": f"{type(error).__name__}: {error}"}
        storage.write_json_atomic(storage.join(self.folder, _RELAY_END), {"blocks": self.blocks, "error": detail})

    def read(self, file_name: str, piece: int, pieces: int, wait_s: float) -> Iterator[tuple[LineBlock, int]]:
        """The blocks in order as the decoding task writes them, each with the decompressed bytes
        before the piece; raises the decoding task's error after the blocks written before it."""
        seq, heard, delay, end = 0, time.time(), 0.005, None
        decompressor = zstandard.ZstdDecompressor()
        while end is None or seq < end["blocks"]:
            data = storage.read_bytes_if_exists(self._block(seq))
            if data is not None:
                first, lines, compressed, decompressed, before = struct.unpack_from(_RELAY_HEADER, data)
                text = decompressor.decompress(data[struct.calcsize(_RELAY_HEADER):])
                block = LineBlock(first, text.split(b"\n")[:-1], compressed, decompressed)
                if len(block.lines) != lines:
                    raise IngestError(f"{file_name}: relayed block {seq} of piece {piece + 1} holds {len(block.lines)} lines, "
                                      f"its header says {lines}")
                yield block, before
                seq, heard, delay = seq + 1, time.time(), 0.005
                continue
            if end is not None:  # the end says more blocks than there are
                raise IngestError(f"{file_name}: block {seq} of piece {piece + 1} is missing from {self.folder}")
            end = storage.read_json_if_exists(storage.join(self.folder, _RELAY_END))
            if end is not None:
                continue  # blocks written before the end are read first
            if time.time() - heard > wait_s:
                raise IngestError(f"{file_name}: piece {piece + 1} of {pieces} heard nothing from the task decoding the "
                                  f"file (piece {pieces}) for {wait_s:.0f} s (ingest.piece_wait_s); was it lost or never started?")
            time.sleep(delay)
            delay = min(0.2, delay * 2)
        error = end["error"]
        if error and "cause" in error:
            raise (ChecksumMismatch if error.get("checksum") else DumpReadError)(error["path"], error["line_number"],
                                                                                  error["cause"])
        if error:
            raise IngestError(f"{file_name}: the task decoding the file (piece {pieces}) failed: {error['message']}")


class _Decoder:
    """The last piece's task: decodes the whole file once, hands each earlier piece its blocks
    (``_Relay``) and yields its own, each with the decompressed bytes before the piece. Whatever
    stops it (the file's damage, its own parsing's error: ``fail``), the earlier pieces hear of it."""

    def __init__(self, path: str, settings: _TaskSettings, file_index: int, pieces: int, size: int,
                 sha256: str | None = None):
        self.path, self.settings, self.pieces, self.size, self.sha256 = path, settings, pieces, size, sha256
        self.relays = [_Relay(settings.staging, file_index, p) for p in range(pieces - 1)]
        self.ended = 0  # relays[:ended] have their END

    def _end_until(self, piece: int, error: BaseException | None = None) -> None:
        while self.ended < piece:
            self.relays[self.ended].end(error)
            self.ended += 1

    def fail(self, error: BaseException) -> None:
        self._end_until(len(self.relays), error)

    def __iter__(self) -> Iterator[tuple[LineBlock, int]]:
        last, pieces, size = self.pieces - 1, self.pieces, self.size
        owner, before, previous_end = 0, 0, 0
        try:
            for block in iter_line_blocks(self.path, self.settings.read_size_bytes, self.settings.max_window_bytes,
                                          lambda read: piece_of(read, pieces, size) == last, keep_skipped=True,
                                          sha256=self.sha256):
                piece = piece_of(block.compressed_bytes_read, pieces, size)
                if piece != owner:
                    owner, before = piece, previous_end
                self._end_until(min(piece, last))
                previous_end = block.decompressed_bytes_read
                if piece < last:
                    self.relays[piece].put(block, before)
                else:
                    yield block, before
            self._end_until(last)
        except GeneratorExit:
            self.fail(RuntimeError("the task stopped before the end of the file"))
            raise
        except BaseException as exc:
            self.fail(exc)
            raise


def ingest_file(file_index: int, path: str, settings: _TaskSettings, kind: str | None = None,
                piece: int = 0, pieces: int = 1, size: int = 0, sha256: str | None = None) -> dict:
    """Streams one dump (``kind`` RC or RS; from its name when not given) into Parquet rows and
    rejects under ``settings.staging``; returns its counters.

    ``pieces`` > 1: this task parses only the blocks of piece ``piece`` (``piece_of``, ``size`` the
    file's compressed bytes). The last piece's task decodes the file (a zstd frame cannot be
    entered in the middle) and hands the other pieces their blocks (``_Decoder``); the
    others read them (``_Relay.read``). The pieces' counters add up to the file's. ``sha256``: the
    published digest, checked by the task that reads the file's bytes."""
    name = parse_dump_name(path)
    kind = kind or (name.kind if name else "RC")
    file_name = path.rsplit("/", 1)[-1]
    source = file_name + (f" (piece {piece + 1} of {pieces})" if pieces > 1 else "")
    stats = {
        "piece": piece,
        "pieces": pieces,
        "file_index": file_index,
        "path": path,
        "kind": kind,
        "status": "ok",
        "error": None,
        "lines": 0,
        "rows": 0,
        "rejects": 0,
        "rejects_by_reason": {},
        "compressed_bytes": 0,
        "decompressed_bytes": 0,
        "rows_outside_file_month": 0,
        "set_aside": 0,
        "checksum_mismatch": False,
        "deleted_after_crawl": {},
    }
    file_month = name.month if name else None  # per-subreddit dumps span many months
    started = last_progress = time.time()
    named_piece = piece if pieces > 1 else None
    rows = _PartitionedParquet(storage.join(settings.staging, TABLES[kind]), file_index, SCHEMAS[kind],
                               settings.max_records_per_file, partition=True, buckets=settings.thread_buckets,
                               bucket_key="link_id" if kind == "RC" else "id", piece=named_piece)
    rejects = _PartitionedParquet(storage.join(settings.staging, layout.REJECTS), file_index, REJECT_SCHEMA,
                                  settings.max_records_per_file, partition=False, piece=named_piece)
    decoder = None
    if pieces == 1:
        blocks = ((block, 0) for block in iter_line_blocks(path, settings.read_size_bytes, settings.max_window_bytes,
                                                           sha256=sha256))
    elif piece == pieces - 1:
        blocks = decoder = _Decoder(path, settings, file_index, pieces, size, sha256)
    else:
        blocks = _Relay(settings.staging, file_index, piece).read(file_name, piece, pieces, settings.piece_wait_s)
    try:
        for block, before in blocks:
            result = parse_block(kind, file_name, block.first_line_number, block.lines, settings.keep_deleted_text)
            stats["lines"] += len(block.lines)
            stats["compressed_bytes"] = block.compressed_bytes_read
            stats["decompressed_bytes"] = block.decompressed_bytes_read - before
            if file_month is not None and result.rows.num_rows:
                # Kept, in the partition of their own month, and counted: a 2006 comment inside RC_2015-06.
                outside = pc.sum(pc.invert(pc.equal(pc.fill_null(result.rows.column("month"), ""), file_month))).as_py()
                stats["rows_outside_file_month"] += int(outside or 0)
            deletion = result.rows.column("deletion")
            if deletion.null_count < len(deletion):  # today's dumps: what was withheld, per kind of deletion
                for entry in pc.value_counts(deletion).to_pylist():
                    if entry["values"] is not None:
                        counts = stats["deleted_after_crawl"]
                        counts[entry["values"]] = counts.get(entry["values"], 0) + entry["counts"]
            rows.write(result.rows)
            if result.rejects:
                for row in result.rejects:
                    stats["rejects_by_reason"][row[2]] = stats["rejects_by_reason"].get(row[2], 0) + 1
                rejects.write(rejects_batch(result.rejects))
            now = time.time()
            if now - last_progress >= settings.progress_interval_s:
                last_progress = now
                mb = stats["decompressed_bytes"] / 1e6
                print(f"[ingest] {source}: {stats['lines']:,} lines, {mb:,.0f} MB, {mb / (now - started):,.1f} MB/s",
                      file=sys.stderr, flush=True)
    except DumpReadError as err:
        if settings.on_corrupt_file == "fail":
            raise
        stats["status"] = "failed"
        stats["error"] = str(err)
        stats["checksum_mismatch"] = isinstance(err, ChecksumMismatch)
    except BaseException as exc:
        if decoder is not None:
            decoder.fail(exc)  # the other pieces stop waiting for blocks
        raise
    finally:
        try:
            rows.close()
        finally:
            rejects.close()
    stats["rows"], stats["rejects"] = rows.rows, rejects.rows
    stats["seconds"] = round(time.time() - started, 3)
    print(f"[ingest] done {source}: {stats['lines']:,} lines -> {stats['rows']:,} rows, "
          f"{stats['rejects']:,} rejects ({stats['status']})", file=sys.stderr, flush=True)
    return stats


def _ingest_task(settings: _TaskSettings, task: dict) -> tuple[dict, None]:
    return ingest_file(task["file_index"], task["path"], settings, task.get("kind"), task.get("piece", 0),
                       task.get("pieces", 1), task.get("size", 0), task.get("sha256")), None


# ---------------------------------------------------------------------------------------------
# Driver side


def ingest_files(spark, files: list[tuple[int, str]], settings: _TaskSettings, kinds: dict[str, str] | None = None,
                 pieces: dict[str, int] | None = None, sizes: dict[str, int] | None = None, workers: int = 1,
                 digests: dict[str, str] | None = None) -> list[dict]:
    """Runs one task per piece of each (file_index, path) dump (``spark.run_tasks``; ``pieces`` per
    path, 1 when absent; ``workers``: processes of the in-process runner; ``digests``: published
    sha256 per path); returns each file's counters, its pieces' added up."""
    import functools

    from extraction.spark import run_tasks

    pieces, sizes = pieces or {}, sizes or {}
    tasks = [{"file_index": i, "path": p, "kind": (kinds or {}).get(p), "piece": k, "pieces": pieces.get(p, 1),
              "size": sizes.get(p, 0), "sha256": (digests or {}).get(p)}
             for i, p in files for k in reversed(range(pieces.get(p, 1)))]  # a file's last piece reads longest: first
    results = run_tasks(spark, f"ingest {len(files)} dumps ({len(tasks)} tasks)", tasks,
                        functools.partial(_ingest_task, settings), workers=workers)
    return merge_pieces([stats for stats, _ in results])


def merge_pieces(per_piece: list[dict]) -> list[dict]:
    """One line of counters per file from its pieces' (in the order the files first appear)."""
    files: dict[int, dict] = {}
    for stats in sorted(per_piece, key=lambda s: (s["file_index"], s.get("piece", 0))):
        merged = files.get(stats["file_index"])
        if merged is None:
            files[stats["file_index"]] = {**stats, "rejects_by_reason": dict(stats["rejects_by_reason"]),
                                          "deleted_after_crawl": dict(stats.get("deleted_after_crawl", {})),
                                          "piece_seconds": [stats["seconds"]]}
            continue
        merged["piece_seconds"].append(stats["seconds"])
        for key in ("lines", "rows", "rejects", "decompressed_bytes", "rows_outside_file_month"):
            merged[key] += stats[key]
        merged["checksum_mismatch"] = merged.get("checksum_mismatch", False) or stats.get("checksum_mismatch", False)
        for reason, n in stats["rejects_by_reason"].items():
            merged["rejects_by_reason"][reason] = merged["rejects_by_reason"].get(reason, 0) + n
        for kind, n in stats.get("deleted_after_crawl", {}).items():
            merged["deleted_after_crawl"][kind] = merged["deleted_after_crawl"].get(kind, 0) + n
        merged["compressed_bytes"] = max(merged["compressed_bytes"], stats["compressed_bytes"])
        merged["seconds"] = max(merged["seconds"], stats["seconds"])
        if merged["status"] == "ok" and stats["status"] != "ok":
            merged["status"], merged["error"] = stats["status"], stats["error"]
    order = list(dict.fromkeys(s["file_index"] for s in per_piece))
    out = []
    for index in order:
        merged = files[index]
        merged.pop("piece", None)
        if merged["pieces"] == 1:
            merged.pop("piece_seconds")
        out.append(merged)
    return out


def pieces_per_file(infos: list[dict], cores: int, setting: int, min_bytes: int) -> dict[str, int]:
    """How many tasks parse each file: ``setting`` when given (at most ``MAX_PIECES``), else the
    file's share of the ``cores`` (a file of half the input bytes gets half the cores), at most
    ``PACED_PIECES``; a piece is at least ``min_bytes`` compressed either way."""
    total = sum(i["size"] for i in infos) or 1
    out = {}
    for info in infos:
        wanted = min(setting, MAX_PIECES) if setting else min(round(cores * info["size"] / total), PACED_PIECES)
        out[info["path"]] = max(1, min(wanted, info["size"] // max(1, min_bytes)))
    return out


MAX_PIECES = 16
PACED_PIECES = 1 + int((1 + RELAY_READ_COST) / (DECODE_COST + RELAY_COST))
"""Beyond this many pieces (5) the one decoding task cannot keep the others busy: the file's
decoding and handing on sets the pace, and more tasks would wait, not parse."""


BUCKET_TARGET_BYTES = 16 << 20
ROW_GROUP_ROWS = 65_536
"""Rows of one piece written together as a Parquet row group (``_PartitionedParquet``)."""
PENDING_ROWS = 1 << 18
"""Rows an ingest task holds back over all its pieces before writing them (its memory for it)."""
MAX_BUCKETS = 1 << 20
"""The most pieces of the thread hash space: 16 TiB of compressed comments at 16 MiB a piece."""


def _comment_bytes(infos: list[dict], kinds: dict[str, str] | None) -> int:
    kinds = kinds or {}
    names = [parse_dump_name(i["path"]) for i in infos]
    return sum(i["size"] for i, name in zip(infos, names) if kinds.get(i["path"], name.kind if name else "RC") == "RC")


def auto_thread_buckets(infos: list[dict], kinds: dict[str, str] | None = None) -> int:
    """A power of two near one piece per 16 MiB of compressed comment dumps, at least 4, with no cap
    below ``MAX_BUCKETS``: the extract job groups contiguous pieces into tasks of about 16 MiB, so
    pieces must not be larger, whatever the corpus."""
    wanted = max(4, -(-_comment_bytes(infos, kinds) // BUCKET_TARGET_BYTES))
    return min(MAX_BUCKETS, 1 << (wanted - 1).bit_length())


def read_checksums(url: str) -> dict[str, str]:
    """{file name: sha256} of a checksum list as ``sha256sum`` writes it (and the releases publish):
    ``<64 hex digits> <space or *><name>`` a line; blank lines and ``#`` comments are skipped, a
    name's folders dropped. Anything else is an IngestError naming the line."""
    pattern = re.compile(r"([0-9a-fA-F]{64}) [ *](.+)")
    try:
        data = storage.read_bytes_if_exists(url)
    except OSError as err:
        raise IngestError(f"checksums={url}: cannot be read ({err})") from None
    if data is None:
        raise IngestError(f"checksums={url}: no such file")
    digests: dict[str, str] = {}
    for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = pattern.fullmatch(line.strip())
        if match is None:
            raise IngestError(f"checksums={url}, line {number}: not '<sha256>  <file name>' ({line.strip()[:80]!r})")
        name, digest = match[2].strip().replace("\\", "/").rsplit("/", 1)[-1], match[1].lower()
        if digests.get(name, digest) != digest:
            raise IngestError(f"checksums={url}, line {number}: {name} is listed twice with different sha256s")
        digests[name] = digest
    return digests


def published_digests(cfg: IngestConfig, files: list[str], say) -> dict[str, str]:
    """The published sha256 of each input (by file name) from ``cfg.checksums``; each input not
    in the list is said once."""
    if not cfg.checksums:
        return {}
    listed = read_checksums(cfg.checksums)
    digests = {f: listed[f.rsplit("/", 1)[-1]] for f in files if f.rsplit("/", 1)[-1] in listed}
    for f in files:
        if f not in digests:
            say(f"{f.rsplit('/', 1)[-1]} is not in the checksum list {cfg.checksums}: read without a check")
    return digests


def set_aside(staging: str, per_file: list[dict]) -> None:
    """``on_corrupt_file=record``: a dump whose checksum does not match has no trustworthy line, so
    its rows and rejects (every piece's) leave the output; its lines are counted as set aside."""
    for stats in per_file:
        if not stats.get("checksum_mismatch"):
            continue
        stem = f"part-{stats['file_index']:06d}"
        for table in (*TABLES.values(), layout.REJECTS):
            fs, root = storage.filesystem(storage.join(staging, table))
            for path in fs.find(root) if fs.exists(root) else []:
                if path.rsplit("/", 1)[-1].startswith(stem):
                    fs.rm(path)
        stats["set_aside"], stats["rows"], stats["rejects"], stats["rejects_by_reason"] = stats["lines"], 0, 0, {}


def fingerprint(cfg: IngestConfig, infos: list[dict], kinds: dict[str, str] | None = None,
                digests: dict[str, str] | None = None) -> str:
    """What decides the output: the inputs (``storage.file_info``: path, size, mtime), their
    published sha256s when checked, and the settings that shape rows."""
    material = {
        "files": infos,
        "on_corrupt_file": cfg.on_corrupt_file,
        "max_records_per_file": cfg.max_records_per_file,
        "thread_buckets": cfg.thread_buckets or auto_thread_buckets(infos, kinds),
        "keep_deleted_text": cfg.keep_deleted_text,
        "code": "ingest-v5",
    }
    if digests:
        material["sha256"] = digests
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def _order_for_scheduling(infos: list[dict]) -> list[tuple[int, str]]:
    """Stable indices by path; largest files first so the longest tasks start first."""
    order = sorted(range(len(infos)), key=lambda i: (-infos[i]["size"], i))
    return [(i, infos[i]["path"]) for i in order]


def _clear_error(exc: BaseException) -> IngestError | None:
    text = str(exc)
    match = re.search(r"cannot read dump '[^']*': [^\n]*", text)
    return IngestError(match.group(0)) if match else None


def run_ingest(cfg: IngestConfig, spark=None) -> dict:
    """Runs the ingest job and returns its report (also written to ``<output>/ingest_report.json``)."""
    from extraction.spark import cores, local_cores, session_for, where

    cfg.validate()
    storage.check_writable(cfg.output)  # before Spark starts: one line, not a late traceback
    files = storage.expand_inputs(cfg.inputs)
    kinds = {f: dump_kind(f, cfg.max_window_bytes) for f in files}
    unknown = [f for f, kind in kinds.items() if kind is None]
    if unknown:
        raise IngestError(f"cannot tell comments from submissions for {unknown[:3]}: name files RC_YYYY-MM.zst / "
                          "RS_YYYY-MM.zst or <subreddit>_comments.zst / <subreddit>_submissions.zst, or start them "
                          "with a comment (body) or a submission (title) record")
    swapped = _named_as_the_other_kind(files, kinds, cfg.max_window_bytes)
    if swapped:
        raise IngestError(swapped)
    output = cfg.output
    print_ = lambda msg: print(f"[ingest] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    infos = [storage.file_info(f) for f in files]  # one stat per input, remote ones included
    digests = published_digests(cfg, files, print_)
    staged = storage.StagedOutput(output, DONE_MARKER, fingerprint(cfg, infos, kinds, digests),
                                  [*TABLES.values(), layout.REJECTS, REPORT_FILE], job="ingest")
    if not cfg.force and staged.is_complete():
        print_(f"{output} is complete for these inputs and settings; nothing to do (force=true runs again)")
        return storage.read_json(storage.join(output, REPORT_FILE))

    with staged.writing() as staging:  # refuses a folder not its own, or one another job writes
        spark = session_for(cfg.spark, sum(i["size"] for i in infos), spark)
        buckets = cfg.thread_buckets or auto_thread_buckets(infos, kinds)
        settings = _TaskSettings(staging, cfg.read_size_bytes, cfg.max_window_bytes, cfg.on_corrupt_file,
                                 cfg.progress_interval_s, cfg.max_records_per_file, buckets, cfg.piece_wait_s,
                                 cfg.keep_deleted_text)
        started = time.time()
        workers = cores(spark) if spark is not None else local_cores(cfg.spark)
        pieces = pieces_per_file(infos, workers, cfg.pieces_per_file, cfg.piece_min_bytes)
        if spark is None and max(pieces.values(), default=1) == 1:
            workers = 1  # small dumps, one task each: starting worker processes costs more than it saves
        split = {p.rsplit("/", 1)[-1]: k for p, k in pieces.items() if k > 1}
        print_(f"{len(files)} files -> {output}, {where(spark, workers)}"
               + (f"; parsed in pieces: {', '.join(f'{n} {k}' for n, k in sorted(split.items()))}" if split else ""))
        try:
            per_file = ingest_files(spark, _order_for_scheduling(infos), settings, kinds, pieces,
                                    {i["path"]: i["size"] for i in infos}, workers, digests)
        except Exception as exc:  # Spark wraps executor errors; surface ours by name
            clear = _clear_error(exc)
            if clear is not None:
                raise clear from None
            raise
        seconds = time.time() - started
        set_aside(staging, per_file)
        report = build_report(per_file, seconds, workers)
        report["checksums"] = {"list": cfg.checksums, "checked": len(digests), "unchecked": len(files) - len(digests)} \
            if cfg.checksums else None
        report["thread_buckets"] = buckets
        storage.remove(storage.join(staging, RELAY_FOLDER))  # the lines handed between a file's pieces
        storage.remove_unfinished(staging)  # parts of attempts Spark killed or retried
        _check_counts(staging, report)
        storage.write_json_atomic(storage.join(staging, REPORT_FILE), report)

        staged.commit(files=files, finished_utc=int(time.time()))
    print(format_report(report, output))
    return report


def _named_as_the_other_kind(files: list[str], kinds: dict[str, str], max_window_bytes: int) -> str | None:
    """A line naming the files whose name says comments (RC) but whose records are submissions, or
    the other way round: read as their name says, every line would be a missing_field reject."""
    what = TABLES
    wrong = []
    for path in files:
        if parse_dump_name(path) is None:
            continue  # its kind came from its records already
        seen = record_kind(path, max_window_bytes)
        if seen is not None and seen != kinds[path]:
            wrong.append((path, seen))
    if not wrong:
        return None
    path, seen = wrong[0]
    name = path.rsplit("/", 1)[-1]
    fix = name.replace(kinds[path] + "_", seen + "_", 1) if name.startswith(kinds[path] + "_") else \
        name.replace(f"_{what[kinds[path]]}", f"_{what[seen]}")
    more = f" ({len(wrong) - 1} more such file{'s' if len(wrong) > 2 else ''})" if len(wrong) > 1 else ""
    return (f"{path} is named as {what[kinds[path]]} but holds {what[seen]} (its first records have "
            f"{'body and parent_id' if seen == 'RC' else 'a title'}): rename it {fix}{more}")


def _check_counts(staging: str, report: dict) -> None:
    """Rows in the Parquet footers must equal rows the tasks counted: nothing lost or doubled."""
    for table in (*TABLES.values(), layout.REJECTS):
        expected = report["totals"][f"{table}_rows" if table != layout.REJECTS else "rejects"]
        fs, path = storage.filesystem(storage.join(staging, table))
        parts = [storage.join(staging, table, p[len(path):].lstrip("/")) for p in fs.find(path) if p.endswith(".parquet")] \
            if fs.exists(path) else []
        written = storage.parquet_rows(parts)
        if written != expected:
            raise IngestError(f"{table}: tasks counted {expected} rows but {written} were written")


def build_report(per_file: list[dict], seconds: float, cores: int) -> dict:
    totals = {
        "files": len(per_file),
        "failed_files": sum(f["status"] != "ok" for f in per_file),
        "lines": sum(f["lines"] for f in per_file),
        "comments_rows": sum(f["rows"] for f in per_file if f["kind"] == "RC"),
        "submissions_rows": sum(f["rows"] for f in per_file if f["kind"] == "RS"),
        "rejects": sum(f["rejects"] for f in per_file),
        "compressed_bytes": sum(f["compressed_bytes"] for f in per_file),
        "decompressed_bytes": sum(f["decompressed_bytes"] for f in per_file),
        "rows_outside_file_month": sum(f.get("rows_outside_file_month", 0) for f in per_file),
        "set_aside": sum(f.get("set_aside", 0) for f in per_file),
    }
    reasons: dict[str, int] = {}
    for f in per_file:
        for reason, n in f["rejects_by_reason"].items():
            reasons[reason] = reasons.get(reason, 0) + n
    totals["rejects_by_reason"] = dict(sorted(reasons.items()))
    deleted: dict[str, int] = {}
    for f in per_file:
        for kind, n in f.get("deleted_after_crawl", {}).items():
            deleted[kind] = deleted.get(kind, 0) + n
    totals["deleted_after_crawl"] = dict(sorted(deleted.items()))
    """Rows whose text was withheld (or kept, with ``keep_deleted_text``), per ``deletion``."""
    for f in per_file:
        assert f["lines"] == f["rows"] + f["rejects"] + f.get("set_aside", 0), f  # a row, a reject or set aside
    return {
        "totals": totals,
        "seconds": round(seconds, 3),
        "cores": cores,
        "lines_per_second": round(totals["lines"] / max(seconds, 1e-9), 1),
        "decompressed_mb_per_second": round(totals["decompressed_bytes"] / 1e6 / max(seconds, 1e-9), 2),
        "files": sorted(per_file, key=lambda f: f["path"]),
    }


def format_report(report: dict, output: str) -> str:
    t = report["totals"]
    lines = [
        f"Ingest report ({output})",
        f"{'file':<28}{'status':>8}{'lines':>12}{'rows':>12}{'rejects':>9}{'MB':>9}{'s':>8}",
    ]
    for f in report["files"]:
        lines.append(
            f"{f['path'].rsplit('/', 1)[-1]:<28}{f['status']:>8}{f['lines']:>12,}{f['rows']:>12,}"
            f"{f['rejects']:>9,}{f['decompressed_bytes'] / 1e6:>9,.1f}{f.get('seconds', 0):>8.1f}"
        )
    lines.append(
        f"total: {t['lines']:,} lines = {t['comments_rows']:,} comments + {t['submissions_rows']:,} "
        f"submissions + {t['rejects']:,} rejects"
        + (f" ({', '.join(f'{k} {v:,}' for k, v in t['rejects_by_reason'].items())})" if t["rejects_by_reason"] else "")
        + (f" + {t['set_aside']:,} set aside (their file's checksum does not match)" if t.get("set_aside") else "")
    )
    if t.get("deleted_after_crawl"):
        lines.append("deleted or removed after the crawl (text withheld unless keep_deleted_text): "
                     + ", ".join(f"{k} {v:,}" for k, v in t["deleted_after_crawl"].items()))
    lines.append(
        f"{report['seconds']:.1f} s, {report['lines_per_second']:,.0f} lines/s, "
        f"{report['decompressed_mb_per_second']:.1f} MB/s on {report['cores']} core{'s' if report['cores'] != 1 else ''}"
    )
    for f in report["files"]:
        if f["status"] != "ok":
            lines.append(f"FAILED {f['path']}: {f['error']}")
    if t["rows_outside_file_month"]:
        outside = {f["path"].rsplit("/", 1)[-1]: f["rows_outside_file_month"] for f in report["files"] if f.get("rows_outside_file_month")}
        lines.append(f"{t['rows_outside_file_month']:,} rows have a created_utc outside their file's month (kept, in "
                     f"their own month's folder): {outside}")
    lines.append(f"tables: {storage.join(output, 'comments')}, {storage.join(output, 'submissions')}, {storage.join(output, 'rejects')}")
    return "\n".join(lines)


def main() -> None:
    from extraction import spark
    from reddit_pretrain.hydra_job import run_hydra

    run_hydra("ingest", IngestConfig, run_ingest, "'inputs=[dumps/RC_2015-01.zst,dumps/RS_2015-01.zst]' output=ingest",
              hint=spark.log_hint)

if __name__ == "__main__":
    main()
