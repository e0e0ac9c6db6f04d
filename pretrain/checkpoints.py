"""The checkpoint layout, owned here: which folders are complete, which one a run resumes from,
what may be unpickled and after which checks, and reading one for the export (the trainer's save
and load, and whether a checkpoint fits the run, are ``pretrain.checkpointer``'s).

A checkpoint ``<out_dir>/checkpoints/step_NNNNNNN/`` is complete when ``COMPLETE.json`` is in it:
written last, after every rank has written and flushed its files, it lists every file of the
folder with its size. A folder without it, or whose files no longer have those sizes (a run
killed while writing, a disk that filled up, a file truncated later), is not used: resume takes
the newest complete one and says which it skipped and why. ``latest`` (DeepSpeed's pointer) is
still written, for tools that read it; folders from before ``COMPLETE.json`` count when
``latest`` names them.
"""

from __future__ import annotations

import json
import os

from pretrain.config import ConfigError, TrainConfig

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


def files_of(folder: str) -> list[str]:
    """Every file of ``folder`` but its marker, as paths relative to it ("a/b.pt"), sorted: a step
    folder's files are plain names; a converted checkpoint's (``universal``) are in subfolders."""
    found = []
    for here, dirs, files in os.walk(folder):
        dirs.sort()
        rel = os.path.relpath(here, folder)
        found += [name if rel == "." else f"{rel}/{name}" for name in files]
    return sorted(n for n in found if n not in (COMPLETE, COMPLETE + ".tmp"))


def mark_complete(folder: str) -> None:
    """Flushes every file of ``folder`` to disk, then writes ``COMPLETE.json`` (by rename) listing
    them with their sizes and sha256 (checked before any file of the checkpoint is unpickled)."""
    files = {}
    for name in files_of(folder):
        path = os.path.join(folder, name)
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
    """A file of the folder itself: a relative path whose parts are names (no ``.``/``..``, not
    absolute), so it cannot lead out of the folder."""
    return isinstance(name, str) and "\0" not in name and "\\" not in name and not name.startswith("/") \
        and all(part not in ("", ".", "..") for part in name.split("/"))


def outside(folder: str) -> str | None:
    """What in a checkpoint folder points outside it, or None: a symbolic link (a checkpoint's files are
    its own; following one would read, hash or unpickle another file), or a name in COMPLETE.json that
    is not a plain file name of the folder (``../x``, an absolute path). A step folder that is itself a
    link (to another run's step) is refused too."""
    if os.path.islink(folder.rstrip("/")):
        return f"the folder is a symbolic link (to {os.readlink(folder.rstrip('/'))}), not a step of this run"
    for here, dirs, files in os.walk(folder):
        for name in sorted(dirs + files):
            path = os.path.join(here, name)
            if os.path.islink(path):
                rel = os.path.relpath(path, folder)
                return f"{rel} is a symbolic link (to {os.readlink(path)}), not a file of the checkpoint"
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
    names = files_of(folder)
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


UNIVERSAL = "universal"
"""``checkpoints/universal/step_NNNNNNN/``: a step converted to DeepSpeed's universal layout (one
folder a parameter, whole), which any number of processes loads; made when a run resumes on another
world size, complete with its own COMPLETE.json, pruned with its step."""


def universal_folder(folder: str) -> str:
    root, tag = os.path.split(folder.rstrip("/"))
    return os.path.join(root, UNIVERSAL, tag)


# ---------------------------------------------------------------------------------------------
# Where a run's checkpoints are


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
