"""Streaming reader and writer for Reddit NDJSON dumps, in every container they are published in.

Plain Python (zstandard, the standard library's bz2/lzma/gzip, fsspec), no Spark: the ingest job
wraps these functions for executors.

Containers (``container_of``: by the file's first bytes, ``.zst_blocks`` by its name, since that
format has no magic number): ``.zst`` (Pushshift, Arctic Shift, the academic torrents), ``.zst_blocks``
(Arctic Shift's 2023-04 to 2024-03 months: blocks of a ``uint32`` compressed size and a zstd frame
holding ``uint32`` rows, that many ``uint32`` (offset, size) pairs into the rows' bytes, then the
rows), and ``.bz2``, ``.xz`` and ``.gz`` (older Pushshift months, and copies users made). Each gives
the same lines, so the same rows and rejects. The compressed bytes can be hashed as they stream
(``sha256``), so a published checksum is verified in the same single pass.

Pushshift compresses with ``zstd --long=31``: one frame with a 2 GiB window, which default
decoders refuse ("Frame requires too much memory for decoding"). The reader allows that window,
streams the frame in fixed-size reads, and splits lines on raw bytes, so a multi-byte UTF-8
character or a line that straddles a read boundary is reassembled before anything is decoded.
Memory stays bounded by the window actually used plus one read block, whatever the file size.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterator

import zstandard

from reddit_pretrain.errors import UserError

ZSTD_MAX_WINDOW_BYTES = 2**31
"""Largest zstd window a Pushshift dump uses (``--long=31``)."""

DEFAULT_READ_SIZE_BYTES = 8 * 2**20

_DUMP_NAME = re.compile(r"(?P<kind>RC|RS)_(?P<year>\d{4})-(?P<month>\d{2})")
_SUBREDDIT_DUMP = re.compile(r"_(?P<kind>comments|submissions)(?:\.(?:nd)?json)?\.(?:zst|zst_blocks|bz2|xz|gz)$")


class DumpReadError(UserError, RuntimeError):
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


class ChecksumMismatch(DumpReadError):
    """A dump whose compressed bytes do not have the published sha256 (it may decode cleanly)."""


CONTAINERS = ("zst", "zst_blocks", "bz2", "xz", "gz")
_MAGIC = ((b"\x28\xb5\x2f\xfd", "zst"), (b"BZh", "bz2"), (b"\xfd7zXZ\x00", "xz"), (b"\x1f\x8b", "gz"))


def container_of(path: str, head: bytes) -> str:
    """The container of a dump: ``zst_blocks`` by its name (the format has no magic number), else by
    its first bytes ``head`` (a zstd frame, or a skippable one, bz2, xz, gzip). Raises
    FrameFormatError naming the magic number for anything else."""
    if path.rstrip("/").endswith(".zst_blocks"):
        return "zst_blocks"
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if len(head) >= 4 and int.from_bytes(head[:4], "little") & 0xFFFFFFF0 == 0x184D2A50:
        return "zst"  # a skippable frame first: zstd
    if not head:
        return "zst"  # an empty file: the zstd reader says so
    magic = int.from_bytes(head[:4].ljust(4, b"\0"), "little")
    raise FrameFormatError(f"not a zstd frame (magic 0x{magic:08x}), nor .zst_blocks, .bz2, .xz or .gz")


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
    sha256: str | None = None,
) -> Iterator[LineBlock]:
    """Streams a dump (any of ``CONTAINERS``) as blocks of complete lines.

    ``wanted(compressed bytes read at the block's end)``: when it says no, the block's lines are
    only counted, not split (``LineBlock.skipped``): a task that parses one piece of a file reads
    past the others at the speed of decompression. ``keep_skipped``: a skipped block also carries
    its lines' bytes unsplit (``LineBlock.data``), for a task that hands them on to another.
    ``sha256``: the published digest of the file; the compressed bytes are hashed as they stream
    and a mismatch raises ChecksumMismatch (both digests) once the file is read, before its last
    line is yielded.

    Each step decompresses at most ``read_size_bytes`` of output, so a block is bounded however
    well the data compresses. Raises DumpReadError naming the file when the data is not one of the
    containers, is corrupt, or ends early: python-zstandard reports a truncated stream as a clean
    end, so zstd's compressed bytes also pass through a ``FrameWalker`` that knows where each frame
    must end. A final line without a newline is still yielded.
    """
    line_number = 1
    decompressed = 0
    pending = b""
    with open_binary(path) as raw:
        reader = _CountingReader(raw, hashlib.sha256() if sha256 else None)
        try:
            chunks = _DECODERS[container_of(path, reader.peek(6))](reader, read_size_bytes, max_window_bytes)
            for chunk in chunks:
                decompressed += len(chunk)
                if wanted is not None and not wanted(reader.bytes_read):
                    count = chunk.count(b"\n")
                    if count:
                        end = chunk.rindex(b"\n") + 1
                        data = (pending + chunk[:end] if pending else chunk[:end]) if keep_skipped else None
                        pending = chunk[end:]
                        yield LineBlock(line_number, [], reader.bytes_read, decompressed, skipped=count, data=data)
                        line_number += count
                    else:
                        pending += chunk
                    continue
                lines = (pending + chunk).split(b"\n") if pending else chunk.split(b"\n")
                pending = lines.pop()
                if lines:
                    yield LineBlock(line_number, lines, reader.bytes_read, decompressed)
                    line_number += len(lines)
        except (FrameFormatError, _Damage) as err:
            raise DumpReadError(path, line_number - 1, str(err)) from err
        if sha256 and reader.digest.hexdigest() != sha256.lower():
            raise ChecksumMismatch(path, line_number - 1 + bool(pending),
                                   f"its sha256 is {reader.digest.hexdigest()}, the checksum list says {sha256.lower()} "
                                   "(a damaged or altered download)")
        if pending:
            yield LineBlock(line_number, [pending], reader.bytes_read, decompressed)


class _Damage(ValueError):
    """Data a decoder cannot read (the file and the line come from ``iter_line_blocks``)."""


def _zst_chunks(reader: "_CountingReader", read_size: int, max_window_bytes: int) -> Iterator[bytes]:
    """A zstd stream's decompressed bytes; concatenated frames are read one after the other."""
    walker = FrameWalker()
    reader.watch = walker.feed
    stream = zstandard.ZstdDecompressor(max_window_size=max_window_bytes).stream_reader(
        reader, read_size=1 << 17, read_across_frames=True, closefd=False)
    while True:
        try:
            chunk = stream.read(read_size)
        except zstandard.ZstdError as err:
            raise _Damage(f"zstd error: {err}") from err
        if not chunk:
            break
        yield chunk
    reader.drain()  # padding or a skippable frame the decompressor left unread
    if reader.bytes_read == 0:
        raise _Damage("empty file: no zstd frame")
    if not walker.at_frame_boundary():
        raise _Damage("truncated: the last zstd frame does not end")


def _stdlib_chunks(opener, name: str, errors: tuple):
    def chunks(reader: "_CountingReader", read_size: int, max_window_bytes: int) -> Iterator[bytes]:
        stream = opener(reader)
        try:
            while True:
                try:
                    chunk = stream.read(read_size)
                except EOFError as err:
                    raise _Damage(f"truncated: the {name} stream ends early ({err})") from err
                except errors as err:
                    raise _Damage(f"{name} error: {err}") from err
                if not chunk:
                    break
                yield chunk
        finally:
            stream.close()
        reader.drain()  # so a checksum covers every byte
    return chunks


def _zst_blocks_chunks(reader: "_CountingReader", read_size: int, max_window_bytes: int) -> Iterator[bytes]:
    """The rows of a ``.zst_blocks`` file, a line each, block by block (a block decodes alone)."""
    import numpy as np

    decompressor = zstandard.ZstdDecompressor(max_window_size=max_window_bytes)
    block = 0
    while True:
        head = reader.read_exactly(4)
        if not head:
            break
        if len(head) < 4:
            raise _Damage(f"truncated: block {block} has {len(head)} of its 4 size bytes")
        size = int.from_bytes(head, "little")
        frame = reader.read_exactly(size)
        if len(frame) < size:
            raise _Damage(f"truncated: block {block} holds {len(frame):,} of its {size:,} bytes")
        try:
            payload = decompressor.decompressobj().decompress(frame)
        except zstandard.ZstdError as err:
            raise _Damage(f"zstd error in block {block}: {err}") from err
        if len(payload) < 4:
            raise _Damage(f"block {block} decodes to {len(payload)} bytes, not a row count")
        rows = int.from_bytes(payload[:4], "little")
        base = 4 + 8 * rows
        if base > len(payload):
            raise _Damage(f"block {block} says {rows:,} rows, more than its {len(payload):,} bytes hold")
        info = np.frombuffer(payload, dtype="<u4", count=2 * rows, offset=4).reshape(rows, 2).astype(np.int64)
        if rows and int((info[:, 0] + info[:, 1]).max()) > len(payload) - base:
            raise _Damage(f"block {block}: a row lies beyond the block's data")
        data = memoryview(payload)[base:]
        lines = [bytes(data[o : o + n]) for o, n in info.tolist()]
        yield b"\n".join(lines) + b"\n" if lines else b""
        block += 1


_DECODERS = {
    "zst": _zst_chunks,
    "zst_blocks": _zst_blocks_chunks,
    "bz2": _stdlib_chunks(lambda raw: __import__("bz2").BZ2File(raw), "bz2", (OSError, ValueError)),
    "xz": _stdlib_chunks(lambda raw: __import__("lzma").LZMAFile(raw), "xz", (OSError, ValueError)),
    "gz": _stdlib_chunks(lambda raw: __import__("gzip").GzipFile(fileobj=raw), "gzip", (OSError, ValueError)),
}


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


class _CountingReader(io.RawIOBase):
    """Passes a file's compressed bytes on to a decoder, counting them, hashing them (``digest``) and
    showing them to ``watch`` (zstd's FrameWalker) on the way; ``peek`` reads ahead for the magic."""

    def __init__(self, raw: BinaryIO, digest=None):
        self._raw = raw
        self._head = b""
        self.digest = digest
        self.watch: Callable[[bytes], None] | None = None
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def peek(self, size: int) -> bytes:
        while len(self._head) < size:
            more = self._raw.read(size - len(self._head))
            if not more:
                break
            self._head += more
        return self._head[:size]

    def read(self, size: int = -1) -> bytes:
        if self._head:
            data, self._head = (self._head, b"") if size < 0 or size >= len(self._head) else \
                (self._head[:size], self._head[size:])
        else:
            data = self._raw.read(size)
        self.bytes_read += len(data)
        if self.digest is not None:
            self.digest.update(data)
        if self.watch is not None:
            self.watch(data)
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read_exactly(self, size: int) -> bytes:
        """``size`` bytes, fewer only at the end of the file."""
        parts, left = [], size
        while left:
            data = self.read(left)
            if not data:
                break
            parts.append(data)
            left -= len(data)
        return b"".join(parts)

    def drain(self) -> None:
        """Reads what the decoder left unread (padding, a skippable frame) to the end."""
        while self.read(1 << 16):
            pass


def dump_compressor(level: int = 3, window_log: int = 31, threads: int = 0) -> zstandard.ZstdCompressor:
    """A compressor that writes files like Pushshift's: long-distance matching, 2 GiB window."""
    params = zstandard.ZstdCompressionParameters.from_level(
        level, window_log=window_log, enable_ldm=True, threads=threads
    )
    return zstandard.ZstdCompressor(compression_params=params)
