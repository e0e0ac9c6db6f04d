"""The names that tie one stage to the next: what each stage writes and the next one reads.

Each stage writes its output folder through these names and the next stage reads it through the
same ones; no module spells them out itself (``tests/test_layout.py`` looks for the literals).
The shard set's own names (``manifest.json``, ``shards/``) belong to its format,
``reddit_pretrain.shards``.

    ingest    <out>/comments/month=YYYY-MM/bucket=NNNNN/*.parquet, submissions/..., rejects/,
              ingest_report.json, _INGEST_DONE.json (last); into a corpus folder:
              <corpus>/_CORPUS.json, <corpus>/ingest/<batch>/ (each an ingest output)
    extract   <out>/sessions/split=<train|valid|test>/part-BBBBB-SSSS.parquet, rejects/,
              extract_report.{json,png,html}, _EXTRACT_DONE.json (last); a corpus's batch:
              <corpus>/extract/<batch>/ (the same, and state/: what later batches are checked against)
    tokenize  <out>/shards/..., manifest.json, _TOKENIZE_DONE.json (last); a corpus's batch:
              <corpus>/shards/<batch>/ (one shard set per batch, listed in _CORPUS.json)
    train     documents of EOS-joined turns; targets IGNORE_INDEX where no loss is taken

Standard library only: both sides and the Spark executors import it.
"""

from __future__ import annotations

import re

# -- ingest -----------------------------------------------------------------------------------------
INGEST_DONE = "_INGEST_DONE.json"
INGEST_REPORT = "ingest_report.json"
TABLES = {"RC": "comments", "RS": "submissions"}
"""A dump's kind (its file name's prefix) -> the table folder its rows go to."""
COMMENTS, SUBMISSIONS = TABLES["RC"], TABLES["RS"]
REJECTS = "rejects"
"""The folder of the records (ingest) or sessions (extract) set aside, with their reasons."""

CORPUS_FILE = "_CORPUS.json"
"""A corpus folder's record (``extraction.ingest.corpus``): what every batch of months must match."""
CORPUS_INGEST = "ingest"
"""A corpus folder's batches: ``<corpus>/ingest/<batch>/``, each an ingest output."""
CORPUS_EXTRACT = "extract"
"""A corpus folder's extracted batches: ``<corpus>/extract/<batch>/``, each an extract output of the
sessions whose last turn is in that batch (``extraction.sessions.job``, ``ExtractConfig.batch``)."""
CORPUS_SHARDS = "shards"
"""A corpus folder's shard sets: ``<corpus>/shards/<batch>/``, each a tokenize output of one extracted batch."""
EXTRACT_STATE = "state"
"""In a batch's extract output: what the corpus rules of later batches read (``extraction.sessions.batches``)."""

_BUCKET = re.compile(r"/bucket=(\d+)/")


def bucket_folder(month: str | None, bucket: int) -> str:
    """The partition folder of one month's rows of one thread bucket, under a table folder."""
    return f"month={month}/bucket={bucket:05d}"


def bucket_of(path: str) -> int | None:
    """The thread bucket of a file under a ``bucket_folder`` (None when the path has none)."""
    match = _BUCKET.search(path)
    return int(match[1]) if match else None


# -- extract ----------------------------------------------------------------------------------------
EXTRACT_DONE = "_EXTRACT_DONE.json"
EXTRACT_REPORT = "extract_report.json"
EXTRACT_REPORT_PNG = "extract_report.png"
EXTRACT_REPORT_HTML = "extract_report.html"
SESSIONS = "sessions"
SPLITS = ("train", "valid", "test")
TRAIN, VALID, TEST = SPLITS


def split_folder(split: str) -> str:
    """The folder of one split's session files, under ``SESSIONS``."""
    return f"split={split}"


def session_part(bucket: int, seq: int) -> str:
    """The name of one bucket's ``seq``-th file of a split's sessions."""
    return f"part-{bucket:05d}-{seq:04d}.parquet"


def reject_part(bucket: int) -> str:
    """The name of one bucket's file of rejected sessions, under ``REJECTS``."""
    return f"part-{bucket:05d}.parquet"


# -- tokenize and train -----------------------------------------------------------------------------
TOKENIZE_DONE = "_TOKENIZE_DONE.json"
EOS_TOKEN = "<|endoftext|>"
"""What closes each turn of a document (GPT-2's EOS; a trained tokenizer's BOS and UNK as well)."""
IGNORE_INDEX = -100
"""A target no loss is taken on (padding, the first turn): Hugging Face's and PyTorch's convention."""

# -- export -----------------------------------------------------------------------------------------
EXPORT_MARKER = "reddit_pretrain.json"
"""In every exported model folder: the checkpoint it came from, and the sha256 of the tokenizer files
written beside the model (which evaluate and chat check)."""
