"""Every config group composes with Hydra's compose API; the DeepSpeed dict follows the batch arithmetic."""

import os
import re

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from pretrain.config import BatchSizes, ConfigError, TrainConfig, TrainerConfig, deepspeed_config, register_configs

CONF = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "conf")
GROUPS = {g: sorted(f[:-5] for f in os.listdir(os.path.join(CONF, g)) if f.endswith(".yaml"))
          for g in ("model", "data", "optimizer", "scheduler", "deepspeed", "trainer", "experiment")}


@pytest.fixture(scope="module", autouse=True)
def store():
    register_configs()


@pytest.mark.parametrize("group, option", [(g, o) for g, options in GROUPS.items() for o in options])
def test_every_group_option_composes(group, option):
    with initialize_config_dir(config_dir=CONF, version_base=None):
        cfg = compose(config_name="train", overrides=[f"{group}={option}"])
    config: TrainConfig = OmegaConf.to_object(cfg)
    config.validate()
    ds = deepspeed_config(config, BatchSizes.derive(config.trainer, 4), "fp32")
    assert ds["train_batch_size"] == config.trainer.micro_batch_size_per_gpu * config.trainer.gradient_accumulation_steps * 4
    assert ds["zero_optimization"]["stage"] == config.deepspeed.zero_stage


def test_gpt2_sizes():
    with initialize_config_dir(config_dir=CONF, version_base=None):
        sizes = {o: OmegaConf.to_object(compose(config_name="train", overrides=[f"model={o}"])).model
                 for o in ("gpt2-124m", "gpt2-355m", "gpt2-774m", "gpt2-1.5b")}
    assert [(m.n_layer, m.n_embd) for m in sizes.values()] == [(12, 768), (24, 1024), (36, 1280), (48, 1600)]


def test_unknown_keys_and_bad_values_are_refused():
    with initialize_config_dir(config_dir=CONF, version_base=None):
        with pytest.raises(Exception):
            compose(config_name="train", overrides=["model.n_layers=3"])
        cfg = OmegaConf.to_object(compose(config_name="train", overrides=["deepspeed.offload_params=true"]))
        compiled = OmegaConf.to_object(compose(config_name="train", overrides=["model.compile=true", "deepspeed=zero3"]))
    with pytest.raises(ConfigError, match="zero_stage 3"):
        cfg.validate()
    with pytest.raises(ConfigError, match="compile needs zero_stage 0-2"):
        compiled.validate()


def test_batch_arithmetic_is_checked():
    assert BatchSizes.derive(TrainerConfig(micro_batch_size_per_gpu=4, gradient_accumulation_steps=8, global_batch_size=64), 2).global_batch_size == 64
    with pytest.raises(ConfigError, match="batch arithmetic"):
        BatchSizes.derive(TrainerConfig(micro_batch_size_per_gpu=4, gradient_accumulation_steps=8, global_batch_size=64), 4)


def test_offload_goes_into_the_deepspeed_dict():
    cfg = TrainConfig()
    cfg.deepspeed.zero_stage, cfg.deepspeed.offload_optimizer, cfg.deepspeed.offload_params = 3, True, True
    zero = deepspeed_config(cfg, BatchSizes(2, 1, 1), "bf16")
    assert zero["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert zero["zero_optimization"]["offload_param"]["device"] == "cpu" and zero["bf16"]["enabled"]


@pytest.mark.parametrize("override, message", [
    ("trainer.keep_last=0", "trainer.keep_last must be >= 1, not 0"),
    ("data.seq_len=0", "data.seq_len must be >= 1"),
    ("trainer.checkpoint_interval=0", "trainer.checkpoint_interval must be >= 1"),
    ("trainer.log_interval=0", "trainer.log_interval must be >= 1"),
    ("trainer.eval_interval=0", "trainer.eval_interval must be >= 1"),
    ("trainer.eval_batches=0", "trainer.eval_batches must be >= 1"),
    ("trainer.sample_interval=-1", "trainer.sample_interval must be >= 0"),
    ("trainer.sample_max_new_tokens=0", "trainer.sample_max_new_tokens must be >= 1"),
    ("model.n_head=0", "model.n_head must be >= 1"),
    ("model.n_layer=0", "model.n_layer must be >= 1"),
    ("model.n_positions=0", "must be >= 1"),
    ("scheduler.warmup_steps=-1", "scheduler.warmup_steps must be >= 0"),
    ("trainer.global_batch_size=0", "trainer.global_batch_size must be >= 1"),
    ("model.dropout=1.0", "model.dropout must be in [0, 1)"),
    ("optimizer.lr=0", "optimizer.lr and optimizer.eps must be > 0"),
    ("optimizer.betas=[0.9]", "optimizer.betas must be two numbers"),
    ("scheduler.min_lr_ratio=2", "scheduler.min_lr_ratio must be in [0, 1]"),
    ("deepspeed.gradient_clipping=-1", "deepspeed.gradient_clipping must be >= 0"),
    ("trainer.peak_flops_per_gpu=0", "trainer.peak_flops_per_gpu must be > 0"),
])
def test_settings_that_make_no_sense_are_refused_by_validate(override, message):
    """Zeros that divide something (ZeroDivisionError deep in training), keep_last=0 (which deleted
    every checkpoint, the new one too): one ConfigError each, before anything runs."""
    with initialize_config_dir(config_dir=CONF, version_base=None):
        cfg = OmegaConf.to_object(compose(config_name="train", overrides=[override]))
    with pytest.raises(ConfigError, match=re.escape(message)):
        cfg.validate()
