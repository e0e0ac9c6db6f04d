"""Tokenize job: extracted sessions -> EOS-joined token shards with a manifest (reddit_pretrain.shards).

    python -m extraction.tokenize.job input=out/extract output=out/shards tokenizer=out/tokenizer

The driver plans tasks from the Parquet footers of the extract job's sessions (no count job, no
shuffle): per split, the files in name order and their row groups packed into runs of at most
``sessions_per_task`` sessions. Each Spark task reads its run with pyarrow, tokenizes it in
batches with the Hugging Face ``tokenizers`` library (Rust, one call per Arrow batch, never per
row), builds the documents with numpy (``reddit_pretrain.documents.pack_documents``) and writes its own
shards ``<split>-<task>-<seq>`` straight to the output's staging folder, hashing them as they are
written; only each shard's manifest entry returns to the driver, which writes ``manifest.json``
last. The plan depends only on the extract output's files, so the same input and config give
byte-identical shards, on one machine or a cluster.

Too long sessions (over ``max_session_tokens`` with their EOS tokens) follow ``too_long``:
``keep_last`` drops turns from the start until the rest fits (kept if at least ``min_turns``
remain), ``drop`` skips them. Every session is written or counted under a reason.

The output must be a local or shared (NFS, Lustre) folder: training memory-maps the shards.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shlex
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace

from reddit_pretrain import code_version, storage
from reddit_pretrain import layout
from reddit_pretrain.errors import UserError
from reddit_pretrain.layout import SPLITS
from extraction.spark import SparkConfig
from extraction.spark.stage import Stage

DONE_MARKER = layout.TOKENIZE_DONE
SKIP_REASONS = ("empty", "encode_error", "too_long")


class TokenizeError(UserError, RuntimeError):
    pass


@dataclass
class TokenizeConfig:
    """The tokenize job."""

    input: str = "out/extract"
    """Output folder of the extract job (sessions/ partitioned by split)."""
    output: str = "out/shards"
    tokenizer: str = "gpt2"
    """Hugging Face tokenizer: a local folder (or tokenizer.json), or a hub name (needs the hub)."""
    eos_token: str = layout.EOS_TOKEN
    splits: list[str] = field(default_factory=lambda: list(layout.SPLITS))
    max_session_tokens: int = 256
    too_long: str = "keep_last"
    """``keep_last`` (drop turns from the start until it fits) or ``drop``."""
    min_turns: int = 2
    tokens_per_shard: int = 50_000_000
    """About 100 MB per uint16 shard."""
    sessions_per_task: int = 250_000
    """At most this many sessions per Spark task: a task is a run of the extract output's Parquet
    row groups (one row group larger than this is a task of its own)."""
    loss_mask: bool = True
    """Write the per-token loss mask (0 on the first turn, as DialoGPT)."""
    batch: str | None = None
    """A corpus's batch (``input`` a corpus folder): its extracted sessions (``<corpus>/extract/<batch>``)
    into a shard set of its own, ``<corpus>/shards/<batch>`` (``output`` is not used), with the
    tokenizer of the corpus's other shard sets; the set is listed in the corpus record."""
    force: bool = False
    spark: SparkConfig = field(default_factory=SparkConfig)

    def validate(self) -> None:
        if self.too_long not in ("keep_last", "drop"):
            raise TokenizeError(f"too_long must be 'keep_last' or 'drop', not {self.too_long!r}")
        if self.max_session_tokens < 2 or self.tokens_per_shard < 1 or self.sessions_per_task < 1:
            raise TokenizeError("max_session_tokens >= 2, tokens_per_shard >= 1 and sessions_per_task >= 1 please")

        unknown = [s for s in self.splits if s not in SPLITS]
        if not self.splits or unknown or len(set(self.splits)) != len(self.splits):
            raise TokenizeError(f"splits must name one or more of {', '.join(SPLITS)}, each once, not {list(self.splits)}")
        if not storage.exists(storage.join(self.input, layout.SESSIONS)):
            raise TokenizeError(f"{self.input} has no sessions/ (run the extract job first)")


@dataclass(frozen=True)
class _TaskSettings:
    tokenizer_json: str
    eos_token: str
    shards_dir: str
    vocab_size: int
    max_session_tokens: int
    too_long: str
    min_turns: int
    tokens_per_shard: int
    loss_mask: bool
    batch_rows: int = 2048


def _load(tokenizer_json: str, eos_token: str):
    """(tokenizer, EOS id) from the tokenizer's JSON; the driver checks it once, each task loads it."""
    from tokenizers import Tokenizer

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one core per Spark task
    tokenizer = Tokenizer.from_str(tokenizer_json)
    eos_id = tokenizer.token_to_id(eos_token)
    if eos_id is None:
        raise TokenizeError(f"the tokenizer has no {eos_token!r} token")
    return tokenizer, eos_id


def tokenize_batch(tokenizer, eos_id: int, turns_column, settings: _TaskSettings, counts: dict):
    """One Arrow list<string> column of sessions -> (tokens, mask, doc_lengths) of the documents
    kept, in order; every session is counted as written or under a skip reason."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from reddit_pretrain.documents import pack_documents

    if isinstance(turns_column, pa.ChunkedArray):
        turns_column = turns_column.combine_chunks()
    n = len(turns_column)
    counts["sessions"] += n
    per_session = pc.fill_null(pc.list_value_length(turns_column), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    texts = pc.list_flatten(turns_column).to_pylist()  # nulls inside a list stay None
    bad_turn = np.fromiter((not t or t.isspace() for t in texts), dtype=bool, count=len(texts))
    session_of = np.repeat(np.arange(n), per_session)
    empty = (per_session == 0) | (np.bincount(session_of[bad_turn], minlength=n) > 0)
    ok = ~empty
    counts["empty"] += int(empty.sum())
    texts = list(itertools.compress(texts, np.repeat(ok, per_session)))
    per_session = per_session[ok]
    encode = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)
    try:
        ids = [e.ids for e in encode(texts, add_special_tokens=False)]
        failed = np.zeros(len(per_session), dtype=bool)
    except Exception:  # one bad text: find its session, count it, keep the rest
        ids, failed, position = [], np.zeros(len(per_session), dtype=bool), 0
        for i, k in enumerate(per_session.tolist()):
            try:
                ids.extend(e.ids for e in encode(texts[position : position + k], add_special_tokens=False))
            except Exception:
                failed[i] = True
                ids.extend([] for _ in range(k))
            position += k
        if failed.any():
            ids = list(itertools.compress(ids, np.repeat(~failed, per_session)))
            per_session = per_session[~failed]
    counts["encode_error"] += int(failed.sum())
    tokens, mask, doc_lengths, kept = pack_documents(ids, per_session, eos_id, settings.max_session_tokens,
                                                     settings.too_long, settings.min_turns)
    counts["too_long"] += int((~kept).sum())
    counts["written"] += int(kept.sum())
    counts["tokens"] += len(tokens)
    return tokens, mask, doc_lengths


def tokenize_task(task: dict, settings: _TaskSettings) -> dict:
    """One task: a run of Parquet row groups of one split -> shards ``<split>-<task>-<seq>``."""
    import pyarrow.parquet as pq

    from reddit_pretrain.shards import ShardWriter

    tokenizer, eos_id = _load(settings.tokenizer_json, settings.eos_token)
    remote = not storage.is_local(settings.shards_dir)  # object storage: written here, then uploaded
    folder = tempfile.mkdtemp(prefix="reddit-pretrain-shards-") if remote else settings.shards_dir
    writer = ShardWriter(folder, f"{task['split']}-{task['index']:05d}", task["split"],
                         settings.vocab_size, settings.tokens_per_shard, settings.loss_mask)
    counts = {"sessions": 0, "written": 0, "tokens": 0, **{r: 0 for r in SKIP_REASONS}}
    try:
        for path, row_groups in task["pieces"]:
            fs, inner = storage.filesystem(path)
            with fs.open(inner, "rb") as f:
                for batch in pq.ParquetFile(f).iter_batches(batch_size=settings.batch_rows, row_groups=row_groups,
                                                            columns=["turns"], use_threads=False):
                    tokens, mask, doc_lengths = tokenize_batch(tokenizer, eos_id, batch.column("turns"), settings, counts)
                    writer.add_batch(tokens, mask if settings.loss_mask else None, doc_lengths)
    except BaseException:
        writer.abort()  # a failed task leaves no open file and no partial shard (a full disk gets its space back)
        if remote:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    entries = writer.close()
    if remote:
        try:
            fs, target = storage.filesystem(settings.shards_dir)
            names = sorted(os.listdir(folder))
            fs.put([os.path.join(folder, n) for n in names], [f"{target.rstrip('/')}/{n}" for n in names])
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    for entry in entries:  # what this task wrote, for its completion record (extraction.spark.stage)
        for file in entry["files"].values():
            storage.note_written(storage.join(settings.shards_dir, file["path"]))
    return {"task": task["index"], "split": task["split"], "counts": counts, "shards": entries}


def plan_tasks(sessions_dir: str, splits: list[str], sessions_per_task: int) -> tuple[list[dict], dict[str, int]]:
    """Tasks over the extract job's Parquet files, from their footers only: per split, its files
    in name order, their row groups packed in order into runs of at most ``sessions_per_task``
    rows (a larger row group is a task of its own). Returns the tasks and the rows per split.

    The plan depends only on the files, so the same extract output gives the same shards on any
    cluster; no shuffle, no count job."""
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow.parquet as pq

    def row_groups(path: str) -> list[int]:
        fs, inner = storage.filesystem(path)
        with fs.open(inner, "rb") as f:
            meta = pq.ParquetFile(f).metadata
        return [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]

    tasks, rows = [], {}
    for split in splits:
        folder = storage.join(sessions_dir, layout.split_folder(split))
        files = [storage.join(folder, name) for name in storage.list_dir(folder)
                 if name.endswith(".parquet") and not name.startswith((".", "_"))]  # as Spark skips hidden files
        with ThreadPoolExecutor(16) as pool:
            sizes = list(pool.map(row_groups, files))
        rows[split] = sum(sum(s) for s in sizes)
        index, pieces, filled = 0, [], 0
        for path, groups in zip(files, sizes):
            for group, n in enumerate(groups):
                if n == 0:
                    continue
                if filled and filled + n > sessions_per_task:
                    tasks.append({"split": split, "index": index, "pieces": pieces, "rows": filled})
                    index, pieces, filled = index + 1, [], 0
                if pieces and pieces[-1][0] == path:
                    pieces[-1][1].append(group)
                else:
                    pieces.append([path, [group]])
                filled += n
        if pieces:
            tasks.append({"split": split, "index": index, "pieces": pieces, "rows": filled})
    return tasks, rows


def check_extract_output(folder: str, rows: dict[str, int]) -> None:
    """The sessions must be what the extract job's marker and report describe (rows per split)."""
    report_path = storage.join(folder, layout.EXTRACT_REPORT)
    if not storage.exists(storage.join(folder, layout.EXTRACT_DONE)) or not storage.exists(report_path):
        raise TokenizeError(f"{folder} is not a complete extract output (no {layout.EXTRACT_DONE} or {layout.EXTRACT_REPORT}): "
                            "run the extract job (again)")
    expected = storage.read_json(report_path)["sessions"]["per_split"]
    for split, n in rows.items():
        if n != expected.get(split, 0):
            raise TokenizeError(f"{folder}/{layout.SESSIONS}/{layout.split_folder(split)} holds {n:,} sessions but the extract report counts "
                                f"{expected.get(split, 0):,}: the extract output is damaged; run extract again (force=true)")


def _run_tasks(stage: Stage, spark, tasks: list[dict], settings: _TaskSettings) -> list[dict]:
    """One task per planned task, largest first (``Stage.tasks``: finished ones kept); results in that order."""
    import functools

    ordered = sorted(tasks, key=lambda t: -t["rows"])
    return [r for r, _ in stage.tasks(spark, "tokenize", ordered, functools.partial(_tokenize_task, settings))]


def _tokenize_task(settings: _TaskSettings, task: dict) -> tuple[dict, None]:
    return tokenize_task(task, settings), None


def run_tokenize(cfg: TokenizeConfig, spark=None) -> dict:
    """Runs the tokenize job; returns the manifest (also ``<output>/manifest.json``)."""
    from extraction.spark import session_for, where
    from extraction.tokenize.train_tokenizer import resolve_tokenizer
    from reddit_pretrain.shards import MANIFEST, SHARDS_DIR, manifest_text, new_manifest, token_dtype

    corpus = None
    if cfg.batch:  # a corpus's batch: its own shard set, in the corpus
        corpus = cfg.input
        cfg = replace(cfg, input=storage.join(corpus, layout.CORPUS_EXTRACT, cfg.batch),
                      output=storage.join(corpus, layout.CORPUS_SHARDS, cfg.batch))
        if not storage.exists(storage.join(cfg.input, layout.EXTRACT_DONE)):
            raise TokenizeError(f"{corpus} has no extracted batch {cfg.batch}: run extract input={corpus} batch={cfg.batch} first")
    cfg.validate()
    storage.check_writable(cfg.output)  # before Spark starts: one line, not a late traceback
    tokenizer_json, tokenizer_info = resolve_tokenizer(cfg.tokenizer)
    if corpus is not None:
        _check_corpus_tokenizer(corpus, tokenizer_info, cfg.eos_token)
    tokenizer, eos_id = _load(tokenizer_json, cfg.eos_token)  # a clear error now, not in the tasks
    vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
    token_dtype(vocab_size)  # a clear error now if it cannot be stored
    extract_marker = storage.join(cfg.input, layout.EXTRACT_DONE)
    material = {"input": storage.read_json(extract_marker).get("fingerprint") if storage.exists(extract_marker) else None,
                "tokenizer": tokenizer_info.get("files") or tokenizer_info["sha256"], "cfg": {k: v for k, v in asdict(cfg).items() if k not in ("force", "spark", "input", "output")},
                "code": "tokenize-v1"}
    stage = Stage("tokenize", cfg.output, DONE_MARKER, [SHARDS_DIR, MANIFEST], material, force=cfg.force)
    print_ = stage.say
    if stage.is_complete():
        print_(f"{cfg.output} is complete for this input, tokenizer and settings; nothing to do (force=true runs again)")
        return storage.read_json(storage.join(cfg.output, MANIFEST))
    with stage.running() as staging:  # refuses a folder not its own, or one another job writes; keeps finished tasks
        fs, sessions_root = storage.filesystem(storage.join(cfg.input, layout.SESSIONS))
        spark = session_for(cfg.spark, fs.du(sessions_root, total=True) if fs.exists(sessions_root) else 0, spark)
        shards_dir = storage.join(staging, SHARDS_DIR)
        if storage.is_local(shards_dir):
            shards_dir = storage.local_path(shards_dir)
            os.makedirs(shards_dir, exist_ok=True)
        started = time.time()
        settings = _TaskSettings(tokenizer_json, cfg.eos_token, shards_dir, vocab_size, cfg.max_session_tokens,
                                 cfg.too_long, cfg.min_turns, cfg.tokens_per_shard, cfg.loss_mask)
        tasks, sizes = plan_tasks(storage.join(cfg.input, layout.SESSIONS), list(cfg.splits), cfg.sessions_per_task)
        check_extract_output(cfg.input, sizes)
        print_(f"{sum(sizes.values()):,} sessions ({', '.join(f'{s} {n:,}' for s, n in sizes.items())}) in {len(tasks)} tasks, "
               f"{where(spark)}")
        results = _run_tasks(stage, spark, tasks, settings) if tasks else []
        entries, per_split = [], {}
        for split in cfg.splits:
            totals = {"sessions": 0, "written": 0, "tokens": 0, **{r: 0 for r in SKIP_REASONS}}
            for result in results:
                if result["split"] == split:
                    entries.extend(result["shards"])
                    for key, value in result["counts"].items():
                        totals[key] += value
            n = sizes[split]
            if totals["sessions"] != n or totals["written"] + sum(totals[r] for r in SKIP_REASONS) != n:
                raise TokenizeError(f"{split}: {n} sessions in, but tasks accounted for {totals}")
            per_split[split] = totals
            print_(f"{split}: {n:,} sessions -> {totals['written']:,} documents, {totals['tokens']:,} tokens "
                   f"(skipped: {', '.join(f'{r} {totals[r]:,}' for r in SKIP_REASONS)})")
        extract_report = storage.join(cfg.input, layout.EXTRACT_REPORT)
        extraction = storage.read_json(extract_report) if storage.exists(extract_report) else {}
        dumps = _source_dumps(extraction.get("input"), (extraction.get("batch") or {}).get("name")) if extraction else []
        manifest = new_manifest(
            tokenizer={**tokenizer_info, "eos_token": cfg.eos_token},
            vocab_size=vocab_size,
            eos_id=eos_id,
            shards=entries,
            splits=per_split,
            document_format="turn_1 EOS turn_2 EOS ... turn_n EOS; loss mask 0 on turn_1 and its EOS",
            max_session_tokens=cfg.max_session_tokens,
            too_long=cfg.too_long,
            source_dumps=dumps,
            extraction_config=extraction.get("config"),
        rules_on=[r["rule"] for r in extraction.get("turn_rules", []) + extraction.get("rules", [])
                  if r.get("settings", {}).get("on", True)] if extraction.get("rules") else None,
            code_version=code_version(),
            seconds=round(time.time() - started, 3),
            tasks=stage.steps,  # (the task set: its tasks, those kept from an interrupted run, those redone)
        )
        storage.write_bytes_atomic(storage.join(staging, MANIFEST), manifest_text(manifest).encode())
        stage.commit(finished_utc=int(time.time()))
    if corpus is not None:
        _list_shard_set(corpus, cfg.batch, manifest, extraction, tokenizer_info, cfg.eos_token)
    print_(f"shards in {cfg.output}; inspect with: reddit-pretrain inspect {shlex.quote(cfg.output)}")
    return manifest


def _tokenizer_record(info: dict, eos_token: str) -> dict:
    return {"sha256": info.get("files") or info["sha256"], "eos_token": eos_token}


def _check_corpus_tokenizer(corpus: str, info: dict, eos_token: str) -> None:
    """A corpus's shard sets share one tokenizer (the first set's): another is refused, saying so."""
    from extraction.ingest.corpus import read_corpus
    from extraction.spark.stage import differences

    recorded = (read_corpus(corpus) or {}).get("tokenizer")
    mine = json.loads(json.dumps(_tokenizer_record(info, eos_token)))
    if recorded is not None and recorded != mine:
        raise TokenizeError(f"{corpus}: its shard sets are written with another tokenizer ({differences(recorded, mine)}); "
                            "a corpus's shard sets share one tokenizer (a new corpus for a new one)")


def _list_shard_set(corpus: str, batch: str, manifest: dict, extraction: dict, info: dict, eos_token: str) -> None:
    """The corpus record's ``shard_sets`` entry of this batch (and its ``tokenizer``, set by the first)."""
    from extraction.ingest.corpus import read_corpus, record
    from extraction.sessions.batches import rules_of

    record(corpus, "tokenizer", json.loads(json.dumps(_tokenizer_record(info, eos_token))))
    dumps = [os.path.basename(p) for p in manifest.get("source_dumps", [])]
    rules = rules_of(storage.read_json(storage.join(corpus, layout.CORPUS_EXTRACT, batch, layout.EXTRACT_DONE)).get("material") or {})
    entry = {"path": f"{layout.CORPUS_SHARDS}/{batch}", "months": sorted({d[3:10] for d in dumps if d[:3] in ("RC_", "RS_")}),
             "dumps": dumps, "sessions": {s: v["written"] for s, v in manifest["splits"].items()},
             "tokens": {s: v["tokens"] for s, v in manifest["splits"].items()},
             "rules": hashlib.sha256(json.dumps(rules, sort_keys=True).encode()).hexdigest(),
             "code": manifest.get("code_version")}
    sets = dict((read_corpus(corpus) or {}).get("shard_sets", {}))
    sets[batch] = entry
    record(corpus, "shard_sets", dict(sorted(sets.items())), replace=True)


def _source_dumps(ingested: str | None, batch: str | None = None) -> list[str]:
    """The dumps behind an extraction's input (an ingest output, a corpus's batches, or one ``batch``
    of a corpus), as its ingest reports name them; none when they are gone."""
    from extraction.ingest.corpus import CorpusError, batch_folder, ingest_roots

    try:
        roots = [batch_folder(ingested, batch)] if batch else ingest_roots(ingested)[0] if ingested else []
    except CorpusError:  # (a corpus with no complete batch left)
        roots = []
    reports = [storage.join(root, layout.INGEST_REPORT) for root in roots]
    return [f["path"] for report in reports if storage.exists(report) for f in storage.read_json(report)["files"]]


def main() -> None:
    from extraction import spark
    from reddit_pretrain.hydra_job import run_hydra

    run_hydra("tokenize", TokenizeConfig, run_tokenize, "input=extract output=shards tokenizer=tokenizer 'splits=[train,valid]'",
              hint=spark.log_hint)

if __name__ == "__main__":
    main()
