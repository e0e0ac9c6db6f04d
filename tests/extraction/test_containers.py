"""Every container the dumps come in (.zst, .zst_blocks, .bz2, .xz, .gz) gives the same lines, so the
same ingest tables; published checksums are verified while a dump is read. In this process (small
inputs: the ingest job's in-process path)."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import json
import lzma
import struct

import pyarrow.dataset as ds
import pytest
import zstandard

from extraction.ingest.dumps import DumpReadError, ChecksumMismatch, iter_line_blocks, parse_dump_name
from extraction.ingest.job import DONE_MARKER, IngestConfig, IngestError, run_ingest
from reddit_pretrain_app.synth import SynthConfig, write_month
from tests.extraction.test_dumps import write_zst


def zst_blocks(lines: list[bytes], rows_per_block: int) -> bytes:
    """A ``.zst_blocks`` file written from the format's public description alone (Arctic Shift's
    zst_blocks_format README): blocks of ``uint32 compressed_size`` + a zstd frame that decodes to
    ``uint32 row_count``, ``row_count`` pairs of ``uint32 offset, uint32 size`` (offsets from the start
    of the rows' bytes), then the rows' bytes. Rows here go in reverse order in the data area, so a
    reader that ignores the offsets (reading rows back to back) gets them wrong."""
    out = bytearray()
    compressor = zstandard.ZstdCompressor(level=3)
    for start in range(0, len(lines), rows_per_block):
        rows = lines[start : start + rows_per_block]
        data, offsets = b"", []
        for row in reversed(rows):
            offsets.append(len(data))
            data += row
        infos = b"".join(struct.pack("<II", o, len(r)) for o, r in zip(reversed(offsets), rows))
        frame = compressor.compress(struct.pack("<I", len(rows)) + infos + data)
        out += struct.pack("<I", len(frame)) + frame
    return bytes(out)


@pytest.fixture(scope="module")
def month(tmp_path_factory):
    """A generated month with damaged lines, as the lines of one comments dump and one submissions
    dump (the comments' last line without its newline)."""
    folder = tmp_path_factory.mktemp("containers")
    write_month(str(folder), SynthConfig(comments=6_000, seed=21, p_malformed_line=0.01, p_invalid_utf8_line=0.01))
    lines = {kind: [ln for block in iter_line_blocks(str(folder / f"{kind}_2015-01.zst")) for ln in block.lines]
             for kind in ("RC", "RS")}
    lines["RC"] += [b"", b'{"id": "tail", "parent_id": "t3_x", "link_id": "t3_x", "body": "last", "created_utc": 1420070401}']
    return folder, lines


def write(path, lines: list[bytes], container: str) -> None:
    data = b"\n".join(lines)  # no newline after the last line
    if container == "zst":
        write_zst(path, data)
    elif container == "zst_blocks":
        path.write_bytes(zst_blocks(lines, rows_per_block=700))
    else:
        path.write_bytes({"bz2": bz2.compress, "xz": lzma.compress, "gz": gzip.compress}[container](data))


def tables(out):
    def rows(table, drop=()):
        if not (out / table).exists():
            return []
        t = ds.dataset(str(out / table), format="parquet", partitioning="hive").to_table()
        return sorted(json.dumps({k: (v.hex() if isinstance(v, bytes) else v) for k, v in r.items() if k not in drop},
                                 sort_keys=True) for r in t.to_pylist())
    return rows("comments"), rows("submissions"), rows("rejects", drop=("source_file",))


@pytest.mark.parametrize("container", ["zst_blocks", "bz2", "xz", "gz"])
def test_every_container_gives_the_tables_of_the_zst(month, tmp_path, container):
    _, lines = month
    for name in ("zst", container):
        (tmp_path / name).mkdir()
        for kind in ("RC", "RS"):
            write(tmp_path / name / f"{kind}_2015-01.{name}", lines[kind], name)
        run_ingest(IngestConfig(inputs=[str(tmp_path / name / "*")], output=str(tmp_path / f"out_{name}")))
    expected, got = tables(tmp_path / "out_zst"), tables(tmp_path / f"out_{container}")
    assert got == expected and len(expected[0]) > 5_000 and len(expected[2]) > 50
    assert parse_dump_name(f"askx_comments.{container}").kind == "RC"


@pytest.mark.parametrize("container", ["zst_blocks", "bz2"])
def test_a_container_read_in_pieces_gives_the_rows_of_one_task(month, tmp_path, container):
    _, lines = month
    path = tmp_path / f"RC_2015-01.{container}"
    write(path, lines["RC"], container)
    for name, pieces in (("one", 1), ("many", 3)):
        report = run_ingest(IngestConfig(inputs=[str(path)], output=str(tmp_path / name), pieces_per_file=pieces,
                                         piece_min_bytes=1, read_size_bytes=32 << 10))
        assert report["files"][0]["pieces"] == pieces
    assert tables(tmp_path / "one") == tables(tmp_path / "many")


@pytest.mark.parametrize("container", ["zst_blocks", "bz2", "xz", "gz"])
def test_a_damaged_container_names_its_file(month, tmp_path, container):
    _, lines = month
    path = tmp_path / f"RC_2015-01.{container}"
    write(path, lines["RC"], container)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(DumpReadError, match=rf"RC_2015-01\.{container}.*(truncated|error)"):
        for _ in iter_line_blocks(str(path)):
            pass
    unknown = tmp_path / "RC_2015-01.lz4"
    unknown.write_bytes(b"\x04\x22\x4d\x18 not a known container")
    with pytest.raises(DumpReadError, match=r"not a zstd frame \(magic 0x184d2204\), nor \.zst_blocks, \.bz2, \.xz or \.gz"):
        list(iter_line_blocks(str(unknown)))


def _altered(month, tmp_path):
    """RC_2015-01.zst and its published checksum, then the same file recompressed after one character
    of one line changed: it decodes cleanly, and only its checksum can tell."""
    _, lines = month
    (tmp_path / "dumps").mkdir()
    original = tmp_path / "dumps" / "RC_2015-01.zst"
    write(original, lines["RC"], "zst")
    write(tmp_path / "dumps" / "RS_2015-01.zst", lines["RS"], "zst")
    published = hashlib.sha256(original.read_bytes()).hexdigest()
    (tmp_path / "SHA256SUMS").write_text(f"{published}  reddit/comments/RC_2015-01.zst\n"
                                         f"{'0' * 64} *RC_2099-01.zst\n")
    changed = list(lines["RC"])
    changed[100] = changed[100].replace(b'"body": "', b'"body": "X', 1) if b'"body": "' in changed[100] else \
        changed[100].replace(b'"body":"', b'"body":"X', 1)
    assert changed[100] != lines["RC"][100]
    write(original, changed, "zst")
    return published, hashlib.sha256(original.read_bytes()).hexdigest()


def test_a_dump_altered_after_publication_is_refused_by_its_checksum_alone(month, tmp_path, capsys):
    published, actual = _altered(month, tmp_path)
    assert sum(b.num_lines for b in iter_line_blocks(str(tmp_path / "dumps" / "RC_2015-01.zst"))) > 0  # decodes cleanly
    config = dict(inputs=[str(tmp_path / "dumps" / "*.zst")], checksums=str(tmp_path / "SHA256SUMS"))
    with pytest.raises(IngestError, match=rf"RC_2015-01\.zst': its sha256 is {actual}, the checksum list says {published}"):
        run_ingest(IngestConfig(output=str(tmp_path / "out"), **config))
    assert not (tmp_path / "out" / DONE_MARKER).exists()
    assert capsys.readouterr().err.count("RS_2015-01.zst is not in the checksum list") == 1
    # record: the file's rows and rejects set aside and counted, the other dump ingested
    report = run_ingest(IngestConfig(output=str(tmp_path / "rec"), on_corrupt_file="record", pieces_per_file=3,
                                     piece_min_bytes=1, read_size_bytes=32 << 10, **config))
    rc = next(f for f in report["files"] if f["path"].endswith("RC_2015-01.zst"))
    assert rc["status"] == "failed" and rc["set_aside"] == rc["lines"] > 6_000 and rc["rows"] == rc["rejects"] == 0
    assert report["totals"]["set_aside"] == rc["lines"] and report["totals"]["comments_rows"] == 0
    assert not list((tmp_path / "rec").rglob("part-*.parquet")) or all(  # only the submissions' parts are left
        "submissions" in str(p) for p in (tmp_path / "rec").rglob("part-*.parquet"))
    assert report["totals"]["submissions_rows"] > 0 and report["checksums"]["checked"] == 1
    # the file as published passes
    _, lines = month
    write(tmp_path / "dumps" / "RC_2015-01.zst", lines["RC"], "zst")
    ok = run_ingest(IngestConfig(output=str(tmp_path / "ok"), **config))
    assert ok["totals"]["failed_files"] == 0 and ok["totals"]["set_aside"] == 0


def test_a_checksum_list_that_cannot_be_read_is_one_line(tmp_path):
    from extraction.ingest.job import read_checksums

    (tmp_path / "sums").write_text("abc  RC_2015-01.zst\n")
    with pytest.raises(IngestError, match=r"line 1: not '<sha256>  <file name>'"):
        read_checksums(str(tmp_path / "sums"))
    (tmp_path / "sums").write_text(f"# sha256\n\n{'a' * 64}  x/RC.zst\n{'b' * 64}  y/RC.zst\n")
    with pytest.raises(IngestError, match="RC.zst is listed twice"):
        read_checksums(str(tmp_path / "sums"))
    with pytest.raises(IngestError, match="no such file"):
        read_checksums(str(tmp_path / "none"))
    assert issubclass(ChecksumMismatch, DumpReadError)
