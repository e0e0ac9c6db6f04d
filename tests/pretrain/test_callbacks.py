"""Callbacks by configuration (``trainer.callbacks``): one of one's own is its class and one entry,
the trainer's own can be switched off, and a name that is no callback stops the run before a step."""

from __future__ import annotations

import json
import sys

import pytest

from tests.pretrain.test_train import base, check, run


SHORT = ["trainer.max_steps=2", "trainer.eval_interval=2", "trainer.checkpoint_interval=2", "trainer.tensorboard=false",
         "trainer.sample_max_new_tokens=2"]


def records(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_a_callback_of_ones_own_is_one_entry_and_the_trainers_own_can_be_switched_off(shards_dir, tmp_path):
    out = tmp_path / "run"
    check(run([sys.executable, "-m", "pretrain.train", *base(shards_dir, out, *SHORT),
               "+trainer.callbacks.steps=tests.pretrain.toy_callback:StepCounter", "trainer.callbacks.samples=null"]))
    kinds = [(r["kind"], r["step"]) for r in records(out)]
    assert [k for k in kinds if k[0] == "steps"] == [("steps", 1), ("steps", 2)]
    assert ("valid", 2) in kinds and not any(k == "samples" for k, _ in kinds)  # evaluation ran, the samples did not
    assert (out / "checkpoints" / "step_0000002" / "COMPLETE.json").exists()
    assert [r["samples_consumed"] for r in records(out) if r["kind"] == "steps"] == [8, 16]


@pytest.mark.parametrize("target, message", [("json:JSONDecoder", "trainer.callbacks.bad=json:JSONDecoder is not a "
                                                                   "pretrain.callbacks.Callback"),
                                             ("tests.pretrain.toy_callback:Nothing", "has no attribute 'Nothing'")])
def test_a_callback_that_is_not_one_is_refused_when_the_run_makes_them(target, message):
    """(``build_callbacks`` runs in ``train`` before the first step; its ConfigError is one line, exit 2)"""
    from types import SimpleNamespace

    from pretrain.callbacks import build_callbacks
    from pretrain.config import ConfigError, TrainConfig

    cfg = TrainConfig()
    cfg.trainer.callbacks = {"steps": "tests.pretrain.toy_callback:StepCounter", "bad": target}
    with pytest.raises(ConfigError, match=message):
        build_callbacks(SimpleNamespace(ctx=SimpleNamespace(cfg=cfg)))
    cfg.trainer.callbacks = {"steps": "tests.pretrain.toy_callback:StepCounter", "evaluation": None}
    assert [type(c).__name__ for c in build_callbacks(SimpleNamespace(ctx=SimpleNamespace(cfg=cfg)))] == ["StepCounter"]


@pytest.mark.parametrize("target, message", [("no module", "must name a class as module:Class"),
                                             ("pretrain.callbacks", "must name a class as module:Class")])
def test_a_callback_entry_is_checked_with_the_config(target, message):
    from pretrain.config import ConfigError, TrainConfig

    cfg = TrainConfig()
    cfg.trainer.callbacks = {**cfg.trainer.callbacks, "bad": target}
    with pytest.raises(ConfigError, match=message):
        cfg.validate()
