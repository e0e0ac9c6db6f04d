"""The ingest job. The fast tests run its tasks in this process (small inputs: no Spark, the same
bytes, which the slow tests check against a real local Spark); the slow ones start Spark."""

import json
import os

import pytest

from extraction.ingest.job import DONE_MARKER, IngestConfig, IngestError, run_ingest
from reddit_pretrain_app.synth import SynthConfig, write_month


@pytest.fixture(scope="module")
def dumps(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dumps")
    stats = write_month(str(folder), SynthConfig(comments=20_000, seed=11, p_malformed_line=0.001, p_invalid_utf8_line=0.001))
    write_month(str(folder), SynthConfig(month="2015-02", comments=5_000, seed=12))
    return folder, stats


def ingest(spark, inputs, output, **kw):
    return run_ingest(IngestConfig(inputs=[str(i) for i in inputs], output=str(output), **kw), spark)


def table(path):
    """A written table as Spark reads it (hive folders month=/bucket= become columns), with pyarrow."""
    import pyarrow.dataset as ds

    return ds.dataset(str(path), format="parquet", partitioning="hive").to_table()


def sorted_rows(path):
    return sorted(tuple(map(str, row.values())) for row in table(path).to_pylist())


def test_ingest_accounts_for_every_line(dumps, tmp_path):
    folder, stats = dumps
    report = ingest(None, [folder / "RC_2015-01.zst", folder / "RS_2015-01.zst"], tmp_path / "out")
    t = report["totals"]
    assert t["lines"] == stats.comments + stats.submissions
    assert t["rejects"] == stats.malformed_lines + stats.invalid_utf8_lines > 0
    assert t["rejects_by_reason"] == {"invalid_utf8": stats.invalid_utf8_lines, "malformed_json": stats.malformed_lines}
    assert t["comments_rows"] + t["submissions_rows"] + t["rejects"] == t["lines"]

    import pyarrow as pa

    comments = table(tmp_path / "out" / "comments")
    assert comments.num_rows == t["comments_rows"] == stats.comments - t["rejects"]
    assert table(tmp_path / "out" / "submissions").num_rows == stats.submissions
    assert comments.column_names == ["id", "link_id", "parent_id", "parent_kind", "subreddit", "author",
                                     "body", "score", "created_utc", "distinguished", "stickied", "edited",
                                     "controversiality", "author_flair_text", "collapsed_reason_code", "subreddit_type",
                                     "retrieved_on", "deletion", "month", "bucket"]
    for mark in ("distinguished", "stickied", "author_flair_text", "collapsed_reason_code", "subreddit_type",
                 "deletion"):  # a generated 2015 month has none of these marks: all null (it has edited, controversiality)
        assert comments.column(mark).null_count == comments.num_rows, mark
    assert t["deleted_after_crawl"] == {}
    assert comments.schema.field("created_utc").type == pa.int64()
    assert set(comments.column("month").to_pylist()) == {"2015-01"}
    assert not any(i.startswith("t1_") for i in comments.column("id").to_pylist())
    assert not any(i.startswith("t3_") for i in comments.column("link_id").to_pylist())
    assert not any(i[:1] == "t" and i[2:3] == "_" for i in comments.column("parent_id").to_pylist())

    rejects = table(tmp_path / "out" / "rejects").sort_by("line_number").to_pylist()
    assert len(rejects) == t["rejects"]
    first = rejects[0]
    assert first["source_file"] == "RC_2015-01.zst" and first["line_number"] > 0 and first["raw_length"] >= len(first["raw"])
    saved = json.loads((tmp_path / "out" / "ingest_report.json").read_text())
    assert saved["totals"] == t
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith("_staging")]


def test_rerun_is_a_no_op_and_force_gives_the_same_rows(dumps, tmp_path):
    folder, _ = dumps
    inputs = [folder / "RC_2015-02.zst", folder / "RS_2015-02.zst"]
    out = tmp_path / "out"
    ingest(None, inputs, out)
    before = sorted_rows(out / "comments")
    marker = (out / DONE_MARKER).read_text()
    mtime = (out / "comments").stat().st_mtime_ns
    ingest(None, inputs, out)
    assert (out / "comments").stat().st_mtime_ns == mtime and (out / DONE_MARKER).read_text() == marker
    ingest(None, inputs, out, force=True)
    assert sorted_rows(out / "comments") == before


def test_interrupted_run_is_restarted_cleanly(dumps, tmp_path):
    folder, _ = dumps
    out = tmp_path / "out"
    stale = out / "_staging-deadbeef" / "comments"
    stale.mkdir(parents=True)
    (stale / "part-0.parquet").write_bytes(b"half written")
    report = ingest(None, [folder / "RC_2015-02.zst"], out)
    assert report["totals"]["comments_rows"] == 5_000
    assert not (out / "_staging-deadbeef").exists() and (out / DONE_MARKER).exists()


def test_truncated_file_fails_with_its_name_or_is_recorded(dumps, tmp_path):
    folder, _ = dumps
    broken = tmp_path / "in" / "RC_2015-03.zst"
    broken.parent.mkdir()
    data = (folder / "RC_2015-02.zst").read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    good = folder / "RC_2015-01.zst"
    with pytest.raises(IngestError, match=r"RC_2015-03\.zst.*truncated"):
        ingest(None, [broken, good], tmp_path / "out")
    assert not (tmp_path / "out" / DONE_MARKER).exists()

    report = ingest(None, [broken, good], tmp_path / "out", on_corrupt_file="record")
    by_name = {f["path"].rsplit("/", 1)[-1]: f for f in report["files"]}
    assert by_name["RC_2015-03.zst"]["status"] == "failed"
    assert "truncated" in by_name["RC_2015-03.zst"]["error"]
    assert by_name["RC_2015-01.zst"]["status"] == "ok"
    assert report["totals"]["failed_files"] == 1
    partial = by_name["RC_2015-03.zst"]
    assert 0 < partial["lines"] < 5_000 and partial["lines"] == partial["rows"] + partial["rejects"]


def test_globs_and_clear_input_errors(dumps, tmp_path):
    folder, _ = dumps
    report = ingest(None, [folder / "R?_2015-02.zst"], tmp_path / "out")
    assert report["totals"]["files"] == 2
    with pytest.raises(FileNotFoundError, match="matches no file"):
        ingest(None, [folder / "RC_1999-*.zst"], tmp_path / "out2")
    import zstandard

    odd = tmp_path / "notes.zst"
    odd.write_bytes(zstandard.ZstdCompressor().compress(b"just some notes\n{\"a\": 1}\n"))
    with pytest.raises(IngestError, match="RC_YYYY-MM.zst / RS_YYYY-MM.zst or <subreddit>_comments.zst"):
        ingest(None, [odd], tmp_path / "out3")


def test_per_subreddit_dumps_are_read_by_name_or_by_their_first_record(dumps, tmp_path):
    """The most used dumps today are per subreddit (<subreddit>_comments.zst, <subreddit>_submissions.zst);
    a name that says nothing is read by its first record. Months come from created_utc."""
    import shutil

    folder, _ = dumps
    named, sniffed = tmp_path / "named", tmp_path / "sniffed"
    named.mkdir()
    sniffed.mkdir()
    shutil.copy(folder / "RC_2015-02.zst", named / "AskReddit_comments.zst")
    shutil.copy(folder / "RS_2015-02.zst", named / "AskReddit_submissions.zst")
    shutil.copy(folder / "RC_2015-02.zst", sniffed / "part-a.zst")
    shutil.copy(folder / "RS_2015-02.zst", sniffed / "part-b.zst")
    monthly = ingest(None, [folder / "R?_2015-02.zst"], tmp_path / "monthly")
    for source in (named, sniffed):
        report = ingest(None, [source / "*.zst"], tmp_path / f"out-{source.name}")
        assert {k: report["totals"][k] for k in ("comments_rows", "submissions_rows", "rejects")} == \
            {k: monthly["totals"][k] for k in ("comments_rows", "submissions_rows", "rejects")}
        assert sorted_rows(tmp_path / f"out-{source.name}" / "comments") == sorted_rows(tmp_path / "monthly" / "comments")


def test_real_dump(real_dump, tmp_path):
    report = ingest(None, [real_dump], tmp_path / "out")
    t = report["totals"]
    assert t["lines"] == 1075
    assert t["comments_rows"] + t["rejects"] == 1075
    comments = table(tmp_path / "out" / "comments").to_pylist()
    assert len(comments) == t["comments_rows"]
    assert [c["link_id"] for c in comments if c["id"] == "c13"] == ["17863"]


def test_comments_and_submissions_are_bucketed_by_thread(dumps, tmp_path):
    """Every comment of a thread, and its submission, in one bucket= folder: what extract reads whole."""
    import pyarrow.parquet as pq

    from extraction.ingest.job import auto_thread_buckets

    folder, _ = dumps
    report = run_ingest(IngestConfig(inputs=[str(folder / "R*_2015-01.zst")], output=str(tmp_path / "out"), thread_buckets=8))
    assert report["thread_buckets"] == 8
    where: dict[str, set] = {}
    for kind, key in (("comments", "link_id"), ("submissions", "id")):
        parts = sorted((tmp_path / "out" / kind).rglob("*.parquet"))
        assert {p.parent.name for p in parts} <= {f"bucket={b:05d}" for b in range(8)} and len({p.parent.name for p in parts}) > 4
        for p in parts:
            for thread in pq.read_table(p, columns=[key]).column(key).to_pylist():
                where.setdefault(thread, set()).add(p.parent.name)
    assert all(len(buckets) == 1 for buckets in where.values())
    assert auto_thread_buckets([{"path": "RC_2015-01.zst", "size": 10}]) == 4
    assert auto_thread_buckets([{"path": "RC_2015-01.zst", "size": 100 << 20}, {"path": "RS_2015-01.zst", "size": 900 << 20}]) == 8
    # Years of dumps: no cap, about 16 MiB a piece (the extract job groups them into tasks by size).
    years = [{"path": f"RC_20{y:02d}-{m:02d}.zst", "size": 20 << 30} for y in range(10, 18) for m in range(1, 13)]
    assert auto_thread_buckets(years) == 131_072  # 1,920 GiB / 16 MiB = 122,880, the next power of two


def test_rows_outside_their_files_month_are_counted(tmp_path):
    import zstandard

    def comment(i, ts):
        return json.dumps({"id": f"c{i}", "parent_id": "t3_s1", "link_id": "t3_s1", "subreddit": "x", "author": "a",
                           "body": "hello there", "score": 1, "created_utc": ts})

    lines = [comment(1, 1433116800), comment(2, 1433203200), comment(3, 1149120000)]  # June 2015 x2, June 2006
    (tmp_path / "RC_2015-06.zst").write_bytes(zstandard.ZstdCompressor().compress(("\n".join(lines) + "\n").encode()))
    report = ingest(None, [tmp_path / "RC_2015-06.zst"], tmp_path / "out")
    assert report["totals"]["rows_outside_file_month"] == 1 and report["files"][0]["rows_outside_file_month"] == 1
    assert sorted(p.name for p in (tmp_path / "out" / "comments").iterdir()) == ["month=2006-06", "month=2015-06"]


@pytest.mark.slow
def test_a_failed_spark_task_is_one_clear_line_and_a_log_file(dumps, tmp_path):
    """A truncated dump on Spark: the error line and where Spark's log is, not pages of Python and
    Java stacks on the console."""
    import os
    import re
    import subprocess
    import sys

    folder, _ = dumps
    truncated = tmp_path / "RC_2015-02.zst"
    truncated.write_bytes((folder / "RC_2015-02.zst").read_bytes()[:30_000])
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run([sys.executable, "-m", "extraction.ingest.job", f"inputs=[{truncated}]", f"output={tmp_path}/out",
                             "spark.master='local[1]'", "spark.in_process_below_bytes=0"], cwd=repo, capture_output=True, text=True)
    assert result.returncode == 2
    err = result.stderr
    assert re.search(r"^error: cannot read dump '.*RC_2015-02.zst': truncated", err, re.M), err[-3000:]
    assert "Traceback" not in err and "\tat org.apache" not in err and len(err.splitlines()) < 12, err[-3000:]
    log = re.search(r"\(Spark's log: (.*)\)", err).group(1)
    assert "Exception in task" in open(log).read()


def test_dumps_named_the_wrong_way_round_are_named(dumps, tmp_path):
    """An RS file of comments (and the other way): every line would be a missing_field reject with
    status ok; the job says which file holds what instead, before any work."""
    import shutil

    folder, _ = dumps
    shutil.copy(folder / "RC_2015-01.zst", tmp_path / "RS_2015-01.zst")
    shutil.copy(folder / "RS_2015-01.zst", tmp_path / "RC_2015-01.zst")
    with pytest.raises(IngestError, match=r"RC_2015-01.zst is named as comments but holds submissions .*rename it "
                                          r"RS_2015-01.zst \(1 more such file\)"):
        ingest(None, [tmp_path / "RC_2015-01.zst", tmp_path / "RS_2015-01.zst"], tmp_path / "out")
    assert not (tmp_path / "out").exists()
    shutil.copy(folder / "RS_2015-01.zst", tmp_path / "pics_comments.zst")
    with pytest.raises(IngestError, match="pics_comments.zst is named as comments but holds submissions.*pics_submissions.zst"):
        ingest(None, [tmp_path / "pics_comments.zst"], tmp_path / "out")


def test_numbers_that_do_not_fit_int64_are_counted_rejects(tmp_path):
    """``"score": "1e400"``, ``inf``, a 23-digit integer, ``num_comments: 1e30``: one reject each, the
    other lines rows (the whole ingest used to stop with OverflowError)."""
    import zstandard

    base = '{"id":"c%d","link_id":"t3_x","parent_id":"t3_x","subreddit":"a","author":"u","body":"hi there",' \
           '"created_utc":1420070400,"score":%s}'
    scores = ['"1e400"', '"inf"', "99999999999999999999999", "1e30", "5", "7"]
    (tmp_path / "RC_2015-01.zst").write_bytes(zstandard.ZstdCompressor().compress(
        ("\n".join(base % (i, s) for i, s in enumerate(scores)) + "\n").encode()))
    sub = '{"id":"x","title":"t","created_utc":1420070400,"num_comments":1e30,"score":1}\n'
    (tmp_path / "RS_2015-01.zst").write_bytes(zstandard.ZstdCompressor().compress(sub.encode()))
    for on_corrupt_file in ("fail", "record"):
        report = ingest(None, [tmp_path / "RC_2015-01.zst", tmp_path / "RS_2015-01.zst"], tmp_path / on_corrupt_file,
                        on_corrupt_file=on_corrupt_file)
        t = report["totals"]
        assert (t["lines"], t["comments_rows"], t["submissions_rows"], t["rejects"]) == (7, 2, 0, 5)
        assert t["rejects_by_reason"] == {"bad_value": 5}


def test_a_second_ingest_into_the_same_output_is_refused_while_the_first_runs(tmp_path):
    """Two jobs on one output at once: the second says who holds it (pid, host, since) and changes
    nothing; the first finishes with its output complete."""
    import subprocess
    import sys
    import time

    from reddit_pretrain.storage import LOCK, OutputBusy

    write_month(str(tmp_path / "big"), SynthConfig(comments=150_000, seed=5))
    out = tmp_path / "out"
    first = subprocess.Popen([sys.executable, "-m", "extraction.ingest.job", f"inputs=[{tmp_path / 'big'}/RC_2015-01.zst]",
                              f"output={out}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / LOCK).exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert (out / LOCK).exists(), "the first job never took the lock"
    with pytest.raises(OutputBusy, match=rf"another job is writing {out} \(pid {first.pid}, host .*, since "):
        ingest(None, [tmp_path / "big" / "RC_2015-01.zst"], out)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]
    assert (out / DONE_MARKER).exists() and not (out / LOCK).exists()


def test_a_full_disk_is_one_line_and_gives_its_space_back(dumps, tmp_path, small_disk):
    import subprocess
    import sys

    from reddit_pretrain.storage import OutputNotWritable
    from tests.conftest import used_bytes

    folder, _ = dumps
    disk = small_disk(400 << 10)
    before = used_bytes(disk)
    with pytest.raises(OutputNotWritable, match=rf"no space left on {disk} \(tmpfs\) writing {disk}/out/"):
        ingest(None, [folder / "RC_2015-01.zst"], disk / "out")
    assert os.listdir(disk / "out") == [] and used_bytes(disk) - before < 64 << 10
    result = subprocess.run([sys.executable, "-m", "extraction.ingest.job", f"inputs=[{folder / 'RC_2015-01.zst'}]",
                             f"output={disk / 'out'}"], capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: no space left on {disk} (tmpfs) writing ")


def _rows_in_file_order(path):
    """A table's rows as the extract job reads a bucket: its files in name order, rows in file order."""
    import pyarrow.parquet as pq

    files = sorted(str(p.relative_to(path)) for p in path.rglob("*.parquet"))
    return [(f.rsplit("/", 1)[0] if "/" in f else "", row) for f in files for row in pq.read_table(path / f).to_pylist()]


def _same_as_one_task(folder, tmp_path, spark=None, **kw):
    inputs = [folder / "RC_2015-01.zst", folder / "RS_2015-01.zst"]
    one = ingest(spark, inputs, tmp_path / "one", pieces_per_file=1)
    many = ingest(spark, inputs, tmp_path / "many", piece_min_bytes=1024, **kw)
    for name in ("comments", "submissions", "rejects"):
        assert _rows_in_file_order(tmp_path / "many" / name) == _rows_in_file_order(tmp_path / "one" / name), name
    strip = lambda report: [{k: v for k, v in f.items() if k not in ("seconds", "pieces", "piece_seconds")} for f in report["files"]]  # noqa: E731
    assert strip(many) == strip(one) and many["totals"] == one["totals"]
    return one, many


def test_one_dump_parsed_in_pieces_gives_the_rows_of_one_task_in_the_same_order(dumps, tmp_path):
    folder, stats = dumps
    one, many = _same_as_one_task(folder, tmp_path, pieces_per_file=5, read_size_bytes=64 << 10)
    assert {f["path"].rsplit("/", 1)[-1]: f["pieces"] for f in many["files"]} == {"RC_2015-01.zst": 5, "RS_2015-01.zst": 5}
    names = {p.name for p in (tmp_path / "many" / "comments").rglob("*.parquet")}
    assert {n.split("-")[2] for n in names} == {f"{k:03d}" for k in range(5)}  # every piece wrote rows
    assert many["totals"]["lines"] == stats.comments + stats.submissions
    # the extract job reads the same rows in the same order: the same bytes
    from extraction.sessions.job import ExtractConfig, run_extract

    outputs = {}
    for name in ("one", "many"):
        run_extract(ExtractConfig(input=str(tmp_path / name), output=str(tmp_path / f"extract_{name}")))
        outputs[name] = {str(p.relative_to(tmp_path / f"extract_{name}")): p.read_bytes()
                         for p in (tmp_path / f"extract_{name}").rglob("*.parquet")}
    assert outputs["one"] == outputs["many"]


def test_automatic_pieces_follow_the_cores_and_the_sizes():
    from extraction.ingest.pieces import pieces_per_file

    infos = [{"path": "big", "size": 600 << 20}, {"path": "small", "size": 20 << 20}]
    assert pieces_per_file(infos, 2, 0, 16 << 20) == {"big": 2, "small": 1}
    assert pieces_per_file(infos, 1, 0, 16 << 20) == {"big": 1, "small": 1}  # one core: one task a file, as before
    assert pieces_per_file(infos, 64, 0, 16 << 20) == {"big": 5, "small": 1}  # at most 5: the decoding sets the pace
    assert pieces_per_file(infos, 64, 64, 16 << 20) == {"big": 16, "small": 1}  # asked for: at most 16; >= 16 MiB a piece
    assert pieces_per_file([{"path": f"m{i}", "size": 100 << 20} for i in range(8)], 8, 0, 16 << 20) == \
        {f"m{i}": 1 for i in range(8)}  # many dumps: one task each
    assert pieces_per_file(infos, 2, 4, 16 << 20) == {"big": 4, "small": 1}  # asked for: still >= 16 MiB a piece


def test_a_truncated_dump_in_pieces_keeps_the_lines_before_the_damage(dumps, tmp_path):
    folder, _ = dumps
    broken = tmp_path / "in" / "RC_2015-03.zst"
    broken.parent.mkdir()
    data = (folder / "RC_2015-01.zst").read_bytes()
    broken.write_bytes(data[: len(data) * 2 // 3])
    reports = [ingest(None, [broken], tmp_path / f"out{k}", on_corrupt_file="record", pieces_per_file=k,
                      piece_min_bytes=1024, read_size_bytes=64 << 10) for k in (1, 4)]
    files = [r["files"][0] for r in reports]
    assert files[0]["status"] == files[1]["status"] == "failed" and files[0]["error"] == files[1]["error"]
    assert files[0]["lines"] == files[1]["lines"] > 0 and files[0]["rows"] == files[1]["rows"]
    with pytest.raises(IngestError, match=r"RC_2015-03\.zst.*truncated"):
        ingest(None, [broken], tmp_path / "out_fail", pieces_per_file=4, piece_min_bytes=1024)


def test_a_file_in_pieces_is_decoded_once_and_its_relayed_lines_leave_with_the_job(dumps, tmp_path, monkeypatch):
    import extraction.ingest.job as ingest_module
    import extraction.ingest.pieces as pieces_module

    from extraction.spark import SparkConfig

    folder, _ = dumps
    opened = []
    real = ingest_module.iter_line_blocks
    for module in (ingest_module, pieces_module):  # (a file in one piece is read by the task, in pieces by their decoder)
        monkeypatch.setattr(module, "iter_line_blocks", lambda path, *a, **kw: opened.append(path) or real(path, *a, **kw))
    # local[1]: the pieces run one after the other in this process, where the counter is
    for name, pieces in (("one", 1), ("many", 4)):
        run_ingest(IngestConfig(inputs=[str(folder / "RC_2015-01.zst"), str(folder / "RS_2015-01.zst")],
                                output=str(tmp_path / name), pieces_per_file=pieces, piece_min_bytes=1024,
                                read_size_bytes=64 << 10, spark=SparkConfig(master="local[1]")))
    for name in ("comments", "submissions", "rejects"):
        assert _rows_in_file_order(tmp_path / "many" / name) == _rows_in_file_order(tmp_path / "one" / name), name
    assert sorted(p.rsplit("/", 1)[-1] for p in opened) == ["RC_2015-01.zst", "RC_2015-01.zst", "RS_2015-01.zst",
                                                            "RS_2015-01.zst"]  # one task and four pieces: one decoder each
    assert not list(tmp_path.rglob("_relay")) and not list(tmp_path.rglob("*.block"))


def test_damage_inside_an_early_piece_reaches_every_piece(dumps, tmp_path):
    folder, _ = dumps
    broken = tmp_path / "in" / "RC_2015-03.zst"
    broken.parent.mkdir()
    data = bytearray((folder / "RC_2015-01.zst").read_bytes())
    middle = len(data) // 5  # inside the first of four pieces
    data[middle:middle + 64] = bytes(64)
    broken.write_bytes(bytes(data))
    reports = [ingest(None, [broken], tmp_path / f"out{k}", on_corrupt_file="record", pieces_per_file=k,
                      piece_min_bytes=1024, read_size_bytes=64 << 10) for k in (1, 4)]
    files = [r["files"][0] for r in reports]
    assert files[0]["status"] == files[1]["status"] == "failed" and files[0]["error"] == files[1]["error"]
    assert files[0]["lines"] == files[1]["lines"] > 0 and files[0]["rows"] == files[1]["rows"]
    with pytest.raises(IngestError, match=r"RC_2015-03\.zst"):  # the pieces hear of it: no piece waits
        ingest(None, [broken], tmp_path / "out_fail", pieces_per_file=4, piece_min_bytes=1024, read_size_bytes=64 << 10)


def test_a_piece_whose_decoding_task_never_comes_stops_with_a_clear_error(dumps, tmp_path):
    from extraction.ingest.job import _TaskSettings, ingest_file

    folder, _ = dumps
    path = folder / "RC_2015-01.zst"
    settings = _TaskSettings(str(tmp_path / "staging"), 64 << 10, 2**31, "fail", 60.0, 1_000_000, 4, piece_wait_s=0.05)
    with pytest.raises(IngestError, match=r"piece 1 of 2 heard nothing from the task decoding the file \(piece 2\) "
                                          r"for 0 s \(ingest.piece_wait_s\)"):
        ingest_file(0, str(path), settings, "RC", piece=0, pieces=2, size=path.stat().st_size)


def test_pieces_share_a_file_and_the_decoding_piece_parses_less():
    from extraction.ingest.pieces import decoder_share, piece_of

    assert [piece_of(read, 1, 300) for read in (1, 150, 300)] == [0, 0, 0]
    for pieces in (2, 3, 4, 5, 16):
        share = decoder_share(pieces)
        shares = [sum(piece_of(read, pieces, 100_000) == p for read in range(1, 100_001)) for p in range(pieces)]
        assert sum(shares) == 100_000 and abs(shares[-1] / 100_000 - share) < 1e-3, pieces
        assert max(shares[:-1]) - min(shares[:-1]) <= 1  # the others equal
    assert 0.3 < decoder_share(2) < 0.5 and decoder_share(4) < 0.15 and decoder_share(6) == decoder_share(16) == 0


def test_the_in_process_runner_parses_pieces_in_worker_processes(dumps, tmp_path):
    from extraction.spark import SparkConfig

    folder, _ = dumps
    cfg = SparkConfig(master="local[2]", in_process_below_bytes=1 << 40)
    reports = {}
    for name, kw in (("one", {"pieces_per_file": 1}), ("two", {"pieces_per_file": 2, "piece_min_bytes": 1024})):
        reports[name] = run_ingest(IngestConfig(inputs=[str(folder / "RC_2015-01.zst")], output=str(tmp_path / name),
                                                spark=cfg, **kw))
    assert reports["two"]["cores"] == 2 and reports["one"]["cores"] == 1  # one task: no worker processes
    assert _rows_in_file_order(tmp_path / "two" / "comments") == _rows_in_file_order(tmp_path / "one" / "comments")


@pytest.mark.slow
def test_pieces_on_spark_give_the_rows_of_one_task(dumps, tmp_path, spark):
    folder, _ = dumps
    _same_as_one_task(folder, tmp_path, spark, pieces_per_file=3)
