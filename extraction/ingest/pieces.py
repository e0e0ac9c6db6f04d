"""One big dump parsed by several tasks with one decompression (see ``extraction.ingest.job``): how
the file is shared (``pieces_per_file``, ``decoder_share``, ``piece_of``), the decoding task that
reads the whole file and hands the other pieces their blocks through files in staging (``_Decoder``,
``_Relay``), and what those blocks cost (measured: BENCHMARKS.md, "One zstd window a file")."""

from __future__ import annotations

import struct
import time
from typing import TYPE_CHECKING, Iterator
import zstandard
from reddit_pretrain import storage
from extraction.ingest.dumps import ChecksumMismatch, DumpReadError, LineBlock, iter_line_blocks
from extraction.ingest import IngestError

if TYPE_CHECKING:
    from extraction.ingest.job import _TaskSettings


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
