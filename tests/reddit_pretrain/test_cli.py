"""Every job's command line: its own --help, and the precedence of an experiment against the groups
a user picks (reddit_pretrain/hydra_job.py)."""

import subprocess
import sys

import pytest

from reddit_pretrain.hydra_job import group_options

REPO = __file__.rsplit("/tests/", 1)[0]


def command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("module, about, groups, absent", [
    ("extraction.ingest.job", "Ingest job: Pushshift RC/RS dumps", [], ["== Groups", "model:", "preset:", "_schema"]),
    ("extraction.sessions.job", "Extract job: ingested comments", ["preset: dialogpt_paper, dialogpt_released, [project]"],
     ["model:", "trainer:", "_schema"]),
    ("extraction.tokenize.job", "Tokenize job: extracted sessions", [], ["== Groups", "model:", "_schema"]),
    ("pretrain.train", "DeepSpeed ZeRO training of GPT-2",
     ["model: [demo], gpt2-1.5b, gpt2-124m, gpt2-355m, gpt2-774m, tiny", "experiment: demo, dialogpt_small   (none picked)",
      "deepspeed: zero0, zero1, [zero2]"], ["preset:", "_schema", "powered by Hydra"]),
    ("reddit_pretrain_app.pipeline", "The whole pipeline in one command",
     ["preset: dialogpt_paper, dialogpt_released, [project]", "model: [demo], gpt2-1.5b", "trainer: ci, default, [demo]"],
     ["_schema", "@train", "experiment: demo, dialogpt_small"]),
])
def test_each_job_has_its_own_help(module, about, groups, absent):
    result = command(module, "--help")
    assert result.returncode == 0, result.stderr[-2000:]
    page = result.stdout
    assert page.startswith(about) and f"usage: python -m {module}" in page and "== Config" in page
    assert all(line in page for line in groups), page[:1500]
    assert not any(text in page for text in absent), page[:1500]


def test_help_shows_the_config_with_the_overrides_given():
    page = command("pretrain.train", "--help", "model=gpt2-124m", "trainer.max_steps=7").stdout
    assert "[gpt2-124m]" in page and "n_layer: 12" in page and "max_steps: 7" in page


def test_group_options_are_the_yaml_files():
    assert group_options("preset") == ["dialogpt_paper", "dialogpt_released", "project"]
    assert "demo" in group_options("model") and group_options("nonexistent") == []


def compose(*overrides):
    from reddit_pretrain.hydra_job import _compose, register_schemas
    from pretrain.config import GROUPS, TrainConfig

    register_schemas("train", TrainConfig, GROUPS)
    return _compose("train", list(overrides))[0]


def test_an_experiment_picks_groups_and_sets_values():
    cfg = compose("experiment=demo")
    assert (cfg.model.name, cfg.model.n_layer, cfg.model.n_embd) == ("demo", 2, 128)
    assert cfg.trainer.max_steps == 1000 and cfg.optimizer.lr == 2e-3 and cfg.data.shards == "out/demo/shards"


def test_a_group_the_user_picks_wins_over_the_experiment():
    cfg = compose("experiment=demo", "model=gpt2-124m")
    assert (cfg.model.name, cfg.model.n_layer, cfg.model.n_embd, cfg.model.dropout) == ("gpt2-124m", 12, 768, 0.1)
    assert cfg.trainer.max_steps == 1000  # the experiment's picks for groups the user did not pick stay
    # A picked group takes none of the experiment's values for it; the user's key=value still applies.
    cfg = compose("experiment=demo", "trainer=ci", "trainer.log_interval=3")
    assert (cfg.trainer.max_steps, cfg.trainer.out_dir, cfg.trainer.log_interval) == (20, "out/train", 3)
    assert cfg.optimizer.lr == 2e-3 and cfg.model.name == "demo"
    # key=value wins over the experiment.
    assert compose("experiment=demo", "trainer.max_steps=9", "model.n_layer=3").trainer.max_steps == 9
    assert compose("experiment=demo", "model.n_layer=3").model.n_layer == 3


def test_a_run_says_which_experiment_values_it_did_not_apply(tmp_path):
    result = command("pretrain.train", "experiment=demo", "data=padded", f"data.shards={tmp_path}/none")
    assert result.returncode == 2 and "no manifest.json" in result.stderr
    assert "note: you picked data=padded, so experiment=demo's data.shards is not applied" in result.stderr


def test_every_experiment_leaves_model_shape_to_the_model_group():
    """An experiment that set model.n_layer would give a model named after one group with the shape of
    another whenever a user picked a model: experiments pick a model option instead."""
    from omegaconf import OmegaConf

    from reddit_pretrain import CONF_DIR

    for name in group_options("experiment"):
        assert "model" not in OmegaConf.load(f"{CONF_DIR}/experiment/{name}.yaml"), name


@pytest.mark.parametrize("args, expected", [
    (["output=/tmp/my", "dumps"], "quote the whole value: 'output=\"/tmp/my dumps\"'"),
    (["output=/tmp/é,x"], "quote a value holding spaces, commas"),
    (["output=/tmp/a(b"], "'output=\"/tmp/a(b\"'"),
])
def test_an_override_hydra_cannot_read_is_one_line_with_the_quoting(args, expected):
    """An unquoted path with a space (split by the shell) or a special character: Hydra's lexer error
    and 'See https://hydra.cc' become one line saying how to quote, exit status 2."""
    result = command("extraction.ingest.job", *args)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: cannot read the override") and expected in result.stderr


def test_flag_values_are_not_read_as_overrides():
    from reddit_pretrain.hydra_job import override_problem

    assert override_problem(["--cfg", "job", "--config-dir", "/x y", "a=1"]) is None
    assert override_problem(["a=1", "b"]) is not None


def test_the_reddit_pretrain_command_runs_every_job():
    """One installed entry point (like huggingface-cli): its command list, each job's help under its
    name, the tools' help with defaults, and a mistyped command with the one meant."""
    import os

    exe = os.path.join(os.path.dirname(sys.executable), "reddit-pretrain")
    run = lambda *args: subprocess.run([exe, *args], capture_output=True, text=True, timeout=300)  # noqa: E731
    listing = run("--help")
    assert listing.returncode == 0 and all(c in listing.stdout for c in ("ingest", "extract", "tokenize", "train", "export",
                                                                        "chat", "inspect", "pipeline", "train-tokenizer"))
    page = run("extract", "--help")
    assert page.returncode == 0 and "usage: reddit-pretrain extract" in page.stdout and "preset:" in page.stdout
    assert "(default: 40)" in " ".join(run("chat", "--help").stdout.split())
    assert "usage: reddit-pretrain inspect" in run("inspect", "--help").stdout
    typo = run("extrct")
    assert typo.returncode == 2 and "did you mean extract or export?" in typo.stderr


@pytest.mark.parametrize("args, expected", [
    (["pretrain.train", "trainer.max_step=20"], "trainer.max_step=20: no such setting; did you mean trainer.max_steps?"),
    (["pretrain.train", "+trainer.max_step=20"], "typed section, so it would be ignored; did you mean trainer.max_steps?"),
    (["reddit_pretrain_app.pipeline", "+trainer.max_steps=5"], "did you mean train.trainer.max_steps?"),
    (["pretrain.train", "model=tny"], "model=tny: conf/model/ has no option 'tny'; did you mean tiny? (options: demo,"),
    (["extraction.sessions.job", "filters.blnd=3"], "did you mean filters.bland?"),
])
def test_a_mistyped_override_is_one_line_with_the_key_meant(args, expected):
    result = command(*args)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert expected in result.stderr and "model_schema" not in result.stderr and "HYDRA_FULL_ERROR" not in result.stderr


def test_one_value_for_a_list_setting_is_a_list_and_free_form_keys_may_be_added(tmp_path):
    from reddit_pretrain.hydra_job import check_overrides, register_schemas
    from extraction.ingest.job import IngestConfig

    register_schemas("ingest", IngestConfig)
    problem, fixed = check_overrides("ingest", ["inputs=a.zst", "+spark.conf.spark.driver.memory=3g", "output=o"])
    assert problem is None and fixed == ["inputs=[a.zst]", "+spark.conf.spark.driver.memory=3g", "output=o"]
    result = command("extraction.ingest.job", f"inputs={tmp_path}/none.zst", f"output={tmp_path}/o")
    assert result.returncode == 2 and result.stderr.strip() == f"error: input '{tmp_path}/none.zst' matches no file"


def test_a_missing_extra_says_which_interpreter_and_how(monkeypatch, capsys):
    from reddit_pretrain import require

    with pytest.raises(ImportError, match=rf"missing from this Python \({sys.executable}\): no_such_module_x"):
        require("extraction", "data", ("no_such_module_x",))
    monkeypatch.setattr(sys, "argv", ["-m"])  # python -m extraction.<job>: one line, not a traceback
    with pytest.raises(SystemExit) as exit_:
        require("extraction", "data", ("no_such_module_x",))
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("error: extraction needs the 'data' dependencies") and err.count("\n") == 1
