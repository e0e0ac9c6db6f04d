"""README stays true: its configuration reference matches the dataclasses, its commands exist."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_config_reference_is_current():
    result = subprocess.run([sys.executable, "jobs/config_reference.py", "--check"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_readme_commands_are_the_makefile_targets_ci_runs():
    readme = open(os.path.join(REPO, "README.md")).read()
    makefile = open(os.path.join(REPO, "Makefile")).read()
    assert "make demo" in readme and "make test" in readme
    assert "\ndemo: setup" in makefile and "\ntest: setup" in makefile
    assert "make test" in open(os.path.join(REPO, ".ci", "run")).read()


def test_readme_front_page_fits_a_screenful_of_scrolling():
    readme = open(os.path.join(REPO, "README.md")).read()
    assert len(readme.splitlines()) <= 250
    assert max(len(line) for line in readme.splitlines() if not line.startswith("|")) <= 110


@pytest.mark.slow
def test_readme_stage_by_stage_commands_run_as_written(tmp_path):
    """The front page's stage-by-stage block, line by line, exactly as a newcomer types it: in a
    folder holding the project's environment as .venv, with nothing else on PATH from the tests."""
    import re
    from pathlib import Path

    readme = open(os.path.join(REPO, "README.md")).read()
    block = readme.split("<!-- tested-commands:begin -->", 1)[1].split("<!-- tested-commands:end -->", 1)[0]
    script = re.search(r"```bash\n(.*?)```", block, re.S).group(1)
    assert script.startswith("source .venv/bin/activate\n") and "reddit-pretrain chat" in script
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1",
           "DS_ACCELERATOR": os.environ.get("DS_ACCELERATOR", "cpu"), "TMPDIR": str(tmp_path)}
    result = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=1500)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-4000:]
    assert "bot> " in result.stdout and "Traceback" not in result.stderr
    assert (tmp_path / "work" / "model" / "config.json").exists() and (tmp_path / "work" / "extract" / "extract_report.html").exists()
    # Then the guide's mixture block, in the same folder (it trains on work/shards and a second set).
    guide = open(os.path.join(REPO, "docs", "guide.md")).read()
    mixture = re.search(r"```bash\n(.*?)```", guide.split("<!-- tested-mixture:begin -->", 1)[1].split(
        "<!-- tested-mixture:end -->", 1)[0], re.S).group(1)
    mixed = subprocess.run(["bash", "-e", "-c", "source .venv/bin/activate\n" + mixture], cwd=tmp_path, capture_output=True,
                           text=True, env=env, timeout=900)
    assert mixed.returncode == 0, mixed.stdout[-3000:] + mixed.stderr[-4000:]
    assert "shard sets read: shards " in mixed.stdout and "shards_short" in mixed.stdout.split("mixture of 2 shard sets")[1]
    # Then the guide's corpus block: the README's month, then a second one, added as batches, extracted together.
    corpus = re.search(r"```bash\n(.*?)```", guide.split("<!-- tested-corpus:begin -->", 1)[1].split(
        "<!-- tested-corpus:end -->", 1)[0], re.S).group(1)
    grown = subprocess.run(["bash", "-e", "-c", "source .venv/bin/activate\n" + corpus], cwd=tmp_path, capture_output=True,
                           text=True, env=env, timeout=900)
    assert grown.returncode == 0, grown.stdout[-3000:] + grown.stderr[-4000:]
    assert sorted(os.listdir(tmp_path / "work" / "corpus" / "ingest")) == ["2015-01", "2015-02"]
    assert "RC_2015-02.zst" in (tmp_path / "work" / "extract_corpus" / "extract_report.json").read_text()
    # Then the corpus kept up to date: each batch extracted against the ones before it, a shard set each.
    update = re.search(r"```bash\n(.*?)```", guide.split("<!-- tested-corpus-update:begin -->", 1)[1].split(
        "<!-- tested-corpus-update:end -->", 1)[0], re.S).group(1)
    updated = subprocess.run(["bash", "-e", "-c", "source .venv/bin/activate\n" + update], cwd=tmp_path, capture_output=True,
                             text=True, env=env, timeout=900)
    assert updated.returncode == 0, updated.stdout[-3000:] + updated.stderr[-4000:]
    import json

    record = json.loads((tmp_path / "work" / "corpus" / "_CORPUS.json").read_text())
    assert sorted(record["shard_sets"]) == ["2015-01", "2015-02"] and record["shard_sets"]["2015-02"]["months"] == ["2015-02"]
    assert "earlier sessions whose last turn gained a reply here" in updated.stdout + updated.stderr
    # Then the front page's loading example (pandas, datasets, the shard reader, a transformers pipeline).
    python = re.search(r"```python\n(.*?)```", readme.split("<!-- tested-python:begin -->", 1)[1].split(
        "<!-- tested-python:end -->", 1)[0], re.S).group(1)
    loaded = subprocess.run([str(tmp_path / ".venv" / "bin" / "python"), "-c", python], cwd=tmp_path, capture_output=True,
                            text=True, env=env, timeout=600)
    assert loaded.returncode == 0, loaded.stdout[-3000:] + loaded.stderr[-4000:]
    assert "'role': 'assistant'" in loaded.stdout and "turns" in loaded.stdout
