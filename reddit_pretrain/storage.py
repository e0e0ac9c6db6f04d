"""Paths on any filesystem (local, s3://, hdfs://, gs://, ...): globbing, atomic writes, commits.

Python code reaches files through fsspec; Spark reaches the same folders through Hadoop, which
spells S3 ``s3a://``. ``hadoop_uri`` translates so one user-facing URL works for both.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import posixpath
import re
import shutil
import socket
import time
import uuid
from typing import Any

import fsspec
from fsspec.core import url_to_fs

from reddit_pretrain.errors import UserError

for _chatty in ("botocore", "aiobotocore", "s3fs", "boto3"):  # "Found endpoint for s3 via ..." on every start
    logging.getLogger(_chatty).setLevel(logging.WARNING)


def filesystem(url: str):
    """(fsspec filesystem, path inside it) for a local path or URL."""
    return url_to_fs(url)


def is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def local_path(url: str) -> str:
    return url[len("file://") :] if url.startswith("file://") else url


def join(url: str, *parts: str) -> str:
    if is_local(url):
        return os.path.join(local_path(url), *parts)
    return posixpath.join(url, *parts)


def hadoop_uri(url: str) -> str:
    """The URI Spark's Hadoop filesystems understand for ``url``."""
    if is_local(url):
        return "file://" + os.path.abspath(local_path(url))
    if url.startswith("s3://"):
        return "s3a://" + url[len("s3://") :]
    return url


def expand_inputs(patterns: list[str]) -> list[str]:
    """Expands paths and globs into a sorted, de-duplicated list of files; errors if one is empty."""
    files: set[str] = set()
    for pattern in patterns:
        fs, path = filesystem(pattern)
        matches = fs.glob(path) if any(c in path for c in "*?[") else ([path] if fs.exists(path) else [])
        matches = [m for m in matches if fs.isfile(m)]
        if not matches:
            raise FileNotFoundError(f"input {pattern!r} matches no file")
        protocol = fs.protocol[0] if isinstance(fs.protocol, (tuple, list)) else fs.protocol
        for m in matches:
            files.add(m if protocol in ("file", "local") else f"{protocol}://{m}")
    return sorted(files)


def file_info(url: str) -> dict[str, Any]:
    """Size and modification time: what tells a re-run that an input changed."""
    fs, path = filesystem(url)
    info = fs.info(path)
    mtime = info.get("mtime") or info.get("LastModified") or info.get("last_modified")
    return {"path": url, "size": int(info.get("size") or 0), "mtime": str(mtime)}


_WRITTEN: list[str] | None = None


@contextlib.contextmanager
def recording_writes():
    """Yields a list that collects every file renamed into place (``rename``, ``write_bytes_atomic``,
    ``note_written``) until the block ends: what a task wrote, for its completion record
    (``extraction.spark.stage``). One task at a time per process, as tasks run."""
    global _WRITTEN
    outer, _WRITTEN = _WRITTEN, []
    try:
        yield _WRITTEN
    finally:
        _WRITTEN = outer


def note_written(url: str) -> None:
    """Tells ``recording_writes`` about a file put in place by other means than ``rename``."""
    if _WRITTEN is not None:
        _WRITTEN.append(url)


def write_bytes_atomic(url: str, data: bytes) -> None:
    """Writes a file under a temporary name, then renames it into place."""
    fs, path = filesystem(url)
    fs.makedirs(posixpath.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with fs.open(tmp, "wb") as f:
        f.write(data)
    if is_local(url):
        os.replace(tmp, path)
    else:
        fs.mv(tmp, path)
    note_written(url)


def rename(src: str, dst: str) -> None:
    """Renames a file within one filesystem (atomic on local disks and HDFS, a copy on S3)."""
    fs, src_path = filesystem(src)
    _, dst_path = filesystem(dst)
    if is_local(src):
        os.replace(src_path, dst_path)
    else:
        fs.mv(src_path, dst_path)
    note_written(dst)


def write_json_atomic(url: str, obj: Any) -> None:
    write_bytes_atomic(url, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_json(url: str) -> Any:
    with fsspec.open(url, "rb") as f:
        return json.loads(f.read())


def read_bytes_if_exists(url: str) -> bytes | None:
    """The file's bytes, or None when there is no such file (one request, not a check and a read)."""
    try:
        if is_local(url):
            with open(local_path(url), "rb") as f:
                return f.read()
        with fsspec.open(url, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def read_json_if_exists(url: str) -> Any:
    data = read_bytes_if_exists(url)
    return None if data is None else json.loads(data)


def exists(url: str) -> bool:
    fs, path = filesystem(url)
    return fs.exists(path)


def arrow_input(url: str):
    """A file for Arrow to read (IPC, Parquet): a local one memory-mapped, so Arrow reads it
    itself, not through Python's buffered reads (about half the time for the exchange's files);
    our files are replaced by a rename, never rewritten in place, so a map stays whole. Any other
    through fsspec."""
    if is_local(url):
        import pyarrow as pa

        return pa.memory_map(local_path(url))
    fs, path = filesystem(url)
    return fs.open(path, "rb")


def arrow_output(url: str):
    """A new file for Arrow to write (``arrow_input``'s twin): a local one Arrow's own, any other
    through fsspec. The caller writes it under a temporary name and renames it into place."""
    if is_local(url):
        import pyarrow as pa

        return pa.OSFile(local_path(url), "wb")
    fs, path = filesystem(url)
    return fs.open(path, "wb")


def remove(url: str) -> None:
    fs, path = filesystem(url)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def tree_bytes(url: str) -> int:
    """The bytes of every file under ``url`` (0 when it does not exist)."""
    fs, path = filesystem(url)
    return int(fs.du(path, total=True)) if fs.exists(path) else 0


def remove_unfinished(url: str, suffix: str = ".tmp") -> int:
    """Deletes files under ``url`` whose name ends with ``suffix``; returns how many."""
    fs, path = filesystem(url)
    if not fs.exists(path):
        return 0
    leftovers = [p for p in fs.find(path) if p.endswith(suffix)]
    for p in leftovers:
        fs.rm(p)
    return len(leftovers)


def list_dir(url: str, fresh: bool = False) -> list[str]:
    """The names in a folder, sorted; ``fresh``: as it is now, not as this process's object-store
    filesystem may have cached it (other processes add to it: task records, a corpus's batches)."""
    fs, path = filesystem(url)
    if fresh:
        fs.invalidate_cache(path)
    if not fs.exists(path):
        return []
    return sorted(posixpath.basename(p.rstrip("/")) for p in fs.ls(path, detail=False))


def replace_dir(src: str, dst: str) -> None:
    """Moves folder ``src`` to ``dst``, replacing what was there (a rename on local disks and HDFS).
    Callers check first that ``dst`` is theirs to replace (``check_replaceable``, ``extraction.spark.stage.StagedOutput``)."""
    fs, src_path = filesystem(src)
    _, dst_path = filesystem(dst)
    if is_local(dst) and os.path.lexists(dst_path) and not os.path.isdir(dst_path):
        os.remove(dst_path)  # a file the caller was told to overwrite
    elif fs.exists(dst_path):
        fs.rm(dst_path, recursive=True)
    if is_local(src):
        os.replace(src_path, dst_path)
        return
    # An object store has no folders to rename: every object is copied to its new key, then the
    # old ones deleted (fsspec's recursive mv trips over "folder" keys that do not exist on S3).
    if fs.isfile(src_path):
        fs.copy(src_path, dst_path)
    else:
        files = fs.find(src_path)
        if files:
            fs.copy(files, [dst_path.rstrip("/") + "/" + posixpath.relpath(f, src_path) for f in files])
    fs.rm(src_path, recursive=True)


def check_replaceable(folder: str, what: str, owned: set[str], marker: str | None = None, overwrite: bool = False,
                      reads: str | None = None) -> None:
    """Refuses (OutputNotWritable, one line) to replace a local ``folder`` that ``what`` does not own.

    It owns a folder that is missing or empty, that holds its ``marker`` file, or that holds only
    names in ``owned`` (the files it writes). ``overwrite`` replaces anything else, a regular file
    included, but never a folder that holds ``reads`` (what the command reads from)."""
    path = os.path.abspath(local_path(folder))
    if reads is not None:
        source = os.path.abspath(local_path(reads))
        if source == path:
            raise OutputNotWritable(f"{folder} is what {what} reads from, not a folder to replace: choose another folder")
        if source.startswith(path.rstrip(os.sep) + os.sep):
            raise OutputNotWritable(f"{folder} holds {reads}, which {what} reads from: choose another folder")
    if not os.path.lexists(path):
        return
    hint = "choose a new or empty folder, or pass --overwrite to replace it"
    if not os.path.isdir(path) or os.path.islink(path):
        if not overwrite:
            raise OutputNotWritable(f"{folder} is a file, not a folder {what} wrote: {hint}")
        return
    entries = sorted(os.listdir(path))
    if not entries or (marker and marker in entries) or set(entries) <= owned or overwrite:
        return
    shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
    raise OutputNotWritable(f"{folder} holds files {what} did not write ({shown}): {hint}")


_STAGING = re.compile(r"\.tmp-[0-9a-f]{8}(?:-p(\d+)-(.*))?$")


def staging_name(folder: str) -> str:
    """A fresh sibling name to build ``folder`` in before ``replace_dir`` (never a user's file):
    ``.<name>.tmp-<random>-p<pid>-<host>``, so that a later run can tell a killed run's leftover
    (``remove_stale_staging``) from a staging folder another live process is filling."""
    path = local_path(folder).rstrip("/")
    head, tail = os.path.split(path)
    return os.path.join(head, f".{tail}.tmp-{uuid.uuid4().hex[:8]}-p{os.getpid()}-{socket.gethostname()}")


def remove_stale_staging(folder: str) -> list[str]:
    """Removes the staging folders beside a local ``folder`` (``staging_name``) whose process has
    ended: same host and a dead pid, or written before the name carried its pid (no live process
    writes those). Returns what was removed; another host's or a live process's are left alone."""
    path = os.path.abspath(local_path(folder)).rstrip("/")
    head, tail = os.path.split(path)
    prefix, removed = f".{tail}", []
    try:
        entries = os.listdir(head)
    except OSError:
        return removed
    host = socket.gethostname()
    for entry in entries:
        match = _STAGING.fullmatch(entry[len(prefix):]) if entry.startswith(prefix + ".tmp-") else None
        if match is None:
            continue
        pid, owner = match.group(1), match.group(2)
        if pid is not None and (owner != host or _pid_alive(int(pid))):
            continue
        stale = os.path.join(head, entry)
        if os.path.isdir(stale) and not os.path.islink(stale):
            shutil.rmtree(stale, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.remove(stale)
        removed.append(stale)
    return removed


_UNWRITABLE = {errno.EROFS: "is on a read-only file system", errno.EACCES: "is not writable by this user",
               errno.EPERM: "is not writable by this user"}


def write_error(exc: BaseException, path: str) -> OutputNotWritable | None:
    """One line for an output that could not be written, found anywhere in ``exc``'s chain: a full
    disk (``no_space_error``), a read-only file system or a folder this user may not write; None
    for any other error."""
    full = no_space_error(exc, path)
    if full is not None:
        return full
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _UNWRITABLE:
            where = str(exc.filename or path)
            return OutputNotWritable(f"cannot write {where}: it {_UNWRITABLE[exc.errno]} ({os.strerror(exc.errno)}); "
                                     "choose an output folder you can write, and run again")
        exc = exc.__cause__ or exc.__context__
    return None


@contextlib.contextmanager
def building(folder: str):
    """Yields a staging folder beside ``folder`` for the body to fill; when the body ends, it replaces
    ``folder`` (``replace_dir``). On a local disk the staging folder is ``staging_name``'s, and killed
    runs' leftovers beside it are removed first (``remove_stale_staging``); on an object store it is
    ``<folder>.tmp``. On any error the staging folder is removed, and a full disk, a read-only file
    system or a folder not writable becomes one line (``write_error``). Callers check first that
    ``folder`` is theirs to replace (``check_replaceable``)."""
    local = is_local(folder)
    if local:
        remove_stale_staging(folder)
    tmp = staging_name(folder) if local else folder.rstrip("/") + ".tmp"
    try:
        yield tmp
        replace_dir(tmp, folder)
    except BaseException as exc:
        if local:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            with contextlib.suppress(Exception):
                remove(tmp)
        one_line = write_error(exc, folder) if isinstance(exc, Exception) else None
        if one_line is not None:
            raise one_line from None
        raise


def parquet_rows(urls: list[str]) -> int:
    """Rows of Parquet files, from their footers (read in parallel: on object stores each is a request)."""
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow.parquet as pq

    def rows(url: str) -> int:
        fs, path = filesystem(url)
        with fs.open(path, "rb") as f:
            return pq.ParquetFile(f).metadata.num_rows

    with ThreadPoolExecutor(16) as pool:
        return sum(pool.map(rows, urls))


class OutputNotWritable(UserError, OSError):
    """A job's output folder cannot be made or written (found before any work starts)."""


_BUCKET_STORES = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss")


def check_writable(url: str) -> None:
    """Raises OutputNotWritable when a local output folder lies under a file or on a read-only or
    forbidden place, or when an object store's bucket does not exist (fsspec would create it);
    other remote outputs (hdfs://, ...) are left to their first write."""
    if not is_local(url):
        protocol = url.split("://", 1)[0]
        if protocol in _BUCKET_STORES:
            fs, path = filesystem(url)
            bucket = path.split("/", 1)[0]
            if not fs.exists(bucket):
                raise OutputNotWritable(f"output {url}: the bucket {bucket!r} does not exist, or these credentials cannot "
                                        "see it: create it first (the jobs do not create buckets)")
        return
    path = os.path.abspath(local_path(url))
    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputNotWritable(f"output {path} is a file, not a folder")
    parent = path
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise OutputNotWritable(f"output {path} cannot be made: {parent} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputNotWritable(f"output {path} cannot be written: {parent} is read-only or not writable by this user")


class OutputBusy(OutputNotWritable):
    """Another job is writing the same output folder now."""


def _mount_of(path: str) -> str:
    """The mount point (and device) a local path lies on, as df names it."""
    path = os.path.abspath(path)
    while not os.path.exists(path) and path != os.path.dirname(path):
        path = os.path.dirname(path)
    path = os.path.realpath(path)
    best, device = "/", ""
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2:
                    point = parts[1].replace("\\040", " ")
                    if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
                        best, device = point, parts[0]
    except OSError:
        pass
    return f"{best} ({device})" if device else best


_NO_SPACE = re.compile(r"No space left on device(?:: '([^']*)')?")


def no_space_error(exc: BaseException, path: str) -> OutputNotWritable | None:
    """One line for a full disk found anywhere in ``exc``'s chain (an OSError with ENOSPC, or the
    text Spark wraps it in): "no space left on <mount> writing <path>"; None for any other error."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        where = None
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            where = exc.filename or path
        else:
            match = _NO_SPACE.search(str(exc))
            if match:
                where = match.group(1) or path
        if where is not None:
            where = str(where)
            device = _mount_of(local_path(where)) if is_local(where) else where.split("/", 3)[2] if "://" in where else where
            return OutputNotWritable(f"no space left on {device} writing {where}; the partial output was removed: "
                                     "free some space, or choose an output on a larger disk, and run again")
        exc = exc.__cause__ or exc.__context__
    return None


LOCK = "_LOCK.json"
"""In a job's output folder while a job writes it: who (pid, host) and since when."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class FolderLock:
    """``<folder>/_LOCK.json``, held by one process at a time: who (pid, host, Slurm job) and since when.

    Taken by creating the file exclusively (best effort on object stores, which have no exclusive
    create). A lock whose holder is gone is taken over: on the same host when its pid is dead (a
    killed job), on any host when it names this process's ``SLURM_JOB_ID`` (a requeued job lands on
    another node, and the job that held it is over). Anything else is refused with the holder named.
    """

    def __init__(self, folder: str):
        self.folder = folder
        self.path = join(folder, LOCK)
        self.held = False

    @staticmethod
    def me() -> dict:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since_utc": int(time.time()),
              "since": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
        if os.environ.get("SLURM_JOB_ID"):
            me["slurm_job_id"] = os.environ["SLURM_JOB_ID"]
        return me

    @staticmethod
    def gone(holder: dict, me: dict) -> bool:
        """Whether the process ``holder`` names has ended (its lock is stale)."""
        if holder.get("slurm_job_id") and holder.get("slurm_job_id") == me.get("slurm_job_id"):
            return holder.get("host") != me["host"] or not isinstance(holder.get("pid"), int) or not _pid_alive(holder["pid"])
        return holder.get("host") == me["host"] and isinstance(holder.get("pid"), int) and not _pid_alive(holder["pid"])

    def acquire(self, busy: str) -> "FolderLock":
        """Takes the lock, or raises OutputBusy: ``busy`` (what the holder is doing) and who holds it."""
        me = self.me()
        fs, path = filesystem(self.folder)
        fs.makedirs(path, exist_ok=True)
        for _ in range(2):
            if is_local(self.path):
                try:
                    fd = os.open(local_path(self.path), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    pass
                else:
                    with os.fdopen(fd, "w") as f:
                        json.dump(me, f)
                    self.held = True
                    return self
            elif not exists(self.path):
                write_json_atomic(self.path, me)
                self.held = True
                return self
            try:
                holder = read_json(self.path)
            except (OSError, ValueError):
                holder = {}
            if not isinstance(holder, dict) or not self.gone(holder, me):
                holder = holder if isinstance(holder, dict) else {}
                job = f", Slurm job {holder['slurm_job_id']}" if holder.get("slurm_job_id") else ""
                raise OutputBusy(f"{busy} (pid {holder.get('pid')}, host {holder.get('host')}{job}, since "
                                 f"{holder.get('since')}); wait for it, or remove {self.path} if no job is running")
            remove(self.path)  # its process is gone: a killed run's lock
        raise OutputBusy(f"cannot take the lock {self.path}")

    def release(self) -> None:
        if self.held:
            self.held = False
            try:
                remove(self.path)
            except OSError:
                pass  # a folder that became unwritable: the lock is stale once this process ends


def take_lock(folder: str, busy: str) -> FolderLock:
    """``FolderLock(folder).acquire(busy)``."""
    return FolderLock(folder).acquire(busy)


def remote_error(err: BaseException) -> str | None:
    """One line for an object store's error that would otherwise end in a stack trace (no
    credentials, access denied, no such bucket), or None for any other error."""
    name, text = type(err).__name__, str(err)
    if name in ("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"):
        return (f"no credentials for object storage ({text}): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
                "AWS_PROFILE, or run where an instance role applies; AWS_ENDPOINT_URL points at another S3-compatible store")
    if name in ("EndpointConnectionError", "ConnectTimeoutError"):
        return f"object storage cannot be reached ({text}): check AWS_ENDPOINT_URL and the network"
    if "NoSuchBucket" in text or "bucket does not exist" in text.lower():
        return f"no such bucket: {text}"
    if isinstance(err, PermissionError) and ("AccessDenied" in text or "Forbidden" in text or "403" in text):
        return f"access denied by object storage: {text}"
    if name == "ClientError":
        return f"object storage refused the request: {text}"
    return None
