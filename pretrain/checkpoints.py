"""Which checkpoint folders are complete, and which one a run resumes from (numpy and the standard
library only: the trainer and the export both ask).

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
