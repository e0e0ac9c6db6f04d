"""The token shard format: writer, memory-mapped reader, manifest, checksums.

This module owns the format and nothing else, and imports only numpy (and the standard library):
the tokenize job's Spark tasks write shards without torch, the trainer reads them without Spark.
How a session becomes a document is ``reddit_pretrain.documents``; sampling windows or padded
sessions is the trainer's (``pretrain.data``); inspection and the Megatron/NeoX export are
``pretrain.shard_tools``.

A shard set is a folder::

    manifest.json                      written last, atomically; describes everything below
    shards/<split>-<task>-<seq>.tokens flat little-endian token ids (uint16 if the vocabulary fits, else uint32)
    shards/<split>-<task>-<seq>.index  little-endian uint64 document boundaries: 0, end of doc 0, ..., total
    shards/<split>-<task>-<seq>.mask   optional uint8 per token: 1 where the token is a training target

A document is one dialogue session: ``turn_1 EOS turn_2 EOS ... turn_n EOS`` (DialoGPT's format,
each session closed by EOS so packed documents stay separated). The loss mask is 0 on the first
turn and its EOS (DialoGPT puts no loss on the first turn) and 1 on every later turn and its EOS.

The manifest holds the format version, the tokenizer (name and sha256 of its files), vocab size,
EOS id, dtype, and per shard its files, sizes, sha256s, token and document counts and split, plus
the source dumps, the extraction config and the code version.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
from dataclasses import dataclass

import numpy as np

from reddit_pretrain.errors import UserError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SHARDS_DIR = "shards"


class ShardError(UserError, RuntimeError):
    """A shard set that cannot be read as described (missing, resized, corrupted, mismatched)."""


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (vocab <= 65536), else uint32."""
    if vocab_size <= 0:
        raise ValueError(f"vocab_size must be positive, not {vocab_size}")
    if vocab_size <= 2**16:
        return np.dtype("<u2")
    if vocab_size <= 2**32:
        return np.dtype("<u4")
    raise ValueError(f"vocab_size {vocab_size} does not fit in 32 bits")


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(8 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def confined(folder: str, *parts: str) -> str:
    """``folder/parts...``, refused (ShardError, one line) when a part read from a manifest leads out of
    ``folder``: an absolute path, a ``..``, or a symbolic link whose target lies outside it."""
    for part in parts:
        pieces = part.replace("\\", "/").split("/") if isinstance(part, str) else []
        if not pieces or not part or os.path.isabs(part) or ".." in pieces or "\0" in part:
            raise ShardError(f"{os.path.join(folder, MANIFEST)} names {part!r}, which is not a path inside the shard set "
                             f"{folder}: a manifest's paths are relative to its folder (make the shards again)")
    path = os.path.join(folder, *parts)
    root, real = os.path.realpath(folder), os.path.realpath(path)
    if real != root and not real.startswith(root.rstrip(os.sep) + os.sep):
        raise ShardError(f"{path} leads out of the shard set {folder} (a symbolic link to {real}): a shard set's files "
                         "are its own; copy them in (reddit-pretrain fetch-shards) instead of linking them")
    return path


def shard_path(folder: str, manifest: dict, name: str) -> str:
    """The path of a shard file the manifest names, confined to the shard set (``confined``)."""
    return confined(folder, manifest.get("shards_dir", SHARDS_DIR), name)


def shard_files(folder: str, manifest: dict, splits: list[str] | None = None) -> list[tuple[str, str]]:
    """(path, sha256) of every file of the shards of ``splits`` (all when None), in manifest order;
    every path confined to ``folder``."""
    out = []
    for entry in manifest["shards"]:
        if splits is None or entry["split"] in splits:
            for info in entry["files"].values():
                out.append((shard_path(folder, manifest, info["path"]), info["sha256"]))
    return out


def sha256_files(paths: list[str], threads: int = 4) -> list[str]:
    """The sha256 of each file, hashed by ``threads`` threads (hashlib lets go of the GIL while it hashes)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max(1, threads)) as pool:
        return list(pool.map(_sha256, paths))


def verify_files(files: list[tuple[str, str]], threads: int = 4) -> list[str]:
    """The paths among ``files`` whose sha256 is not the one given (``sha256_files``)."""
    digests = sha256_files([path for path, _ in files], threads)
    return [path for (path, expected), got in zip(files, digests) if got != expected]


class ShardWriter:
    """Writes documents into shards of about ``tokens_per_shard`` tokens in a local folder.

    A shard is closed after the document that brings it to ``tokens_per_shard`` tokens or more.
    Each shard's files are written under temporary names (hashed as they are written) and renamed
    into place when the shard is full or the writer closes; ``close`` returns the manifest
    entries of the shards written.
    """

    def __init__(self, folder: str, prefix: str, split: str, vocab_size: int, tokens_per_shard: int,
                 with_mask: bool = True):
        self.folder = folder
        self.prefix = prefix
        self.split = split
        self.vocab_size = vocab_size
        self.dtype = token_dtype(vocab_size)
        self.tokens_per_shard = tokens_per_shard
        self.with_mask = with_mask
        self.entries: list[dict] = []
        self._sequence = 0
        self._open = False
        os.makedirs(folder, exist_ok=True)

    def _start(self) -> None:
        name = f"{self.prefix}-{self._sequence:04d}"
        self._name = name
        self._files = {"tokens": f"{name}.tokens", "index": f"{name}.index"}
        if self.with_mask:
            self._files["mask"] = f"{name}.mask"
        self._handles = {k: open(os.path.join(self.folder, v + ".tmp"), "wb") for k, v in self._files.items()}
        self._digests = {k: hashlib.sha256() for k in self._files}
        self._sizes = dict.fromkeys(self._files, 0)
        self._boundaries = [np.zeros(1, dtype="<u8")]
        self._tokens = 0
        self._open = True

    def _write(self, kind: str, data: bytes) -> None:
        self._handles[kind].write(data)
        self._digests[kind].update(data)
        self._sizes[kind] += len(data)

    def add(self, tokens: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Adds one document."""
        if len(tokens) == 0:
            raise ValueError("an empty document cannot be written")
        self.add_batch(np.asarray(tokens), None if mask is None else np.asarray(mask), np.array([len(tokens)]))

    def add_batch(self, tokens: np.ndarray, mask: np.ndarray | None, doc_lengths: np.ndarray) -> None:
        """Adds consecutive documents given flat: ``tokens`` (and ``mask``) of all of them, and
        each one's length. The shards come out exactly as ``add`` one document at a time."""
        doc_lengths = np.asarray(doc_lengths, dtype=np.int64)
        if len(doc_lengths) == 0:
            return
        if doc_lengths.min() <= 0:
            raise ValueError("an empty document cannot be written")
        if int(doc_lengths.sum()) != len(tokens):
            raise ValueError(f"document lengths add up to {int(doc_lengths.sum())}, not {len(tokens)} tokens")
        if tokens.min() < 0 or tokens.max() >= self.vocab_size:
            raise ValueError(f"token id out of range for vocab_size {self.vocab_size}")
        if self.with_mask and (mask is None or len(mask) != len(tokens)):
            raise ValueError("a loss mask of the documents' length is required")
        tokens = tokens.astype(self.dtype, copy=False)
        ends = np.cumsum(doc_lengths)
        start_doc = start_token = 0
        while start_doc < len(doc_lengths):
            if not self._open:
                self._start()
            # The first document (from start_doc) that fills this shard, or the last one.
            room = self.tokens_per_shard - self._tokens
            offset = ends[start_doc - 1] if start_doc else 0
            last = min(int(np.searchsorted(ends, offset + room, side="left")), len(doc_lengths) - 1)
            end_token = int(ends[last])
            self._write("tokens", tokens[start_token:end_token].tobytes())
            if self.with_mask:
                self._write("mask", mask[start_token:end_token].astype(np.uint8, copy=False).tobytes())
            self._boundaries.append((ends[start_doc : last + 1] - offset + self._tokens).astype("<u8"))
            self._tokens += end_token - start_token
            start_doc, start_token = last + 1, end_token
            if self._tokens >= self.tokens_per_shard:
                self._finish()

    def _finish(self) -> None:
        boundaries = np.concatenate(self._boundaries)
        self._write("index", boundaries.tobytes())
        for handle in self._handles.values():
            handle.close()
        entry = {"name": self._name, "split": self.split, "num_tokens": self._tokens,
                 "num_documents": len(boundaries) - 1, "files": {}}
        for kind, file in self._files.items():
            path = os.path.join(self.folder, file)
            os.replace(path + ".tmp", path)
            entry["files"][kind] = {"path": file, "bytes": self._sizes[kind], "sha256": self._digests[kind].hexdigest()}
        self.entries.append(entry)
        self._sequence += 1
        self._open = False

    def close(self) -> list[dict]:
        if self._open:
            self._finish()
        return self.entries

    def abort(self) -> None:
        """Closes and deletes the shard being written (after an error); finished shards stay."""
        if not self._open:
            return
        for kind, handle in self._handles.items():
            try:
                handle.close()
            except OSError:
                pass  # its buffer could not be flushed (a full disk): the file is closed all the same
            try:
                os.remove(os.path.join(self.folder, self._files[kind] + ".tmp"))
            except OSError:
                pass
        self._open = False


def manifest_text(manifest: dict) -> str:
    """manifest.json's text (the same bytes wherever it is written)."""
    return json.dumps(manifest, indent=2, sort_keys=True) + "\n"


def write_manifest(folder: str, manifest: dict) -> None:
    """Writes manifest.json atomically (temporary name, then rename)."""
    path = os.path.join(folder, MANIFEST)
    with open(path + ".tmp", "w") as f:
        f.write(manifest_text(manifest))
    os.replace(path + ".tmp", path)


def new_manifest(*, tokenizer: dict, vocab_size: int, eos_id: int, shards: list[dict], **extra) -> dict:
    """A manifest dict with the fields every reader checks."""
    return {
        "format_version": FORMAT_VERSION,
        "tokenizer": tokenizer,
        "vocab_size": vocab_size,
        "eos_id": eos_id,
        "dtype": token_dtype(vocab_size).name,
        "byte_order": "little",
        "shards_dir": SHARDS_DIR,
        "shards": sorted(shards, key=lambda s: (s["split"], s["name"])),
        **extra,
    }


@dataclass
class _Shard:
    name: str
    tokens: np.ndarray
    boundaries: np.ndarray
    mask: np.ndarray | None


class ShardSet:
    """Memory-mapped documents of one split (or all), in manifest order.

    Checks at open: format version, dtype, that every file exists with the recorded size and
    (``verify_checksums=True``) sha256. Any mismatch raises ShardError naming the file.
    """

    def __init__(self, folder: str, split: str | None = None, verify_checksums: bool = False):
        if "://" in folder and not folder.startswith("file://"):
            raise ShardError(f"{folder} is on object storage, and shards are memory-mapped: copy them to a local or shared "
                             f"folder first with `reddit-pretrain fetch-shards {shlex.quote(folder)} <folder>` (every file sha256-checked), "
                             "then read that folder")
        self.folder = folder
        path = os.path.join(folder, MANIFEST)
        if not os.path.exists(path):
            raise ShardError(f"{folder}: no {MANIFEST} (not a shard set, or its writing did not finish)")
        with open(path) as f:
            self.manifest = json.load(f)
        m = self.manifest
        if m.get("format_version") != FORMAT_VERSION:
            raise ShardError(f"{path}: format_version {m.get('format_version')} is not {FORMAT_VERSION}")
        self.vocab_size = int(m["vocab_size"])
        self.eos_id = int(m["eos_id"])
        self.dtype = token_dtype(self.vocab_size)
        if m["dtype"] != self.dtype.name:
            raise ShardError(f"{path}: dtype {m['dtype']} does not match vocab_size {self.vocab_size}")
        entries = [s for s in m["shards"] if split is None or s["split"] == split]
        if not entries:
            raise ShardError(f"{folder}: no shards for split {split!r}")
        self.shards = [self._open(entry) for entry in entries]
        if verify_checksums:  # the same threaded check the trainer runs (verify_files)
            bad = verify_files(shard_files(folder, {**m, "shards": entries}), threads=os.cpu_count() or 1)
            if bad:
                raise ShardError(f"{bad[0]} does not match its sha256 in the manifest (corrupted?)"
                                 + (f", and {len(bad) - 1} more file(s)" if len(bad) > 1 else ""))
        counts = np.array([len(s.boundaries) - 1 for s in self.shards], dtype=np.int64)
        self._doc_offsets = np.concatenate([[0], np.cumsum(counts)])
        self.num_documents = int(self._doc_offsets[-1])
        self.num_tokens = int(sum(len(s.tokens) for s in self.shards))
        self.has_mask = all(s.mask is not None for s in self.shards)

    def _open(self, entry: dict) -> _Shard:
        arrays = {}
        for kind, info in entry["files"].items():
            path = shard_path(self.folder, self.manifest, info["path"])
            if not os.path.exists(path):
                raise ShardError(f"missing shard file {path}")
            size = os.path.getsize(path)
            if size != info["bytes"]:
                raise ShardError(f"{path} has {size} bytes, the manifest says {info['bytes']}")
            dtype = {"tokens": self.dtype, "index": np.dtype("<u8"), "mask": np.dtype("u1")}[kind]
            arrays[kind] = np.memmap(path, dtype=dtype, mode="r") if size else np.zeros(0, dtype=dtype)
        boundaries = arrays["index"]
        if len(boundaries) != entry["num_documents"] + 1 or int(boundaries[-1]) != len(arrays["tokens"]) \
                or len(arrays["tokens"]) != entry["num_tokens"]:
            raise ShardError(f"shard {entry['name']}: index, tokens and manifest counts disagree")
        return _Shard(entry["name"], arrays["tokens"], boundaries, arrays.get("mask"))

    def __len__(self) -> int:
        return self.num_documents

    def _locate(self, index: int) -> tuple[_Shard, int, int]:
        if not 0 <= index < self.num_documents:
            raise IndexError(f"document {index} out of range [0, {self.num_documents})")
        shard_number = int(np.searchsorted(self._doc_offsets, index, side="right") - 1)
        shard = self.shards[shard_number]
        local = index - int(self._doc_offsets[shard_number])
        return shard, int(shard.boundaries[local]), int(shard.boundaries[local + 1])

    def document(self, index: int) -> np.ndarray:
        """Token ids of document ``index`` (a read-only view into the memory map)."""
        shard, start, end = self._locate(index)
        return shard.tokens[start:end]

    def loss_mask(self, index: int) -> np.ndarray:
        shard, start, end = self._locate(index)
        if shard.mask is None:
            raise ShardError(f"shard {shard.name} has no loss mask")
        return shard.mask[start:end]

    def turns(self, index: int) -> list[np.ndarray]:
        """The document split back into its turns (EOS removed)."""
        doc = np.asarray(self.document(index))
        cuts = np.flatnonzero(doc == self.eos_id)
        return [doc[a + 1 if i else 0 : b] for i, (a, b) in enumerate(zip(np.concatenate([[-1], cuts[:-1]]), cuts))]

    def stream(self) -> "TokenStream":
        return TokenStream([s.tokens for s in self.shards], [s.mask for s in self.shards] if self.has_mask else None)


class TokenStream:
    """All tokens of a shard set as one virtual array; windows are sliced across shard ends.

    ``window(k, seq_len)`` returns tokens ``[k*seq_len, k*seq_len + seq_len + 1)``: inputs and
    (shifted) targets of a packed nanoGPT-style window, documents separated by their EOS.
    """

    def __init__(self, token_arrays: list[np.ndarray], mask_arrays: list[np.ndarray] | None):
        self.arrays = token_arrays
        self.masks = mask_arrays
        self.offsets = np.concatenate([[0], np.cumsum([len(a) for a in token_arrays])]).astype(np.int64)
        self.num_tokens = int(self.offsets[-1])

    def num_windows(self, seq_len: int) -> int:
        return max(0, (self.num_tokens - 1) // seq_len)

    def _slice(self, arrays, start: int, end: int) -> np.ndarray:
        out = []
        shard = int(np.searchsorted(self.offsets, start, side="right") - 1)
        while start < end:
            local = start - int(self.offsets[shard])
            take = min(end - start, len(arrays[shard]) - local)
            out.append(np.asarray(arrays[shard][local : local + take]))
            start += take
            shard += 1
        return np.concatenate(out) if len(out) > 1 else out[0]

    def window(self, k: int, seq_len: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(tokens of length seq_len + 1, loss mask of the same length or None)."""
        if not 0 <= k < self.num_windows(seq_len):
            raise IndexError(f"window {k} out of range [0, {self.num_windows(seq_len)})")
        start, end = k * seq_len, k * seq_len + seq_len + 1
        tokens = self._slice(self.arrays, start, end).astype(np.int64)
        mask = self._slice(self.masks, start, end).astype(np.int64) if self.masks is not None else None
        return tokens, mask


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.json", "merges.txt", "chat_template.jinja", "chat_template.json")
"""The files of a tokenizer folder that a loader (``transformers.AutoTokenizer``) reads: the manifest
records the sha256 of each one present when the shards were made."""


def tokenizer_digests(folder: str) -> dict[str, str]:
    """{name: sha256} of the ``TOKENIZER_FILES`` present in ``folder`` (what the manifest records)."""
    return {name: _sha256(os.path.join(folder, name)) for name in TOKENIZER_FILES
            if os.path.isfile(os.path.join(folder, name))}


def tokenizer_problem(folder: str, tokenizer: dict) -> str | None:
    """Why the tokenizer in ``folder`` is not the one the manifest's ``tokenizer`` record describes
    (a file changed, added, missing or linked from elsewhere, with both digests), or None.
    Manifests from before every file was recorded give tokenizer.json's digest only."""
    recorded = tokenizer.get("files")
    if not recorded:
        with open(os.path.join(folder, "tokenizer.json"), encoding="utf-8") as f:
            found = hashlib.sha256(f.read().encode()).hexdigest()  # as resolve_tokenizer hashed it then
        want = tokenizer.get("sha256")
        return None if want in (None, found) else \
            f"tokenizer.json has sha256 {found}, the manifest records {want}"
    for name in sorted(set(recorded) | set(TOKENIZER_FILES)):
        path = os.path.join(folder, name)
        if name not in TOKENIZER_FILES:
            return f"the manifest records {name!r}, which is not a tokenizer file"
        if os.path.islink(path):
            return f"{name} is a symbolic link (to {os.readlink(path)}), not a file of the tokenizer folder"
        present = os.path.isfile(path)
        if name not in recorded:
            if present:
                return f"{name} (sha256 {_sha256(path)}) was not there when the shards were made (the manifest records none)"
            continue
        if not present:
            return f"{name} is missing (the manifest records sha256 {recorded[name]})"
        found = _sha256(path)
        if found != recorded[name]:
            return f"{name} has sha256 {found}, the manifest records {recorded[name]}"
    return None


def tokenizer_folder(manifest: dict, folder: str | None = None) -> str | None:
    """Where the tokenizer of a shard set is (the one place that knows): the folder its manifest
    names, else ``<folder>/tokenizer`` (``folder``: the shard set's), whichever holds a
    ``tokenizer.json`` whose files match the digests the manifest recorded; None when neither holds
    one (a hub tokenizer not saved locally). A tokenizer there that is not the shards' one (retrained,
    edited, a file added) raises ShardError naming the file and both digests."""
    tokenizer = manifest.get("tokenizer", {})
    refused = []
    for candidate in (tokenizer.get("path"), folder and os.path.join(folder, "tokenizer")):
        if candidate and os.path.exists(os.path.join(candidate, "tokenizer.json")):
            why = tokenizer_problem(candidate, tokenizer)
            if why is None:
                return candidate
            refused.append(f"{candidate}: {why}")
    if refused:
        raise ShardError(f"the tokenizer is not the one the shards were made with ({'; '.join(refused)}): "
                         "put that tokenizer back, or tokenize again with this one")
    return None
