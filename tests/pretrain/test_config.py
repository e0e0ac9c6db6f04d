"""Every config group composes with Hydra's compose API; the DeepSpeed dict follows the batch arithmetic."""

import os

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
