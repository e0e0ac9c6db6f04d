"""DeepSpeed ZeRO training of GPT-2 on token shards. ``train(cfg)`` is the importable entry point.

    python -m pretrain.train data.shards=out/shards model=tiny deepspeed=zero2         # one process
    torchrun --nproc_per_node 8 -m pretrain.train model=gpt2-124m deepspeed=zero2      # one node
    deepspeed --hostfile hosts -m pretrain.train ...  |  jobs/train_slurm.sbatch       # many nodes

Hydra overrides work under every launcher: the DeepSpeed launcher's ``--local_rank`` argument is
taken off the command line (into LOCAL_RANK) before Hydra reads it (``pretrain.launch``).
This file is the loop; what it calls lives beside it: samples (``pretrain.data``), the model and
its masked head (``pretrain.model``), checkpoints (``pretrain.checkpoints``), metrics and MFU
(``pretrain.metrics``), the process group (``pretrain.launch``).

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

import math
import os
import sys
import time

from pretrain.checkpoints import (CheckpointError, check_resumable, checkpoint_root, latest_checkpoint, restore_rng,
                                  save_checkpoint)
from pretrain.config import BatchSizes, ConfigError, TrainConfig, deepspeed_config, resolve_precision
from pretrain.launch import STOPPED_EXIT, StopSignals, init_distributed, set_cpu_threads, strip_launcher_args
from pretrain.metrics import MetricsLogger, flops_per_token, model_flops_utilisation, num_parameters, truncate_metrics


# ---------------------------------------------------------------------------------------------
# Model


def _from_every_rank(value) -> list:
    """``value`` of every rank, in rank order (a check one rank ran stops them all)."""
    import torch.distributed as dist

    everyone: list = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, value)
    return everyone


def _verify_shards(cfg: TrainConfig, manifest: dict, rank: int) -> None:
    """sha256 of every shard file the run reads, once per node: the node's processes take every
    n-th file each and hash in threads; any mismatch stops every process with the files named."""
    from reddit_pretrain.shards import ShardError, shard_files, verify_files

    local_rank, local_world = int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    files = shard_files(cfg.data.shards, manifest, [cfg.data.train_split, cfg.data.valid_split])
    mine = files[local_rank::local_world]
    started = time.time()
    bad = verify_files(mine, threads=max(1, (os.cpu_count() or 1) // local_world))
    bad = sorted({path for paths in _from_every_rank(bad) for path in paths})
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


def _check_checkpoint_files(folder: str, rank: int) -> None:
    """Before DeepSpeed unpickles a checkpoint: sha256 against COMPLETE.json and the restricted
    unpickler over every file (``checkpoints.check_before_unpickling``), once per node; a refusal
    stops every process."""
    from pretrain.checkpoints import check_before_unpickling

    problem = None
    if int(os.environ.get("LOCAL_RANK", 0)) == 0:
        try:
            note = check_before_unpickling(folder)
            if note and rank == 0:
                print(f"[train] note: {note}", flush=True)
        except CheckpointError as err:
            problem = str(err)
    problems = [p for p in _from_every_rank(problem) if p]
    if problems:
        raise CheckpointError(problems[0])


def _refuse_or_clear_earlier_run(cfg: TrainConfig, rank: int) -> None:
    """A new run (not a resume) into a ``trainer.out_dir`` holding another run's checkpoints or
    metrics would mix the two: refused, unless ``trainer.overwrite`` (then they are deleted first)."""
    import torch.distributed as dist

    from pretrain.checkpoints import RUN_FILES, clear_run, existing_run

    earlier = existing_run(cfg)
    dist.barrier()  # every rank has looked before rank 0 clears
    if earlier is None:
        return
    if not cfg.trainer.overwrite:
        raise ConfigError(f"trainer.out_dir {cfg.trainer.out_dir} holds another run ({earlier}): continue it with "
                          "model.init=resume, start over with trainer.overwrite=true (deletes its "
                          f"{', '.join(RUN_FILES)}), or choose a new trainer.out_dir")
    if rank == 0:
        print(f"[train] trainer.overwrite=true: deleting the earlier run in {cfg.trainer.out_dir} ({earlier})", flush=True)
        clear_run(cfg)
    dist.barrier()


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


def lr_lambda(cfg: TrainConfig):
    s, total = cfg.scheduler, cfg.trainer.max_steps

    def factor(step: int) -> float:
        if s.name == "noam":
            warm = max(1, s.warmup_steps)
            return min((step + 1) / warm, math.sqrt(warm / (step + 1)))
        if step < s.warmup_steps:
            return (step + 1) / s.warmup_steps
        progress = min(1.0, (step - s.warmup_steps) / max(1, total - s.warmup_steps))
        shape = 0.5 * (1 + math.cos(math.pi * progress)) if s.name == "cosine" else 1 - progress
        return s.min_lr_ratio + (1 - s.min_lr_ratio) * shape

    return factor


# ---------------------------------------------------------------------------------------------
# The loop


def _loss(engine, batch, device):
    import torch

    ids = torch.from_numpy(batch.input_ids).to(device)
    targets = torch.from_numpy(batch.targets).to(device)
    attention = torch.from_numpy(batch.attention_mask).to(device) if batch.attention_mask is not None else None
    return engine(input_ids=ids, attention_mask=attention, targets=targets)  # pretrain.model.GPT2ForDialogue


def evaluate(engine, source, cfg: TrainConfig, rank: int, world: int, device) -> dict:
    import torch
    import torch.distributed as dist

    from pretrain.data import eval_batches

    engine.eval()
    totals = torch.zeros(2, dtype=torch.float64, device=device)
    with torch.no_grad():
        for batch in eval_batches(source, rank, world, cfg.trainer.micro_batch_size_per_gpu, cfg.trainer.eval_batches):
            loss_sum, count = _loss(engine, batch, device)
            totals += torch.stack([loss_sum.double(), count.double()])
    dist.all_reduce(totals)
    engine.train()
    loss = (totals[0] / totals[1].clamp(min=1)).item()
    return {"valid_loss": loss, "valid_perplexity": math.exp(min(loss, 50)), "valid_tokens": int(totals[1].item())}


def sample_replies(engine, cfg: TrainConfig, tok, eos_id: int, device) -> list[dict]:
    """Greedy replies to the configured prompts, with the chat's n-gram rule (``pretrain.chat.DECODING``);
    every rank runs generate, as ZeRO-3 needs."""
    import torch

    from pretrain.chat import DECODING

    if tok is None:
        return []
    out = []
    engine.eval()
    for prompt in cfg.trainer.sample_prompts:
        ids = torch.tensor([tok.encode(prompt) + [eos_id]], device=device)
        with torch.no_grad():
            generated = engine.module.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=cfg.trainer.sample_max_new_tokens,
                                               do_sample=False, no_repeat_ngram_size=DECODING["no_repeat_ngram_size"],
                                               eos_token_id=eos_id, pad_token_id=eos_id, synced_gpus=cfg.deepspeed.zero_stage == 3)
        out.append({"prompt": prompt, "reply": tok.decode(generated[0, ids.shape[1]:], skip_special_tokens=True)})
    engine.train()
    return out


def train(cfg: TrainConfig) -> dict:
    """Trains; returns the final metrics. Every check that can fail runs before the first step."""
    import deepspeed
    import numpy as np
    import torch
    import torch.distributed as dist

    from pretrain.console import quiet_libraries
    from pretrain.data import OrderedSampler, SampleSource, micro_batch
    from pretrain.model import load_tokenizer
    from reddit_pretrain.shards import ShardSet

    quiet_libraries()
    cfg.validate()
    train_set = ShardSet(cfg.data.shards, cfg.data.train_split)
    valid_set = ShardSet(cfg.data.shards, cfg.data.valid_split)
    manifest = train_set.manifest
    on_gpu = init_distributed(cfg.deepspeed.dist_backend)
    threads = None if on_gpu else set_cpu_threads()
    rank, world = dist.get_rank(), dist.get_world_size()
    if cfg.data.verify_checksums:
        _verify_shards(cfg, manifest, rank)
    batch = BatchSizes.derive(cfg.trainer, world)
    precision = resolve_precision(cfg.deepspeed, on_gpu, on_gpu and torch.cuda.is_bf16_supported())
    ds_config = deepspeed_config(cfg, batch, precision)

    resume_folder = None
    state = {"step": 0, "samples_consumed": 0}
    if cfg.model.init == "resume":
        from pretrain.checkpoints import problem

        say = (lambda msg: print(f"[train] {msg}", flush=True)) if rank == 0 else None
        resume_folder = cfg.trainer.resume_from or latest_checkpoint(checkpoint_root(cfg), say)
        if resume_folder is None:
            raise ConfigError(f"model.init=resume: no complete checkpoint in {checkpoint_root(cfg)}")
        why = problem(resume_folder) if cfg.trainer.resume_from else None
        if why:
            raise ConfigError(f"trainer.resume_from={resume_folder}: not a complete checkpoint: {why}")
        if say:
            say(f"resuming from {resume_folder}")
        state = check_resumable(cfg, resume_folder, manifest, world, say)
        _check_checkpoint_files(resume_folder, rank)
        if rank == 0:
            truncate_metrics(os.path.join(cfg.trainer.out_dir, "metrics.jsonl"), state["step"])
    else:
        _refuse_or_clear_earlier_run(cfg, rank)

    torch.manual_seed(cfg.trainer.seed + rank)
    np.random.seed(cfg.trainer.seed + rank)
    model = build_model(cfg, manifest)
    train_source = SampleSource(train_set, cfg.data.mode, cfg.data.seq_len, cfg.data.use_loss_mask)
    valid_source = SampleSource(valid_set, cfg.data.mode, cfg.data.seq_len, cfg.data.use_loss_mask)
    sampler = OrderedSampler(train_source.num_samples, cfg.trainer.seed)

    o = cfg.optimizer
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.deepspeed.offload_optimizer:
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        optimizer = DeepSpeedCPUAdam(groups, lr=o.lr, betas=tuple(o.betas), eps=o.eps, adamw_mode=True)
    else:
        optimizer = torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas), eps=o.eps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config)
    device = engine.device
    if resume_folder is not None:
        root, tag = os.path.split(resume_folder.rstrip("/"))
        engine.load_checkpoint(root, tag=tag)  # unpickles: its files were checked first (_check_checkpoint_files)
        restore_rng(resume_folder, rank)

    logger = MetricsLogger(cfg, rank)
    tokenizer = load_tokenizer(manifest, cfg.data.shards)  # every rank generates the samples (ZeRO-3)
    token_flops, target_flops = flops_per_token(engine.module, cfg.data.seq_len)
    tokens_per_step = batch.global_batch_size * cfg.data.seq_len
    if rank == 0:
        print(f"[train] world {world}, {precision}, ZeRO {cfg.deepspeed.zero_stage}, global batch {batch.global_batch_size} "
              f"({batch.micro_batch_size_per_gpu} x {batch.gradient_accumulation_steps} x {world}), "
              f"{num_parameters(engine.module):,} parameters, "
              f"{train_source.num_samples:,} train samples, from step {state['step']}"
              + (f", {threads} CPU thread{'s' if threads != 1 else ''} per process" if threads else ""), flush=True)
    step, consumed = state["step"], state["samples_consumed"]
    last = {}
    window_start, window_tokens, window_targets = time.time(), 0, 0
    stop = StopSignals(cfg.trainer.stop_signals)
    stopping = False
    engine.train()
    while step < cfg.trainer.max_steps and not stopping:
        losses, targets = [], []
        for micro_step in range(batch.gradient_accumulation_steps):
            b = micro_batch(train_source, sampler, consumed, micro_step, rank, world, batch.micro_batch_size_per_gpu)
            loss_sum, count = _loss(engine, b, device)
            loss = loss_sum / count.clamp(min=1)
            engine.backward(loss)
            engine.step()
            losses.append(loss.detach())
            targets.append(count)
        consumed += batch.global_batch_size
        step += 1
        window_tokens += tokens_per_step
        # One all-reduce: the mean loss, the target count, and whether any rank caught a stop signal.
        reduced = torch.stack([torch.stack(losses).mean(), torch.stack(targets).sum().to(losses[0].dtype),
                               torch.tensor(float(stop.received is not None), dtype=losses[0].dtype, device=device)])
        dist.all_reduce(reduced)
        stopping = reduced[2].item() > 0
        window_targets += int(reduced[1].item())
        last = {"kind": "train", "step": step, "loss": reduced[0].item() / world, "lr": scheduler.get_last_lr()[0],
                "grad_norm": float(engine.get_global_grad_norm() or 0.0)}
        if step % cfg.trainer.log_interval == 0 or step == cfg.trainer.max_steps:
            elapsed = time.time() - window_start
            last["tokens_per_s"] = window_tokens / max(elapsed, 1e-9)
            if on_gpu:
                last["mfu"] = model_flops_utilisation((token_flops, target_flops), window_tokens, window_targets,
                                                      elapsed, world, cfg.trainer.peak_flops_per_gpu)
            window_start, window_tokens, window_targets = time.time(), 0, 0
            if rank == 0:
                extra = f", MFU {last['mfu']:.1%}" if "mfu" in last else ""
                print(f"[train] step {step}/{cfg.trainer.max_steps} loss {last['loss']:.4f} lr {last['lr']:.2e} "
                      f"grad norm {last['grad_norm']:.3f} {last['tokens_per_s']:,.0f} tokens/s{extra}", flush=True)
        logger.log(last)
        if step % cfg.trainer.eval_interval == 0 or step == cfg.trainer.max_steps:
            metrics = {"kind": "valid", "step": step, **evaluate(engine, valid_source, cfg, rank, world, device)}
            logger.log(metrics)
            last.update(metrics)
            if rank == 0:
                print(f"[train] step {step} valid loss {metrics['valid_loss']:.4f} perplexity {metrics['valid_perplexity']:.2f}", flush=True)
        if (cfg.trainer.sample_interval and step % cfg.trainer.sample_interval == 0) or step == cfg.trainer.max_steps:
            samples = sample_replies(engine, cfg, tokenizer, manifest["eos_id"], device)
            logger.log({"kind": "samples", "step": step, "samples": samples})
            if rank == 0:
                for s in samples:
                    print(f"[train] sample: {s['prompt']!r} -> {s['reply']!r}", flush=True)
        if step % cfg.trainer.checkpoint_interval == 0 or step == cfg.trainer.max_steps or stopping:
            state = {"step": step, "samples_consumed": consumed, "metrics": {k: v for k, v in last.items() if k != "kind"}}
            folder = save_checkpoint(engine, cfg, manifest, state, rank)
            if rank == 0:
                print(f"[train] checkpoint {folder}", flush=True)
    stop.restore()
    logger.close()
    if stopping:
        last["stopped_by"] = stop.received or "another rank's signal"
        if rank == 0:
            print(f"[train] stopped by {last['stopped_by']} at step {step} of {cfg.trainer.max_steps}, after its checkpoint: "
                  f"continue with model.init=resume (exit status {STOPPED_EXIT}; jobs/train_slurm.sbatch requeues itself)",
                  flush=True)
    if rank == 0:
        from pretrain.curves import plot_curves

        plot_curves(os.path.join(cfg.trainer.out_dir, "metrics.jsonl"), os.path.join(cfg.trainer.out_dir, "curves.png"))
        print(f"[train] {'stopped' if stopping else 'done'}: metrics {cfg.trainer.out_dir}/metrics.jsonl, curves {cfg.trainer.out_dir}/curves.png, "
              f"checkpoints {checkpoint_root(cfg)}; export: reddit-pretrain export {checkpoint_root(cfg)} <out>", flush=True)
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
    from reddit_pretrain.cli import run_hydra
    from pretrain.config import GROUPS
    from reddit_pretrain.shards import ShardError

    run_hydra("train", TrainConfig, _train_then_close, (ConfigError, ShardError), groups=GROUPS)

if __name__ == "__main__":
    main()
