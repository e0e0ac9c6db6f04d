"""Tools over a shard set: ``inspect`` (counts, length histogram, decoded documents) and the
Megatron-LM / GPT-NeoX indexed-dataset export, with their command line.

    python -m pretrain.shard_tools inspect out/shards [--verify]
    python -m pretrain.shard_tools export-megatron out/shards out/neox/reddit [--split train]
"""

from __future__ import annotations

import os
import sys
import struct

import numpy as np

from reddit_pretrain.hydra_job import tool
from reddit_pretrain.layout import IGNORE_INDEX, TOKENIZE_DONE
from reddit_pretrain.shards import ShardError, ShardSet, tokenizer_folder

# ---------------------------------------------------------------------------------------------
# Megatron-LM / GPT-NeoX indexed dataset (.bin + .idx, "MMIDIDX" version 1)

_MMIDIDX = b"MMIDIDX\x00\x00"
_MEGATRON_DTYPES = {np.dtype("u1"): 1, np.dtype("i1"): 2, np.dtype("<i2"): 3, np.dtype("<i4"): 4,
                    np.dtype("<i8"): 5, np.dtype("<f8"): 6, np.dtype("<f4"): 7, np.dtype("<u2"): 8}


LABEL_SUFFIX = "_label"
"""``<prefix>_label.bin/.idx``: the loss mask as GPT-NeoX label data (token id, or -100: no loss)."""
NO_LOSS = IGNORE_INDEX


def _write_megatron(prefix: str, arrays, dtype: np.dtype) -> None:
    """One ``.bin``/``.idx`` pair ("MMIDIDX" version 1): one sequence and one document per array,
    written under temporary names and renamed into place."""
    try:
        _write_megatron_files(prefix, arrays, dtype)
    except BaseException:
        for tmp in (prefix + ".bin.tmp", prefix + ".idx.tmp"):
            if os.path.isfile(tmp):
                os.remove(tmp)
        raise


def _write_megatron_files(prefix: str, arrays, dtype: np.dtype) -> None:
    sizes = []
    with open(prefix + ".bin.tmp", "wb") as out:
        for array in arrays:
            out.write(np.asarray(array, dtype=dtype).tobytes())
            sizes.append(len(array))
    sizes_arr = np.asarray(sizes, dtype="<i4")
    pointers = np.concatenate([[0], np.cumsum(sizes_arr[:-1], dtype=np.int64)]).astype("<i8") * dtype.itemsize
    doc_idx = np.arange(len(sizes_arr) + 1, dtype="<i8")
    with open(prefix + ".idx.tmp", "wb") as out:
        out.write(_MMIDIDX)
        out.write(struct.pack("<Q", 1))
        out.write(struct.pack("<B", _MEGATRON_DTYPES[dtype]))
        out.write(struct.pack("<Q", len(sizes_arr)))
        out.write(struct.pack("<Q", len(doc_idx)))
        out.write(sizes_arr.tobytes())
        out.write(pointers.tobytes())
        out.write(doc_idx.tobytes())
    os.replace(prefix + ".bin.tmp", prefix + ".bin")
    os.replace(prefix + ".idx.tmp", prefix + ".idx")


def _documents(shard_set: ShardSet, mask: bool):
    for shard in shard_set.shards:
        bounds = np.asarray(shard.boundaries, dtype=np.int64)
        for start, end in zip(bounds[:-1], bounds[1:]):
            tokens = np.asarray(shard.tokens[start:end])
            if not mask:
                yield tokens
            else:
                yield np.where(np.asarray(shard.mask[start:end]) == 1, tokens.astype(np.int64), NO_LOSS)


def _is_megatron_index(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(9) == _MMIDIDX
    except OSError:
        return False


def _check_targets(targets: list[str], overwrite: bool) -> None:
    """Refuses (ShardError) to write over a folder, or over files that are not an earlier export
    (a ``.bin``/``.idx`` pair whose index is a Megatron index) unless ``overwrite``."""
    for path in targets:
        if os.path.isdir(path):
            raise ShardError(f"{path} is a folder: choose another prefix (the export writes {os.path.basename(path)} as a file)")
    for path in targets:
        if os.path.lexists(path) and not overwrite and not _is_megatron_index(path.rsplit(".", 1)[0] + ".idx"):
            raise ShardError(f"{path} exists and is not an earlier Megatron export: choose another prefix, "
                             "or pass --overwrite to replace it")


def export_megatron(shard_set: ShardSet, prefix: str, labels: bool = True, overwrite: bool = False) -> list[str]:
    """Writes ``prefix.bin``/``prefix.idx`` (one sequence and one document per session) and, when the
    shards have a loss mask and ``labels``, ``prefix_label.bin/.idx``: the same sequences with -100
    where there is no loss (the first turn), the form GPT-NeoX reads as label data
    (``train_label_data_paths``; its labels are not shifted: the label of token i sits at i). The
    output folder is created. Existing files are replaced only when they are an earlier export (or
    with ``overwrite``); a folder in their place is refused. Returns the files written.

    Megatron has no uint32 code, so vocabularies over 65536 are written as int32; labels are int32.
    """
    targets = [prefix + ".bin", prefix + ".idx"] + ([prefix + LABEL_SUFFIX + ".bin", prefix + LABEL_SUFFIX + ".idx"]
                                                    if labels and shard_set.has_mask else [])
    _check_targets(targets, overwrite)
    folder = os.path.dirname(os.path.abspath(prefix))
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ShardError(f"{folder} is a file, not a folder: choose another prefix")
    os.makedirs(folder, exist_ok=True)
    dtype = shard_set.dtype if shard_set.dtype == np.dtype("<u2") else np.dtype("<i4")
    _write_megatron(prefix, _documents(shard_set, mask=False), dtype)
    written = [prefix + ".bin", prefix + ".idx"]
    if labels and shard_set.has_mask:
        _write_megatron(prefix + LABEL_SUFFIX, _documents(shard_set, mask=True), np.dtype("<i4"))
        written += [prefix + LABEL_SUFFIX + ".bin", prefix + LABEL_SUFFIX + ".idx"]
    return written


def read_megatron(prefix: str) -> list[np.ndarray]:
    """Sequences of a Megatron/NeoX ``.bin``/``.idx`` pair (for checks and imports)."""
    with open(prefix + ".idx", "rb") as f:
        if f.read(9) != _MMIDIDX:
            raise ShardError(f"{prefix}.idx is not a Megatron indexed dataset index")
        (version,) = struct.unpack("<Q", f.read(8))
        (code,) = struct.unpack("<B", f.read(1))
        (count,) = struct.unpack("<Q", f.read(8))
        (doc_count,) = struct.unpack("<Q", f.read(8))
        sizes = np.frombuffer(f.read(4 * count), dtype="<i4")
        pointers = np.frombuffer(f.read(8 * count), dtype="<i8")
        np.frombuffer(f.read(8 * doc_count), dtype="<i8")
    if version != 1:
        raise ShardError(f"{prefix}.idx: version {version} is not 1")
    dtype = {v: k for k, v in _MEGATRON_DTYPES.items()}[code]
    data = np.memmap(prefix + ".bin", dtype=dtype, mode="r")
    return [data[p // dtype.itemsize : p // dtype.itemsize + s] for p, s in zip(pointers, sizes)]


# ---------------------------------------------------------------------------------------------
# Command line: inspect and export


def _load_decoder(manifest: dict, folder: str):
    path = tokenizer_folder(manifest, folder)
    if path is None:
        return None
    from tokenizers import Tokenizer

    return Tokenizer.from_file(os.path.join(path, "tokenizer.json"))


def inspect(folder: str, show: int = 3, verify: bool = False) -> str:
    """Counts per split, a document length histogram, and a few decoded documents."""
    lines = []
    manifest = ShardSet(folder, verify_checksums=verify).manifest
    decoder = _load_decoder(manifest, folder)
    lines.append(f"{folder}: format {manifest['format_version']}, tokenizer {manifest['tokenizer'].get('name')}, "
                 f"vocab {manifest['vocab_size']}, eos {manifest['eos_id']}, dtype {manifest['dtype']}")
    for split in sorted({s["split"] for s in manifest["shards"]}):
        shard_set = ShardSet(folder, split)
        lengths = np.concatenate([np.diff(np.asarray(s.boundaries, dtype=np.int64)) for s in shard_set.shards])
        lines.append(f"[{split}] {len(shard_set.shards)} shards, {shard_set.num_documents:,} documents, "
                     f"{shard_set.num_tokens:,} tokens, mean {lengths.mean():.1f} tokens/document, max {lengths.max()}")
        edges = [0, 16, 32, 64, 128, 256, 512, 1024, 2048]
        hist, _ = np.histogram(lengths, bins=edges + [max(edges[-1] + 1, int(lengths.max()) + 1)])
        for lo, hi, n in zip(edges, edges[1:] + ["inf"], hist):
            lines.append(f"    {lo:>5}-{hi:<5} {n:>9,} {'#' * int(40 * n / max(1, hist.max()))}")
        for i in range(min(show, shard_set.num_documents)):
            turns = shard_set.turns(i)
            text = " <EOS> ".join(decoder.decode(t.tolist()) for t in turns) if decoder else str(turns)
            lines.append(f"    doc {i}: {text[:300]}")
    return "\n".join(lines)


def parse_sources(text: str) -> list:
    """``data.sources``'s value as the trainer's command line takes it (Hydra's override syntax:
    ``[{path:a,weight:0.7},{path:b,weight:0.3}]``) into SourceConfigs."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from pretrain.config import SourceConfig

    try:
        value = OverridesParser.create().parse_override(f"data.sources={text}").value()
    except HydraException as err:
        raise ShardError(f"--sources {text!r} cannot be read: {str(err).splitlines()[0]}") from None
    if not isinstance(value, list) or not all(isinstance(v, dict) and set(v) <= {"path", "weight"} and "path" in v
                                              for v in value):
        raise ShardError(f"--sources takes a list of {{path:...,weight:...}}, as data.sources does, not {text!r}")
    return [SourceConfig(str(v["path"]), float(v.get("weight", 1.0))) for v in value]


def mixture_plan(sources_text: str, steps: int, global_batch: int, seq_len: int, mode: str, seed: int,
                 split: str = "train") -> str:
    """What a run over a mixture takes from each shard set in ``steps`` steps of ``global_batch``
    samples: samples, share, epochs and tokens (input tokens that are not padding) per source."""
    from pretrain.config import ConfigError, DataConfig, ModelConfig, TrainConfig
    from pretrain.data import open_mixture

    data = DataConfig(sources=parse_sources(sources_text), mode=mode, seq_len=seq_len)
    try:
        TrainConfig(data=data, model=ModelConfig(n_positions=max(seq_len, 1024))).validate()  # the sources' checks
    except ConfigError as err:
        raise ShardError(str(err)) from None
    mixture, _ = open_mixture(data, split, seed)
    samples = steps * global_batch
    lines = [f"mixture of {len(mixture)} shard sets, {split} split, {steps:,} steps of {global_batch:,} samples "
             f"({mode}, seq_len {seq_len}, seed {seed}):",
             f"{'source':<24}{'weight':>8}{'samples':>12}{'share':>8}{'epochs':>9}{'tokens':>14}{'in split':>10}"]
    for plan, source in zip(mixture.plan(samples), mixture.sources):
        per_sample = seq_len if mode == "packed" else \
            float(np.mean([source.tokens(i) for i in range(min(source.num_samples, 10_000))]))
        lines.append(f"{plan['source'][:23]:<24}{plan['weight']:>8.3f}{plan['samples']:>12,}{plan['share']:>8.1%}"
                     f"{plan['epochs']:>9.2f}{int(plan['samples'] * per_sample):>14,}{plan['size']:>10,}")
    return "\n".join(lines)


def fetch(source: str, dest: str) -> str:
    """Copies the shard set ``source`` (any filesystem fsspec reaches: s3://, gs://, hdfs://) to the
    local folder ``dest``: into a sibling staging folder, every file's sha256 checked against the
    manifest, then renamed into place. An earlier copy of the same shard set is replaced; any other
    content of ``dest`` is refused. Returns a line saying what was copied."""
    import json

    from reddit_pretrain import storage
    from reddit_pretrain.shards import MANIFEST, SHARDS_DIR, shard_files, verify_files

    if not storage.is_local(dest):
        raise ShardError(f"{dest}: fetch-shards copies to a local or shared folder, not to a URL")
    if not storage.exists(storage.join(source, MANIFEST)):
        raise ShardError(f"{source}: no {MANIFEST} (not a shard set, or its writing did not finish)")
    storage.check_replaceable(dest, "fetch-shards", owned={MANIFEST, SHARDS_DIR, "tokenizer", TOKENIZE_DONE}, reads=source)
    fs, root = storage.filesystem(source)
    with storage.building(dest) as tmp:
        fs.get(root.rstrip("/") + "/", tmp.rstrip("/") + "/", recursive=True)
        with open(os.path.join(tmp, MANIFEST)) as f:
            manifest = json.load(f)
        files = shard_files(tmp, manifest)  # every path confined to the copy
        bad = verify_files(files, threads=max(1, min(8, os.cpu_count() or 1)))
        if bad:
            raise ShardError(f"{len(bad)} file(s) copied from {source} do not match their sha256 in the manifest: "
                             + ", ".join(os.path.basename(b) for b in bad[:5]))
    size = sum(os.path.getsize(os.path.join(dest, os.path.relpath(p, tmp))) for p, _ in files)
    return f"copied {source} to {dest}: {len(files)} shard files, {size / 2**20:.1f} MiB, sha256 checked"


@tool
def main(argv: list[str] | None = None) -> int:
    import argparse

    from reddit_pretrain.hydra_job import prog

    parser = argparse.ArgumentParser(prog=prog("python -m pretrain.shard_tools"), description="Inspect or export token shards.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_inspect = sub.add_parser("inspect", help="counts, length histogram, decoded documents",
                               formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                               description="Counts per split, a histogram of document lengths, and the first documents "
                                           "decoded with the shards' tokenizer.")
    p_inspect.add_argument("folder", nargs="?", help="a shard set (the tokenize job's output); or --sources")
    p_inspect.add_argument("--show", type=int, default=3, help="documents to decode per split")
    p_inspect.add_argument("--verify", action="store_true", help="check every file's sha256 against the manifest")
    p_inspect.add_argument("--sources", help="a mixture, as data.sources takes it ('[{path:a,weight:0.7},{path:b,"
                                             "weight:0.3}]'): print what each shard set gives the planned steps")
    p_inspect.add_argument("--steps", type=int, default=1000, help="with --sources: the run's trainer.max_steps")
    p_inspect.add_argument("--global-batch", type=int, default=8, help="with --sources: samples per step (micro batch "
                                                                        "x accumulation x processes)")
    p_inspect.add_argument("--seq-len", type=int, default=128, help="with --sources: data.seq_len")
    p_inspect.add_argument("--mode", choices=("packed", "padded"), default="packed", help="with --sources: data.mode")
    p_inspect.add_argument("--seed", type=int, default=1234, help="with --sources: trainer.seed")
    p_export = sub.add_parser(
        "export-megatron", formatter_class=argparse.ArgumentDefaultsHelpFormatter, help="write <prefix>.bin/.idx (and <prefix>_label.bin/.idx) for Megatron-LM / GPT-NeoX",
        description="Writes one split as a Megatron-LM / GPT-NeoX indexed dataset: <prefix>.bin/.idx, one "
                    "document per session. When the shards carry a loss mask (DialoGPT: no loss on the first turn) "
                    "it also writes <prefix>_label.bin/.idx, the same sequences with -100 where there is no loss. "
                    "GPT-NeoX: \"train_data_paths\": [\"<prefix>\"], \"train_label_data_paths\": [\"<prefix>_label\"]. "
                    "Megatron-LM reads no label data and trains on every token.")
    p_export.add_argument("folder", help="a shard set (the tokenize job's output)")
    p_export.add_argument("prefix", help="output path without extension; its folder is created")
    p_export.add_argument("--split", default="train", help="which split to export")
    p_export.add_argument("--no-labels", action="store_true", help="do not write the _label files")
    p_export.add_argument("--overwrite", action="store_true", help="replace existing files that are not an earlier export")
    p_fetch = sub.add_parser("fetch", prog=f"{parser.prog} fetch-shards" if parser.prog == "reddit-pretrain" else None,  # its command's name
                             help="copy a shard set from object storage to a local folder, sha256-checked",
                             description="Copies a shard set (s3://, gs://, hdfs://, ...) to a local or shared folder, "
                                         "checks every file against the manifest's sha256, and renames it into place.")
    p_fetch.add_argument("source", help="the shard set's URL (the tokenize job's output)")
    p_fetch.add_argument("dest", help="a local folder; an earlier copy of a shard set there is replaced")
    args = parser.parse_args(argv)
    if args.command == "fetch":
        print(fetch(args.source, args.dest))
    elif args.command == "inspect" and args.sources:
        if args.steps < 1 or args.global_batch < 1 or args.seq_len < 1:
            raise ShardError("--steps, --global-batch and --seq-len must be >= 1")
        print(mixture_plan(args.sources, args.steps, args.global_batch, args.seq_len, args.mode, args.seed))
    elif args.command == "inspect":
        if not args.folder:
            raise ShardError("inspect takes a shard set's folder, or a mixture with --sources")
        print(inspect(args.folder, args.show, args.verify))
    else:
        print(" ".join(export_megatron(ShardSet(args.folder, args.split), args.prefix, not args.no_labels, args.overwrite)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
