"""GPT-2 style byte-level BPE tokenizers: train one on the train split, or resolve one by name/path.

    reddit-pretrain train-tokenizer --sessions out/extract/sessions --out out/tokenizer      # 4,000 tokens

The saved folder loads with ``transformers.AutoTokenizer.from_pretrained(folder)`` (GPT2TokenizerFast)
and with ``tokenizers.Tokenizer.from_file(folder/tokenizer.json)``; the tokenize job and the
trainer both accept it. ``<|endoftext|>`` is the EOS (and BOS/UNK, as in GPT-2).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import sys
from typing import Iterator

from reddit_pretrain import storage
from reddit_pretrain.errors import UserError
from reddit_pretrain.hydra_job import tool
from reddit_pretrain.layout import EOS_TOKEN, split_folder
DEFAULT_VOCAB_SIZE = 4000
"""The vocabulary a trained tokenizer aims for, here and in the pipeline (GPT-2's is 50,257: a
month of a small subreddit has too few distinct pairs to fill it)."""


class TokenizerNotFound(UserError, RuntimeError):
    pass


def resolve_tokenizer(name_or_path: str) -> tuple[str, dict]:
    """(tokenizer.json text, description) for a local folder/file or a model hub name.

    Without a hub (or with HF_HUB_OFFLINE=1), a name that is not a local path gives a clear
    error saying how to point at a local tokenizer instead.
    """
    candidates = [name_or_path, os.path.join(name_or_path, "tokenizer.json")]
    for candidate in candidates:
        if os.path.isfile(candidate):
            with open(candidate, encoding="utf-8") as f:
                text = f.read()
            return text, _described(name_or_path, os.path.abspath(os.path.dirname(candidate)), candidate, text)
    if os.path.sep in name_or_path and not os.path.exists(name_or_path) and name_or_path.startswith((".", "/")):
        raise TokenizerNotFound(f"tokenizer path {name_or_path!r} does not exist")
    fix = ("Point tokenizer= at a local copy (a folder saved by save_pretrained, or a tokenizer.json), or train one on "
           "your sessions: reddit-pretrain train-tokenizer --sessions <extract output>/sessions --out <folder>")
    try:
        from huggingface_hub import hf_hub_download

        try:  # the hub's cache first: no network needed for a tokenizer downloaded before
            path = hf_hub_download(repo_id=name_or_path, filename="tokenizer.json", local_files_only=True)
        except Exception:
            unreachable = _hub_unreachable()
            if unreachable:  # fail now, not after a minute of retries
                raise TokenizerNotFound(f"cannot load tokenizer {name_or_path!r}: it is not a local folder with "
                                        f"tokenizer.json, and {unreachable}. {fix}") from None
            path = hf_hub_download(repo_id=name_or_path, filename="tokenizer.json")
    except TokenizerNotFound:
        raise
    except Exception as err:  # offline, unknown repo, no tokenizer.json: all mean "not here"
        raise TokenizerNotFound(
            f"cannot load tokenizer {name_or_path!r}: it is not a local folder with tokenizer.json and the model "
            f"hub did not provide it ({type(err).__name__}). {fix}"
        ) from None
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return text, _described(name_or_path, os.path.dirname(path), path, text)


def _described(name: str, folder: str, path: str, text: str) -> dict:
    """The manifest's record of a tokenizer: name, folder, tokenizer.json's sha256, and (when the
    folder's tokenizer.json is the one read) every file a loader reads there with its sha256, which
    every reader of the shards checks before loading it (``reddit_pretrain.shards.tokenizer_folder``)."""
    from reddit_pretrain.shards import tokenizer_digests

    info = {"name": name, "path": folder, "sha256": hashlib.sha256(text.encode()).hexdigest()}
    if os.path.basename(path) == "tokenizer.json":
        info["files"] = tokenizer_digests(folder)
    return info


def _hub_unreachable(timeout_s: float = 3.0) -> str | None:
    """Why the model hub cannot be reached (offline mode, no name resolution, no connection within
    ``timeout_s``), or None when a connection opens."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except OSError as err:
        return f"the model hub ({host}:{port}) cannot be reached from this machine ({type(err).__name__}: {err})"


def iter_turns(sessions_dir: str, split: str = "train", max_sessions: int | None = None) -> Iterator[str]:
    """Turn texts of one split, in file order (sorted paths), as written by the extract job."""
    import pyarrow.parquet as pq

    files = sorted(glob.glob(os.path.join(sessions_dir, split_folder(split), "*.parquet")))
    if not files:
        raise FileNotFoundError(f"no {split} sessions under {sessions_dir} (run the extract job first)")
    seen = 0
    for path in files:
        for batch in pq.ParquetFile(path).iter_batches(columns=["turns"], batch_size=4096):
            for turns in batch.column("turns").to_pylist():
                yield from turns
                seen += 1
                if max_sessions is not None and seen >= max_sessions:
                    return


FILES = {"tokenizer.json", "tokenizer_config.json"}
"""What a trained tokenizer's folder holds; a folder holding anything else is not replaced."""


def train_tokenizer(sessions_dir: str, out_dir: str, vocab_size: int = DEFAULT_VOCAB_SIZE, min_frequency: int = 2,
                    max_sessions: int | None = 2_000_000, split: str = "train", overwrite: bool = False) -> str:
    """Trains a byte-level BPE (GPT-2's scheme) on a split's turns and saves it in HF format.
    ``out_dir`` must be new, empty or a tokenizer folder (``FILES``) unless ``overwrite``."""
    from tokenizers import ByteLevelBPETokenizer

    storage.check_replaceable(out_dir, "train_tokenizer", owned=FILES, overwrite=overwrite, reads=sessions_dir)

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(iter_turns(sessions_dir, split, max_sessions), vocab_size=vocab_size,
                            min_frequency=min_frequency, special_tokens=[EOS_TOKEN], show_progress=False)
    learned = bpe.get_vocab_size()
    if learned < vocab_size:
        print(f"[train_tokenizer] learned {learned:,} tokens, not the {vocab_size:,} asked for: the {split} split has no "
              f"more byte pairs occurring at least {min_frequency} times (more sessions, or a lower --min-frequency, "
              "give more)", file=sys.stderr, flush=True)
    # Hugging Face's folder format, written with `tokenizers` alone (the data side does not import
    # transformers): the same two files GPT2TokenizerFast.save_pretrained writes, byte for byte.
    config = {"add_prefix_space": False, "backend": "tokenizers", "bos_token": EOS_TOKEN, "eos_token": EOS_TOKEN,
              "errors": "replace", "model_max_length": 1024, "pad_token": None, "tokenizer_class": "GPT2Tokenizer",
              "unk_token": EOS_TOKEN}
    with storage.building(out_dir) as tmp:  # a killed run's leftover beside it is removed first
        os.makedirs(tmp)
        bpe.save(os.path.join(tmp, "tokenizer.json"))
        with open(os.path.join(tmp, "tokenizer_config.json"), "w") as f:
            f.write(json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    return out_dir


@tool
def main(argv: list[str] | None = None) -> int:
    from reddit_pretrain.hydra_job import prog

    parser = argparse.ArgumentParser(
        prog=prog("python -m extraction.tokenize.train_tokenizer"), formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description=f"Train a byte-level BPE tokenizer (GPT-2's scheme, {EOS_TOKEN} as EOS) on the turns of extracted "
                    "sessions; the folder loads with AutoTokenizer.from_pretrained and is what tokenize's tokenizer= takes.")
    parser.add_argument("--sessions", required=True, help="the extract job's sessions/ folder")
    parser.add_argument("--out", required=True, help="folder to write (tokenizer.json, tokenizer_config.json)")
    parser.add_argument("--vocab-size", type=int, default=DEFAULT_VOCAB_SIZE, help=f"tokens to learn, {EOS_TOKEN} included")
    parser.add_argument("--min-frequency", type=int, default=2, help="a byte pair is merged only if it occurs this often")
    parser.add_argument("--max-sessions", type=int, default=2_000_000, help="sessions read at most (in file order)")
    parser.add_argument("--split", default="train", help="which split's turns to learn from")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT even when it holds other files")
    args = parser.parse_args(argv)
    path = train_tokenizer(args.sessions, args.out, args.vocab_size, args.min_frequency, args.max_sessions, args.split,
                           args.overwrite)
    print(f"tokenizer saved to {path}; the tokenize job takes it as tokenizer={path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
