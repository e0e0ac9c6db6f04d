"""DeepSpeed ZeRO training of GPT-2 on token shards. ``train(cfg)`` is the importable entry point.

    python -m pretrain.train data.shards=out/shards model=tiny deepspeed=zero2         # one process
    torchrun --nproc_per_node 8 -m pretrain.train model=gpt2-124m deepspeed=zero2      # one node
    deepspeed --hostfile hosts -m pretrain.train ...  |  jobs/train_slurm.sbatch       # many nodes

Hydra overrides work under every launcher: the DeepSpeed launcher's ``--local_rank`` argument is
taken off the command line (into LOCAL_RANK) before Hydra reads it (``pretrain.launch``).
This file is the loop (``train``: ``setup``, then ``train_step`` and the callbacks due after it,
then ``finish``); what it calls lives beside it: samples (``pretrain.data``), the model and its
masked head (``pretrain.model``), the optimizer and scheduler (``OptimizerConfig.build``,
``SchedulerConfig.build`` in ``pretrain.config``), evaluation, sample replies and checkpoint saving
between steps (``pretrain.callbacks``), save and load of checkpoints (``Checkpointer`` in
``pretrain.checkpointer``), throughput and MFU (``pretrain.metrics``), the process group (``pretrain.launch``).

Each step: ``gradient_accumulation_steps`` micro batches per rank (pretrain.data), loss is the
mean token cross-entropy over targets (the first turn masked out, as in DialoGPT), DeepSpeed does
the ZeRO partitioning, clipping, optimizer and scheduler step. Logged: loss, learning rate,
gradient norm, tokens/s and, on GPUs, the model FLOPs utilisation: the PaLM appendix B formula
as nanoGPT uses it, 6 N + 12 L H Q T FLOPs per token (N all parameters, L layers, H heads, Q head
size, T sequence length), except that the language-model head's share, 6 x n_embd x vocab, is
counted only for tokens that have a target, since only those get logits (pretrain.model;
the arithmetic is in pretrain.metrics).
MFU = those FLOPs per second / (world size x ``trainer.peak_flops_per_gpu``: 989 TFLOP/s, H100
SXM dense bf16, by default).

Checkpoints (``<out_dir>/checkpoints/step_XXXXXXX``) hold DeepSpeed's model and optimizer states
plus ``trainer_state.json`` (step, samples consumed, metrics), the resolved config, the shard
manifest, and every rank's RNG state; ``COMPLETE.json`` is written last (``pretrain.checkpoints``),
so a checkpoint counts only once complete. Resuming gives the same losses as not stopping (bitwise
on CPU in fp32).

A stop signal (``trainer.stop_signals``, SIGUSR1 by default: Slurm's ``--signal=USR1@300``) makes
every rank finish its step, write a checkpoint of it and exit with status 3
(``pretrain.launch.STOPPED_EXIT``); ``jobs/train_slurm.sbatch`` then requeues its job, which resumes.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shlex
import sys
import time
from dataclasses import dataclass

from pretrain.callbacks import StepContext, build_callbacks
from pretrain.checkpointer import Checkpointer
from pretrain.checkpoints import checkpoint_root, latest_checkpoint
from pretrain.config import BatchSizes, ConfigError, TrainConfig, deepspeed_config, resolve_precision
from pretrain.launch import (STOPPED_EXIT, StopSignals, from_every_rank, init_distributed, set_cpu_threads,
                             strip_launcher_args)
from pretrain.metrics import MetricsLogger, Throughput, num_parameters
from reddit_pretrain.errors import UserError


# ---------------------------------------------------------------------------------------------
# Checks and the model


def _verify_shards(cfg: TrainConfig, manifests: list[dict], rank: int) -> None:
    """sha256 of every shard file the run reads (every shard set of a mixture), once per node: the
    node's processes take every n-th file each and hash in threads; any mismatch stops every process
    with the files named."""
    from reddit_pretrain.shards import ShardError, shard_files, verify_files

    local_rank, local_world = int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    files = [f for (path, _), manifest in zip(cfg.data.mixture(), manifests)
             for f in shard_files(path, manifest, [cfg.data.train_split, cfg.data.valid_split])]
    mine = files[local_rank::local_world]
    started = time.time()
    bad = verify_files(mine, threads=max(1, (os.cpu_count() or 1) // local_world))
    bad = sorted({path for paths in from_every_rank(bad) for path in paths})
    if bad:
        raise ShardError(f"{len(bad)} shard file(s) do not match their sha256 in the manifest (corrupted?): "
                         f"{', '.join(bad[:5])}; make the shards again, or data.verify_checksums=false to train anyway")
    if rank == 0:
        size = sum(os.path.getsize(path) for path, _ in files)
        print(f"[train] shards verified: {len(files)} files, {size / 2**30:.2f} GiB, sha256 in {time.time() - started:.1f} s",
              flush=True)


def _check_tokenizer_matches(manifest: dict, model_name: str, shards: str) -> None:
    """The pretrained model's tokenizer must be the shards' one, token for token (the vocabulary
    and its ids compared whole: two tokenizers can share a size and an EOS id and still differ)."""
    from transformers import AutoTokenizer

    from pretrain.model import load_tokenizer

    shards_name = manifest["tokenizer"].get("name")
    try:
        model_tok = AutoTokenizer.from_pretrained(model_name)
    except (OSError, ValueError) as err:
        raise ConfigError(f"model.pretrained={model_name} has no tokenizer to compare with the shards' ({shards_name}): "
                          f"save the tokenizer it was trained with beside it (tokenizer.save_pretrained) "
                          f"[{type(err).__name__}]") from None
    shards_tok = load_tokenizer(manifest, shards)
    if shards_tok is None:
        try:
            shards_tok = AutoTokenizer.from_pretrained(shards_name)
        except (OSError, ValueError):
            raise ConfigError(f"the shards' tokenizer ({shards_name}) is not on this machine, so it cannot be compared with "
                              f"model.pretrained={model_name}'s: put it beside the shards ({shards}/tokenizer)") from None
    mine, theirs = model_tok.get_vocab(), shards_tok.get_vocab()
    if mine != theirs:
        differ = sum(1 for k, v in theirs.items() if mine.get(k) != v) + sum(1 for k in mine if k not in theirs)
        raise ConfigError(f"the tokenizer of model.pretrained={model_name} (vocab {len(mine)}) is not the one the shards "
                          f"were made with ({shards_name}, vocab {len(theirs)}): {differ:,} tokens differ; tokenize "
                          f"with {model_name}'s tokenizer (tokenize tokenizer={model_name})")


def build_model(cfg: TrainConfig, manifest: dict):
    """A GPT2LMHeadModel (pretrain.model.GPT2ForDialogue): new from the config, or loaded
    (pretrained), checked against the shards."""
    from pretrain.model import GPT2ForDialogue, gpt2_config

    m = cfg.model
    if m.init == "pretrained":
        model = GPT2ForDialogue.from_pretrained(m.pretrained)
        _check_tokenizer_matches(manifest, m.pretrained, cfg.data.shards)
    else:
        model = GPT2ForDialogue(gpt2_config(m, manifest))
    if model.config.vocab_size < manifest["vocab_size"]:
        raise ConfigError(f"model vocab {model.config.vocab_size} is smaller than the shards' {manifest['vocab_size']}")
    if model.config.eos_token_id not in (None, manifest["eos_id"]):
        raise ConfigError(f"model eos_token_id {model.config.eos_token_id} is not the shards' EOS {manifest['eos_id']}")
    if cfg.data.seq_len > model.config.n_positions:
        raise ConfigError(f"data.seq_len {cfg.data.seq_len} exceeds the model's n_positions {model.config.n_positions}")
    if m.activation_checkpointing:
        model.gradient_checkpointing_enable()
    if m.compile:
        for block in model.transformer.h:
            block.compile()  # in place: parameter names, checkpoints and the export are unchanged
    return model


# ---------------------------------------------------------------------------------------------
# The loop


class TrainingFailed(UserError, RuntimeError):
    """Training that cannot go on (a loss that stays non-finite, a batch that cannot be allocated):
    one line saying what to try, exit status 2."""


def train(cfg: TrainConfig) -> dict:
    """Trains; returns the final metrics. Every check that can fail runs before the first step."""
    run = setup(cfg)  # holds trainer.out_dir's lock from here
    try:
        return _loop(run, run.ctx.cfg)  # the config the run has (a resume on another world size changes the accumulation)
    finally:
        run.checkpointer.release()


def _loop(run: Run, cfg: TrainConfig) -> dict:
    ctx, t = run.ctx, cfg.trainer
    callbacks = build_callbacks(run)  # trainer.callbacks, in order after a step, when due
    stop = StopSignals(t.stop_signals)
    last, stopping, nonfinite = {}, False, 0
    ctx.engine.train()
    while ctx.step < t.max_steps and not stopping:
        loss, targets, tokens, stopping = _allocated(run, lambda: train_step(run, stop))
        nonfinite = 0 if math.isfinite(loss) else nonfinite + 1
        if ctx.source_tokens is not None:  # tokens seen per shard set of a mixture
            seen = run.train_source.tokens_by_source(ctx.samples_consumed, run.batch.global_batch_size)
            ctx.source_tokens = [int(a + b) for a, b in zip(ctx.source_tokens, seen)]
        ctx.samples_consumed += run.batch.global_batch_size
        ctx.step += 1
        run.throughput.add(tokens, targets)  # tokens that are not padding, in every data mode
        last = {"kind": "train", "step": ctx.step, "loss": loss, "lr": run.scheduler.get_last_lr()[0],
                "grad_norm": float(ctx.engine.get_global_grad_norm() or 0.0)}
        if ctx.source_tokens is not None:
            last["source_tokens"] = dict(zip(run.train_source.names, ctx.source_tokens))
        if ctx.step % t.log_interval == 0 or ctx.step == t.max_steps:
            last.update(run.throughput.read())
            ctx.say(f"step {ctx.step}/{t.max_steps} loss {last['loss']:.4f} lr {last['lr']:.2e} grad norm "
                    f"{last['grad_norm']:.3f} {last['tokens_per_s']:,.0f} tokens/s"
                    + (f", MFU {last['mfu']:.1%}" if "mfu" in last else "")
                    + (", tokens by source: " + ", ".join(f"{name} {n:,}" for name, n in last["source_tokens"].items())
                       if "source_tokens" in last else ""))
        ctx.logger.log(last)
        if nonfinite and (nonfinite >= t.max_nonfinite_steps or ctx.step == t.max_steps):
            stop.restore()
            ctx.logger.close()
            raise TrainingFailed(diverged(cfg, ctx.step, loss, nonfinite, latest_checkpoint(checkpoint_root(cfg))))
        for callback in callbacks:
            if callback.due(ctx.step, ctx.step == t.max_steps, stopping):
                last.update(callback(ctx, last) or {})
    stop.restore()
    return finish(run, last, stop if stopping else None)


def diverged(cfg: TrainConfig, step: int, loss: float, steps: int, kept: str | None) -> str:
    """The line that ends a run whose loss is no longer finite: where, what was kept, what to try."""
    o, s, ds = cfg.optimizer, cfg.scheduler, cfg.deepspeed
    return (f"step {step}: loss {loss} ({steps} step{'s' if steps != 1 else ''} in a row not finite, "
            f"trainer.max_nonfinite_steps={cfg.trainer.max_nonfinite_steps}): training stopped. "
            + (f"The last checkpoint with finite weights, {kept}, is kept as latest. " if kept else
               "No checkpoint with finite weights was written. ")
            + f"Try a lower optimizer.lr (now {o.lr:g}), a longer scheduler.warmup_steps (now {s.warmup_steps}), "
            f"deepspeed.gradient_clipping (now {ds.gradient_clipping:g}), or bf16/fp32 instead of fp16")


def _allocated(run: Run, step):
    """``step()``, with a batch that cannot be allocated said in one line instead of a stack."""
    try:
        return step()
    except (MemoryError, RuntimeError) as err:
        text = str(err)
        if not (isinstance(err, MemoryError) or "out of memory" in text.lower() or "can't allocate memory" in text
                or "not enough memory" in text.lower()):
            raise
        b, cfg = run.batch, run.ctx.cfg
        said = text.strip().splitlines()[0][:160] if text.strip() else type(err).__name__
        raise TrainingFailed(f"step {run.ctx.step + 1}: a micro batch of {b.micro_batch_size_per_gpu} x "
                             f"{cfg.data.seq_len} tokens could not be allocated ({said}): "
                             "lower trainer.micro_batch_size_per_gpu and raise trainer.gradient_accumulation_steps to keep "
                             "the global batch, or set model.activation_checkpointing=true") from None


@dataclass
class Run:
    """Everything ``train`` steps with, built and checked by ``setup`` before the first step."""
    ctx: StepContext
    batch: BatchSizes
    manifest: dict
    train_source: object
    """A ``pretrain.data.Mixture`` (of one shard set, or of ``data.sources``)."""
    valid_source: object
    scheduler: object
    checkpointer: Checkpointer
    throughput: Throughput
    tokenizer: object


def setup(cfg: TrainConfig) -> Run:
    """The shards opened and verified (their tokenizer too), the process group, the run's folder
    locked, a new run's folder checked or a resume's checkpoint found and checked, the model,
    optimizer, scheduler and DeepSpeed engine, the checkpoint loaded; one line saying what will run."""
    import torch
    import torch.distributed as dist

    from pretrain.console import quiet_libraries
    from pretrain.data import open_mixture
    from pretrain.model import load_tokenizer

    quiet_libraries()
    cfg.validate()
    train_source, manifests = open_mixture(cfg.data, cfg.data.train_split, cfg.trainer.seed)
    valid_source, _ = open_mixture(cfg.data, cfg.data.valid_split, cfg.trainer.seed)
    manifest = mixture_manifest(cfg, manifests)
    _check_micro_batch(cfg, train_source.num_samples)
    tokenizer = load_tokenizer(manifest, cfg.data.mixture()[0][0])  # its files checked against the manifest's digests
    on_gpu = init_distributed(cfg.deepspeed.dist_backend)
    threads = None if on_gpu else set_cpu_threads()
    rank, world = dist.get_rank(), dist.get_world_size()
    if cfg.data.verify_checksums:
        _verify_shards(cfg, manifests, rank)
    resuming = cfg.model.init == "resume"  # a resume on another world size checks trainer.global_batch_size below
    BatchSizes.derive(dataclasses.replace(cfg.trainer, global_batch_size=None) if resuming else cfg.trainer,
                      world)  # the batch arithmetic, checked before a new run's folder is touched
    precision = resolve_precision(cfg.deepspeed, on_gpu, on_gpu and torch.cuda.is_bf16_supported())
    checkpointer = Checkpointer(cfg, manifest, rank, world)
    state = checkpointer.start()  # takes trainer.out_dir's lock, let go of on any error below
    try:
        if state.get("resize"):  # another world size: the accumulation that keeps the global batch
            cfg = checkpointer.cfg = dataclasses.replace(cfg, trainer=dataclasses.replace(
                cfg.trainer, gradient_accumulation_steps=state["resize"]["gradient_accumulation_steps"]))
        batch = BatchSizes.derive(cfg.trainer, world)
        engine, scheduler = _engine(cfg, manifest, batch, precision, rank, universal=checkpointer.universal is not None)
        checkpointer.load(engine)
        logger = MetricsLogger(cfg, rank)
    except BaseException:
        checkpointer.release()
        raise
    seen = None  # tokens per shard set of a mixture, carried over a resume
    if len(train_source) > 1:
        saved = state.get("source_tokens")
        seen = list(saved) if saved and len(saved) == len(train_source) else [0] * len(train_source)
    ctx = StepContext(cfg, engine, engine.device, rank, world, logger, state["step"], state["samples_consumed"], seen)
    ctx.say(f"world {world}, {precision}, ZeRO {cfg.deepspeed.zero_stage}, global batch {batch.global_batch_size} "
            f"({batch.micro_batch_size_per_gpu} x {batch.gradient_accumulation_steps} x {world}), "
            f"{num_parameters(engine.module):,} parameters, {train_source.num_samples:,} train samples, from step {ctx.step}"
            + (f", {threads} CPU thread{'s' if threads != 1 else ''} per process" if threads else ""))
    if len(train_source) > 1:
        planned = cfg.trainer.max_steps * batch.global_batch_size
        ctx.say(f"mixture of {len(train_source)} shard sets over {cfg.trainer.max_steps:,} steps: " + "; ".join(
            f"{p['source']} weight {p['weight']:.2f}, {p['samples']:,} samples, {p['epochs']:.2f} epochs"
            for p in train_source.plan(planned)))
    return Run(ctx, batch, manifest, train_source, valid_source, scheduler, checkpointer,
               Throughput(engine.module, cfg.data.seq_len, world, cfg.trainer.peak_flops_per_gpu, on_gpu),
               tokenizer)  # every rank generates the samples (ZeRO-3)


def _engine(cfg: TrainConfig, manifest: dict, batch: BatchSizes, precision: str, rank: int, universal: bool = False):
    """(DeepSpeed engine, scheduler): the model seeded per rank, its optimizer and schedule
    (``universal``: set to load a checkpoint in DeepSpeed's universal layout)."""
    import deepspeed
    import numpy as np
    import torch

    torch.manual_seed(cfg.trainer.seed + rank)
    np.random.seed(cfg.trainer.seed + rank)
    model = build_model(cfg, manifest)
    optimizer = cfg.optimizer.build(model, offload=cfg.deepspeed.offload_optimizer)
    scheduler = cfg.scheduler.build(optimizer, cfg.trainer.max_steps)
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler,
                                           config=deepspeed_config(cfg, batch, precision, universal))
    return engine, scheduler


def mixture_manifest(cfg: TrainConfig, manifests: list[dict]) -> dict:
    """The manifest a run records and checks a resume against: the first shard set's, and for a
    mixture each set's weight and token files (``mixture``), so a resume on other sets or weights is
    told apart like one on other shards."""
    from pretrain.checkpointer import data_identity

    if len(manifests) == 1:
        return manifests[0]
    return {**manifests[0], "mixture": [{"path": path, "weight": weight, "train": data_identity(m, cfg.data.train_split)}
                                        for (path, weight), m in zip(cfg.data.mixture(), manifests)]}


def _check_micro_batch(cfg: TrainConfig, samples: int) -> None:
    """A micro batch larger than the train split repeats its samples inside one batch and only costs
    memory (a large enough one takes all of it): refused in one line."""
    micro = cfg.trainer.micro_batch_size_per_gpu
    if micro > samples:
        what = f"windows of data.seq_len={cfg.data.seq_len} tokens" if cfg.data.mode == "packed" else "sessions"
        raise ConfigError(f"trainer.micro_batch_size_per_gpu={micro} is larger than the {cfg.data.train_split} split of "
                          f"{cfg.data.shards}, {samples:,} samples ({what}, data.mode={cfg.data.mode}): use at most {samples:,}")


def train_step(run: Run, stop: StopSignals) -> tuple[float, int, int, bool]:
    """One optimizer step: ``gradient_accumulation_steps`` micro batches on every rank (DeepSpeed
    steps at the last), then one all-reduce of the mean loss, the target count, the input tokens
    that are not padding and whether any rank caught a stop signal. Returns (mean loss, targets,
    tokens, stopping)."""
    import torch
    import torch.distributed as dist

    from pretrain.data import micro_batch
    from pretrain.model import batch_loss, real_tokens

    ctx, b = run.ctx, run.batch
    losses, targets, tokens = [], [], 0
    for micro_step in range(b.gradient_accumulation_steps):
        batch = micro_batch(run.train_source, ctx.samples_consumed, micro_step, ctx.rank, ctx.world,
                            b.micro_batch_size_per_gpu)
        loss_sum, count = batch_loss(ctx.engine, batch, ctx.device)
        loss = loss_sum / count.clamp(min=1)
        ctx.engine.backward(loss)
        ctx.engine.step()
        losses.append(loss.detach())
        targets.append(count)
        tokens += real_tokens(batch)
    reduced = torch.stack([torch.stack(losses).mean(), torch.stack(targets).sum().to(losses[0].dtype),
                           torch.tensor(float(tokens), dtype=losses[0].dtype, device=ctx.device),
                           torch.tensor(float(stop.received is not None), dtype=losses[0].dtype, device=ctx.device)])
    dist.all_reduce(reduced)
    return reduced[0].item() / ctx.world, int(reduced[1].item()), int(reduced[2].item()), reduced[3].item() > 0


def finish(run: Run, last: dict, stopped: StopSignals | None) -> dict:
    """The metrics file closed, the curves drawn, what happened said; every rank leaves together."""
    import torch.distributed as dist

    ctx, cfg = run.ctx, run.ctx.cfg
    ctx.logger.close()
    if len(run.train_source) > 1:
        ctx.say("shard sets read: " + "; ".join(f"{p['source']} {p['samples']:,} samples ({p['epochs']:.2f} epochs)"
                                                 for p in run.train_source.plan(ctx.samples_consumed)))
    if stopped is not None:
        last["stopped_by"] = stopped.received or "another rank's signal"
        ctx.say(f"stopped by {last['stopped_by']} at step {ctx.step} of {cfg.trainer.max_steps}, after its checkpoint: "
                f"continue with model.init=resume (exit status {STOPPED_EXIT}; jobs/train_slurm.sbatch requeues itself)")
    if ctx.rank == 0:
        from pretrain.curves import plot_curves

        out = cfg.trainer.out_dir
        plot_curves(os.path.join(out, "metrics.jsonl"), os.path.join(out, "curves.png"))
        ctx.say(f"{'stopped' if stopped is not None else 'done'}: metrics {out}/metrics.jsonl, curves {out}/curves.png, "
                f"checkpoints {checkpoint_root(cfg)}; export: reddit-pretrain export {shlex.quote(checkpoint_root(cfg))} <out>")
    dist.barrier()
    return last


def _train_then_close(cfg: TrainConfig) -> dict:
    """``train``, then the process group closed whatever happened: a process leaving with its gloo
    group open can abort in C++ at exit ("terminate called without an active exception", status
    -6) after printing its one-line error."""
    try:
        result = train(cfg)
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    if result.get("stopped_by"):
        sys.exit(STOPPED_EXIT)  # a checkpoint of this step is complete: the run is to be resumed
    return result


def main() -> None:
    strip_launcher_args()
    from reddit_pretrain.hydra_job import run_hydra
    from pretrain.config import GROUPS

    run_hydra("train", TrainConfig, _train_then_close, "data.shards=shards 'trainer.sample_prompts=[Any good books?,How are you?]'",
              groups=GROUPS)

if __name__ == "__main__":
    main()
