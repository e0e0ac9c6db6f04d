"""The checkpoint layout, owned here: how the trainer writes a checkpoint, which folders are
complete, which one a run resumes from and whether it fits the run (the trainer and the export
both ask).

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
import shutil

from pretrain.config import ConfigError, TrainConfig

COMPLETE = "COMPLETE.json"
PREFIX = "step_"


def _flush(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def mark_complete(folder: str) -> None:
    """Flushes every file of ``folder`` to disk, then writes ``COMPLETE.json`` (by rename) listing them with sizes."""
    files = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if os.path.isfile(path) and name != COMPLETE:
            _flush(path)
            files[name] = os.path.getsize(path)
    tmp = os.path.join(folder, COMPLETE + ".tmp")
    with open(tmp, "w") as f:
        json.dump({"files": files}, f, indent=1)
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


def problem(folder: str) -> str | None:
    """Why ``folder`` is not a complete checkpoint, or None when it is."""
    if not os.path.isdir(folder):
        return "does not exist"
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


def save_checkpoint(engine, cfg: TrainConfig, manifest: dict, state: dict, rank: int) -> str:
    import torch
    import torch.distributed as dist

    root = checkpoint_root(cfg)
    tag = f"step_{state['step']:07d}"
    engine.save_checkpoint(root, tag=tag, save_latest=False)
    folder = os.path.join(root, tag)
    rng = {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}
    torch.save(rng, os.path.join(folder, f"rng_rank{rank:05d}.pt"))
    if rank == 0:
        from omegaconf import OmegaConf

        with open(os.path.join(folder, "trainer_state.json"), "w") as f:
            json.dump(state, f, indent=2)
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
        tags = sorted(t for t in os.listdir(root) if t.startswith("step_"))
        for old in tags[: max(0, len(tags) - cfg.trainer.keep_last)]:
            shutil.rmtree(os.path.join(root, old), ignore_errors=True)
    dist.barrier()
    return folder


def check_resumable(cfg: TrainConfig, folder: str, manifest: dict) -> dict:
    """The checkpoint's config must describe the same model and data; returns its trainer state."""
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
    if saved_manifest["tokenizer"].get("sha256") != manifest["tokenizer"].get("sha256") or \
            saved_manifest["vocab_size"] != manifest["vocab_size"]:
        raise ConfigError(f"checkpoint {folder} was trained on shards of another tokenizer")
    with open(os.path.join(folder, "trainer_state.json")) as f:
        return json.load(f)


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
    ranks' partitions for ZeRO 1-3, the module state for ZeRO 0. Names without ``module.``."""
    import torch

    root, tag = os.path.split(folder.rstrip("/"))
    zero_files = [f for f in os.listdir(folder) if "optim_states" in f and f.startswith(("zero_", "bf16_zero_"))]
    if zero_stage >= 1 and zero_files:
        if not torch.cuda.is_available():
            os.environ.setdefault("DS_ACCELERATOR", "cpu")  # no "Setting accelerator to CPU" warning
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        from pretrain.console import captured_output

        with captured_output():  # zero_to_fp32 prints a line per step and its own progress bars
            state = get_fp32_state_dict_from_zero_checkpoint(root, tag=tag)
    else:
        files = [f for f in os.listdir(folder) if f.endswith("model_states.pt")]
        state = torch.load(os.path.join(folder, sorted(files)[0]), map_location="cpu", weights_only=False)["module"]
    return {k.removeprefix("module."): v.float() for k, v in state.items()}
