"""Streaming reader and writer for Pushshift ``.zst`` NDJSON dumps.

Plain Python (zstandard + fsspec), no Spark: the ingest job wraps these functions for executors.

Pushshift compresses with ``zstd --long=31``: one frame with a 2 GiB window, which default
decoders refuse ("Frame requires too much memory for decoding"). The reader allows that window,
streams the frame in fixed-size reads, and splits lines on raw bytes, so a multi-byte UTF-8
character or a line that straddles a read boundary is reassembled before anything is decoded.
Memory stays bounded by the window actually used plus one read block, whatever the file size.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterator

import zstandard

ZSTD_MAX_WINDOW_BYTES = 2**31
"""Largest zstd window a Pushshift dump uses (``--long=31``)."""

DEFAULT_READ_SIZE_BYTES = 8 * 2**20

_DUMP_NAME = re.compile(r"(?P<kind>RC|RS)_(?P<year>\d{4})-(?P<month>\d{2})")
_SUBREDDIT_DUMP = re.compile(r"_(?P<kind>comments|submissions)\.(?:zst|ndjson\.zst|json\.zst)$")


class DumpReadError(RuntimeError):
    """A dump file cannot be decompressed (truncated, corrupt, not zstd). Names the file."""

    def __init__(self, path: str, line_number: int, cause: str):
        self.path = path
        self.line_number = line_number
        self.cause = cause
        super().__init__(
            f"cannot read dump {path!r}: {cause} (after {line_number} complete lines)"
        )

    def __reduce__(self):  # crosses from a worker process intact
        return type(self), (self.path, self.line_number, self.cause)


@dataclass(frozen=True)
class DumpName:
    """What a Pushshift file name says: comments (RC) or submissions (RS), and the month."""

    kind: str  # "RC" or "RS"
    month: str | None  # "YYYY-MM"; None for per-subreddit dumps (rows take their month from created_utc anyway)


def parse_dump_name(path: str) -> DumpName | None:
    """The kind (and month) a file name says: ``RC_YYYY-MM.zst`` / ``RS_YYYY-MM.zst`` (monthly dumps)
    or ``<subreddit>_comments.zst`` / ``<subreddit>_submissions.zst`` (per-subreddit dumps); else None."""
    name = os.path.basename(path)
    match = _DUMP_NAME.search(name)
    if match is not None:
        return DumpName(match["kind"], f"{match['year']}-{match['month']}")
    match = _SUBREDDIT_DUMP.search(name)
    if match is not None:
        return DumpName("RC" if match["kind"] == "comments" else "RS", None)
    return None


def dump_kind(path: str, max_window_bytes: int = ZSTD_MAX_WINDOW_BYTES) -> str | None:
    """``RC`` or ``RS``: from the file name, else from the first record that parses (a comment has
    ``body`` or ``parent_id``, a submission ``title``); None when neither tells."""
    name = parse_dump_name(path)
    if name is not None:
        return name.kind
    return record_kind(path, max_window_bytes)


def record_kind(path: str, max_window_bytes: int = ZSTD_MAX_WINDOW_BYTES) -> str | None:
    """``RC`` or ``RS`` by the first of the file's first 100 lines that parses as a record (a comment
    has ``body`` or ``parent_id``, a submission ``title``), whatever the file's name; None when
    none tells (or the file cannot be read)."""
    import json

    try:
        for block in iter_line_blocks(path, 1 << 20, max_window_bytes):
            for line in block.lines[:100]:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and ("body" in record or "parent_id" in record):
                    return "RC"
                if isinstance(record, dict) and "title" in record:
                    return "RS"
            return None
    except DumpReadError:
        return None
    return None


def open_binary(path: str) -> BinaryIO:
    """Opens a local path or any fsspec URL (s3://, hdfs://, gs://, ...) for reading bytes."""
    import fsspec

    return fsspec.open(path, "rb").open()


@dataclass
class LineBlock:
    """A run of consecutive lines from one file, as raw bytes without their newline."""

    first_line_number: int  # 1-based
    lines: list[bytes]
    compressed_bytes_read: int  # cumulative, at the end of this block
    decompressed_bytes_read: int  # cumulative, at the end of this block
    skipped: int = 0
    """Lines of a block ``iter_line_blocks`` was told not to split (``lines`` is then empty)."""
    data: bytes | None = None
    """With ``keep_skipped``: a skipped block's lines as they stand in the file, each ending in a newline."""

    @property
    def num_lines(self) -> int:
        return self.skipped or len(self.lines)


def iter_line_blocks(
    path: str,
    read_size_bytes: int = DEFAULT_READ_SIZE_BYTES,
    max_window_bytes: int = ZSTD_MAX_WINDOW_BYTES,
    wanted: Callable[[int], bool] | None = None,
    keep_skipped: bool = False,
) -> Iterator[LineBlock]:
    """Streams a ``.zst`` NDJSON file as blocks of complete lines.

    ``wanted(compressed bytes read at the block's end)``: when it says no, the block's lines are
    only counted, not split (``LineBlock.skipped``): a task that parses one piece of a file reads
    past the others at the speed of decompression. ``keep_skipped``: a skipped block also carries
    its lines' bytes unsplit (``LineBlock.data``), for a task that hands them on to another.

    Each step decompresses at most ``read_size_bytes`` of output, so a block is bounded however
    well the data compresses. Concatenated frames are read one after the other. Raises
    DumpReadError naming the file when the data is not zstd, is corrupt, or ends in the middle
    of a frame: python-zstandard reports a truncated stream as a clean end, so the compressed
    bytes also pass through a ``FrameWalker`` that knows where each frame must end.
    A final line without a newline is still yielded.
    """
    decompressor = zstandard.ZstdDecompressor(max_window_size=max_window_bytes)
    line_number = 1
    decompressed = 0
    pending = b""
    with open_binary(path) as raw:
        walker = _WalkingReader(raw, path)
        try:
            reader = decompressor.stream_reader(walker, read_size=1 << 17, read_across_frames=True, closefd=False)
            while True:
                try:
                    chunk = reader.read(read_size_bytes)
                except zstandard.ZstdError as err:
                    raise DumpReadError(path, line_number - 1, f"zstd error: {err}") from err
                if not chunk:
                    break
                decompressed += len(chunk)
                if wanted is not None and not wanted(walker.bytes_read):
                    count = chunk.count(b"\n")
                    if count:
                        end = chunk.rindex(b"\n") + 1
                        data = (pending + chunk[:end] if pending else chunk[:end]) if keep_skipped else None
                        pending = chunk[end:]
                        yield LineBlock(line_number, [], walker.bytes_read, decompressed, skipped=count, data=data)
                        line_number += count
                    else:
                        pending += chunk
                    continue
                lines = (pending + chunk).split(b"\n") if pending else chunk.split(b"\n")
                pending = lines.pop()
                if lines:
                    yield LineBlock(line_number, lines, walker.bytes_read, decompressed)
                    line_number += len(lines)
        except FrameFormatError as err:
            raise DumpReadError(path, line_number - 1, str(err)) from err
        walker.drain()
        problem = walker.end_problem()
        if problem:
            raise DumpReadError(path, line_number - 1, problem)
        if pending:
            yield LineBlock(line_number, [pending], walker.bytes_read, decompressed)


class FrameFormatError(ValueError):
    pass


_ZSTD_MAGIC = 0xFD2FB528


class FrameWalker:
    """Follows the zstd frame layout (RFC 8878) over a byte stream without decompressing.

    It reads only headers: the frame header, each block's 3-byte header (last-block bit, type,
    size), the optional checksum, and skippable frames, and skips block payloads by length. At
    the end of the stream it tells whether the data stopped exactly at a frame boundary.
    """

    def __init__(self):
        self._buf = bytearray()
        self._skip = 0
        self._state = "magic"
        self._checksum = False
        self.frames = 0

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        while len(view):
            if self._skip:
                n = min(self._skip, len(view))
                self._skip -= n
                view = view[n:]
                continue
            need = self._need()
            take = min(need - len(self._buf), len(view))
            self._buf += view[:take]
            view = view[take:]
            if len(self._buf) == need:
                self._advance()

    def _need(self) -> int:
        state = self._state
        if state in ("magic", "checksum"):
            return 4
        if state == "descriptor":
            return 1
        if state == "header_rest":
            return self._header_rest
        if state == "block":
            return 3
        if state == "skippable_size":
            return 4
        raise AssertionError(state)

    def _advance(self) -> None:
        buf, state = bytes(self._buf), self._state
        self._buf.clear()
        if state == "magic":
            magic = int.from_bytes(buf, "little")
            if magic == _ZSTD_MAGIC:
                self._state = "descriptor"
            elif magic & 0xFFFFFFF0 == 0x184D2A50:
                self._state = "skippable_size"
            else:
                raise FrameFormatError(f"not a zstd frame (magic 0x{magic:08x})")
        elif state == "skippable_size":
            self._skip = int.from_bytes(buf, "little")
            self._state = "magic"
        elif state == "descriptor":
            d = buf[0]
            fcs_flag, single_segment, self._checksum, did_flag = d >> 6, (d >> 5) & 1, bool((d >> 2) & 1), d & 3
            fcs_bytes = (1 if single_segment else 0, 2, 4, 8)[fcs_flag]
            self._header_rest = (0 if single_segment else 1) + (0, 1, 2, 4)[did_flag] + fcs_bytes
            self._state = "header_rest" if self._header_rest else "block"
        elif state == "header_rest":
            self._state = "block"
        elif state == "block":
            header = int.from_bytes(buf, "little")
            last, block_type, size = header & 1, (header >> 1) & 3, header >> 3
            if block_type == 3:
                raise FrameFormatError("corrupt zstd block header")
            self._skip = 1 if block_type == 1 else size
            if last:
                self._state = "checksum" if self._checksum else "magic"
                if not self._checksum:
                    self.frames += 1
        elif state == "checksum":
            self.frames += 1
            self._state = "magic"

    def at_frame_boundary(self) -> bool:
        return self._state == "magic" and not self._buf and not self._skip


class _WalkingReader(io.RawIOBase):
    """Passes compressed bytes to the decompressor and through a FrameWalker, counting them."""

    def __init__(self, raw: BinaryIO, path: str):
        self._raw = raw
        self.walker = FrameWalker()
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.bytes_read += len(data)
        self.walker.feed(data)
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        """Reads what the decompressor left unread (padding, a skippable frame) through the walker."""
        while self.read(1 << 16):
            pass

    def end_problem(self) -> str | None:
        if self.bytes_read == 0:
            return "empty file: no zstd frame"
        if not self.walker.at_frame_boundary():
            return "truncated: the last zstd frame does not end"
        return None


def dump_compressor(level: int = 3, window_log: int = 31, threads: int = 0) -> zstandard.ZstdCompressor:
    """A compressor that writes files like Pushshift's: long-distance matching, 2 GiB window."""
    params = zstandard.ZstdCompressionParameters.from_level(
        level, window_log=window_log, enable_ldm=True, threads=threads
    )
    return zstandard.ZstdCompressor(compression_params=params)
