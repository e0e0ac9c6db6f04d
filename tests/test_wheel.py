"""The built wheel, installed outside the checkout, runs every command with its own config:
generate a month, ingest, extract, train a tokenizer, tokenize, inspect, train, export, chat, and
the pipeline's help. (Its dependencies are this environment's; the wheel itself goes to a folder
of its own on PYTHONPATH, ahead of the editable install.)"""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_carries_its_config_and_runs_every_command(tmp_path):
    dist, site, work = tmp_path / "dist", tmp_path / "site", tmp_path / "work"
    work.mkdir()
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(REPO)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    wheel = next(dist.glob("reddit_pretrain-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    conf = {f"reddit_pretrain/conf/{p.relative_to(REPO / 'conf')}" for p in (REPO / "conf").rglob("*") if p.is_file()}
    assert conf <= names, sorted(conf - names)
    assert not any(n.startswith(("tests/", "benchmarks/", "jobs/")) for n in names)
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]

    env = {**os.environ, "PYTHONPATH": str(site), "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}

    def run(*args: str, stdin: str | None = None) -> str:
        result = subprocess.run([sys.executable, *args], cwd=work, env=env, capture_output=True, text=True, input=stdin,
                                timeout=600)
        assert result.returncode == 0, f"{args}: {result.stdout[-2000:]}{result.stderr[-3000:]}"
        return result.stdout + result.stderr

    where = run("-c", "import reddit_pretrain, extraction, pretrain; print(reddit_pretrain.CONF_DIR, extraction.__file__)")
    assert where.split()[0] == str(site / "reddit_pretrain" / "conf") and str(site) in where.split()[1]
    run("-m", "reddit_pretrain_app.synth", "--out", "dumps", "--comments", "3000", "--seed", "5")
    run("-m", "extraction.ingest.job", "inputs=[dumps/RC_2015-01.zst,dumps/RS_2015-01.zst]", "output=ingest")
    assert "preset: dialogpt_paper" in run("-m", "extraction.sessions.job", "--help")
    run("-m", "extraction.sessions.job", "input=ingest", "output=extract", "preset=dialogpt_paper", "filters.bland=false",
        "split.valid_fraction=0.1")
    run("-m", "extraction.tokenize.train_tokenizer", "--sessions", "extract/sessions", "--out", "tokenizer", "--vocab-size", "400")
    run("-m", "extraction.tokenize.job", "input=extract", "output=shards", "tokenizer=tokenizer", "splits=[train,valid]")
    assert "[train]" in run("-m", "pretrain.shard_tools", "inspect", "shards")
    run("-m", "pretrain.train", "data.shards=shards", "trainer.out_dir=train", "trainer=ci", "trainer.max_steps=2",
        "data.seq_len=32", "deepspeed=zero0", "trainer.eval_interval=2", "trainer.checkpoint_interval=2")
    run("-m", "pretrain.export", "train/checkpoints", "model")
    assert "bot> " in run("-m", "pretrain.chat", "model", "--max-new-tokens", "3", stdin="hello\nquit\n")
    assert "model: [demo]" in run("-m", "reddit_pretrain_app.pipeline", "--help")
    # The console script the wheel declares (pip --target puts it in <site>/bin).
    assert "reddit-pretrain = reddit_pretrain_app.command:main" in zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "usage: reddit-pretrain inspect" in run(str(site / "bin" / "reddit-pretrain"), "inspect", "--help")
