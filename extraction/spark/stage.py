"""One stage contract: what ingest, extract and tokenize share, and a re-run that redoes only what died.

A stage (``Stage``) declares its name, output folder, completion marker, the entries it writes and
its *material*: the inputs and settings its output depends on. The contract owns the rest:

- the fingerprint, one style for every stage: the sha256 of the material as sorted JSON;
- the output folder (``StagedOutput``): refused when it holds what the stage did not write, locked
  while a job writes it, filled through a staging folder, committed by renames, the marker last;
- per-task completion: every task set runs through ``Stage.tasks``. A finished task records, in the
  staging folder, its task, its result and every file it wrote (path, size, sha256: the files a task
  renames into place, ``storage.recording_writes``). A re-run of the same material keeps the staging
  folder, checks each recorded task's files against its record (a truncated or changed file is found,
  and that task runs again) and runs only the others, in every task set, exchanged files included;
- the report merge: each task set's tasks, how many were kept from an earlier run and how many were
  run again because a file no longer matched (``report["tasks"]``);
- the marker, with the fingerprint and the material.

A changed input or setting starts over and says what changed. An error keeps the staging folder for
the next run (a full disk excepted, which gets its space back); the lock is released either way. A
killed job cannot clean up at all, and the next run takes over its lock and its finished tasks.

Layout of the staging folder (``<output>/_staging-<fingerprint[:12]>/``)::

    _STAGE.json                      the fingerprint, the material, the plan (``Stage.plan``)
    _tasks/<task set>/<key>.json     one per finished task: task, result, files (key: sha256 of the task)
    ...                              whatever the tasks and the driver write

Why export-dataset is not a stage: it has no tasks (one process reads the sessions and writes
Parquet files of messages, seconds to minutes), so there is nothing to resume; it keeps its own
check of the folder it replaces (``storage.check_replaceable``) and builds beside it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import re
import sys
import time
from typing import Any, Callable

from reddit_pretrain import storage
from reddit_pretrain.storage import OutputNotWritable, join

STAGE_FILE = "_STAGE.json"
TASKS = "_tasks"
STAGING_PREFIX = "_staging-"


def fingerprint(material: dict) -> str:
    """What decides a stage's output, as one digest: sha256 of the material as sorted JSON."""
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def differences(old: dict | None, new: dict) -> str:
    """What changed between two materials, in a few words (the keys that differ, nested by dots)."""
    if not isinstance(old, dict):
        return "it was written by an older version"
    changed: list[str] = []

    def walk(a, b, where: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                walk(a.get(key), b.get(key), f"{where}.{key}" if where else str(key))
        elif a != b:
            changed.append(where or "everything")

    walk(old, new, "")
    shown = ", ".join(changed[:4]) + (f" and {len(changed) - 4} more" if len(changed) > 4 else "")
    return f"{shown} changed"


class StagedOutput:
    """A job's output folder, filled through a staging folder and committed by renames.

    ``writing()`` (``begin`` ... ``commit``) first checks the folder is this job's to write: missing,
    empty, or holding only the entries it writes (``names``), its completion marker and its staging
    folders; anything else is refused in one line, since a job replaces only what it owns. It takes
    the folder's lock (``_LOCK.json``: pid, host, since), so a second job on the same output is
    refused instead of deleting the first one's staging; a lock whose process is gone (same host) is
    stale and taken over. ``begin`` removes the completion marker and returns the staging folder
    ``_staging-<fingerprint[:12]>``: kept when an earlier run of the same fingerprint left it (its
    finished tasks are reused), other staging folders removed; ``commit`` moves the named entries
    into place, removes staging, writes the marker (with the fingerprint of inputs and settings) last
    and releases the lock. An error on the way keeps the staging folder for the next run, except a
    full disk (staging removed, one line: ``no_space_error``). ``is_complete`` tells a re-run whether
    there is nothing to do.

    On object stores (no rename, no exclusive create) the lock is best effort and "atomic" means
    what the marker says: an output is complete only once its marker, written last, is there.
    """

    def __init__(self, output: str, marker_name: str, fingerprint: str, names: list[str] | None = None,
                 job: str = "this job", material: dict | None = None):
        self.output = output
        self.marker_name = marker_name
        self.marker = join(output, marker_name)
        self.fingerprint = fingerprint
        self.names = list(names or [])
        self.job = job
        self.material = material
        self.staging: str | None = None
        self.resumed: str | None = None
        """Why the staging folder was kept or started anew, for the job's progress line."""
        self._lock_held: storage.FolderLock | None = None

    def is_complete(self) -> bool:
        data = storage.read_json_if_exists(self.marker)
        return isinstance(data, dict) and data.get("fingerprint") == self.fingerprint

    def check_owned(self) -> None:
        """Refuses (OutputNotWritable) an output folder that holds entries this job does not write."""
        ours = set(self.names) | {self.marker_name, storage.LOCK}
        foreign = [e for e in storage.list_dir(self.output) if e not in ours and not e.startswith(STAGING_PREFIX)]
        if foreign:
            shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            raise OutputNotWritable(f"output {self.output} holds files {self.job} did not write ({shown}); it replaces only "
                                    f"its own ({', '.join(self.names)}): choose a new or empty folder")

    def _unlock(self) -> None:
        if self._lock_held is not None:
            self._lock_held.release()
            self._lock_held = None

    def begin(self) -> str:
        self.check_owned()
        self._lock_held = storage.take_lock(self.output, f"another job is writing {self.output}")
        storage.remove(self.marker)
        name = STAGING_PREFIX + self.fingerprint[:12]
        self.resumed = None
        for entry in storage.list_dir(self.output):
            if not entry.startswith(STAGING_PREFIX):
                continue
            record = storage.read_json_if_exists(join(self.output, entry, STAGE_FILE))
            if entry == name and isinstance(record, dict) and record.get("fingerprint") == self.fingerprint:
                self.resumed = "kept"
                continue
            if isinstance(record, dict) and record.get("material") is not None and self.material is not None:
                self.resumed = f"an earlier run's staging folder removed: {differences(record.get('material'), self.material)}"
            storage.remove(join(self.output, entry))
        self.staging = join(self.output, name)
        if self.resumed != "kept":
            fs, path = storage.filesystem(self.staging)
            fs.makedirs(path, exist_ok=True)
            storage.write_json_atomic(join(self.staging, STAGE_FILE), {"fingerprint": self.fingerprint, "material": self.material,
                                                                         "plan": None})
        return self.staging

    def commit(self, names: list[str] | None = None, **marker_fields: Any) -> None:
        assert self.staging is not None, "begin() first"
        for name in names if names is not None else self.names:
            if storage.exists(join(self.staging, name)):
                storage.replace_dir(join(self.staging, name), join(self.output, name))
            else:
                storage.remove(join(self.output, name))
        storage.remove(self.staging)
        self.staging = None
        storage.write_json_atomic(self.marker, {"fingerprint": self.fingerprint, **marker_fields})
        self._unlock()

    def abort(self, keep: bool = True) -> None:
        """Releases the lock after an error; the staging folder stays for the next run (``keep``),
        or is removed (a full disk)."""
        try:
            if self.staging is not None and not keep:
                storage.remove(self.staging)
                self.staging = None
        finally:
            self._unlock()

    @contextlib.contextmanager
    def writing(self):
        """``begin()``; the body fills the staging folder and calls ``commit()``; any error releases
        the lock and keeps the staging folder for a re-run, and a full disk becomes one line
        (``no_space_error``) after its staging folder is removed."""
        staging = self.begin()
        try:
            yield staging
        except BaseException as exc:
            full = storage.no_space_error(exc, staging) if isinstance(exc, Exception) else None
            self.abort(keep=full is None)
            if full is not None:
                raise full from None
            raise


# ---------------------------------------------------------------------------------------------
# Tasks that record their completion


def task_key(task: dict) -> str:
    """A task's name among its set's records: the sha256 of its JSON (a changed task is another task)."""
    return hashlib.sha256(json.dumps(task, sort_keys=True).encode()).hexdigest()[:24]


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _sha256(url: str) -> str:
    digest = hashlib.sha256()
    fs, path = storage.filesystem(url)
    with fs.open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def check_files(staging: str, files: list[dict]) -> str | None:
    """None when every recorded file is there with its size and sha256, else what is wrong with the first that is not."""
    for entry in files:
        url = join(staging, entry["path"]) if not entry.get("absolute") else entry["path"]
        fs, path = storage.filesystem(url)
        try:
            size = int(fs.size(path))
        except (FileNotFoundError, OSError):
            return f"{entry['path']} is missing"
        if size != entry["size"]:
            return f"{entry['path']} has {size:,} bytes, not {entry['size']:,}"
        if _sha256(url) != entry["sha256"]:
            return f"{entry['path']} changed (sha256)"
    return None


def _describe(staging: str, written: list[str]) -> list[dict]:
    """The files a task wrote, as its record lists them: path (under staging), size, sha256."""
    root = staging.rstrip("/") + "/"
    files = []
    for url in sorted(set(written)):
        fs, path = storage.filesystem(url)
        if not fs.exists(path):
            continue  # (a file a later write of the same task replaced or removed)
        inside = url.startswith(root)
        files.append({"path": url[len(root):] if inside else url, "absolute": not inside, "size": int(fs.size(path)),
                      "sha256": _sha256(url)})
    return files


def recorded_task(staging: str, folder: str, fn: Callable[[dict], tuple[dict, bytes | None]],
                  task: dict) -> tuple[dict, bytes | None]:
    """Runs ``fn(task)`` unless its record in ``folder`` holds this task and its files still match;
    records the result and the files it wrote. Returns ``({"result", "kept", "redone"}, blob)``."""
    kept, redone = _kept(staging, folder, task)
    if kept is not None:
        return kept
    with storage.recording_writes() as written:
        result, blob = fn(task)
    result = json.loads(json.dumps(result))
    storage.write_json_atomic(join(folder, task_key(task) + ".json"),
                              {"task": task, "result": result, "files": _describe(staging, written),
                               "blob": blob.hex() if blob else None})
    return {"result": result, "kept": False, "redone": redone}, blob


def _kept(staging: str, folder: str, task: dict) -> tuple[tuple[dict, bytes | None] | None, str | None]:
    """The task's recorded outcome when its record holds this task and its files match (else None,
    and the record removed), and what was wrong with the record's files, if anything."""
    url = join(folder, task_key(task) + ".json")
    record = storage.read_json_if_exists(url)
    if not (isinstance(record, dict) and record.get("task") == task):
        return None, None
    wrong = check_files(staging, record.get("files", []))
    if wrong is None:
        blob = record.get("blob")
        return ({"result": record["result"], "kept": True, "redone": None}, bytes.fromhex(blob) if blob else None), None
    storage.remove(url)
    return None, wrong


def check_records(staging: str, folder: str, batch: dict) -> tuple[dict, bytes | None]:
    """One task of a set's checks: for each task of ``batch["tasks"]`` that has a record, its
    recorded outcome when the record's files match, else what was wrong (the record then removed)."""
    kept, wrong = {}, {}
    for index, task in zip(batch["indices"], batch["tasks"]):
        outcome, why = _kept(staging, folder, task)
        if outcome is not None:
            kept[str(index)] = [outcome[0]["result"], outcome[1].hex() if outcome[1] else None]
        elif why:
            wrong[str(index)] = why
    return {"kept": kept, "wrong": wrong}, None


class Stage:
    """One stage's run: the contract above, around the job's own planning, tasks and report.

    ::

        stage = Stage("extract", cfg.output, DONE_MARKER, OUTPUTS, material, force=cfg.force)
        if stage.is_complete(): return the report on disk
        with stage.running() as staging:
            stage.plan({...})                                   # what shapes the tasks, once known
            results = stage.tasks(spark, "sessions", tasks, fn) # run, or kept from an earlier run
            ...
            stage.commit(report, report_file)                  # report["tasks"], then the marker
    """

    def __init__(self, name: str, output: str, marker: str, outputs: list[str], material: dict, force: bool = False):
        self.name = name
        self.material = material
        self.fingerprint = fingerprint(material)
        self.force = force
        self.output = output
        self.staged = StagedOutput(output, marker, self.fingerprint, outputs, job=name, material=material)
        self.steps: dict[str, dict[str, Any]] = {}

    def say(self, msg: str) -> None:
        print(f"[{self.name}] {msg}", file=sys.stderr, flush=True)

    def is_complete(self) -> bool:
        """True (and nothing to do) when the output's marker holds this fingerprint and force is off."""
        return not self.force and self.staged.is_complete()

    @contextlib.contextmanager
    def running(self):
        """The staging folder (kept from an interrupted run of the same material), for the body."""
        with self.staged.writing() as staging:
            if self.staged.resumed == "kept":
                kept = len([p for p in _files_under(join(staging, TASKS)) if p.endswith(".json")])
                self.say(f"resuming {staging}: {kept:,} finished tasks recorded there (each checked before it is kept)")
            elif self.staged.resumed:
                self.say(f"starting over: {self.staged.resumed}")
            yield staging

    @property
    def staging(self) -> str:
        assert self.staged.staging is not None, "running() first"
        return self.staged.staging

    def plan(self, shape: dict) -> None:
        """What shapes the tasks beyond the material (pieces per file from the cores, ...): a kept
        staging folder planned otherwise is emptied first (its files were named for other tasks)."""
        url = join(self.staging, STAGE_FILE)
        record = storage.read_json(url)
        shape = json.loads(json.dumps(shape))
        if record.get("plan") is not None and record["plan"] != shape:
            self.say(f"starting over: the plan differs from the interrupted run's ({differences(record['plan'], shape)})")
            for entry in storage.list_dir(self.staging):
                if entry != STAGE_FILE:
                    storage.remove(join(self.staging, entry))
        storage.write_json_atomic(url, {**record, "plan": shape})

    def tasks(self, spark, step: str, tasks: list[dict], fn: Callable[[dict], tuple[dict, bytes | None]],
              workers: int = 1) -> list[tuple[dict, bytes | None]]:
        """``run_tasks`` through the records: finished tasks whose files match are kept, the others
        run; results in the order of ``tasks``.

        The tasks that have a record (one listing of the set's folder, in the driver) are checked
        first, by as many Spark tasks as there are cores (a Spark task each would cost a task's start
        for a check that reads a few files); then only the tasks not kept run, a Spark task each."""
        from extraction.spark import cores, run_tasks

        folder = join(self.staging, TASKS, _slug(step))
        started = time.time()
        recorded = {name[:-len(".json")] for name in storage.list_dir(folder, fresh=True) if name.endswith(".json")}
        candidates = [i for i, task in enumerate(tasks) if task_key(task) in recorded]
        out: list[tuple[dict, bytes | None] | None] = [None] * len(tasks)
        redone: dict[int, str] = {}
        if candidates:
            share = -(-len(candidates) // cores(spark))
            batches = [{"indices": candidates[i:i + share], "tasks": [tasks[j] for j in candidates[i:i + share]]}
                       for i in range(0, len(candidates), share)]
            for checked, _ in run_tasks(spark, f"{self.name}: {step}: checks of finished tasks", batches,
                                        functools.partial(check_records, self.staging, folder)):
                for index, (result, blob) in checked["kept"].items():
                    out[int(index)] = ({"result": result, "kept": True, "redone": None},
                                       bytes.fromhex(blob) if blob else None)
                redone.update((int(index), why) for index, why in checked["wrong"].items())
        todo = [i for i in range(len(tasks)) if out[i] is None]
        ran = run_tasks(spark, f"{self.name}: {step}", [tasks[i] for i in todo],
                        functools.partial(recorded_task, self.staging, folder, fn), workers=workers)
        for i, (outcome, blob) in zip(todo, ran):
            out[i] = ({**outcome, "redone": outcome["redone"] or redone.get(i)}, blob)
        again = [w["redone"] for w, _ in out if w["redone"]]
        kept = sum(w["kept"] for w, _ in out)
        entry = self.steps.setdefault(step, {"tasks": 0, "kept": 0, "redone": 0, "seconds": 0.0})
        entry["tasks"] += len(out)
        entry["kept"] += kept
        entry["redone"] += len(again)
        entry["seconds"] = round(entry["seconds"] + time.time() - started, 3)
        if kept or again:
            self.say(f"{step}: {kept:,} of {len(out):,} tasks finished by an earlier run kept"
                     + (f"; {len(again):,} run again ({again[0]}{' ...' if len(again) > 1 else ''})" if again else ""))
        return [(w["result"], blob) for w, blob in out]

    def commit(self, report: dict | None = None, report_file: str | None = None, **marker_fields: Any) -> None:
        """Adds the task sets to ``report`` (``report["tasks"]``), writes it as ``report_file`` in
        staging, then commits: entries into place, staging removed, the marker last."""
        if report is not None:
            report["tasks"] = self.steps
            if report_file:
                storage.write_json_atomic(join(self.staging, report_file), report)
        self.staged.commit(**marker_fields, material=self.material)


def _files_under(url: str) -> list[str]:
    fs, path = storage.filesystem(url)
    return list(fs.find(path)) if fs.exists(path) else []
