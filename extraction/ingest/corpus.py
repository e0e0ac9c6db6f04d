"""A corpus folder: months ingested in batches, each batch its own ingest output, all cut into the
same pieces of the fixed thread hash space, so a thread that spans batches lands in the same piece
in each and the extract job reads it whole from all of them.

::

    <corpus>/_CORPUS.json              what every batch must match: the thread hash and its pieces,
                                       the extract's rules (``extract``) and the tokenizer
                                       (``tokenizer``) of the first batch run; the shard sets
                                       (``shard_sets``: months, sessions, tokens, rules, code of each)
    <corpus>/ingest/<batch>/           an ingest output (comments/, submissions/, rejects/, its
                                       report, its marker last): one ``reddit-pretrain ingest
                                       corpus=<corpus>`` run; named by its months (``2015-01``,
                                       ``2015-01_2015-03``) or ``batch=``
    <corpus>/extract/<batch>/          a batch extracted against the batches before it
                                       (``extraction.sessions.batches``)
    <corpus>/shards/<batch>/           its shard set (the tokenize job, ``batch=``)

A batch is added by ingest (``IngestConfig.corpus``): the batches already there are not touched,
a month already in a finished batch is refused (naming the batch), and the batch is complete when
its marker is written (``extraction.spark.stage``: a killed batch resumes like any ingest). The
extract job takes the corpus folder as its input and reads every complete batch
(``ingest_roots``); a batch without its marker (being written, or killed) is left out and named.
"""

from __future__ import annotations

import os
import re

from extraction.ingest import IngestError
from reddit_pretrain import layout, storage

THREAD_HASH = "blake2b-64 of the thread id (extraction.sessions.thread_keys.thread_bucket)"
_BATCH_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class CorpusError(IngestError):
    """A batch that does not fit the corpus it is added to."""


def is_corpus(url: str) -> bool:
    return storage.exists(storage.join(url, layout.CORPUS_FILE))


def read_corpus(url: str) -> dict | None:
    path = storage.join(url, layout.CORPUS_FILE)
    return storage.read_json(path) if storage.exists(path) else None


def corpus_pieces(url: str, asked: int) -> int | None:
    """The pieces of the hash space this corpus is cut into (None for a corpus not made yet);
    ``asked`` (a batch's ``thread_buckets``, 0 for automatic) must be those pieces or 0."""
    record = read_corpus(url)
    if record is None:
        return None
    if asked and asked != record["pieces"]:
        raise CorpusError(f"{url} cuts the thread hash space into {record['pieces']:,} pieces; thread_buckets={asked} "
                          "differs (leave it 0: a batch takes the corpus's pieces)")
    return int(record["pieces"])


def make_corpus(url: str, pieces: int) -> None:
    """Writes the corpus record once (a second writer of the same record changes nothing)."""
    record = read_corpus(url)
    if record is None:
        storage.write_json_atomic(storage.join(url, layout.CORPUS_FILE),
                                  {"format_version": 1, "thread_hash": THREAD_HASH, "pieces": pieces})
    elif record["pieces"] != pieces:
        raise CorpusError(f"{url} cuts the thread hash space into {record['pieces']:,} pieces, not {pieces:,}")


def record(url: str, key: str, value, replace: bool = False) -> None:
    """Sets ``key`` of the corpus record (``_CORPUS.json``) once (``replace``: every time): what a
    corpus's later runs must match, or what it lists."""
    current = read_corpus(url) or {}
    if replace or key not in current:
        storage.write_json_atomic(storage.join(url, layout.CORPUS_FILE), {**current, key: value})


def batch_name(files: list[str], months: list[str | None], given: str | None) -> str:
    """``given``, else the months the dumps' names say (``2015-01``, ``2015-01_2015-03``)."""
    if given:
        if not _BATCH_NAME.match(given):
            raise CorpusError(f"batch={given!r}: letters, digits, '.', '_' and '-' only, at most 64")
        return given
    if not months or any(m is None for m in months):
        unnamed = [os.path.basename(f) for f, m in zip(files, months) if m is None]
        raise CorpusError(f"the batch's months cannot be read from {unnamed[:3]}: name it with batch=<name>")
    first, last = min(months), max(months)
    return first if first == last else f"{first}_{last}"


def batch_folder(url: str, name: str) -> str:
    return storage.join(url, layout.CORPUS_INGEST, name)


def batches(url: str) -> tuple[list[str], list[str]]:
    """(complete batch names, names of batches without their marker), each sorted."""
    root = storage.join(url, layout.CORPUS_INGEST)
    names = [n for n in storage.list_dir(root, fresh=True) if not n.startswith((".", "_"))]  # (batches come and go)
    done = [n for n in names if storage.exists(storage.join(root, n, layout.INGEST_DONE))]
    return done, [n for n in names if n not in done]


def check_new_months(url: str, name: str, files: list[str]) -> None:
    """Refuses dumps already read by another complete batch (by file name: a month is one
    ``RC_``/``RS_`` dump), naming the batch, and a complete batch of this name holding other dumps
    (the same dumps again: the batch's own re-run, which finds it complete)."""
    names = {os.path.basename(f) for f in files}
    for other in batches(url)[0]:
        report = storage.read_json(storage.join(batch_folder(url, other), layout.INGEST_REPORT))
        theirs = {os.path.basename(f["path"]) for f in report.get("files", [])}
        if other == name and theirs != names:
            raise CorpusError(f"batch {name} of {url} holds other dumps ({', '.join(sorted(theirs)[:3])}): a batch is "
                              "not replaced; name this one otherwise (batch=...)")
        seen = sorted(names & theirs) if other != name else []
        if seen:
            raise CorpusError(f"{', '.join(seen[:3])} already in {url} (batch {other}): a month is added once")


def as_batch(cfg, files: list[str], automatic_pieces, say):
    """An ``IngestConfig`` writing a batch of ``cfg.corpus``: its folder there (``cfg.output`` is not
    used), cut into the corpus's pieces of the thread hash space (the corpus's first batch sets them:
    its ``thread_buckets``, or ``automatic_pieces()`` from its dumps); refused when a dump is already
    in another batch, or the batch's name holds other dumps."""
    from dataclasses import replace

    from extraction.ingest.dumps import parse_dump_name

    names = [parse_dump_name(f) for f in files]
    name = batch_name(files, [n.month if n is not None else None for n in names], cfg.batch)
    check_new_months(cfg.corpus, name, files)
    pieces = corpus_pieces(cfg.corpus, cfg.thread_buckets)
    if pieces is None:
        pieces = cfg.thread_buckets or automatic_pieces()
        make_corpus(cfg.corpus, pieces)
        say(f"{cfg.corpus}: a new corpus, its thread hash space cut into {pieces:,} pieces (every later batch the same)")
    return replace(cfg, output=batch_folder(cfg.corpus, name), thread_buckets=pieces)


def ingest_roots(url: str) -> tuple[list[str], list[str]]:
    """The ingest outputs an extract input stands for: the folder itself, or a corpus's complete
    batches; and the names of a corpus's batches without a marker (being written, or killed), left out."""
    if not is_corpus(url):
        return [url], []
    done, unfinished = batches(url)
    if not done:
        raise CorpusError(f"{url} holds no complete batch: add months with reddit-pretrain ingest corpus={url} inputs=[...]")
    return [batch_folder(url, n) for n in done], unfinished
