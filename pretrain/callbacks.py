"""What runs between training steps when it is due: evaluation, sample replies, checkpoints, and
any of a user's.

Each is a ``Callback``: ``build(run)`` makes it from the run (its config, data, tokenizer,
checkpointer), ``due(step, final, stopping)`` says whether it runs after this step (``final``: the
last of ``trainer.max_steps``; ``stopping``: a stop signal ends the run after this step), and
calling it does the work and returns metrics to merge into the step's record (or None). Which run,
and in which order, is ``trainer.callbacks`` (a name -> ``module:Class``, OLMo-core's callback
dict): a callback of one's own is its class and one entry. They run every rank together
(evaluation all-reduces, ZeRO-3 generates on every rank, a checkpoint is written by every rank).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pretrain.checkpointer import Checkpointer
from pretrain.config import ConfigError, TrainConfig
from pretrain.console import say


@dataclass
class StepContext:
    """What a callback may use: the run's engine, data and logger, and where the loop stands."""
    cfg: TrainConfig
    engine: object
    device: object
    rank: int
    world: int
    logger: object
    step: int = 0
    samples_consumed: int = 0
    source_tokens: list[int] | None = None
    """Input tokens (not padding) seen per shard set of a mixture, in ``data.sources`` order; None for one."""

    def say(self, msg: str) -> None:
        say(msg, self.rank)


class Callback:
    interval: int = 0

    @classmethod
    def build(cls, run) -> "Callback":
        """The callback for ``run`` (``pretrain.train.Run``: ``run.ctx.cfg``, ``run.valid_source``,
        ``run.tokenizer``, ``run.checkpointer``, ...)."""
        return cls()

    def due(self, step: int, final: bool, stopping: bool) -> bool:
        return final or (self.interval > 0 and step % self.interval == 0)

    def __call__(self, ctx: StepContext, last: dict) -> dict | None:
        raise NotImplementedError


class Evaluation(Callback):
    """Loss and perplexity on ``trainer.eval_batches`` batches of the valid split, every
    ``trainer.eval_interval`` steps and at the last; merged into the step's record."""

    def __init__(self, source, cfg: TrainConfig):
        self.source, self.interval = source, cfg.trainer.eval_interval
        self.micro, self.batches = cfg.trainer.micro_batch_size_per_gpu, cfg.trainer.eval_batches

    @classmethod
    def build(cls, run) -> "Evaluation":
        return cls(run.valid_source, run.ctx.cfg)

    def __call__(self, ctx: StepContext, last: dict) -> dict:
        metrics = {"kind": "valid", "step": ctx.step, **self.evaluate(ctx)}
        ctx.logger.log(metrics)
        ctx.say(f"step {ctx.step} valid loss {metrics['valid_loss']:.4f} perplexity {metrics['valid_perplexity']:.2f}")
        return metrics

    def evaluate(self, ctx: StepContext) -> dict:
        import torch
        import torch.distributed as dist

        from pretrain.data import eval_batches
        from pretrain.model import batch_loss

        ctx.engine.eval()
        totals = torch.zeros(2, dtype=torch.float64, device=ctx.device)
        with torch.no_grad():
            for batch in eval_batches(self.source, ctx.rank, ctx.world, self.micro, self.batches):
                loss_sum, count = batch_loss(ctx.engine, batch, ctx.device)
                totals += torch.stack([loss_sum.double(), count.double()])
        dist.all_reduce(totals)
        ctx.engine.train()
        loss = (totals[0] / totals[1].clamp(min=1)).item()
        return {"valid_loss": loss, "valid_perplexity": math.exp(min(loss, 50)), "valid_tokens": int(totals[1].item())}


class Samples(Callback):
    """Greedy replies to ``trainer.sample_prompts``, every ``trainer.sample_interval`` steps (0:
    only at the last), with the chat's n-gram rule (``pretrain.chat.DECODING``); logged, not merged."""

    def __init__(self, cfg: TrainConfig, tokenizer, eos_id: int):
        self.cfg, self.tokenizer, self.eos_id, self.interval = cfg, tokenizer, eos_id, cfg.trainer.sample_interval

    @classmethod
    def build(cls, run) -> "Samples":
        return cls(run.ctx.cfg, run.tokenizer, run.manifest["eos_id"])

    def __call__(self, ctx: StepContext, last: dict) -> None:
        samples = self.replies(ctx)
        ctx.logger.log({"kind": "samples", "step": ctx.step, "samples": samples})
        for s in samples:
            ctx.say(f"sample: {s['prompt']!r} -> {s['reply']!r}")

    def replies(self, ctx: StepContext) -> list[dict]:
        import torch

        from pretrain.chat import DECODING

        if self.tokenizer is None:
            return []
        t, out = self.cfg.trainer, []
        ctx.engine.eval()
        for prompt in t.sample_prompts:
            ids = torch.tensor([self.tokenizer.encode(prompt) + [self.eos_id]], device=ctx.device)
            with torch.no_grad():
                generated = ctx.engine.module.generate(
                    ids, attention_mask=torch.ones_like(ids), max_new_tokens=t.sample_max_new_tokens, do_sample=False,
                    no_repeat_ngram_size=DECODING["no_repeat_ngram_size"], eos_token_id=self.eos_id,
                    pad_token_id=self.eos_id, synced_gpus=self.cfg.deepspeed.zero_stage == 3)
            out.append({"prompt": prompt, "reply": self.tokenizer.decode(generated[0, ids.shape[1]:], skip_special_tokens=True)})
        ctx.engine.train()
        return out


class Checkpointing(Callback):
    """A checkpoint every ``trainer.checkpoint_interval`` steps, at the last, and at the step a stop
    signal ends (``Checkpointer.save``): the step, the samples consumed and the step's metrics."""

    def __init__(self, checkpointer: Checkpointer, cfg: TrainConfig):
        self.checkpointer, self.interval = checkpointer, cfg.trainer.checkpoint_interval

    @classmethod
    def build(cls, run) -> "Checkpointing":
        return cls(run.checkpointer, run.ctx.cfg)

    def due(self, step: int, final: bool, stopping: bool) -> bool:
        return stopping or super().due(step, final, stopping)

    def __call__(self, ctx: StepContext, last: dict) -> None:
        why = not_finite(ctx, last)
        if why:  # the last finite checkpoint stays `latest`
            ctx.say(f"no checkpoint of step {ctx.step}: {why}")
            return
        state = {"step": ctx.step, "samples_consumed": ctx.samples_consumed,
                 **({"source_tokens": ctx.source_tokens} if ctx.source_tokens is not None else {}),
                 "metrics": {k: v for k, v in last.items() if k != "kind"}}
        folder = self.checkpointer.save(ctx.engine, state)  # every rank writes its part
        ctx.say(f"checkpoint {folder}")


def build_callbacks(run) -> list[Callback]:
    """``trainer.callbacks`` made for ``run``, in order (a null entry is off); a name that is not a
    Callback class stops the run before its first step, in one line."""
    import importlib

    made = []
    for name, target in run.ctx.cfg.trainer.callbacks.items():
        if target is None:
            continue
        module, _, attribute = target.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError) as err:
            raise ConfigError(f"trainer.callbacks.{name}={target}: {err}") from None
        if not (isinstance(cls, type) and issubclass(cls, Callback)):
            raise ConfigError(f"trainer.callbacks.{name}={target} is not a pretrain.callbacks.Callback")
        made.append(cls.build(run))
    return made


def not_finite(ctx: StepContext, last: dict) -> str | None:
    """Why the step's state must not be saved (its loss, or any rank's share of the weights, is NaN or
    infinite), or None. ZeRO-3 ranks hold their partition in ``ds_tensor``."""
    import torch
    import torch.distributed as dist

    if not math.isfinite(last.get("loss", 0.0)):
        return f"its loss is {last['loss']}"
    finite = torch.tensor(1.0, device=ctx.device)
    for p in ctx.engine.module.parameters():
        if not bool(torch.isfinite(getattr(p, "ds_tensor", p).data).all()):
            finite.zero_()
            break
    dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    return None if finite.item() == 1.0 else "its weights are not all finite"
