"""The extraction jobs on a real Spark standalone cluster (a master and two workers on loopback,
started from the pyspark installation), submitted through jobs/spark_submit.sh exactly as a user
does, compared with local mode; and a killed executor that the job survives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.net import free_port

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.executable



@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    state = tmp_path_factory.mktemp("cluster")
    env = {**os.environ, "SPARK_CLUSTER_DIR": str(state), "SPARK_MASTER_PORT": str(free_port()), "PYTHON": PYTHON}
    out = subprocess.run(["bash", "jobs/spark_local_cluster.sh", "start", "2", "1"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    master = out.stdout.strip().splitlines()[-1]
    yield master
    subprocess.run(["bash", "jobs/spark_local_cluster.sh", "stop"], cwd=REPO, env=env, timeout=60)


def submit(master: str, job: str, *overrides: str, on_start=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "MASTER": master, "PYTHON": PYTHON,
           "SPARK_CONF": "--conf spark.ui.showConsoleProgress=false --conf spark.executor.memory=1g"}
    proc = subprocess.Popen(["bash", "jobs/spark_submit.sh", job, *overrides], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if on_start is not None:
        threading.Thread(target=on_start, daemon=True).start()
    output = proc.communicate(timeout=1200)[0]
    return subprocess.CompletedProcess(proc.args, proc.returncode, output, "")


def rows(spark, path):
    return sorted(tuple(map(str, r)) for r in spark.read.parquet(str(path)).collect())


@pytest.fixture(scope="module")
def dumps(tmp_path_factory):
    from reddit_pretrain_app.synth import SynthConfig, write_month

    folder = tmp_path_factory.mktemp("cluster-dumps")
    for i, month in enumerate(("2015-01", "2015-02", "2015-03")):
        write_month(str(folder), SynthConfig(month=month, comments=15_000, seed=60 + i))
    return folder


@pytest.mark.slow
def test_cluster_output_equals_local_mode(spark, cluster, dumps, tmp_path):
    from extraction.sessions.job import ExtractConfig, run_extract
    from extraction.sessions.filters import FiltersConfig
    from extraction.ingest.job import IngestConfig, run_ingest

    inputs = f"inputs=[{dumps}/RC_*.zst,{dumps}/RS_*.zst]"
    result = submit(cluster, "ingest", inputs, f"output={tmp_path}/c-ingest")
    assert result.returncode == 0, result.stdout[-4000:]
    result = submit(cluster, "extract", f"input={tmp_path}/c-ingest", f"output={tmp_path}/c-extract",
                    "filters.bland_min_count=20")
    assert result.returncode == 0, result.stdout[-4000:]

    run_ingest(IngestConfig(inputs=[f"{dumps}/RC_*.zst", f"{dumps}/RS_*.zst"], output=str(tmp_path / "l-ingest")), spark)
    run_extract(ExtractConfig(input=str(tmp_path / "l-ingest"), output=str(tmp_path / "l-extract"),
                              filters=FiltersConfig(bland_min_count=20)), spark)
    for table in ("c-ingest/comments", "c-ingest/submissions", "c-ingest/rejects"):
        assert rows(spark, tmp_path / table) == rows(spark, tmp_path / table.replace("c-", "l-"))
    # Ingest parts are written by the tasks with deterministic names: the very same bytes.
    for folder, _, files in os.walk(tmp_path / "c-ingest" / "comments"):
        for name in files:
            local = os.path.join(folder.replace("c-ingest", "l-ingest"), name)
            assert open(os.path.join(folder, name), "rb").read() == open(local, "rb").read()
    assert rows(spark, tmp_path / "c-extract/sessions") == rows(spark, tmp_path / "l-extract/sessions")
    assert rows(spark, tmp_path / "c-extract/rejects") == rows(spark, tmp_path / "l-extract/rejects")


def executors() -> list[int]:
    out = subprocess.run(["pgrep", "-f", "CoarseGrainedExecutorBackend"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


@pytest.mark.slow
def test_a_killed_executor_does_not_change_the_output(spark, cluster, dumps, tmp_path):
    from extraction.sessions.job import ExtractConfig, run_extract
    from extraction.sessions.filters import FiltersConfig
    from extraction.ingest.job import IngestConfig, run_ingest

    killed = []

    def kill_one_executor():
        # Between the extract job's first and last task sets: the first has written a bucket's
        # candidates (staging/_work/candidates); the tasks after it must survive losing an executor.
        import glob

        deadline = time.time() + 300
        while time.time() < deadline and not killed:
            started = glob.glob(str(tmp_path / "disturbed" / "_staging-*" / "_work" / "candidates" / "*.arrow"))
            pids = executors()
            if started and len(pids) >= 2:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            time.sleep(0.05)

    run_ingest(IngestConfig(inputs=[f"{dumps}/RC_*.zst", f"{dumps}/RS_*.zst"], output=str(tmp_path / "ingest")), spark)
    result = submit(cluster, "extract", f"input={tmp_path}/ingest", f"output={tmp_path}/disturbed",
                    "filters.bland_min_count=20", on_start=kill_one_executor)
    assert result.returncode == 0, result.stdout[-4000:]
    assert killed, "no executor was killed"
    run_extract(ExtractConfig(input=str(tmp_path / "ingest"), output=str(tmp_path / "calm"),
                              filters=FiltersConfig(bland_min_count=20)), spark)
    assert rows(spark, tmp_path / "disturbed/sessions") == rows(spark, tmp_path / "calm/sessions")
    assert rows(spark, tmp_path / "disturbed/rejects") == rows(spark, tmp_path / "calm/rejects")
