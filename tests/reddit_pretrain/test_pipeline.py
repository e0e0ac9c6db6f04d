"""The one-command pipeline: a config made of the stages' own configs, its groups under the stage
commands' names, the settings it derives refused when set, and a whole small run."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def pipeline(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reddit_pretrain_app.pipeline", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def test_the_pipeline_config_is_the_stage_configs():
    result = pipeline("--cfg", "job", "preset=dialogpt_released", "model=gpt2-124m", "trainer=ci",
                      "extract.filters.bland_min_count=7", "tokenize.max_session_tokens=300")
    assert result.returncode == 0, result.stderr[-2000:]
    cfg = yaml.safe_load(result.stdout)
    assert set(cfg) == {"input", "out", "demo", "spark", "ingest", "extract", "tokenizer", "tokenize", "train", "nproc",
                        "stop_after"}
    assert cfg["extract"]["filters"]["normalize"] == "dialogpt" and cfg["extract"]["filters"]["bland_min_count"] == 7
    assert (cfg["train"]["model"]["name"], cfg["train"]["model"]["n_layer"]) == ("gpt2-124m", 12)
    assert cfg["train"]["trainer"]["max_steps"] == 20 and cfg["train"]["optimizer"]["lr"] == 2e-3  # optimizer=demo stays
    assert cfg["tokenize"]["max_session_tokens"] == 300 and cfg["demo"]["p_conversation"] == 0.9


@pytest.mark.parametrize("override, message", [
    ("extract.output=/elsewhere", "extract.output is set by the pipeline (from out=)"),
    ("tokenize.tokenizer=/models/gpt2", "tokenize.tokenizer is set by the pipeline (from tokenizer.name=)"),
    ("train.trainer.out_dir=/x", "train.trainer.out_dir is set by the pipeline (from out=)"),
    ("ingest.spark.master=yarn", "ingest.spark is set by the pipeline (from spark.*)"),
    ("train.optimizer.name=sgd", "optimizer.name must be adamw"),
])
def test_settings_the_pipeline_derives_or_cannot_use_fail_first(tmp_path, override, message):
    result = pipeline(f"out={tmp_path}/run", override)
    assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "run").exists()  # nothing ran


def test_an_unknown_key_fails_with_its_name(tmp_path):
    result = pipeline(f"out={tmp_path}/run", "extract.filters.blnd=3")
    assert result.returncode != 0 and "blnd" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_small_pipeline_end_to_end(tmp_path):
    out = tmp_path / "run"
    result = pipeline(f"out={out}", "demo.comments=3000", "demo.megathread_comments=300", "demo.deep_chain_depth=30",
                      "model=tiny", "trainer=ci", "extract.filters.bland_min_count=5", "train.data.seq_len=32")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Pipeline finished" in result.stdout and "replies on the question's topic" in result.stdout
    assert "DialoGPT's metrics on the test split" in result.stdout and "untrained greedy" in result.stdout
    assert {"trained", "untrained"} <= set(json.loads((out / "evaluation" / "evaluation.json").read_text()))
    trained = yaml.safe_load((out / "train_config.yaml").read_text())
    assert trained["data"]["shards"] == str(out / "shards") and trained["model"]["name"] == "tiny"
    assert (out / "model" / "config.json").exists() and (out / "extract" / "extract_report.html").exists()
    for chatter in ("gcc ", "FutureWarning", "incubator modules", "Setting default log level"):
        assert chatter not in result.stdout + result.stderr
    # A second run: the data stages are complete and skip; training starts over in the pipeline's own
    # folder (the trainer refuses a used folder unless told), and the export replaces its own.
    again = pipeline(f"out={out}", "demo.comments=3000", "demo.megathread_comments=300", "demo.deep_chain_depth=30",
                     "model=tiny", "trainer=ci", "extract.filters.bland_min_count=5", "train.data.seq_len=32")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "nothing to do" in again.stderr and "deleting the earlier run" in again.stdout + again.stderr


@pytest.mark.slow
def test_stop_after_runs_the_data_stages_only(tmp_path):
    out = tmp_path / "data"
    result = pipeline(f"out={out}", "demo.comments=3000", "demo.megathread_comments=300", "demo.deep_chain_depth=30",
                      "extract.filters.bland_min_count=5", "stop_after=tokenize")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Pipeline stopped after tokenize" in result.stdout
    assert (out / "shards" / "manifest.json").exists() and not (out / "train").exists() and not (out / "model").exists()
    bad = pipeline(f"out={tmp_path}/x", "stop_after=shards")
    assert bad.returncode == 2 and "stop_after must be one of ingest, extract, tokenize, train, export, evaluate" in bad.stderr


def test_an_input_that_matches_nothing_is_one_line(tmp_path):
    result = pipeline(f"out={tmp_path}/run", f"input=[{tmp_path}/none/RC_*.zst]")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == f"error: input '{tmp_path}/none/RC_*.zst' matches no file"


def test_the_train_job_and_the_pipeline_train_with_the_same_defaults(capsys):
    """One set of defaults: plain `reddit-pretrain train` and the pipeline's training stage compose the
    same model, optimizer, scheduler, data, DeepSpeed and trainer settings (the folders aside, which
    the pipeline sets from out=); the tokenizer's vocabulary size is one constant too."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from extraction.tokenize.train_tokenizer import DEFAULT_VOCAB_SIZE, main as train_tokenizer_main
    from pretrain.config import GROUPS, TrainConfig
    from reddit_pretrain import CONF_DIR
    from reddit_pretrain.hydra_job import register_schemas
    from reddit_pretrain_app.pipeline import PipelineConfig

    register_schemas("train", TrainConfig, GROUPS)
    register_schemas("pipeline", PipelineConfig)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        alone = OmegaConf.to_container(compose("train"))
        piped = OmegaConf.to_container(compose("pipeline"))
    for cfg in (alone, piped["train"]):
        cfg["data"].pop("shards"), cfg["trainer"].pop("out_dir")
    assert alone == piped["train"]
    assert alone["model"]["name"] == "demo" and alone["optimizer"]["lr"] == 2e-3
    assert piped["tokenizer"]["vocab_size"] == PipelineConfig().tokenizer.vocab_size == DEFAULT_VOCAB_SIZE
    with pytest.raises(SystemExit):
        train_tokenizer_main(["--help"])
    assert f"(default: {DEFAULT_VOCAB_SIZE})" in " ".join(capsys.readouterr().out.split())
