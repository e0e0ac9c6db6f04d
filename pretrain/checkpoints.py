"""The checkpoint layout, owned here: how the trainer writes a checkpoint and loads one back
(``Checkpointer``: save and load, the RNG of every rank, the data position, the COMPLETE.json
marker), which folders are complete, which one a run resumes from and whether it fits the run
(the trainer and the export both ask).

A checkpoint ``<out_dir>/checkpoints/step_NNNNNNN/`` is complete when ``COMPLETE.json`` is in it:
written last, after every rank has written and flushed its files, it lists every file of the
folder with its size. A folder without it, or whose files no longer have those sizes (a run
killed while writing, a disk that filled up, a file truncated later), is not used: resume takes
the newest complete one and says which it skipped and why. ``latest`` (DeepSpeed's pointer) is
still written, for tools that read it; folders from before ``COMPLETE.json`` count when
``latest`` names them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil

from pretrain.config import ConfigError, TrainConfig
from pretrain.console import say

COMPLETE = "COMPLETE.json"
PREFIX = "step_"


def _flush(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CheckpointError(ConfigError):
    """A checkpoint that cannot be written, or must not be loaded (one line, before any step)."""


def _sha256_files(folder: str, names: list[str]) -> dict[str, str]:
    from reddit_pretrain.shards import sha256_files

    return dict(zip(names, sha256_files([os.path.join(folder, n) for n in names], max(1, min(8, os.cpu_count() or 1)))))


def mark_complete(folder: str) -> None:
    """Flushes every file of ``folder`` to disk, then writes ``COMPLETE.json`` (by rename) listing
    them with their sizes and sha256 (checked before any file of the checkpoint is unpickled)."""
    files = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if os.path.isfile(path) and name != COMPLETE:
            _flush(path)
            files[name] = os.path.getsize(path)
    tmp = os.path.join(folder, COMPLETE + ".tmp")
    with open(tmp, "w") as f:
        json.dump({"files": files, "sha256": _sha256_files(folder, list(files))}, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(folder, COMPLETE))
    _flush(folder)


def _named_by_latest(folder: str) -> bool:
    root, tag = os.path.split(folder.rstrip("/"))
    try:
        with open(os.path.join(root, "latest")) as f:
            return f.read().strip() == tag
    except OSError:
        return False


def _plain_name(name) -> bool:
    """A file name of the folder itself: no folder part, not ``.``/``..``, not absolute."""
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and os.sep not in name \
        and "\0" not in name


def outside(folder: str) -> str | None:
    """What in a checkpoint folder points outside it, or None: a symbolic link (a checkpoint's files are
    its own; following one would read, hash or unpickle another file), or a name in COMPLETE.json that
    is not a plain file name of the folder (``../x``, an absolute path). A step folder that is itself a
    link (to another run's step) is refused too."""
    if os.path.islink(folder.rstrip("/")):
        return f"the folder is a symbolic link (to {os.readlink(folder.rstrip('/'))}), not a step of this run"
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if os.path.islink(path):
            return f"{name} is a symbolic link (to {os.readlink(path)}), not a file of the checkpoint"
    try:
        with open(os.path.join(folder, COMPLETE)) as f:
            marker = json.load(f)
    except (OSError, ValueError):
        return None  # no marker, or an unreadable one: problem() says so
    names = list((marker.get("files") or {}) if isinstance(marker, dict) else []) \
        + list((marker.get("sha256") or {}) if isinstance(marker, dict) else [])
    for name in names:
        if not _plain_name(name):
            return f"{COMPLETE} lists {name!r}, which is not a file of the checkpoint folder"
    return None


def problem(folder: str) -> str | None:
    """Why ``folder`` is not a complete checkpoint, or None when it is."""
    if not os.path.isdir(folder):
        return "does not exist"
    escape = outside(folder)
    if escape:
        return escape
    marker = os.path.join(folder, COMPLETE)
    if not os.path.exists(marker):  # from before COMPLETE.json: complete if `latest` names it
        return None if _named_by_latest(folder) else f"no {COMPLETE} (its writing did not finish)"
    try:
        with open(marker) as f:
            files = json.load(f)["files"]
    except (OSError, ValueError, KeyError) as err:
        return f"{COMPLETE} unreadable ({err})"
    for name, size in files.items():
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            return f"{name} is missing"
        if os.path.getsize(path) != size:
            return f"{name} has {os.path.getsize(path):,} bytes, not the {size:,} written"
    return None


def find_resumable(root: str) -> tuple[str | None, list[tuple[str, str]]]:
    """The newest complete checkpoint under ``root`` and the newer folders skipped, with why."""
    if not os.path.isdir(root):
        return None, []
    skipped = []
    for tag in sorted((t for t in os.listdir(root) if t.startswith(PREFIX)), reverse=True):
        folder = os.path.join(root, tag)
        why = problem(folder)
        if why is None:
            return folder, skipped
        skipped.append((folder, why))
    return None, skipped


# ---------------------------------------------------------------------------------------------
# What is unpickled, and when. Our own files load with torch's restricted unpickler
# (``weights_only=True``: tensors, containers, numbers, strings, and the few DeepSpeed value types
# below). DeepSpeed's resume and ``zero_to_fp32`` insist on ``weights_only=False``, so before they
# run every file of the checkpoint is checked against the sha256 recorded in COMPLETE.json and
# loaded once with the restricted unpickler: a file that would run code is refused, never unpickled.


def _cpu_accelerator_unless_cuda() -> None:
    """DeepSpeed picks its accelerator on import; on a machine without CUDA say CPU (no warning)."""
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")


def _deepspeed_safe_globals() -> list:
    """The value types DeepSpeed's optimizer states hold (plain data, no code on load)."""
    _cpu_accelerator_unless_cuda()
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]


def _enum_member(cls, name):
    """Stands in for ``builtins.getattr`` in the restricted unpickler, for one use only: CPython
    3.11.0-3.11.3 pickle a member of an int or str enum (DeepSpeed's ZeroStageEnum) as
    ``getattr(ZeroStageEnum, "optimizer_states")``. It returns members of the allowed enums and
    refuses anything else; the real getattr is never allowed."""
    import enum
    import pickle

    allowed = [c for c in _deepspeed_safe_globals() if isinstance(c, type) and issubclass(c, enum.Enum)]
    if cls in allowed and isinstance(name, str) and name in cls.__members__:
        return cls[name]
    raise pickle.UnpicklingError(f"GLOBAL builtins.getattr of {getattr(cls, '__name__', type(cls).__name__)}.{name} "
                                 "is refused (only members of DeepSpeed's enums are read)")


def safe_load(path: str, mmap: bool = False):
    """``torch.load`` with the restricted unpickler (``weights_only=True``) and DeepSpeed's value types
    allowed; a file holding anything else raises ``pickle.UnpicklingError``."""
    import torch

    with torch.serialization.safe_globals([*_deepspeed_safe_globals(), (_enum_member, "builtins.getattr")]):
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)


def check_before_unpickling(folder: str) -> str | None:
    """Raises CheckpointError when a file of ``folder`` differs from the sha256 its COMPLETE.json
    records, or holds objects the restricted unpickler refuses (a rigged or foreign file: loading it
    with pickle could run code). Returns a warning when the checkpoint records no sha256 (written
    before they were recorded): then only the restricted-unpickler check ran."""
    import pickle

    escape = outside(folder)
    if escape:
        raise CheckpointError(f"checkpoint {folder}: {escape}: not loading it")
    marker = os.path.join(folder, COMPLETE)
    recorded = {}
    if os.path.exists(marker):
        with open(marker) as f:
            recorded = json.load(f).get("sha256", {})
    names = sorted(n for n in os.listdir(folder) if os.path.isfile(os.path.join(folder, n)) and n != COMPLETE)
    if recorded:
        unlisted = [n for n in names if n not in recorded]
        if unlisted:
            raise CheckpointError(f"checkpoint {folder}: {unlisted[0]} is not among the files its {COMPLETE} lists "
                                  "(added after it was written): not loading it")
        actual = _sha256_files(folder, sorted(recorded))
        changed = [n for n in sorted(recorded) if actual[n] != recorded[n]]
        if changed:
            raise CheckpointError(f"checkpoint {folder}: {changed[0]} does not match the sha256 in its {COMPLETE} "
                                  "(changed after it was written): not loading it")
    for name in names:
        if name.endswith(".pt"):
            try:
                safe_load(os.path.join(folder, name), mmap=True)
            except pickle.UnpicklingError as err:
                what = str(err).split("GLOBAL ", 1)[1].split(" ")[0] if "GLOBAL " in str(err) else "an object"
                raise CheckpointError(f"checkpoint {folder}: {name} holds {what}, which torch's safe loader refuses "
                                      "(unpickling it could run code): not loading it") from None
            except RuntimeError as err:
                raise CheckpointError(f"checkpoint {folder}: {name} cannot be read ({str(err).splitlines()[0]})") from None
    if not recorded:
        return (f"checkpoint {folder} records no sha256 of its files (an older checkpoint): its files passed the "
                "restricted-unpickler check only")
    return None


# ---------------------------------------------------------------------------------------------
# Writing and resuming (the trainer)


def checkpoint_root(cfg: TrainConfig) -> str:
    return os.path.join(cfg.trainer.out_dir, "checkpoints")


def latest_checkpoint(root: str, say=None) -> str | None:
    """The newest complete checkpoint under ``root`` (``find_resumable``); ``say`` hears which newer
    folders were skipped and why."""
    folder, skipped = find_resumable(root)
    for path, why in skipped:
        if say:
            say(f"skipping checkpoint {path}: {why}")
    return folder


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

            with open(os.path.join(folder, "trainer_state.json"), "w") as f:
                json.dump({**state, "world_size": dist.get_world_size()}, f, indent=2)
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
    dist.barrier()
    return folder


def restore_rng(folder: str, rank: int) -> None:
    """Sets this rank's RNG state from the checkpoint (read with the restricted unpickler)."""
    import torch

    rng = safe_load(os.path.join(folder, f"rng_rank{rank:05d}.pt"))
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


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
    if saved.deepspeed.zero_stage >= 1 and written_by is not None and written_by != world_size:
        raise ConfigError(f"checkpoint {folder} was written by {written_by} processes and ZeRO-{saved.deepspeed.zero_stage} "
                          f"keeps one optimizer partition per process: resume it with {written_by} processes "
                          f"(torchrun --nproc_per_node {written_by}, or nodes x processes = {written_by}), not {world_size}; "
                          "to change the world size, export it (reddit-pretrain export) and continue with "
                          "model.init=pretrained")
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
        self.lock = None
        """Rank 0's hold on ``trainer.out_dir`` (``_LOCK.json``) from ``start`` to ``release``."""

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
        if self.rank == 0:
            truncate_metrics(os.path.join(self.cfg.trainer.out_dir, "metrics.jsonl"), state["step"])
        self.folder = folder
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
        root, tag = os.path.split(self.folder.rstrip("/"))
        engine.load_checkpoint(root, tag=tag)  # unpickles: its files were checked in start()
        restore_rng(self.folder, self.rank)

    def save(self, engine, state: dict) -> str:
        """``save_checkpoint`` of this run: the step's folder, complete."""
        return save_checkpoint(engine, self.cfg, self.manifest, state, self.rank)

    def _check_files(self, folder: str) -> None:
        """Before DeepSpeed unpickles a checkpoint: sha256 against COMPLETE.json and the restricted
        unpickler over every file (``check_before_unpickling``), once per node; a refusal stops
        every process."""
        from pretrain.launch import from_every_rank

        refused = None
        if int(os.environ.get("LOCAL_RANK", 0)) == 0:
            try:
                note = check_before_unpickling(folder)
                if note:
                    self._say(f"note: {note}")
            except CheckpointError as err:
                refused = str(err)
        refusals = [r for r in from_every_rank(refused) if r]
        if refusals:
            raise CheckpointError(refusals[0])

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


# ---------------------------------------------------------------------------------------------
# Reading (the export)


def resolve_checkpoint(checkpoint: str, say=None) -> str:
    """The complete checkpoint folder a path names: a step folder, or a run's checkpoints/ folder (its
    newest complete one; ``say`` hears which newer ones were skipped and why)."""
    checkpoint = checkpoint.rstrip("/")
    if not os.path.isdir(checkpoint):
        raise FileNotFoundError(f"{checkpoint} does not exist (a run's checkpoints/ folder or one of its step_* folders)")
    if not os.path.basename(checkpoint).startswith(PREFIX):  # a checkpoints/ folder: its newest complete one
        folder = latest_checkpoint(checkpoint, say)
        if folder is None:
            raise FileNotFoundError(f"{checkpoint} holds no complete checkpoint")
        checkpoint = folder
    why = problem(checkpoint)
    if why is None and not os.path.exists(os.path.join(checkpoint, "trainer_state.json")):
        why = "no trainer_state.json"
    if why:
        raise FileNotFoundError(f"{checkpoint} is not a complete checkpoint ({why})")
    return checkpoint


def read_checkpoint(folder: str):
    """(the run's config as saved, the shard manifest it trained on) of a checkpoint folder."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(os.path.join(folder, "config.yaml"))
    with open(os.path.join(folder, "shard_manifest.json")) as f:
        return cfg, json.load(f)


def fp32_state_dict(folder: str, zero_stage: int) -> dict:
    """The model's fp32 weights, consolidated from DeepSpeed's files: ``zero_to_fp32`` over the
    ranks' partitions for ZeRO 1-3, the module state for ZeRO 0. Names without ``module.``.
    ``zero_to_fp32`` unpickles: call ``check_before_unpickling`` first (the export does)."""
    root, tag = os.path.split(folder.rstrip("/"))
    zero_files = [f for f in os.listdir(folder) if "optim_states" in f and f.startswith(("zero_", "bf16_zero_"))]
    if zero_stage >= 1 and zero_files:
        _cpu_accelerator_unless_cuda()
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        from pretrain.console import captured_output

        with captured_output():  # zero_to_fp32 prints a line per step and its own progress bars
            state = get_fp32_state_dict_from_zero_checkpoint(root, tag=tag)
    else:
        files = [f for f in os.listdir(folder) if f.endswith("model_states.pt")]
        state = safe_load(os.path.join(folder, sorted(files)[0]))["module"]
    return {k.removeprefix("module."): v.float() for k, v in state.items()}
