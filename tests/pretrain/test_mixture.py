"""Training on a mixture of shard sets with weights (``data.sources``): real DeepSpeed on CPU, two
processes; the shard sets are made by the tokenize job from one extract and one tokenizer."""

from __future__ import annotations

import json
import sys

import pytest

from tests.pretrain.test_train import base, check, losses, run, torchrun

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def short_shards(extracted, tokenizer_dir, tmp_path_factory):
    """A second shard set of the same tokenizer: the sessions cut to their last 48 tokens."""
    from extraction.tokenize.job import TokenizeConfig, run_tokenize

    out = tmp_path_factory.mktemp("mixture") / "short"
    run_tokenize(TokenizeConfig(input=str(extracted / "extract"), output=str(out), tokenizer=tokenizer_dir,
                                max_session_tokens=48, tokens_per_shard=100_000))
    return out


def sources(a, b, wa=0.7, wb=0.3) -> str:
    return f"data.sources=[{{path:{a},weight:{wa}}},{{path:{b},weight:{wb}}}]"


def test_a_mixture_trains_logs_tokens_per_source_and_resumes_exactly(shards_dir, short_shards, tmp_path):
    common = [sources(shards_dir, short_shards), "deepspeed=zero2", "model.dropout=0.1", "trainer.checkpoint_interval=3",
              "trainer.eval_interval=6", "trainer.log_interval=3", "trainer.sample_max_new_tokens=2", "trainer.tensorboard=false"]
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    result = torchrun(base(shards_dir, straight, *common, "trainer.max_steps=6"))
    check(result)
    check(torchrun(base(shards_dir, stopped, *common, "trainer.max_steps=3")))
    check(torchrun(base(shards_dir, stopped, *common, "trainer.max_steps=6", "model.init=resume")))
    a, b = losses(straight), losses(stopped)
    assert [a[s] for s in range(4, 7)] == [b[s] for s in range(4, 7)]  # exact equality, every source where it was
    records = {r["step"]: r for r in map(json.loads, open(straight / "metrics.jsonl")) if r["kind"] == "train"}
    resumed = {r["step"]: r for r in map(json.loads, open(stopped / "metrics.jsonl")) if r["kind"] == "train"}
    assert records[6]["source_tokens"] == resumed[6]["source_tokens"]
    assert set(records[6]["source_tokens"]) == {"shards", "short"} and all(v > 0 for v in records[6]["source_tokens"].values())
    assert "tokens by source: shards " in result.stdout and "shard sets read: shards " in result.stdout
    assert "epochs" in result.stdout.split("shard sets read:", 1)[1]
    # other weights are other data: a resume on them is refused like one on other shards
    refused = torchrun(base(shards_dir, stopped, *common, sources(shards_dir, short_shards, 0.5, 0.5),
                            "trainer.max_steps=9", "model.init=resume"))
    assert refused.returncode != 0 and "trained on other shards" in refused.stderr, refused.stderr[-2000:]


def test_inspect_prints_a_mixtures_plan(shards_dir, short_shards):
    result = run([sys.executable, "-m", "pretrain.shard_tools", "inspect", "--sources",
                  f"[{{path:{shards_dir},weight:0.7}},{{path:{short_shards},weight:0.3}}]", "--steps", "1000",
                  "--global-batch", "16", "--seq-len", "64"])
    check(result)
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[2:]}
    assert set(rows) == {"shards", "short"}
    assert abs(float(rows["shards"][3].rstrip("%")) - 70) < 1 and abs(float(rows["short"][3].rstrip("%")) - 30) < 1
    assert int(rows["shards"][2].replace(",", "")) + int(rows["short"][2].replace(",", "")) == 16_000
    bad = run([sys.executable, "-m", "pretrain.shard_tools", "inspect", "--sources", "[{path:a,weight:-1}]"])
    assert bad.returncode == 2 and "weight > 0" in bad.stderr and "Traceback" not in bad.stderr


def test_a_mixture_of_two_tokenizers_is_refused_before_training(extracted, shards_dir, tmp_path):
    from extraction.tokenize.job import TokenizeConfig, run_tokenize
    from extraction.tokenize.train_tokenizer import train_tokenizer

    other = train_tokenizer(str(extracted / "extract" / "sessions"), str(tmp_path / "tok"), vocab_size=500)
    run_tokenize(TokenizeConfig(input=str(extracted / "extract"), output=str(tmp_path / "other"), tokenizer=other))
    result = run([sys.executable, "-m", "pretrain.train", *base(shards_dir, tmp_path / "run", sources(shards_dir, tmp_path / "other"))])
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    line = result.stderr.strip().splitlines()[-1]
    assert f"{shards_dir} was made with the tokenizer" in line and f"and {tmp_path / 'other'} with {other}" in line
    assert not (tmp_path / "run").exists()
