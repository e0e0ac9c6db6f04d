"""A rule is one declaration: a toy rule (``toy_rule.py``), added in that one place and loaded through
``REDDIT_PRETRAIN_RULES``, is seen everywhere: in the settings, the presets (off in those that list
their rules), both forms of the rules with their parity, the chain of reasons, the report, the
configuration reference and, on Spark, the rejects."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PRESETS = ("project", "dialogpt_paper", "dialogpt_released")

OBSERVE = r'''
import dataclasses, json, sys
from omegaconf import OmegaConf
from reddit_pretrain import CONF_DIR
from extraction.sessions.filters import RULES, SESSION_RULES, FiltersConfig, LoadedRules
from extraction.sessions.reddit_threads import REASONS

def preset(name):
    values = OmegaConf.load(f"{CONF_DIR}/preset/{name}.yaml").get("filters", {})
    return dataclasses.asdict(OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(FiltersConfig), values)))

out = {"order": [r.name for r in RULES], "presets": {n: preset(n) for n in sys.argv[1].split(",")},
       "reasons": [r for r in REASONS if r], "features": [f.name for f in LoadedRules.load(FiltersConfig()).features()]}
if len(sys.argv) > 2:  # the rule at work: both forms on a generated month, and the report
    import pyarrow as pa, zstandard
    from extraction.sessions.chains import ChainsConfig, SplitConfig
    from extraction.sessions.job import ExtractConfig
    from extraction.ingest.columns import parse_block
    from tests.kit.reference import reference_extract
    from extraction.sessions.report import format_report, merge_reports
    from reddit_pretrain_app.synth import SynthConfig, write_month
    from tests.kit.local import run_local
    sys.path.insert(0, "jobs")
    from config_reference import reference

    write_month(sys.argv[2], SynthConfig(comments=3000, seed=5))
    with open(f"{sys.argv[2]}/RC_2015-01.zst", "rb") as f:
        lines = zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(f).read().splitlines()
    comments = pa.Table.from_batches([parse_block("RC", "RC_2015-01.zst", 1, lines).rows]).drop_columns(["month"])
    chains, filters, split = ChainsConfig(), FiltersConfig(bland=False), SplitConfig()
    sessions, built, finished = run_local(comments, None, chains, filters, split, 3)
    ref, _ = reference_extract(comments.to_pylist(), None, chains, filters, split)
    got = {r["session_id"]: r["drop_reason"] for r in sessions.to_pylist()}
    report = merge_reports(ExtractConfig(chains=chains, filters=filters, split=split), built, finished)
    out.update(vectorised=got, reference={k: v["drop_reason"] for k, v in ref.items()},
               report_rules={r["rule"]: r["out"] for r in report["rules"]}, report_text=format_report({**report, "seconds": 0.0}, "out"),
               docs=reference())
print(json.dumps(out))
'''


def observe(*args: str, toy: bool) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.pop("REDDIT_PRETRAIN_RULES", None)
    if toy:
        env["REDDIT_PRETRAIN_RULES"] = "tests.extraction.toy_rule"
    done = subprocess.run([sys.executable, "-c", OBSERVE, ",".join(PRESETS), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_a_toy_rule_declared_once_is_seen_everywhere(tmp_path):
    before = observe(toy=False)
    after = observe(str(tmp_path), toy=True)
    # the order: where its declaration put it, every other rule where it was
    assert after["order"] == before["order"][:before["order"].index("offensive")] + ["digits"] + \
        before["order"][before["order"].index("offensive"):]
    assert "digits" in after["reasons"] and "digits" not in before["reasons"] and "digits" in after["features"]
    # the presets that list their rules are unchanged (the new rule is off there); the project's set has it on
    for name in PRESETS:
        new = dict(after["presets"][name])
        assert new.pop("max_digits") == 1
        assert new.pop("digits") is (name == "project")
        assert new == before["presets"][name], name
    # both forms drop the same sessions for it, and the report counts them
    assert after["vectorised"] == after["reference"]
    dropped = sum(r == "digits" for r in after["vectorised"].values())
    assert dropped > 20
    assert after["report_rules"]["digits"] == dropped
    assert "digits" in after["report_text"]
    # the configuration reference: its settings and its row in the rules table
    assert "| `filters.digits` | bool or unset |" in after["docs"] and "| `filters.max_digits` | int | `1` |" in after["docs"]
    assert "| `digits` | session | `filters.max_digits` | response | off | off |" in after["docs"]


def test_a_rule_of_ones_own_is_refused_clearly():
    from extraction.sessions.filters import add_rule
    from extraction.sessions.rules import Rule

    with pytest.raises(RuntimeError, match="REDDIT_PRETRAIN_RULES"):
        add_rule(Rule("late", "session", "response", "too late", check=lambda r, s: False, fails=lambda v: v.none()))


def test_filters_rules_switches_rules_and_names_typos():
    from extraction.sessions.filters import FiltersConfig, LoadedRules

    cfg = FiltersConfig(rules=["url", "markup"], markup=False, bots=True)
    assert cfg.url and not cfg.markup and cfg.bots and not cfg.deleted and not cfg.language
    assert [r.name for r in LoadedRules.load(cfg).on("session")] == ["url"]
    with pytest.raises(ValueError, match=r"'urll' \(did you mean 'url'\?\)"):
        FiltersConfig(rules=["urll"]).validate()
    assert dataclasses.replace(FiltersConfig(), url=False).url is False


@pytest.mark.slow
def test_a_toy_rule_reaches_the_spark_extract_and_its_rejects(tmp_path):
    """The same toy rule through a real extract on Spark (python workers import it from the variable)."""
    script = r'''
import json, sys
from extraction.sessions.job import ExtractConfig, run_extract
from extraction.sessions.filters import FiltersConfig
from extraction.ingest.job import IngestConfig, run_ingest
from extraction.spark import SparkConfig, build_spark
from reddit_pretrain_app.synth import SynthConfig, write_month
root = sys.argv[1]
write_month(root + "/dumps", SynthConfig(comments=3000, seed=5))
spark = build_spark(SparkConfig(master="local[2]"))
run_ingest(IngestConfig(inputs=[root + "/dumps/*.zst"], output=root + "/ingest"), spark)
report = run_extract(ExtractConfig(input=root + "/ingest", output=root + "/out", filters=FiltersConfig(bland=False)), spark)
rejects = spark.read.parquet(root + "/out/rejects").where("drop_reason = 'digits'").count()
print(json.dumps({"rules": {r["rule"]: r["out"] for r in report["rules"]}, "rejects": rejects}))
'''
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "REDDIT_PRETRAIN_RULES": "tests.extraction.toy_rule"}
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["rules"]["digits"] == seen["rejects"] > 20
    assert "digits" in (tmp_path / "out" / "extract_report.html").read_text()


def test_the_guides_own_rule_example_works(tmp_path):
    """docs/guide.md's example module, as written there, declares a working rule."""
    guide = (REPO / "docs" / "guide.md").read_text()
    section = guide[guide.index("### Your own rules"):]
    code = section[section.index("```python") + len("```python"):]
    (tmp_path / "myrules.py").write_text(code[:code.index("```")])
    check = r'''
import pyarrow as pa
from extraction.sessions.features import Texts, text_features
from extraction.sessions.filters import FiltersConfig, LoadedRules, RULES
names = [r.name for r in RULES]
assert names.index("digits") == names.index("offensive") - 1
rules = LoadedRules.load(FiltersConfig(max_digits=3))
texts = ["it was 200 bucks", "call 5551234 now", "", None]
assert text_features(Texts(pa.array(texts, pa.string())), rules)["digits"].tolist() == [3, 7, 0, 0]
assert rules.session_reason(["what did it cost", "it cost me 1234 dollars at the shop"], "x", False, 5) == "digits"
assert rules.session_reason(["what did it cost", "it cost me 123 dollars at the shop"], "x", False, 5) is None
print("ok")
'''
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}", "REDDIT_PRETRAIN_RULES": "myrules"}
    done = subprocess.run([sys.executable, "-c", check], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


@pytest.mark.parametrize("config_name", ["extract", "pipeline"])
def test_the_command_line_resolves_the_presets_rule_lists(config_name):
    """Through Hydra, as the commands compose: a preset's list decides the switches it leaves unset,
    a switch on the command line wins, and no preset changes when a rule is added."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from extraction.sessions.job import ExtractConfig
    from extraction.sessions.filters import RULES
    from reddit_pretrain import CONF_DIR
    from reddit_pretrain.hydra_job import register_schemas
    from reddit_pretrain_app.pipeline import PipelineConfig

    from pretrain.config import GROUPS, TrainConfig

    register_schemas("train", TrainConfig, GROUPS)
    register_schemas(config_name, ExtractConfig if config_name == "extract" else PipelineConfig)
    group = "preset" if config_name == "extract" else "preset@extract"  # (the pipeline's command line says preset=)
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        def filters(*overrides):
            overrides = [o.replace("preset=", f"{group}=") for o in overrides]
            cfg = OmegaConf.to_object(compose(config_name, overrides=list(overrides)))
            return cfg.filters if config_name == "extract" else cfg.extract.filters

        project = filters()
        assert [r.name for r in RULES if r.is_on(project)] == [r.name for r in RULES if r.on]
        released = filters("preset=dialogpt_released")
        listed = OmegaConf.load(f"{CONF_DIR}/preset/dialogpt_released.yaml").filters.rules
        assert [r.name for r in RULES if r.is_on(released)] == list(listed)
        assert filters("preset=dialogpt_paper", "filters.bots=true" if config_name == "extract" else "extract.filters.bots=true").bots
