"""Paths on any filesystem (local, s3://, hdfs://, gs://, ...): globbing, atomic writes, commits.

Python code reaches files through fsspec; Spark reaches the same folders through Hadoop, which
spells S3 ``s3a://``. ``hadoop_uri`` translates so one user-facing URL works for both.
"""

from __future__ import annotations

import json
import os
import posixpath
import uuid
from typing import Any

import fsspec
from fsspec.core import url_to_fs


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


def rename(src: str, dst: str) -> None:
    """Renames a file within one filesystem (atomic on local disks and HDFS, a copy on S3)."""
    fs, src_path = filesystem(src)
    _, dst_path = filesystem(dst)
    if is_local(src):
        os.replace(src_path, dst_path)
    else:
        fs.mv(src_path, dst_path)


def write_json_atomic(url: str, obj: Any) -> None:
    write_bytes_atomic(url, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_json(url: str) -> Any:
    with fsspec.open(url, "rb") as f:
        return json.loads(f.read())


def exists(url: str) -> bool:
    fs, path = filesystem(url)
    return fs.exists(path)


def remove(url: str) -> None:
    fs, path = filesystem(url)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def remove_unfinished(url: str, suffix: str = ".tmp") -> int:
    """Deletes files under ``url`` whose name ends with ``suffix``; returns how many."""
    fs, path = filesystem(url)
    if not fs.exists(path):
        return 0
    leftovers = [p for p in fs.find(path) if p.endswith(suffix)]
    for p in leftovers:
        fs.rm(p)
    return len(leftovers)


def list_dir(url: str) -> list[str]:
    fs, path = filesystem(url)
    if not fs.exists(path):
        return []
    return sorted(posixpath.basename(p.rstrip("/")) for p in fs.ls(path, detail=False))


def replace_dir(src: str, dst: str) -> None:
    """Moves folder ``src`` to ``dst``, replacing what was there (a rename on local disks and HDFS)."""
    fs, src_path = filesystem(src)
    _, dst_path = filesystem(dst)
    if fs.exists(dst_path):
        fs.rm(dst_path, recursive=True)
    if is_local(src):
        os.replace(src_path, dst_path)
    else:
        fs.mv(src_path, dst_path, recursive=True)


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


class OutputNotWritable(OSError):
    """A job's output folder cannot be made or written (found before any work starts)."""


def check_writable(url: str) -> None:
    """Raises OutputNotWritable when a local output folder lies under a file or on a read-only or
    forbidden place; remote outputs (s3://, hdfs://, ...) are left to their first write."""
    if not is_local(url):
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


class StagedOutput:
    """A job's output folder, filled through a staging folder and committed by renames.

    ``begin`` removes the completion marker and stale staging folders and returns a fresh
    staging folder; ``commit`` moves the named entries into place, removes staging, and writes
    the marker (with the fingerprint of inputs and settings) last. ``is_complete`` tells a re-run
    whether there is nothing to do.
    """

    def __init__(self, output: str, marker_name: str, fingerprint: str):
        self.output = output
        self.marker = join(output, marker_name)
        self.fingerprint = fingerprint
        self.staging: str | None = None

    def is_complete(self) -> bool:
        return exists(self.marker) and read_json(self.marker).get("fingerprint") == self.fingerprint

    def begin(self) -> str:
        remove(self.marker)
        for stale in list_dir(self.output):
            if stale.startswith("_staging-"):
                remove(join(self.output, stale))
        self.staging = join(self.output, f"_staging-{uuid.uuid4().hex[:12]}")
        fs, path = filesystem(self.staging)
        fs.makedirs(path, exist_ok=True)
        return self.staging

    def commit(self, names: list[str], **marker_fields: Any) -> None:
        assert self.staging is not None, "begin() first"
        for name in names:
            if exists(join(self.staging, name)):
                replace_dir(join(self.staging, name), join(self.output, name))
            else:
                remove(join(self.output, name))
        remove(self.staging)
        write_json_atomic(self.marker, {"fingerprint": self.fingerprint, **marker_fields})
