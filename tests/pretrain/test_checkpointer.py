"""``pretrain.checkpointer.Checkpointer`` round trip: what ``save`` writes, ``start`` and ``load``
bring back (model, optimizer and scheduler states, the data position, this rank's RNG), with a
real DeepSpeed engine on one CPU process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.net import free_port
from tests.pretrain.test_train import REPO, env

SCRIPT = r'''
import json, sys
import torch
from omegaconf import OmegaConf
import deepspeed
from pretrain.checkpointer import Checkpointer
from pretrain.checkpoints import COMPLETE
from pretrain.config import BatchSizes, TrainConfig, deepspeed_config
from pretrain.launch import init_distributed
from pretrain.train import build_model
from reddit_pretrain.shards import ShardSet

shards, out = sys.argv[1], sys.argv[2]

def config(init):
    cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(TrainConfig), {
        "data": {"shards": shards, "seq_len": 32}, "trainer": {"out_dir": out, "micro_batch_size_per_gpu": 2,
        "gradient_accumulation_steps": 1, "max_steps": 10, "checkpoint_interval": 1}, "model": {"init": init,
        "n_layer": 1, "n_head": 2, "n_embd": 32, "n_positions": 32}, "scheduler": {"warmup_steps": 2}}))
    cfg.validate()
    return cfg

def engine_of(cfg, manifest, seed):
    torch.manual_seed(seed)
    model = build_model(cfg, manifest)
    optimizer = cfg.optimizer.build(model, offload=False)
    scheduler = cfg.scheduler.build(optimizer, cfg.trainer.max_steps)
    batch = BatchSizes.derive(cfg.trainer, 1)
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler,
                                           config=deepspeed_config(cfg, batch, "fp32"))
    return engine, scheduler

def snapshot(engine, scheduler):
    params = {n: p.detach().clone() for n, p in engine.module.named_parameters()}
    return params, scheduler.get_last_lr()[0]

init_distributed("gloo")
manifest = ShardSet(shards, "train").manifest
cfg = config("scratch")
saver = Checkpointer(cfg, manifest, 0, 1)
assert saver.start() == {"step": 0, "samples_consumed": 0}
engine, scheduler = engine_of(cfg, manifest, 1)
ids = torch.randint(0, manifest["vocab_size"], (2, 32))
for _ in range(3):
    loss, count = engine(input_ids=ids, targets=ids)
    engine.backward(loss / count)
    engine.step()
folder = saver.save(engine, {"step": 3, "samples_consumed": 6, "metrics": {"loss": 1.5}})
saver.release()  # the first run ends: its hold on the run's folder goes (the trainer lets go in train())
params, lr = snapshot(engine, scheduler)
after = torch.rand(4)  # what this rank's RNG gives next after the save

cfg = config("resume")
loader = Checkpointer(cfg, manifest, 0, 1)
state = loader.start()
fresh, fresh_scheduler = engine_of(cfg, manifest, 2)
assert any(not torch.equal(p, params[n]) for n, p in fresh.module.named_parameters())  # another start
loader.load(fresh)
loaded, loaded_lr = snapshot(fresh, fresh_scheduler)
same_params = all(torch.equal(loaded[n], params[n]) for n in params)
# one more step from both: the optimizer's moments came back too
for e in (engine, fresh):
    loss, count = e(input_ids=ids, targets=ids)
    e.backward(loss / count)
    e.step()
next_same = all(torch.equal(p, dict(fresh.module.named_parameters())[n]) for n, p in engine.module.named_parameters())
print(json.dumps({"folder": folder, "complete": __import__("os").path.exists(folder + "/" + COMPLETE),
                  "resumed_from": loader.folder, "state": state, "same_params": same_params,
                  "same_lr": loaded_lr == lr, "same_rng": torch.equal(torch.rand(4), after), "next_step_same": next_same}))
'''


@pytest.mark.slow
def test_save_then_load_gives_back_the_run(shards_dir, tmp_path):
    out = tmp_path / "run"
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(shards_dir), str(out)], cwd=REPO, capture_output=True,
                            text=True, timeout=600, env={**env(), "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0",
                                                          "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got["complete"] and got["resumed_from"] == got["folder"] == os.path.join(str(out), "checkpoints", "step_0000003")
    assert got["state"]["step"] == 3 and got["state"]["samples_consumed"] == 6 and got["state"]["metrics"] == {"loss": 1.5}
    assert got["same_params"] and got["same_lr"] and got["same_rng"] and got["next_step_same"]
