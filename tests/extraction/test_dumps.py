import os

import pytest
import zstandard

from extraction.ingest.dumps import DumpReadError, dump_compressor, iter_line_blocks, parse_dump_name


def write_zst(path, data: bytes, window_log: int = 31, chunk: int = 1 << 16) -> None:
    """Streams data through a long-window compressor, as Pushshift does (content size unknown)."""
    with open(path, "wb") as f:
        with dump_compressor(3, window_log).stream_writer(f, closefd=False) as w:
            for i in range(0, len(data), chunk):
                w.write(data[i : i + chunk])


def read_lines(path, **kw) -> list[bytes]:
    return [line for block in iter_line_blocks(str(path), **kw) for line in block.lines]


LINES = [
    '{"id":"a1","body":"plain ascii"}',
    '{"id":"a2","body":"héllo wörld — 中文 テキスト 😂👍"}',
    '{"id":"a3","body":"' + "ж" * 5000 + '"}',
    '{"id":"a4","body":"last"}',
]


def test_reads_a_2gib_window_frame_that_default_limits_refuse(tmp_path):
    data = ("\n".join(LINES * 2000) + "\n").encode()
    path = tmp_path / "RC_2015-01.zst"
    write_zst(path, data, window_log=31)
    params = zstandard.get_frame_parameters(path.read_bytes()[:18])
    assert params.window_size == 2**31
    with pytest.raises(zstandard.ZstdError, match="too much memory"):
        zstandard.ZstdDecompressor().decompressobj().decompress(path.read_bytes())
    assert read_lines(path) == data.split(b"\n")[:-1]


@pytest.mark.parametrize("read_size", [1024, 1031, 4096, 1 << 20])
def test_characters_and_lines_split_across_reads_are_reassembled(tmp_path, read_size):
    data = ("\n".join(LINES * 300) + "\n").encode()
    path = tmp_path / "RC_2015-01.zst"
    write_zst(path, data, chunk=7)
    lines = read_lines(path, read_size_bytes=read_size)
    assert lines == data.split(b"\n")[:-1]
    assert [line.decode() for line in lines[:4]] == LINES


def test_line_numbers_and_byte_counts(tmp_path):
    data = ("\n".join(LINES * 500) + "\n").encode()
    path = tmp_path / "RC_2015-01.zst"
    write_zst(path, data)
    blocks = list(iter_line_blocks(str(path), read_size_bytes=1024))
    assert len(blocks) > 1
    expected = 1
    for block in blocks:
        assert block.first_line_number == expected
        expected += len(block.lines)
    assert blocks[-1].decompressed_bytes_read == len(data)
    assert blocks[-1].compressed_bytes_read == os.path.getsize(path)


def test_blocks_not_wanted_are_counted_and_the_rest_split_as_before(tmp_path):
    data = ("\n".join(LINES * 500)).encode()  # the last line has no newline
    path = tmp_path / "RC_2015-01.zst"
    write_zst(path, data)
    every = list(iter_line_blocks(str(path), read_size_bytes=1024))
    middle = every[len(every) // 2].compressed_bytes_read
    some = list(iter_line_blocks(str(path), read_size_bytes=1024, wanted=lambda read: read >= middle))
    assert [b.first_line_number for b in some] == [b.first_line_number for b in every]
    assert [b.num_lines for b in some] == [b.num_lines for b in every]
    assert [b.lines for b in some if b.compressed_bytes_read >= middle] == \
        [b.lines for b in every if b.compressed_bytes_read >= middle]  # a line split across the cut stays whole
    assert all(not b.lines and b.skipped for b in some if b.compressed_bytes_read < middle)


def test_final_line_without_newline_is_kept(tmp_path):
    path = tmp_path / "RC_2015-01.zst"
    write_zst(path, b'{"a":1}\n{"b":2}')
    assert read_lines(path) == [b'{"a":1}', b'{"b":2}']


def test_concatenated_frames_are_read_in_order(tmp_path):
    path = tmp_path / "RC_2015-01.zst"
    c = dump_compressor()
    path.write_bytes(c.compress(b'{"a":1}\n') + c.compress(b'{"b":2}\n'))
    assert read_lines(path, read_size_bytes=1024) == [b'{"a":1}', b'{"b":2}']


def test_truncated_file_is_a_clear_error_naming_the_file(tmp_path):
    data = ("\n".join(LINES * 2000) + "\n").encode()
    path = tmp_path / "RC_2015-01.zst"
    write_zst(path, data)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) - 100])
    with pytest.raises(DumpReadError, match=r"RC_2015-01\.zst.*truncated") as info:
        read_lines(path, read_size_bytes=4096)
    assert info.value.line_number > 0


@pytest.mark.parametrize("content", [b"this is not zstd at all" * 10, b""])
def test_corrupt_or_empty_file_is_a_clear_error(tmp_path, content):
    path = tmp_path / "RS_2015-01.zst"
    path.write_bytes(content)
    with pytest.raises(DumpReadError, match="RS_2015-01.zst"):
        read_lines(path)


def test_dump_names():
    assert parse_dump_name("s3://bucket/reddit/RC_2015-01.zst").kind == "RC"
    assert parse_dump_name("/x/RS_2009-12.zst").month == "2009-12"
    assert parse_dump_name("/x/comments.zst") is None


@pytest.mark.parametrize("cut", [3, 9, 200, -1, -4, -5, -700])
def test_truncation_anywhere_is_detected(tmp_path, cut):
    data = ("\n".join(LINES * 300) + "\n").encode()
    path = tmp_path / "RC_2015-01.zst"
    with open(path, "wb") as f:  # with a content checksum, so the last 4 bytes are the checksum
        params = zstandard.ZstdCompressionParameters.from_level(3, window_log=31, enable_ldm=True, write_checksum=True)
        with zstandard.ZstdCompressor(compression_params=params).stream_writer(f, closefd=False) as w:
            w.write(data)
    whole = path.read_bytes()
    assert read_lines(path) == data.split(b"\n")[:-1]
    path.write_bytes(whole[:cut])
    with pytest.raises(DumpReadError, match="RC_2015-01.zst"):
        read_lines(path, read_size_bytes=4096)


def test_real_dump_reads_completely(real_dump):
    lines = read_lines(real_dump)
    assert len(lines) == 1075
    params = zstandard.get_frame_parameters(real_dump.read_bytes()[:18])
    assert params.window_size == 2**31
