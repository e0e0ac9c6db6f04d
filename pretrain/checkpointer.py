"""The trainer's side of checkpoints (``Checkpointer``): where a run starts (a new run's folder
checked, or the checkpoint a resume continues from, checked whole before anything is unpickled),
saving a step (DeepSpeed's states, every rank's RNG, the data position, then COMPLETE.json) and
loading it back, on the world size that wrote it or another (the global batch kept, ZeRO 1-3
converted to DeepSpeed's universal layout). The folder itself, what makes it complete and what
may be unpickled are ``pretrain.checkpoints``'s.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil

from pretrain.checkpoints import (PREFIX, UNIVERSAL, CheckpointError, check_before_unpickling,
                                  checkpoint_root, latest_checkpoint, mark_complete, problem, read_checkpoint, safe_load,
                                  universal_folder, _cpu_accelerator_unless_cuda)
from pretrain.config import BatchSizes, ConfigError, TrainConfig
from pretrain.console import say


def _write_failure(exc: BaseException, folder: str) -> CheckpointError | None:
    """One line for a checkpoint that could not be written for want of space (torch's writer says
    only "unexpected pos" then); None for other errors."""
    from reddit_pretrain.storage import no_space_error

    full = no_space_error(exc, folder)
    if full is None and isinstance(exc, RuntimeError) and ("unexpected pos" in str(exc) or "failed writing" in str(exc)):
        try:
            if shutil.disk_usage(os.path.dirname(folder)).free < 64 << 20:
                full = no_space_error(OSError(28, "No space left on device", folder), folder)
        except OSError:
            pass
    if full is None:
        return None
    return CheckpointError(f"{full}; the partial checkpoint was removed and the previous one is kept")


def save_checkpoint(engine, cfg: TrainConfig, manifest: dict, state: dict, rank: int) -> str:
    """Writes ``step_NNNNNNN`` (DeepSpeed's states, the RNG of every rank, the trainer state, config
    and shard manifest), marks it complete, points ``latest`` at it and prunes to ``keep_last``. On a
    full disk the partial folder is removed (the previous checkpoint stays) and CheckpointError says so."""
    import torch
    import torch.distributed as dist

    root = checkpoint_root(cfg)
    tag = f"step_{state['step']:07d}"
    folder = os.path.join(root, tag)
    try:
        engine.save_checkpoint(root, tag=tag, save_latest=False)
        rng = {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}
        torch.save(rng, os.path.join(folder, f"rng_rank{rank:05d}.pt"))
        if rank == 0:
            from omegaconf import OmegaConf

            world = dist.get_world_size()
            batch = BatchSizes(cfg.trainer.micro_batch_size_per_gpu, cfg.trainer.gradient_accumulation_steps, world)
            with open(os.path.join(folder, "trainer_state.json"), "w") as f:
                json.dump({**state, "world_size": world, "global_batch_size": batch.global_batch_size}, f, indent=2)
            with open(os.path.join(folder, "config.yaml"), "w") as f:
                f.write(OmegaConf.to_yaml(OmegaConf.structured(cfg)))
            with open(os.path.join(folder, "shard_manifest.json"), "w") as f:
                json.dump(manifest, f, indent=2)
        dist.barrier()
        if rank == 0:  # commit: only now is the folder complete, and does `latest` point here
            mark_complete(folder)
            with open(os.path.join(root, "latest.tmp"), "w") as f:
                f.write(tag)
            os.replace(os.path.join(root, "latest.tmp"), os.path.join(root, "latest"))
    except Exception as exc:
        failure = _write_failure(exc, folder)
        if failure is None:
            raise
        shutil.rmtree(folder, ignore_errors=True)
        for tmp in ("latest.tmp",):
            if os.path.exists(os.path.join(root, tmp)):
                os.remove(os.path.join(root, tmp))
        raise failure from None
    if rank == 0:
        tags = sorted(t for t in os.listdir(root) if t.startswith("step_"))
        for old in tags[: max(0, len(tags) - cfg.trainer.keep_last)]:
            shutil.rmtree(os.path.join(root, old), ignore_errors=True)
            shutil.rmtree(os.path.join(root, UNIVERSAL, old), ignore_errors=True)
    dist.barrier()
    return folder


def restore_rng(folder: str, rank: int, seed: int, step: int) -> bool:
    """Sets this rank's RNG state from the checkpoint (read with the restricted unpickler). A rank the
    checkpoint has no state for (it was written by fewer processes) seeds its RNG from ``seed``, its
    rank and the step instead, the same way on every resume; returns False then."""
    import hashlib

    import torch

    path = os.path.join(folder, f"rng_rank{rank:05d}.pt")
    if not os.path.exists(path):
        derived = int.from_bytes(hashlib.sha256(f"{seed}/{rank}/{step}".encode()).digest()[:8], "little") >> 1
        torch.manual_seed(derived)  # the CUDA generators too
        return False
    rng = safe_load(path)
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return True


def convert_to_universal(folder: str) -> str:
    """``folder`` (ZeRO 1-3, written by any number of processes) in DeepSpeed's universal layout
    (``ds_to_universal``), written beside it under ``universal/``; an earlier conversion that is
    complete is kept. ``ds_to_universal`` unpickles the step's files: they must have passed
    ``check_before_unpickling`` (the trainer checks them first). The folder appears whole, by
    rename, after its COMPLETE.json is written; one that no longer matches it is made again."""
    import argparse

    from pretrain.console import captured_output

    out = universal_folder(folder)
    if os.path.isdir(out) and problem(out) is None:
        try:
            check_before_unpickling(out)
            return out
        except CheckpointError:
            pass  # changed since it was written: made again
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    _cpu_accelerator_unless_cuda()
    from deepspeed.checkpoint import ds_to_universal

    cpus = os.cpu_count() or 1
    args = argparse.Namespace(input_folder=folder, output_folder=tmp, num_extract_workers=min(4, cpus // 2) or 1,
                              num_merge_workers=min(2, cpus // 4) or 1, keep_temp_folder=False, strict=True,
                              inject_missing_state=True)  # our steps carry no universal_checkpoint_info: none is needed
    try:
        with captured_output():  # it prints its arguments, stages and progress bars
            ds_to_universal.main(args)
        mark_complete(tmp)
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        from reddit_pretrain.storage import no_space_error

        why = no_space_error(exc, out) if isinstance(exc, OSError) else None
        raise CheckpointError(f"checkpoint {folder}: converting it for another world size failed: "
                              f"{why or f'{type(exc).__name__}: {exc}'}") from exc
    return out


def saved_world_size(folder: str, state: dict) -> int | None:
    """How many processes wrote the checkpoint: recorded in trainer_state.json, else the number of
    ZeRO optimizer partitions (checkpoints written before it was recorded)."""
    if "world_size" in state:
        return int(state["world_size"])
    parts = [n for n in os.listdir(folder) if "optim_states" in n and "zero_pp_rank_" in n]
    return len(parts) or None


def data_identity(manifest: dict, split: str) -> list[str]:
    """What names a shard set's split: the sha256 of each of its token files, in order."""
    return [s["files"]["tokens"]["sha256"] for s in manifest.get("shards", []) if s.get("split") == split]


def existing_run(cfg: TrainConfig) -> str | None:
    """What of an earlier run ``trainer.out_dir`` holds (checkpoints, metrics), or None."""
    root = checkpoint_root(cfg)
    steps = sorted(t for t in os.listdir(root) if t.startswith(PREFIX)) if os.path.isdir(root) else []
    metrics = os.path.exists(os.path.join(cfg.trainer.out_dir, "metrics.jsonl"))
    if not steps and not metrics:
        return None
    parts = ([f"checkpoints up to {steps[-1]}"] if steps else []) + (["metrics.jsonl"] if metrics else [])
    return ", ".join(parts)


RUN_FILES = ("checkpoints", "metrics.jsonl", "tensorboard", "curves.png")
"""What a run writes in ``trainer.out_dir`` (``trainer.overwrite`` removes these, nothing else)."""


def clear_run(cfg: TrainConfig) -> None:
    for name in RUN_FILES:
        path = os.path.join(cfg.trainer.out_dir, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)


def _setting(value):
    """A setting as compared on resume (lists and tuples alike, ints and floats alike)."""
    if isinstance(value, (list, tuple)):
        return [_setting(v) for v in value]
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def check_resumable(cfg: TrainConfig, folder: str, manifest: dict, world_size: int, say=None) -> dict:
    """The checkpoint's config must describe the same model, tokenizer and shards, written by as many
    processes as resume it (ZeRO 1-3); returns its trainer state. On other shards of the same
    tokenizer it continues only with ``trainer.resume_with_new_data`` (the data order restarts)."""
    from omegaconf import OmegaConf

    raw, saved_manifest = read_checkpoint(folder)
    saved = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(TrainConfig), raw))
    for section in ("n_layer", "n_head", "n_embd", "n_positions"):
        if getattr(saved.model, section) != getattr(cfg.model, section):
            raise ConfigError(f"checkpoint {folder} is for another model: {section} {getattr(saved.model, section)} "
                              f"!= {getattr(cfg.model, section)}")
    for section in ("mode", "seq_len", "use_loss_mask"):
        if getattr(saved.data, section) != getattr(cfg.data, section):
            raise ConfigError(f"checkpoint {folder} used data.{section}={getattr(saved.data, section)}, "
                              f"not {getattr(cfg.data, section)}")
    changed = [f"{section}.{f.name}={getattr(getattr(cfg, section), f.name)!r} (it trained with "
               f"{getattr(getattr(saved, section), f.name)!r})"
               for section in ("optimizer", "scheduler") for f in dataclasses.fields(getattr(cfg, section))
               if _setting(getattr(getattr(saved, section), f.name)) != _setting(getattr(getattr(cfg, section), f.name))]
    if changed:
        raise ConfigError(f"checkpoint {folder}: resume continues the optimizer and schedule it saved, so "
                          f"{', '.join(changed)} would not apply: set them back, or to train on with other settings "
                          "export it (reddit-pretrain export) and start from it with model.init=pretrained "
                          "(trainer.max_steps may grow on resume)")
    if saved_manifest["tokenizer"].get("sha256") != manifest["tokenizer"].get("sha256") or \
            saved_manifest["vocab_size"] != manifest["vocab_size"]:
        raise ConfigError(f"checkpoint {folder} was trained on shards of another tokenizer")
    with open(os.path.join(folder, "trainer_state.json")) as f:
        state = json.load(f)
    written_by = saved_world_size(folder, state)
    if written_by is not None and written_by != world_size:
        state["resize"] = resize(cfg, saved, folder, state, written_by, world_size)
    split = cfg.data.train_split
    mixed = [(m["weight"], m["train"]) for m in saved_manifest.get("mixture", [])] != \
        [(m["weight"], m["train"]) for m in manifest.get("mixture", [])]
    if data_identity(saved_manifest, split) != data_identity(manifest, split) or mixed:
        if not cfg.trainer.resume_with_new_data:
            raise ConfigError(f"checkpoint {folder} trained on other shards ({split} split: "
                              f"{len(data_identity(saved_manifest, split))} shard files, not the {len(data_identity(manifest, split))} "
                              f"of {cfg.data.shards}, or other contents): its data position does not apply to these; "
                              "resume on the shards it trained on, or set trainer.resume_with_new_data=true to continue "
                              "on these from their first sample")
        if say:
            say(f"the shards differ from the checkpoint's: trainer.resume_with_new_data=true, so the data order "
                f"restarts from the first sample of {cfg.data.shards} (step {state['step']} continues)")
        state["samples_consumed"] = 0
    return state


def resize(cfg: TrainConfig, saved: TrainConfig, folder: str, state: dict, written_by: int, world: int) -> dict:
    """A resume on ``world`` processes of a checkpoint that ``written_by`` wrote keeps its global
    batch: this run's micro batch, with the gradient accumulation that fills the global batch (this
    run's own when it already does). Refused, naming the world sizes that work, where none does.
    Returns {"from", "to", "gradient_accumulation_steps", "global_batch_size", "zero_stage"} (the
    stage it was written with)."""
    total = int(state.get("global_batch_size")
                or BatchSizes(saved.trainer.micro_batch_size_per_gpu, saved.trainer.gradient_accumulation_steps,
                              written_by).global_batch_size)
    micro, accumulation = cfg.trainer.micro_batch_size_per_gpu, cfg.trainer.gradient_accumulation_steps
    if micro * accumulation * world != total:
        if total % (micro * world):
            sizes = [w for w in range(1, total // micro + 1) if total % (micro * w) == 0]
            works = (f"it continues on {', '.join(map(str, sizes))} processes" if sizes else
                     f"no number of processes divides it with micro batches of {micro}: set "
                     "trainer.micro_batch_size_per_gpu to a divisor of it")
            raise ConfigError(f"checkpoint {folder} trained with a global batch of {total} ({written_by} processes); "
                              f"with trainer.micro_batch_size_per_gpu={micro} {works}, not on {world}")
        accumulation = total // (micro * world)
    return {"from": written_by, "to": world, "gradient_accumulation_steps": accumulation, "global_batch_size": total,
            "zero_stage": int(saved.deepspeed.zero_stage)}


def _mend_universal_load(engine, universal: str) -> None:
    """Two faults of DeepSpeed's ZeRO-3 load of a universal checkpoint (0.19), each of which changes
    the next updates (found by the resume tests: the loss drifted from the second step on, at any
    world size): every parameter group gets the hyperparameters of the first (the biases and norms
    would decay like the matrices), and every group's Adam ``step`` is one shared tensor, which the
    optimizer then advances once per group per step (a wrong bias correction). Each group's weight
    decay is set back from the saved optimizer state (checked, read with the restricted unpickler),
    and each state gets a step of its own. ZeRO 1 and 2 load it right."""
    saved = safe_load(os.path.join(universal, "zero", "optimizer_state.pt"))
    saved_groups = (saved.get("optimizer_state_dict") or {}).get("param_groups") or []
    inner = engine.optimizer.optimizer
    if len(saved_groups) != len(inner.param_groups):
        raise CheckpointError(f"checkpoint {universal}: {len(saved_groups)} optimizer parameter groups saved, "
                              f"{len(inner.param_groups)} in this run: not resuming from it")
    for group, kept in zip(inner.param_groups, saved_groups):
        group["weight_decay"] = kept["weight_decay"]
    for state in inner.state.values():
        if hasattr(state.get("step"), "clone"):
            state["step"] = state["step"].clone()


class Checkpointer:
    """Save and load of one run's checkpoints, for the trainer: where a run starts (a new run's
    ``trainer.out_dir`` checked, or the checkpoint a resume continues from, checked whole before
    anything is unpickled), loading it into the engine with every rank's RNG, and saving a step.

        checkpointer = Checkpointer(cfg, manifest, rank, world)
        state = checkpointer.start()       # {"step", "samples_consumed", ...}: before the engine exists
        ...                                # the engine, built
        checkpointer.load(engine)          # a resume's states and RNG; nothing for a new run
        checkpointer.save(engine, state)   # -> the step's folder, complete
    """

    def __init__(self, cfg: TrainConfig, manifest: dict, rank: int, world: int):
        self.cfg, self.manifest, self.rank, self.world = cfg, manifest, rank, world
        self.root = checkpoint_root(cfg)
        self.folder: str | None = None
        """The checkpoint this run resumes from (``start`` finds it), or None."""
        self.step = 0
        """The step it was written at."""
        self.lock = None
        """Rank 0's hold on ``trainer.out_dir`` (``_LOCK.json``) from ``start`` to ``release``."""
        self.universal: str | None = None
        """The resumed checkpoint converted to DeepSpeed's universal layout, when the run resumes ZeRO
        1-3 on another world size (``deepspeed_config`` then loads it as such), else None."""

    def _say(self, msg: str) -> None:
        say(msg, self.rank)

    def start(self) -> dict:
        """The trainer state the run starts from. ``model.init=resume``: the newest complete
        checkpoint (or ``trainer.resume_from``), checked against this run (model, data, tokenizer,
        world size) and its files against their sha256s and the restricted unpickler, and the
        metrics file cut back to its step. A new run: refused if ``trainer.out_dir`` holds another
        run, unless ``trainer.overwrite`` (then that run's files are deleted). Before anything in
        ``trainer.out_dir`` is read or deleted, rank 0 takes its lock: one trainer writes a run."""
        self._take_lock()
        try:
            return self._start()
        except BaseException:
            self.release()  # a refusal leaves the folder as it found it
            raise

    def _start(self) -> dict:
        if self.cfg.model.init != "resume":
            self._refuse_or_clear_earlier_run()
            return {"step": 0, "samples_consumed": 0}
        from pretrain.metrics import truncate_metrics

        say = self._say if self.rank == 0 else None
        folder = self.cfg.trainer.resume_from or latest_checkpoint(self.root, say)
        if folder is None:
            raise ConfigError(f"model.init=resume: no complete checkpoint in {self.root}")
        why = problem(folder) if self.cfg.trainer.resume_from else None
        if why:
            raise ConfigError(f"trainer.resume_from={folder}: not a complete checkpoint: {why}")
        self._say(f"resuming from {folder}")
        state = check_resumable(self.cfg, folder, self.manifest, self.world, say)
        self._check_files(folder)
        change = state.get("resize")
        if change:
            if change["zero_stage"] >= 1:  # one optimizer partition per process: made whole first
                self.universal = self._convert(folder)
            self._say(f"the world size changed: {change['from']} processes wrote {folder}, {change['to']} resume it; "
                      f"the global batch stays {change['global_batch_size']} (gradient accumulation "
                      f"{change['gradient_accumulation_steps']}), the data position at sample "
                      f"{state['samples_consumed']:,}"
                      + (f", ranks {change['from']}-{change['to'] - 1} seed their RNG from trainer.seed and their rank"
                         if change["to"] > change["from"] else "")
                      + (f", from its conversion {self.universal}" if self.universal else ""))
        if self.rank == 0:
            truncate_metrics(os.path.join(self.cfg.trainer.out_dir, "metrics.jsonl"), state["step"])
        self.folder, self.step = folder, state["step"]
        return state

    def _take_lock(self) -> None:
        """Rank 0 holds ``<out_dir>/_LOCK.json`` (``storage.FolderLock``: pid, host, Slurm job) for the
        run; a folder it cannot write, or another live trainer's lock, stops every rank in one line."""
        from pretrain.launch import from_every_rank
        from reddit_pretrain import storage

        refused = None
        if self.rank == 0:
            out = self.cfg.trainer.out_dir
            try:
                storage.check_writable(out)
                self.lock = storage.take_lock(out, f"another trainer is running in trainer.out_dir {out}")
            except storage.OutputNotWritable as err:
                refused = str(err)
            except OSError as err:
                refused = str(storage.write_error(err, out) or err)
        refusals = [r for r in from_every_rank(refused) if r]
        if refusals:
            raise storage.OutputNotWritable(refusals[0])

    def release(self) -> None:
        """Lets go of ``trainer.out_dir`` (the end of the run, or an error)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def load(self, engine) -> None:
        """The resumed checkpoint's model, optimizer and scheduler states into ``engine``, and this
        rank's RNG state; nothing for a new run."""
        if self.folder is None:
            return
        root, tag = os.path.split((self.universal or self.folder).rstrip("/"))
        engine.load_checkpoint(root, tag=tag)  # unpickles: its files were checked in start()
        if self.universal and engine.zero_optimization_stage() == 3:
            _mend_universal_load(engine, self.universal)
        restore_rng(self.folder, self.rank, self.cfg.trainer.seed, self.step)

    def save(self, engine, state: dict) -> str:
        """``save_checkpoint`` of this run: the step's folder, complete."""
        return save_checkpoint(engine, self.cfg, self.manifest, state, self.rank)

    def _check_files(self, folder: str, checked_here: bool = False) -> None:
        """Before DeepSpeed unpickles a checkpoint: sha256 against COMPLETE.json and the restricted
        unpickler over every file (``check_before_unpickling``), once per node (not again on a node
        whose process ``checked_here``); a refusal stops every process."""
        from pretrain.launch import from_every_rank

        refused = None
        if int(os.environ.get("LOCAL_RANK", 0)) == 0 and not checked_here:
            try:
                note = check_before_unpickling(folder)
                if note:
                    self._say(f"note: {note}")
            except CheckpointError as err:
                refused = str(err)
        refusals = [r for r in from_every_rank(refused) if r]
        if refusals:
            raise CheckpointError(refusals[0])

    def _convert(self, folder: str) -> str:
        """Rank 0 converts ``folder`` (whose files passed ``_check_files``) to the universal layout, or
        keeps an earlier conversion that passes the same check; every other node then checks the
        conversion's files that way before DeepSpeed loads them."""
        from pretrain.launch import from_every_rank

        out, refused = universal_folder(folder), None
        if self.rank == 0:
            self._say(f"converting {folder} to DeepSpeed's universal layout for {self.world} processes: {out}")
            try:
                convert_to_universal(folder)
            except CheckpointError as err:
                refused = str(err)
        refusals = [r for r in from_every_rank(refused) if r]
        if refusals:
            raise CheckpointError(refusals[0])
        self._check_files(out, checked_here=self.rank == 0)  # rank 0 wrote it, or checked it just now
        return out

    def _refuse_or_clear_earlier_run(self) -> None:
        """A new run (not a resume) into a ``trainer.out_dir`` holding another run's checkpoints or
        metrics would mix the two: refused, unless ``trainer.overwrite`` (then they are deleted first)."""
        import torch.distributed as dist

        cfg = self.cfg
        earlier = existing_run(cfg)
        dist.barrier()  # every rank has looked before rank 0 clears
        if earlier is None:
            return
        if not cfg.trainer.overwrite:
            raise ConfigError(f"trainer.out_dir {cfg.trainer.out_dir} holds another run ({earlier}): continue it with "
                              "model.init=resume, start over with trainer.overwrite=true (deletes its "
                              f"{', '.join(RUN_FILES)}), or choose a new trainer.out_dir")
        self._say(f"trainer.overwrite=true: deleting the earlier run in {cfg.trainer.out_dir} ({earlier})")
        if self.rank == 0:
            clear_run(cfg)
        dist.barrier()


