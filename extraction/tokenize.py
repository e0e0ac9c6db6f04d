"""Tokenize job: extracted sessions -> EOS-joined token shards with a manifest (pretrain.shards).

    python -m extraction.tokenize input=out/extract output=out/shards tokenizer=out/tokenizer

Each Spark task takes a hash partition of one split's sessions (sorted by session_id), tokenizes
them in batches with the Hugging Face ``tokenizers`` library (Rust, one call per Arrow batch,
never per row), and writes its own shards straight to the output's staging folder; only each
shard's manifest entry returns to the driver, which writes ``manifest.json`` last. Partitioning
by a hash of session_id and sorting inside each partition makes the same input and config give
byte-identical shards.

Too long sessions (over ``max_session_tokens`` with their EOS tokens) follow ``too_long``:
``keep_last`` drops turns from the start until the rest fits (kept if at least ``min_turns``
remain), ``drop`` skips them. Every session is written or counted under a reason.

The output must be a local or shared (NFS, Lustre) folder: training memory-maps the shards.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Iterator

from extraction import storage
from extraction.spark import SparkConfig

DONE_MARKER = "_TOKENIZE_DONE.json"
SKIP_REASONS = ("empty", "encode_error", "too_long")


class TokenizeError(RuntimeError):
    pass


@dataclass
class TokenizeConfig:
    """The tokenize job."""

    input: str = "out/extract"
    """Output folder of the extract job (sessions/ partitioned by split)."""
    output: str = "out/shards"
    tokenizer: str = "gpt2"
    """Hugging Face tokenizer: a local folder (or tokenizer.json), or a hub name (needs the hub)."""
    eos_token: str = "<|endoftext|>"
    splits: list[str] = field(default_factory=lambda: ["train", "valid", "test"])
    max_session_tokens: int = 256
    too_long: str = "keep_last"
    """``keep_last`` (drop turns from the start until it fits) or ``drop``."""
    min_turns: int = 2
    tokens_per_shard: int = 50_000_000
    """About 100 MB per uint16 shard."""
    sessions_per_task: int = 250_000
    loss_mask: bool = True
    """Write the per-token loss mask (0 on the first turn, as DialoGPT)."""
    force: bool = False
    spark: SparkConfig = field(default_factory=SparkConfig)

    def validate(self) -> None:
        if self.too_long not in ("keep_last", "drop"):
            raise TokenizeError(f"too_long must be 'keep_last' or 'drop', not {self.too_long!r}")
        if not storage.is_local(self.output):
            raise TokenizeError("output must be a local or shared-filesystem folder (shards are memory-mapped)")
        if self.max_session_tokens < 2 or self.tokens_per_shard < 1 or self.sessions_per_task < 1:
            raise TokenizeError("max_session_tokens >= 2, tokens_per_shard >= 1 and sessions_per_task >= 1 please")
        if not storage.exists(storage.join(self.input, "sessions")):
            raise TokenizeError(f"{self.input} has no sessions/ (run the extract job first)")


@dataclass(frozen=True)
class _TaskSettings:
    tokenizer_json: str
    eos_token: str
    split: str
    shards_dir: str
    vocab_size: int
    max_session_tokens: int
    too_long: str
    min_turns: int
    tokens_per_shard: int
    loss_mask: bool


def _load(settings: _TaskSettings):
    from tokenizers import Tokenizer

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one core per Spark task
    tokenizer = Tokenizer.from_str(settings.tokenizer_json)
    eos_id = tokenizer.token_to_id(settings.eos_token)
    if eos_id is None:
        raise TokenizeError(f"the tokenizer has no {settings.eos_token!r} token")
    return tokenizer, eos_id


def encode_sessions(tokenizer, sessions: list[list[str]]) -> list[list[list[int]] | None]:
    """Token ids per turn per session in one batched call; None for a session that fails."""
    texts = [t for turns in sessions for t in turns]
    encode = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)
    try:
        flat = [e.ids for e in encode(texts, add_special_tokens=False)]
    except Exception:  # one bad text: find it session by session
        out = []
        for turns in sessions:
            try:
                out.append([e.ids for e in encode(list(turns), add_special_tokens=False)])
            except Exception:
                out.append(None)
        return out
    out, position = [], 0
    for turns in sessions:
        out.append(flat[position : position + len(turns)])
        position += len(turns)
    return out


def tokenize_partition(batches, settings: _TaskSettings) -> Iterator:
    """mapInArrow body: one task's sessions -> shards on disk, one JSON row of results back."""
    import pyarrow as pa
    from pyspark import TaskContext

    from pretrain.shards import ShardWriter, encode_session, fit_turns

    tokenizer, eos_id = _load(settings)
    partition = TaskContext.get().partitionId()
    writer = ShardWriter(settings.shards_dir, f"{settings.split}-{partition:05d}", settings.split,
                         settings.vocab_size, settings.tokens_per_shard, settings.loss_mask)
    counts = {"sessions": 0, "written": 0, "tokens": 0, **{r: 0 for r in SKIP_REASONS}}
    try:
        for batch in batches:
            sessions = batch.column("turns").to_pylist()
            counts["sessions"] += len(sessions)
            for turns, ids in zip(sessions, encode_sessions(tokenizer, sessions)):
                if not turns or any(not t or not t.strip() for t in turns):
                    counts["empty"] += 1
                    continue
                if ids is None:
                    counts["encode_error"] += 1
                    continue
                fitted = fit_turns(ids, settings.max_session_tokens, settings.too_long, settings.min_turns)
                if fitted is None:
                    counts["too_long"] += 1
                    continue
                tokens, mask = encode_session(fitted, eos_id)
                writer.add(tokens, mask)
                counts["written"] += 1
                counts["tokens"] += len(tokens)
    finally:
        entries = writer.close()
    yield pa.RecordBatch.from_pydict({"result": [json.dumps({"counts": counts, "shards": entries})]})


def _code_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        package = version("reddit-pretrain")
    except PackageNotFoundError:
        package = "unknown"
    try:
        rev = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True, stderr=subprocess.DEVNULL,
                                      cwd=os.path.dirname(os.path.abspath(__file__))).strip()
    except (OSError, subprocess.CalledProcessError):
        rev = "unknown"
    return f"{package}+git.{rev}"


def run_tokenize(cfg: TokenizeConfig, spark=None) -> dict:
    """Runs the tokenize job; returns the manifest (also ``<output>/manifest.json``)."""
    from pyspark.sql import functions as F

    from extraction.spark import build_spark
    from extraction.tokenizer import resolve_tokenizer
    from pretrain.shards import MANIFEST, SHARDS_DIR, new_manifest, token_dtype, write_manifest

    cfg.validate()
    tokenizer_json, tokenizer_info = resolve_tokenizer(cfg.tokenizer)
    from tokenizers import Tokenizer

    vocab_size = Tokenizer.from_str(tokenizer_json).get_vocab_size(with_added_tokens=True)
    token_dtype(vocab_size)  # a clear error now if it cannot be stored
    extract_marker = storage.join(cfg.input, "_EXTRACT_DONE.json")
    material = {"input": storage.read_json(extract_marker).get("fingerprint") if storage.exists(extract_marker) else None,
                "tokenizer": tokenizer_info["sha256"], "cfg": {k: v for k, v in asdict(cfg).items() if k not in ("force", "spark", "input", "output")},
                "code": "tokenize-v1"}
    staged = storage.StagedOutput(cfg.output, DONE_MARKER, hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest())
    print_ = lambda msg: print(f"[tokenize] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    if not cfg.force and staged.is_complete():
        print_(f"{cfg.output} is complete for this input, tokenizer and settings; nothing to do (force=true runs again)")
        return storage.read_json(storage.join(cfg.output, MANIFEST))
    spark = spark or build_spark(cfg.spark)
    staging = staged.begin()
    shards_dir = storage.local_path(storage.join(staging, SHARDS_DIR))
    os.makedirs(shards_dir, exist_ok=True)
    started = time.time()
    sessions = spark.read.parquet(storage.hadoop_uri(storage.join(cfg.input, "sessions")))
    entries, per_split = [], {}
    sizes = {r["split"]: r["n"] for r in sessions.groupBy("split").agg(F.count(F.lit(1)).alias("n")).collect()}
    for split in cfg.splits:
        part = sessions.filter(F.col("split") == split).select("session_id", "turns")
        n = sizes.get(split, 0)
        if n == 0:
            per_split[split] = {"sessions": 0, "written": 0, "tokens": 0, **{r: 0 for r in SKIP_REASONS}}
            continue
        tasks = max(1, -(-n // cfg.sessions_per_task))
        settings = _TaskSettings(tokenizer_json, cfg.eos_token, split, shards_dir, vocab_size, cfg.max_session_tokens,
                                 cfg.too_long, cfg.min_turns, cfg.tokens_per_shard, cfg.loss_mask)
        spark.sparkContext.setJobDescription(f"tokenize {split}")
        ordered = part.repartition(tasks, "session_id").sortWithinPartitions("session_id")
        results = ordered.mapInArrow(lambda it, s=settings: tokenize_partition(it, s), "result STRING").collect()
        totals = {"sessions": 0, "written": 0, "tokens": 0, **{r: 0 for r in SKIP_REASONS}}
        for row in results:
            result = json.loads(row.result)
            entries.extend(result["shards"])
            for key, value in result["counts"].items():
                totals[key] += value
        if totals["sessions"] != n or totals["written"] + sum(totals[r] for r in SKIP_REASONS) != n:
            raise TokenizeError(f"{split}: {n} sessions in, but tasks accounted for {totals}")
        per_split[split] = totals
        print_(f"{split}: {n:,} sessions -> {totals['written']:,} documents, {totals['tokens']:,} tokens "
               f"(skipped: {', '.join(f'{r} {totals[r]:,}' for r in SKIP_REASONS)})")
    extract_report = storage.join(cfg.input, "extract_report.json")
    extraction = storage.read_json(extract_report) if storage.exists(extract_report) else {}
    ingest_report = storage.join(extraction.get("input", ""), "ingest_report.json") if extraction else None
    dumps = [f["path"] for f in storage.read_json(ingest_report)["files"]] if ingest_report and storage.exists(ingest_report) else []
    manifest = new_manifest(
        tokenizer={**tokenizer_info, "eos_token": cfg.eos_token},
        vocab_size=vocab_size,
        eos_id=Tokenizer.from_str(tokenizer_json).token_to_id(cfg.eos_token),
        shards=entries,
        splits=per_split,
        document_format="turn_1 EOS turn_2 EOS ... turn_n EOS; loss mask 0 on turn_1 and its EOS",
        max_session_tokens=cfg.max_session_tokens,
        too_long=cfg.too_long,
        source_dumps=dumps,
        extraction_config=extraction.get("config"),
        code_version=_code_version(),
        seconds=round(time.time() - started, 3),
    )
    write_manifest(storage.local_path(staging), manifest)
    staged.commit([SHARDS_DIR, MANIFEST], finished_utc=int(time.time()))
    print_(f"shards in {cfg.output}; inspect with: python -m pretrain.shards inspect {cfg.output}")
    return manifest


def register_configs() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="tokenize_schema", node=TokenizeConfig)


def main() -> None:
    from extraction.cli import run_hydra
    from extraction.tokenizer import TokenizerNotFound

    run_hydra("tokenize", register_configs, run_tokenize, (TokenizeError, TokenizerNotFound, FileNotFoundError))

if __name__ == "__main__":
    main()
