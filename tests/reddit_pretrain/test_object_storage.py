"""Inputs and outputs on s3:// for real: an S3-compatible server on loopback (moto's server mode),
ingest -> extract -> tokenize -> export-dataset with every path on s3:// (in this process and on
local Spark), the outputs equal to a local run's, the trainer's answer to s3:// shards, one line for
each object-store error, and a job killed mid-write on s3:// that a re-run completes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.net import free_port

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SALT = "object-storage-test-salt"
BUCKET = "reddit"

pytestmark = pytest.mark.slow



@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on loopback with one bucket; yields the environment that reaches it."""
    pytest.importorskip("s3fs")
    server = BIN / "moto_server"
    if not server.exists():
        pytest.skip("moto_server is not installed (pip install 'moto[server]')")
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "w")
    proc = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "REDDIT_PRETRAIN_SALT": SALT, "HF_HUB_OFFLINE": "1"}
    deadline = time.time() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None and time.time() < deadline, "moto_server did not start"
            time.sleep(0.1)
    import s3fs

    fs = s3fs.S3FileSystem(key="test", secret="test", endpoint_url=env["AWS_ENDPOINT_URL"])
    fs.mkdir(BUCKET)
    yield env, fs
    proc.terminate()
    proc.wait(timeout=30)


def cli(env: dict, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "reddit-pretrain"), *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def one_line_error(result: subprocess.CompletedProcess, text: str) -> None:
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1].startswith("error: ") and text in result.stderr, result.stderr[-3000:]


@pytest.fixture(scope="module")
def local_run(s3, tmp_path_factory, tokenizer_dir):
    """A generated month, uploaded, and the local run of it that the s3:// runs must equal."""
    from extraction.sessions.job import ExtractConfig, run_extract
    from extraction.ingest.job import IngestConfig, run_ingest
    from reddit_pretrain_app.synth import SynthConfig, write_month
    from extraction.tokenize.job import TokenizeConfig, run_tokenize

    env, fs = s3
    root = tmp_path_factory.mktemp("s3-local")
    write_month(str(root / "dumps"), SynthConfig(comments=8_000, seed=23))
    fs.put(str(root / "dumps") + "/", f"{BUCKET}/dumps/", recursive=True)
    os.environ["REDDIT_PRETRAIN_SALT"] = SALT
    try:
        run_ingest(IngestConfig(inputs=[str(root / "dumps" / "*.zst")], output=str(root / "ingest")))
        run_extract(ExtractConfig(input=str(root / "ingest"), output=str(root / "extract")))
        run_tokenize(TokenizeConfig(input=str(root / "extract"), output=str(root / "shards"), tokenizer=str(tokenizer_dir)))
    finally:
        del os.environ["REDDIT_PRETRAIN_SALT"]
    return root


def files_of(fs, prefix: str) -> dict[str, bytes]:
    return {p[len(prefix) + 1:]: fs.cat_file(p) for p in fs.find(prefix)}


def local_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("where", ["in-process", "spark"])
def test_every_stage_on_s3_gives_the_local_bytes(s3, local_run, tokenizer_dir, tmp_path, where):
    env, fs = s3
    run = f"s3://{BUCKET}/{where}"
    spark = ["spark.in_process_below_bytes=0", "spark.master=\"local[2]\""] if where == "spark" else []
    ingest = ok(cli(env, "ingest", f"inputs=[s3://{BUCKET}/dumps/RC_*.zst,s3://{BUCKET}/dumps/RS_*.zst]", f"output={run}/ingest",
                    *spark))
    assert ("on Spark local[2]" if where == "spark" else "in this process") in ingest.stderr, ingest.stderr[-2000:]
    ok(cli(env, "extract", f"input={run}/ingest", f"output={run}/extract", *spark))
    ok(cli(env, "tokenize", f"input={run}/extract", f"output={run}/shards", f"tokenizer={tokenizer_dir}", *spark))
    # Every table and the shards: the very same bytes as the local run's.
    for table in ("comments", "submissions", "rejects"):
        remote = files_of(fs, f"{BUCKET}/{where}/ingest/{table}")
        assert remote == local_files(local_run / "ingest" / table), table
    for table in ("sessions", "rejects"):
        assert files_of(fs, f"{BUCKET}/{where}/extract/{table}") == local_files(local_run / "extract" / table), table
    assert files_of(fs, f"{BUCKET}/{where}/shards/shards") == local_files(local_run / "shards" / "shards")
    assert fs.exists(f"{BUCKET}/{where}/shards/_TOKENIZE_DONE.json")
    # A re-run of a finished job does nothing.
    again = ok(cli(env, "tokenize", f"input={run}/extract", f"output={run}/shards", f"tokenizer={tokenizer_dir}"))
    assert "nothing to do" in again.stderr
    # The trainer memory-maps its shards: it says how to make a local copy, which is then checked.
    one_line_error(cli(env, "train", f"data.shards={run}/shards", f"trainer.out_dir={tmp_path}/train", "model=tiny"),
                   f"copy them to a local or shared folder first with `reddit-pretrain fetch-shards {run}/shards <folder>`")
    fetched = ok(cli(env, "fetch-shards", f"{run}/shards", str(tmp_path / "fetched")))
    assert "sha256 checked" in fetched.stdout
    assert local_files(tmp_path / "fetched" / "shards") == local_files(local_run / "shards" / "shards")
    # The dataset export, from s3:// to s3://, loads as the local one does.
    ok(cli(env, "export-dataset", f"{run}/extract", f"{run}/dataset"))
    fs.get(f"{BUCKET}/{where}/dataset/", str(tmp_path / "dataset") + "/", recursive=True)
    from datasets import load_dataset

    assert len(load_dataset(str(tmp_path / "dataset"))["train"]) == pq.read_table(local_run / "extract" / "sessions" / "split=train").num_rows


def test_object_store_errors_are_one_line(s3, tmp_path):
    env, _ = s3
    nobody = {k: v for k, v in env.items() if not k.startswith("AWS_") or k in ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION")}
    nobody.update(HOME=str(tmp_path), AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
                  AWS_EC2_METADATA_DISABLED="true")
    inputs = f"inputs=[s3://{BUCKET}/dumps/RC_*.zst]"
    one_line_error(cli(nobody, "ingest", inputs, f"output={tmp_path}/a"), "no credentials for object storage")
    one_line_error(cli(env, "ingest", inputs, "output=s3://no-such-bucket/run"), "the bucket 'no-such-bucket' does not exist")
    one_line_error(cli(env, "ingest", f"inputs=[s3://{BUCKET}/dumps/RC_1999-01.zst]", f"output={tmp_path}/b"),
                   f"input 's3://{BUCKET}/dumps/RC_1999-01.zst' matches no file")
    one_line_error(cli(env, "extract", f"input=s3://{BUCKET}/nothing-here", f"output={tmp_path}/c"), "run the ingest job first")
    one_line_error(cli(nobody, "export-dataset", f"s3://{BUCKET}/x", f"{tmp_path}/d"), "no credentials for object storage")


def test_a_job_killed_while_writing_to_s3_is_completed_by_a_rerun(s3, tmp_path):
    """Killed (SIGKILL) while its staging folder is being filled: no completion marker, so the output
    does not count; the re-run takes over the dead job's lock, keeps its finished tasks and completes, with
    the bytes of a run that was never killed."""
    from extraction.ingest.job import IngestConfig, run_ingest
    from reddit_pretrain_app.synth import SynthConfig, write_month

    env, fs = s3
    write_month(str(tmp_path / "dumps"), SynthConfig(comments=40_000, seed=29, month="2015-02"))
    fs.put(str(tmp_path / "dumps") + "/", f"{BUCKET}/big/", recursive=True)
    run_ingest(IngestConfig(inputs=[str(tmp_path / "dumps" / "*.zst")], output=str(tmp_path / "reference")))
    args = [str(BIN / "reddit-pretrain"), "ingest", f"inputs=[s3://{BUCKET}/big/RC_*.zst,s3://{BUCKET}/big/RS_*.zst]",
            f"output=s3://{BUCKET}/killed"]
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not any("/_work/" in p or p.endswith(".parquet") for p in fs.find(f"{BUCKET}/killed") if "_staging-" in p):
        assert proc.poll() is None and time.time() < deadline, "the job ended before it was killed: make its month larger"
        time.sleep(0.02)
        fs.invalidate_cache()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    fs.invalidate_cache()
    left = fs.find(f"{BUCKET}/killed")
    assert not any(p.endswith("_INGEST_DONE.json") for p in left) and any("_staging-" in p for p in left)
    ok(subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600))
    fs.invalidate_cache()
    assert not any("_staging-" in p or p.endswith("_LOCK.json") for p in fs.find(f"{BUCKET}/killed"))
    for table in ("comments", "submissions", "rejects"):
        assert files_of(fs, f"{BUCKET}/killed/{table}") == local_files(tmp_path / "reference" / table), table
