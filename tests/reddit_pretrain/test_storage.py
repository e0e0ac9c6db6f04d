"""Paths, atomic writes and staged commits on a local disk (and fsspec's in-memory filesystem)."""

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from extraction.spark.stage import StagedOutput
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
    staged = StagedOutput(out, "_DONE.json", "fp1", ["table", "absent"])
    assert not staged.is_complete()
    staging = staged.begin()
    os.makedirs(os.path.join(staging, "table"))
    (tmp_path / "job" / os.path.basename(staging) / "table" / "part.tmp").write_text("unfinished")
    (tmp_path / "job" / os.path.basename(staging) / "table" / "part.parquet").write_text("rows")
    assert storage.remove_unfinished(staging) == 1
    staged.commit(finished_utc=1)
    assert sorted(os.listdir(out)) == ["_DONE.json", "table"] and os.listdir(os.path.join(out, "table")) == ["part.parquet"]
    assert staged.is_complete() and not StagedOutput(out, "_DONE.json", "fp2").is_complete()
    # A new run with other settings clears the marker first: an interrupted run is never "complete".
    other = StagedOutput(out, "_DONE.json", "fp2", ["table", "absent"])
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
    storage.check_writable("hdfs://namenode/anything")  # no buckets: left to the first write (s3:// buckets are
    # checked: tests/reddit_pretrain/test_object_storage.py)


def test_a_job_replaces_only_its_own_output(tmp_path):
    """A folder holding files the job does not write is refused before anything is removed; its own
    entries, its marker and staging folders are its to replace."""
    out = tmp_path / "job"
    out.mkdir()
    (out / "notes.txt").write_text("a user's file")
    staged = StagedOutput(str(out), "_DONE.json", "fp", ["table"], job="ingest")
    with pytest.raises(storage.OutputNotWritable, match=r"holds files ingest did not write \(notes.txt\)"):
        with staged.writing():
            pass
    assert (out / "notes.txt").read_text() == "a user's file" and sorted(os.listdir(out)) == ["notes.txt"]
    (out / "notes.txt").unlink()
    (out / "table").mkdir()
    (out / "_staging-old").mkdir()
    with staged.writing() as staging:
        os.makedirs(os.path.join(staging, "table"))
        staged.commit()
    assert sorted(os.listdir(out)) == ["_DONE.json", "table"]


def test_a_second_job_on_the_same_output_is_refused_and_a_dead_ones_lock_is_taken_over(tmp_path):
    import json
    import socket

    out = tmp_path / "job"
    first = StagedOutput(str(out), "_DONE.json", "fp", ["table"], job="extract")
    staging = first.begin()
    second = StagedOutput(str(out), "_DONE.json", "fp", ["table"], job="extract")
    with pytest.raises(storage.OutputBusy, match=rf"another job is writing {out} \(pid {os.getpid()}, host "):
        second.begin()
    assert os.path.isdir(staging)  # the first job's staging folder survives the second's attempt
    first.commit()
    assert not (out / storage.LOCK).exists()
    # A lock left by a process that is gone (killed): stale, taken over.
    (out / storage.LOCK).write_text(json.dumps({"pid": 2**22 + 12345, "host": socket.gethostname(), "since": "then"}))
    with second.writing():
        second.commit()
    assert not (out / storage.LOCK).exists() and second.is_complete()
    # An error inside keeps the staging folder (a re-run keeps its finished tasks) and releases the lock.
    with pytest.raises(RuntimeError):
        with second.writing() as staging:
            raise RuntimeError("boom")
    assert os.path.isdir(staging) and not (out / storage.LOCK).exists()


def test_no_space_is_one_line_naming_the_disk_and_the_path(tmp_path):
    import errno

    err = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.parquet"))
    line = str(storage.no_space_error(err, str(tmp_path)))
    assert line.startswith("no space left on /") and f"writing {tmp_path / 'x.parquet'}" in line and "\n" not in line
    wrapped = RuntimeError("Py4JJavaError ... OSError: [Errno 28] No space left on device: '/data/out/_staging-1/c.parquet'")
    assert "writing /data/out/_staging-1/c.parquet" in str(storage.no_space_error(wrapped, "/data/out"))
    assert storage.no_space_error(ValueError("something else"), "/data/out") is None


def test_replacing_a_folder_needs_it_to_be_ours_or_overwrite(tmp_path):
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "a.txt").write_text("x")
    (tmp_path / "file").write_text("x")
    (tmp_path / "ours").mkdir()
    (tmp_path / "ours" / "marker.json").write_text("{}")
    with pytest.raises(storage.OutputNotWritable, match=r"holds files the export did not write \(a.txt\)"):
        storage.check_replaceable(str(tmp_path / "user"), "the export", set(), "marker.json")
    with pytest.raises(storage.OutputNotWritable, match="is a file"):
        storage.check_replaceable(str(tmp_path / "file"), "the export", set(), "marker.json")
    with pytest.raises(storage.OutputNotWritable, match="reads from"):  # never, not even with overwrite
        storage.check_replaceable(str(tmp_path), "the export", set(), "marker.json", overwrite=True, reads=str(tmp_path / "ours"))
    for ok in ("ours", "missing"):
        storage.check_replaceable(str(tmp_path / ok), "the export", set(), "marker.json")
    storage.check_replaceable(str(tmp_path / "user"), "the export", set(), "marker.json", overwrite=True)


def test_a_folder_lock_is_taken_over_only_from_a_holder_that_is_gone(tmp_path, monkeypatch):
    """Same host and a dead pid, or the same Slurm job on another node (a requeued job), is gone; a
    live process, or another Slurm job's lock on another node, is refused with the holder named."""
    import json
    import socket
    import subprocess
    import sys

    folder = tmp_path / "run"
    folder.mkdir()
    lock = folder / storage.LOCK
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(ended.stdout)
    monkeypatch.setenv("SLURM_JOB_ID", "777")
    cases = [({"pid": dead_pid, "host": socket.gethostname()}, True),
             ({"pid": os.getppid(), "host": socket.gethostname()}, False),
             ({"pid": 1, "host": "node-elsewhere", "slurm_job_id": "777"}, True),
             ({"pid": 1, "host": "node-elsewhere", "slurm_job_id": "778"}, False),
             ({"pid": 1, "host": "node-elsewhere"}, False)]
    for holder, taken in cases:
        lock.write_text(json.dumps({**holder, "since": "then"}))
        if taken:
            held = storage.take_lock(str(folder), "busy")
            assert json.loads(lock.read_text())["pid"] == os.getpid() == held.me()["pid"]
            assert json.loads(lock.read_text())["slurm_job_id"] == "777"
            held.release()
            assert not lock.exists()
        else:
            with pytest.raises(storage.OutputBusy, match=rf"^busy \(pid {holder['pid']}, host {holder['host']}"):
                storage.take_lock(str(folder), "busy")
            assert json.loads(lock.read_text())["pid"] == holder["pid"]  # left as it was


def test_a_killed_writers_staging_folder_is_removed_by_the_next_run_and_a_live_ones_kept(tmp_path):
    """A process that made its staging folder beside the output and was killed (SIGKILL: nothing of
    it could clean up) leaves it; the next writer of that output removes it, not a live one's."""
    import signal
    import subprocess
    import sys

    out = tmp_path / "tokenizer"
    child = subprocess.Popen([sys.executable, "-c", "import os, sys, time; from reddit_pretrain import storage; "
                              f"tmp = storage.staging_name({str(out)!r}); os.makedirs(tmp); "
                              "open(os.path.join(tmp, 'half.json'), 'w').write('{'); print(tmp, flush=True); time.sleep(600)"],
                             stdout=subprocess.PIPE, text=True)
    killed = child.stdout.readline().strip()
    child.send_signal(signal.SIGKILL)
    child.wait()
    live = storage.staging_name(str(out))  # this process's own, still being filled
    os.makedirs(live)
    older = tmp_path / ".tokenizer.tmp-0a1b2c3d"  # the name before it carried its pid
    older.mkdir()
    other = tmp_path / ".tokenizers.tmp-0a1b2c3d"  # another output's: not this one's to touch
    other.mkdir()
    assert os.path.isdir(killed)
    with storage.building(str(out)) as tmp:
        os.makedirs(tmp)
        (tmp_path / os.path.basename(tmp) / "tokenizer.json").write_text("{}")
    assert sorted(os.listdir(tmp_path)) == sorted([os.path.basename(live), other.name, "tokenizer"])
    assert os.listdir(out) == ["tokenizer.json"]


def test_an_unwritable_output_is_one_line():
    import errno

    for code, said in ((errno.EROFS, "read-only file system"), (errno.EACCES, "not writable by this user")):
        err = RuntimeError("wrapped")
        err.__cause__ = OSError(code, os.strerror(code), "/data/out/x.parquet")
        line = str(storage.write_error(err, "/data/out"))
        assert line.startswith("cannot write /data/out/x.parquet") and said in line and "\n" not in line
    assert "no space left" in str(storage.write_error(OSError(errno.ENOSPC, "No space left on device"), "/x"))
    assert storage.write_error(ValueError("other"), "/x") is None
