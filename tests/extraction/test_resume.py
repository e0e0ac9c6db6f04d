"""One stage contract (extraction.spark.stage): a re-run keeps the tasks an interrupted run finished, checks
their files against their records, redoes the damaged ones, and starts over when the material changed."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from extraction.spark.stage import STAGE_FILE, TASKS, Stage, check_files
from reddit_pretrain import storage

REPO = Path(__file__).resolve().parents[2]


def _toy_task(task: dict):
    """A real task: writes its file in two steps through the project's atomic writes."""
    storage.write_bytes_atomic(task["out"], (task["text"] * 2000).encode())
    storage.write_bytes_atomic(task["out"] + ".count", str(task["n"]).encode())
    return {"n": task["n"], "bytes": 2000 * len(task["text"])}, None


def _toy_stage(out: Path, material: dict) -> Stage:
    return Stage("toy", str(out), "_DONE.json", ["data"], material)


def _toy_tasks(staging: str) -> list[dict]:
    return [{"n": n, "text": f"task {n} ", "out": storage.join(staging, "data", f"part-{n}.txt")} for n in range(6)]


@pytest.mark.parametrize("runner", ["in this process", pytest.param("spark", marks=pytest.mark.slow)])
def test_a_rerun_keeps_finished_tasks_checks_their_files_and_starts_over_on_other_settings(runner, tmp_path, capsys, request):
    """The same contract whether the tasks (and the checks of the finished ones) run in this
    process or as Spark tasks."""
    spark = request.getfixturevalue("spark") if runner == "spark" else None
    out = tmp_path / "out"
    material = {"input": "a", "settings": {"x": 1}}
    stage = _toy_stage(out, material)
    with pytest.raises(RuntimeError, match="interrupted"):
        with stage.running() as staging:
            stage.tasks(spark, "write", _toy_tasks(staging), _toy_task)
            raise RuntimeError("interrupted")  # the driver dies after the task set
    kept_staging = staging
    assert os.path.isdir(kept_staging) and not (out / storage.LOCK).exists() and not (out / "_DONE.json").exists()
    records = sorted((Path(kept_staging) / TASKS / "write").iterdir())
    assert len(records) == 6
    first = json.loads(records[0].read_text())
    assert len(first["files"]) == 2 and check_files(kept_staging, first["files"]) is None

    # Damage two finished tasks' files: one truncated, one with a changed byte of the same size.
    part1, part2 = Path(kept_staging) / "data" / "part-1.txt", Path(kept_staging) / "data" / "part-2.txt"
    part1.write_bytes(part1.read_bytes()[:100])
    data = bytearray(part2.read_bytes())
    data[10] ^= 1
    part2.write_bytes(bytes(data))
    by_task = {json.loads(r.read_text())["task"]["n"]: json.loads(r.read_text())["files"] for r in records}
    assert check_files(kept_staging, by_task[0]) is None  # (records are named by the task's hash: picked by task)
    assert "has 100 bytes" in check_files(kept_staging, by_task[1]) and "changed (sha256)" in check_files(kept_staging, by_task[2])

    stage = _toy_stage(out, material)
    capsys.readouterr()
    with stage.running() as staging:
        assert staging == kept_staging
        results = stage.tasks(spark, "write", _toy_tasks(staging), _toy_task)
        report = {}
        stage.commit(report, "report.json")
    err = capsys.readouterr().err
    assert "resuming" in err and "4 of 6 tasks finished by an earlier run kept; 2 run again" in err
    assert [r["n"] for r, _ in results] == list(range(6))  # results of kept tasks come from their records
    assert report["tasks"]["write"] == {"tasks": 6, "kept": 4, "redone": 2, "seconds": report["tasks"]["write"]["seconds"]}
    for n in range(6):
        assert (out / "data" / f"part-{n}.txt").read_text() == f"task {n} " * 2000
    assert json.loads((out / "_DONE.json").read_text())["material"] == material
    assert not any(p.name.startswith("_staging-") for p in out.iterdir())

    # Interrupted again, then run with another setting: the old staging folder is removed, saying why.
    out2 = tmp_path / "out2"
    stage = _toy_stage(out2, material)
    with pytest.raises(RuntimeError):
        with stage.running() as staging:
            stage.tasks(None, "write", _toy_tasks(staging)[:3], _toy_task)
            raise RuntimeError("interrupted")
    old = staging
    changed = {"input": "a", "settings": {"x": 2}}
    stage = _toy_stage(out2, changed)
    capsys.readouterr()
    with stage.running() as staging:
        assert staging != old and not os.path.exists(old) and not (Path(staging) / TASKS).exists()
        stage.tasks(None, "write", _toy_tasks(staging), _toy_task)
        stage.commit()
    assert "starting over: an earlier run's staging folder removed: settings.x changed" in capsys.readouterr().err
    assert stage.steps["write"]["kept"] == 0
    assert json.loads((out2 / "_DONE.json").read_text())["fingerprint"] == stage.fingerprint


def test_a_kept_staging_folder_planned_for_other_tasks_is_emptied(tmp_path, capsys):
    out = tmp_path / "out"
    stage = _toy_stage(out, {"m": 1})
    with pytest.raises(RuntimeError):
        with stage.running() as staging:
            stage.plan({"pieces": {"a": 2}})
            stage.tasks(None, "write", _toy_tasks(staging), _toy_task)
            raise RuntimeError("interrupted")
    stage = _toy_stage(out, {"m": 1})
    with stage.running() as staging:
        assert (Path(staging) / "data").is_dir()
        stage.plan({"pieces": {"a": 4}})
        assert sorted(os.listdir(staging)) == [STAGE_FILE]
        stage.tasks(None, "write", _toy_tasks(staging), _toy_task)
        stage.commit()
    assert "the plan differs from the interrupted run's (pieces.a changed)" in capsys.readouterr().err
    assert stage.steps["write"]["kept"] == 0


# ---------------------------------------------------------------------------------------------
# The real jobs, killed (SIGKILL of the whole process group) in the middle of a task set


def _records(out: Path, step: str) -> int:
    return sum(len(list(p.glob(f"{TASKS}/{step}/*.json"))) for p in out.glob("_staging-*"))


def _kill_at(args: list[str], out: Path, step: str, at: int, log: Path) -> None:
    """Runs the command in its own process group and kills the group once ``at`` tasks of ``step`` are recorded."""
    with open(log, "w") as sink:
        proc = subprocess.Popen(args, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 300
    while _records(out, step) < at:
        assert proc.poll() is None, f"the job ended before it was killed: {log.read_text()[-2000:]}"
        assert time.time() < deadline
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not any(out.glob("_*_DONE.json")) and (out / storage.LOCK).exists()  # killed: no marker, a dead lock


def _run(args: list[str]) -> str:
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


def _rows(folder: Path, sort: str) -> list[dict]:
    return ds.dataset(str(folder), format="parquet", partitioning="hive").to_table().sort_by(sort).to_pylist()


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "reddit_pretrain_app.command", *args]


@pytest.mark.slow
def test_ingest_extract_and_tokenize_killed_mid_task_set_redo_only_the_rest(tmp_path, tokenizer_dir):
    from reddit_pretrain_app.synth import SynthConfig, write_month

    for n, month in enumerate(("2015-01", "2015-02", "2015-03")):
        write_month(str(tmp_path / "dumps"), SynthConfig(comments=25_000, seed=50 + n, month=month))
    inputs = f"inputs=[{tmp_path / 'dumps'}/*.zst]"
    reference, out = tmp_path / "reference", tmp_path / "killed"

    # Ingest: six dumps, a task each; killed after three.
    _run(_command("ingest", inputs, f"output={reference / 'ingest'}", "thread_buckets=16"))
    _kill_at(_command("ingest", inputs, f"output={out / 'ingest'}", "thread_buckets=16"), out / "ingest", "dumps", 3, tmp_path / "i.log")
    err = _run(_command("ingest", inputs, f"output={out / 'ingest'}", "thread_buckets=16"))
    report = json.loads((out / "ingest" / "ingest_report.json").read_text())
    assert "resuming" in err and 3 <= report["tasks"]["dumps"]["kept"] < 6, err
    for table, key in (("comments", "id"), ("submissions", "id"), ("rejects", "line_number")):
        assert _rows(out / "ingest" / table, key) == _rows(reference / "ingest" / table, key), table

    # Extract (in this process: the same task functions Spark runs), killed in its first task set, then
    # in its corpus-rules task set; a finished task's files damaged before the second re-run.
    settings = ["task_bytes=150000", "reduce_bytes=100000", "filters.bland_min_count=20"]
    _run(_command("extract", f"input={reference / 'ingest'}", f"output={reference / 'extract'}", *settings))
    extract = _command("extract", f"input={reference / 'ingest'}", f"output={out / 'extract'}", *settings)
    _kill_at(extract, out / "extract", "sessions", 3, tmp_path / "e1.log")
    err = _run(extract)
    first = json.loads((out / "extract" / "extract_report.json").read_text())["tasks"]
    assert first["sessions"]["kept"] >= 3 and first["sessions"]["kept"] < first["sessions"]["tasks"], first
    assert first["corpus rules"]["kept"] == 0
    reference_rows = _rows(reference / "extract" / "sessions", "session_id"), _rows(reference / "extract" / "rejects", "session_id")
    assert (_rows(out / "extract" / "sessions", "session_id"), _rows(out / "extract" / "rejects", "session_id")) == reference_rows

    again = _command("extract", f"input={reference / 'ingest'}", f"output={out / 'extract2'}", *settings)
    _kill_at(again, out / "extract2", "corpus-rules", 2, tmp_path / "e2.log")
    staging = next((out / "extract2").glob("_staging-*"))
    damaged = []
    for record in sorted((staging / TASKS / "sessions").glob("*.json"))[:2]:
        path = staging / json.loads(record.read_text())["files"][0]["path"]
        damaged.append(path)
    damaged[0].write_bytes(damaged[0].read_bytes()[:-7])
    data = bytearray(damaged[1].read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged[1].write_bytes(bytes(data))
    err = _run(again)
    second = json.loads((out / "extract2" / "extract_report.json").read_text())["tasks"]
    assert second["sessions"]["redone"] == 2 and second["sessions"]["kept"] == second["sessions"]["tasks"] - 2, second
    assert 2 <= second["corpus rules"]["kept"] < second["corpus rules"]["tasks"], second
    assert "run again" in err and ("changed" in err or "bytes, not" in err)
    assert (_rows(out / "extract2" / "sessions", "session_id"), _rows(out / "extract2" / "rejects", "session_id")) == reference_rows

    # Tokenize: killed after half its tasks; the shards of the re-run are the reference's bytes.
    tokenize = ["input=" + str(reference / "extract"), f"tokenizer={tokenizer_dir}", "sessions_per_task=400"]
    _run(_command("tokenize", *tokenize, f"output={reference / 'shards'}"))
    total = len(json.loads((reference / "shards" / "manifest.json").read_text())["shards"])
    _kill_at(_command("tokenize", *tokenize, f"output={out / 'shards'}"), out / "shards", "tokenize", 3, tmp_path / "t.log")
    _run(_command("tokenize", *tokenize, f"output={out / 'shards'}"))
    manifest = json.loads((out / "shards" / "manifest.json").read_text())
    assert len(manifest["shards"]) == total >= 6
    assert 3 <= manifest["tasks"]["tokenize"]["kept"] < manifest["tasks"]["tokenize"]["tasks"], manifest["tasks"]
    for shard in (reference / "shards" / "shards").iterdir():
        assert (out / "shards" / "shards" / shard.name).read_bytes() == shard.read_bytes(), shard.name
