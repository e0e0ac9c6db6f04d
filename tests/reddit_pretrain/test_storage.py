"""Paths, atomic writes and staged commits on a local disk (and fsspec's in-memory filesystem)."""

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reddit_pretrain import storage


def test_atomic_writes_leave_no_partial_file(tmp_path):
    target = tmp_path / "a" / "b.json"
    storage.write_json_atomic(str(target), {"x": 1})
    assert json.loads(target.read_text()) == {"x": 1} and storage.read_json(str(target)) == {"x": 1}
    assert os.listdir(target.parent) == ["b.json"]  # no .tmp left behind
    storage.write_bytes_atomic("memory://bucket/c.bin", b"abc")
    assert storage.exists("memory://bucket/c.bin") and not storage.is_local("memory://bucket/c.bin")


def test_join_expand_and_list(tmp_path):
    for name in ("RC_2015-01.zst", "RC_2015-02.zst", "RS_2015-01.zst"):
        (tmp_path / name).write_bytes(b"x")
    assert storage.join("s3://b/x", "y", "z.parquet") == "s3://b/x/y/z.parquet"
    found = storage.expand_inputs([str(tmp_path / "RC_*.zst"), str(tmp_path / "RS_2015-01.zst")])
    assert [os.path.basename(f) for f in found] == ["RC_2015-01.zst", "RC_2015-02.zst", "RS_2015-01.zst"]
    assert storage.list_dir(str(tmp_path)) == sorted(os.listdir(tmp_path)) and storage.list_dir(str(tmp_path / "no")) == []
    with pytest.raises(FileNotFoundError):
        storage.expand_inputs([str(tmp_path / "RC_1999-*.zst")])


def test_staged_output_commits_by_rename_and_marker_last(tmp_path):
    out = str(tmp_path / "job")
    staged = storage.StagedOutput(out, "_DONE.json", "fp1")
    assert not staged.is_complete()
    staging = staged.begin()
    os.makedirs(os.path.join(staging, "table"))
    (tmp_path / "job" / os.path.basename(staging) / "table" / "part.tmp").write_text("unfinished")
    (tmp_path / "job" / os.path.basename(staging) / "table" / "part.parquet").write_text("rows")
    assert storage.remove_unfinished(staging) == 1
    staged.commit(["table", "absent"], finished_utc=1)
    assert sorted(os.listdir(out)) == ["_DONE.json", "table"] and os.listdir(os.path.join(out, "table")) == ["part.parquet"]
    assert staged.is_complete() and not storage.StagedOutput(out, "_DONE.json", "fp2").is_complete()
    # A new run with other settings clears the marker first: an interrupted run is never "complete".
    other = storage.StagedOutput(out, "_DONE.json", "fp2")
    other.begin()
    assert not staged.is_complete() and not os.path.exists(os.path.join(out, "_DONE.json"))


def test_parquet_rows_from_footers(tmp_path):
    for i, n in enumerate((3, 0, 5)):
        pq.write_table(pa.table({"x": list(range(n))}), tmp_path / f"p{i}.parquet")
    assert storage.parquet_rows([str(p) for p in sorted(tmp_path.glob("*.parquet"))]) == 8


def test_unwritable_outputs_are_named(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(storage.OutputNotWritable, match="is a file"):
        storage.check_writable(str(tmp_path / "file"))
    with pytest.raises(storage.OutputNotWritable, match="cannot be made"):
        storage.check_writable(str(tmp_path / "file" / "sub"))
    storage.check_writable(str(tmp_path / "new" / "deeper"))  # a folder that can be made
    storage.check_writable("s3://bucket/anything")  # remote: left to the first write
