"""One registry of commands and stages (``reddit_pretrain_app.registry``): the CLI, the pipeline,
``jobs/spark_driver.py`` and the configuration reference read it, so a new Hydra job is its module,
its YAML and one entry. The toy job below is added to a copy of the project the way a contributor
would, and every file that had to change is counted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reddit_pretrain_app import registry

REPO = Path(__file__).resolve().parents[2]

TOY_MODULE = '''"""Lengths job: the turns of every extracted session, counted per split (a toy of the tests).

    python -m extraction.sessions.lengths_job input=out/extract output=out/lengths
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import pyarrow.parquet as pq

from reddit_pretrain import layout, storage


@dataclass
class LengthsConfig:
    input: str = "out/extract"
    """An extract job's output folder."""
    output: str = "out/lengths"
    """Where lengths.json goes."""


def run_lengths(cfg: LengthsConfig) -> dict:
    report = {}
    for split in layout.SPLITS:
        folder = os.path.join(cfg.input, layout.SESSIONS, layout.split_folder(split))
        turns = pq.read_table(folder, columns=["num_turns"]).column("num_turns").to_pylist() if os.path.isdir(folder) else []
        report[split] = {"sessions": len(turns), "turns": sum(turns)}
    storage.write_bytes_atomic(os.path.join(cfg.output, "lengths.json"), json.dumps(report).encode())
    return report


def main() -> None:
    from reddit_pretrain.hydra_job import run_hydra

    run_hydra("lengths", LengthsConfig, run_lengths, "input=extract output=lengths")


if __name__ == "__main__":
    main()
'''

TOY_YAML = """defaults:
  - lengths_schema
  - _self_
  - override hydra/job_logging: stdout

hydra:
  run:
    dir: .
  output_subdir: null
"""

TOY_ENTRY = '''    Command("lengths", "extraction.sessions.lengths_job", "the turns of the extracted sessions, counted per split",
            config="LengthsConfig", run="run_lengths", stage=Stage("lengths", {"input": "extract", "output": "out"})),
'''


def test_the_commands_stages_and_spark_jobs_come_from_the_registry():
    from reddit_pretrain_app.command import usage
    from reddit_pretrain_app.pipeline import STAGES, PipelineConfig, derived

    assert STAGES == ("ingest", "extract", "tokenize", "train", "export", "evaluate")
    assert all(f"  {name} " in usage() for name in registry.names())
    fields = PipelineConfig.__dataclass_fields__
    assert all(fields[c.name].default_factory is c.load(c.config) for c in registry.data_stages())
    assert derived()["tokenize.tokenizer"] == "tokenizer.name=" and derived()["extract.input"] == "out="
    driver = subprocess.run([sys.executable, "jobs/spark_driver.py"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert driver.returncode == 1 and "{ingest|extract|tokenize}" in driver.stderr, driver.stderr


def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=folder, check=True,
                          capture_output=True, text=True).stdout


@pytest.mark.slow
def test_a_toy_hydra_job_joins_every_reader_of_the_registry_in_one_entry(tmp_path):
    copy = tmp_path / "project"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, check=True, capture_output=True,
                           text=True).stdout.split()
    for name in files:
        if (REPO / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            (copy / name).write_bytes((REPO / name).read_bytes())
    git(copy, "init", "-q")
    git(copy, "add", "-A")
    git(copy, "commit", "-q", "-m", "the project as it is")
    # The job's own module and YAML, and its one entry in the registry, after extract's.
    (copy / "extraction/sessions/lengths_job.py").write_text(TOY_MODULE)
    (copy / "conf/lengths.yaml").write_text(TOY_YAML)
    registry_file = copy / "reddit_pretrain_app/registry.py"
    text = registry_file.read_text()
    anchor = '    Command("train-tokenizer",'
    registry_file.write_text(text.replace(anchor, TOY_ENTRY + anchor, 1))

    def run(*args: str, status: int = 0) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, *args], cwd=copy, capture_output=True, text=True, timeout=900,
                                env={**os.environ, "PYTHONPATH": str(copy)})
        assert result.returncode == status, result.stdout[-3000:] + result.stderr[-3000:]
        return result

    # The command line: listed, with its own --help.
    assert "  lengths " in run("-m", "reddit_pretrain_app.command", "--help").stdout
    page = run("-m", "reddit_pretrain_app.command", "lengths", "--help").stdout
    assert page.startswith("Lengths job") and "(e.g. input=extract output=lengths)" in page
    # The pipeline: a stage after extract, with a config section of its own whose folders it sets.
    out = tmp_path / "run"
    small = [f"out={out}", "demo.comments=3000", "demo.megathreads=0", "demo.deep_chains=0", "extract.filters.bland_min_count=5"]
    refused = run("-m", "reddit_pretrain_app.command", "pipeline", *small, "lengths.input=elsewhere", status=2)
    assert "lengths.input is set by the pipeline (from out=)" in refused.stderr
    piped = run("-m", "reddit_pretrain_app.command", "pipeline", *small, "stop_after=lengths")
    assert "[pipeline] lengths" in piped.stderr and f"lengths {out / 'lengths'}" in piped.stdout
    counted = json.loads((out / "lengths" / "lengths.json").read_text())
    assert counted["train"]["sessions"] > 0 and counted["train"]["turns"] >= 2 * counted["train"]["sessions"]
    assert not (out / "shards").exists()  # stop_after: the stages after it did not run
    # The configuration reference: generated with a section for it.
    run("jobs/config_reference.py")
    assert "#### Lengths (`conf/lengths.yaml`, `extraction.sessions.lengths_job.LengthsConfig`)" in \
        (copy / "docs/configuration.md").read_text()
    # Every file changed by hand beyond the job's module and YAML (the reference is generated).
    changed = {line[3:] for line in git(copy, "status", "--porcelain").splitlines()}
    by_hand = changed - {"extraction/sessions/lengths_job.py", "conf/lengths.yaml", "docs/configuration.md"}
    assert by_hand == {"reddit_pretrain_app/registry.py"}, changed
