"""Ingest job: Pushshift RC/RS dumps -> Parquet tables of comments, submissions and rejects.

    python -m extraction.ingest.job 'inputs=[/data/RC_2015-01.zst,/data/RS_2015-01.zst]' output=out/ingest

How the work is spread: files run in parallel across executors, largest first (Spark schedules,
retries and reports the tasks). A task streams its file in bounded blocks (``extraction.ingest.dumps``),
each block parsed into Arrow columns (``extraction.ingest.records``) and written straight to Parquet by
pyarrow, partitioned by month, as datatrove's writers do: rows never cross into the JVM, which
measured 2x faster than handing Arrow batches to Spark's own Parquet writer (BENCHMARKS.md).
Only one line of counters per task comes back to the driver.

One big dump (a per-subreddit dump of 100+ GB) need not wait for one core: a zstd frame cannot be
entered in the middle, but decompression runs about 10x faster than parsing, so ``pieces_per_file``
tasks share the file, one decompression between them. The task of the last piece decodes the whole
file once: the blocks of the other pieces (a block belongs to the piece in whose share of the
compressed bytes it ends: ``piece_of``; the last piece's share is smaller, as its task also
decodes: ``decoder_share``) are handed on unsplit, zstd-compressed, through files in the staging folder
(``_relay/<file>-<piece>/``, each written then renamed; ``_Relay``), and it parses its own. The
other pieces' tasks parse those blocks as they appear. One zstd window per file, however many
pieces (each decoder of a Pushshift dump holds 2 GiB). Automatic by default: each file gets its
share of the cores, so a lone dump is parsed on all of them and a month of many dumps runs one task
a file as before. The decoding task comes first in the job (Spark and the worker pool start tasks
in order), and it never waits for the others, so the pieces cannot wait on each other in a circle;
a piece that hears nothing new for ``piece_wait_s`` stops with an error. The relayed blocks stay
until the job ends, so a retried task finds them again. The pieces write
``part-<file>-<piece>-<sequence>.parquet``, which sort in line order, so a bucket's files read in
name order give the rows of one task in the same order (and the extract job the same bytes); their
counters add up to the file's line of the report. The in-process runner parses pieces in as many
worker processes as its master's cores (``local[N]``).

Small inputs (under ``spark.in_process_below_bytes``, local master) run the same task function in
this process, without starting Spark (``extraction.spark.session_for``): the same files, the same bytes.

File names are deterministic (``part-<file index>[-<piece>]-<sequence>.parquet``) and each file appears
by rename, so a retried or speculative task writes the same names with the same bytes.

Re-runs (``extraction.spark.stage``): everything is written under ``<output>/_staging-<fingerprint>/``
and moved into place table by table; ``<output>/_INGEST_DONE.json`` is written last and holds a
fingerprint of the inputs and config. A run whose fingerprint matches does nothing; an interrupted
run leaves no marker but keeps its staging folder, and the next run of the same inputs and config
keeps the tasks it finished (their files checked against their records) and runs the others.
Months added to a corpus folder, a batch each: ``corpus=`` (``extraction.ingest.corpus``).
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass, field

import pyarrow.compute as pc

from reddit_pretrain import layout, storage
from reddit_pretrain.layout import TABLES
from extraction.ingest import IngestError
from extraction.ingest.dumps import (DEFAULT_READ_SIZE_BYTES, ZSTD_MAX_WINDOW_BYTES, ChecksumMismatch, DumpReadError,
                                     dump_kind, iter_line_blocks, parse_dump_name, record_kind)
from extraction.ingest.records import COMMENT_SCHEMA, REJECT_SCHEMA, SUBMISSION_SCHEMA, rejects_batch
from extraction.ingest.columns import parse_block
from extraction.spark import SparkConfig
from extraction.spark.stage import Stage
from extraction.ingest.corpus import as_batch
from extraction.ingest.writer import _PartitionedParquet
from extraction.ingest.pieces import MAX_PIECES, RELAY_FOLDER, _Decoder, _Relay, pieces_per_file

SCHEMAS = {"RC": COMMENT_SCHEMA, "RS": SUBMISSION_SCHEMA}
DONE_MARKER = layout.INGEST_DONE
REPORT_FILE = layout.INGEST_REPORT


@dataclass
class IngestConfig:
    """The ingest job: which dumps, where to, and how to treat bad input."""

    inputs: list[str] = field(default_factory=list)
    """Dump paths or globs (local, s3://, hdfs://, ...): ``RC_*.zst`` comments, ``RS_*.zst`` submissions;
    ``.zst_blocks``, ``.bz2``, ``.xz`` and ``.gz`` dumps too (``extraction.ingest.dumps``)."""
    checksums: str | None = None
    """A checksum list in the releases' format (``sha256sum``'s: a sha256 and a file name a line).
    Each dump named in it is verified while it is read (its compressed bytes hashed as they stream);
    a mismatch is a corrupt file (``on_corrupt_file``: ``fail`` stops naming both digests before any
    row is committed; ``record`` sets the file's rows aside, counted). A dump not in the list is said
    once and read unchecked."""
    output: str = "out/ingest"
    """Folder that receives comments/, submissions/, rejects/ and the report."""
    on_corrupt_file: str = "fail"
    """``fail``: stop with an error naming the file. ``record``: mark the file failed in the
    report, keep the lines read before the damage (a checksum mismatch: none of its lines, which are
    counted as set aside), and let the other files finish."""
    read_size_bytes: int = DEFAULT_READ_SIZE_BYTES
    """Compressed bytes read per step; bounds a task's memory together with the zstd window."""
    max_window_bytes: int = ZSTD_MAX_WINDOW_BYTES
    max_records_per_file: int = 5_000_000
    """Caps Parquet file size: a 40 GB month becomes many files, not one."""
    progress_interval_s: float = 15.0
    """Seconds between progress lines from each running file."""
    pieces_per_file: int = 0
    """Tasks that parse one dump, each its own share of the file; the last one's task decodes the
    whole file once and hands the other shares' lines on (while the job runs the staging folder
    holds them, zstd-compressed). 0: automatic, each file its share of the cores (a single big
    dump on all of them, many dumps one task each), at most 5 (more would wait for the one task
    that decodes the file); 1: one task a file; at most 16 when set."""
    piece_min_bytes: int = 16 << 20
    """A piece is at least this many compressed bytes: smaller dumps are one task."""
    piece_wait_s: float = 900.0
    """How long a piece's task waits for the next block from its file's decoding task before it
    stops with an error (that task lost, not yet started, or stuck)."""
    thread_buckets: int = 0
    """Comments and submissions are written in pieces of the fixed hash space of thread ids
    (``bucket=NNNNN`` folders, piece ``i`` of ``n`` the ``i``-th of ``n`` equal contiguous ranges),
    so the extract job reads whole threads without a shuffle; it groups contiguous pieces into
    tasks by their size. 0 picks a power of two from the size of the comment dumps: about 16 MiB
    compressed (some 250k comments) a piece, at least 4, no cap below 1,048,576."""
    keep_deleted_text: bool = False
    """Keep the text of items deleted or removed after the crawl (``_meta`` of today's dumps): for
    research on deletions only. By default their body and author (a submission's title, self text
    and author) are ``[deleted]`` or ``[removed]`` before anything is written; either way the
    ``deletion`` column says which, and the report counts them per kind."""
    corpus: str | None = None
    """A corpus folder to add these dumps to, as a batch beside the others (``extraction.ingest.corpus``);
    ``output`` is then ``<corpus>/ingest/<batch>``. The extract job reads all (``input=<corpus>``)."""
    batch: str | None = None
    """The batch's name in the corpus; by default the months of the dumps' names (``2015-01_2015-03``)."""
    force: bool = False
    """Run again even when the output is complete for the same inputs and config."""
    spark: SparkConfig = field(default_factory=SparkConfig)

    def validate(self) -> None:
        if not self.inputs:
            raise IngestError("no inputs: set inputs=[path/RC_YYYY-MM.zst,...] (paths or globs)")
        if self.on_corrupt_file not in ("fail", "record"):
            raise IngestError(f"on_corrupt_file must be 'fail' or 'record', not {self.on_corrupt_file!r}")
        if self.read_size_bytes < 1024:
            raise IngestError("read_size_bytes must be at least 1024")
        if not 0 <= self.pieces_per_file <= MAX_PIECES:
            raise IngestError(f"pieces_per_file must be between 0 (automatic) and {MAX_PIECES}")
        if self.piece_min_bytes < 1:
            raise IngestError("piece_min_bytes must be positive")
        if self.piece_wait_s <= 0:
            raise IngestError("piece_wait_s must be positive")
        if not 0 <= self.thread_buckets <= MAX_BUCKETS:
            raise IngestError(f"thread_buckets must be between 0 (automatic) and {MAX_BUCKETS}")


# ---------------------------------------------------------------------------------------------
# Executor side


@dataclass(frozen=True)
class _TaskSettings:
    staging: str
    read_size_bytes: int
    max_window_bytes: int
    on_corrupt_file: str
    progress_interval_s: float
    max_records_per_file: int
    thread_buckets: int
    piece_wait_s: float
    keep_deleted_text: bool = False


def ingest_file(file_index: int, path: str, settings: _TaskSettings, kind: str | None = None,
                piece: int = 0, pieces: int = 1, size: int = 0, sha256: str | None = None) -> dict:
    """Streams one dump (``kind`` RC or RS; from its name when not given) into Parquet rows and
    rejects under ``settings.staging``; returns its counters.

    ``pieces`` > 1: this task parses only the blocks of piece ``piece`` (``piece_of``, ``size`` the
    file's compressed bytes). The last piece's task decodes the file (a zstd frame cannot be
    entered in the middle) and hands the other pieces their blocks (``_Decoder``); the
    others read them (``_Relay.read``). The pieces' counters add up to the file's. ``sha256``: the
    published digest, checked by the task that reads the file's bytes."""
    name = parse_dump_name(path)
    kind = kind or (name.kind if name else "RC")
    file_name = path.rsplit("/", 1)[-1]
    source = file_name + (f" (piece {piece + 1} of {pieces})" if pieces > 1 else "")
    stats = {
        "piece": piece,
        "pieces": pieces,
        "file_index": file_index,
        "path": path,
        "kind": kind,
        "status": "ok",
        "error": None,
        "lines": 0,
        "rows": 0,
        "rejects": 0,
        "rejects_by_reason": {},
        "compressed_bytes": 0,
        "decompressed_bytes": 0,
        "rows_outside_file_month": 0,
        "set_aside": 0,
        "checksum_mismatch": False,
        "deleted_after_crawl": {},
    }
    file_month = name.month if name else None  # per-subreddit dumps span many months
    started = last_progress = time.time()
    named_piece = piece if pieces > 1 else None
    rows = _PartitionedParquet(storage.join(settings.staging, TABLES[kind]), file_index, SCHEMAS[kind],
                               settings.max_records_per_file, partition=True, buckets=settings.thread_buckets,
                               bucket_key="link_id" if kind == "RC" else "id", piece=named_piece)
    rejects = _PartitionedParquet(storage.join(settings.staging, layout.REJECTS), file_index, REJECT_SCHEMA,
                                  settings.max_records_per_file, partition=False, piece=named_piece)
    decoder = None
    if pieces == 1:
        blocks = ((block, 0) for block in iter_line_blocks(path, settings.read_size_bytes, settings.max_window_bytes,
                                                           sha256=sha256))
    elif piece == pieces - 1:
        blocks = decoder = _Decoder(path, settings, file_index, pieces, size, sha256)
    else:
        blocks = _Relay(settings.staging, file_index, piece).read(file_name, piece, pieces, settings.piece_wait_s)
    try:
        for block, before in blocks:
            result = parse_block(kind, file_name, block.first_line_number, block.lines, settings.keep_deleted_text)
            stats["lines"] += len(block.lines)
            stats["compressed_bytes"] = block.compressed_bytes_read
            stats["decompressed_bytes"] = block.decompressed_bytes_read - before
            if file_month is not None and result.rows.num_rows:
                # Kept, in the partition of their own month, and counted: a 2006 comment inside RC_2015-06.
                outside = pc.sum(pc.invert(pc.equal(pc.fill_null(result.rows.column("month"), ""), file_month))).as_py()
                stats["rows_outside_file_month"] += int(outside or 0)
            deletion = result.rows.column("deletion")
            if deletion.null_count < len(deletion):  # today's dumps: what was withheld, per kind of deletion
                for entry in pc.value_counts(deletion).to_pylist():
                    if entry["values"] is not None:
                        counts = stats["deleted_after_crawl"]
                        counts[entry["values"]] = counts.get(entry["values"], 0) + entry["counts"]
            rows.write(result.rows)
            if result.rejects:
                for row in result.rejects:
                    stats["rejects_by_reason"][row[2]] = stats["rejects_by_reason"].get(row[2], 0) + 1
                rejects.write(rejects_batch(result.rejects))
            now = time.time()
            if now - last_progress >= settings.progress_interval_s:
                last_progress = now
                mb = stats["decompressed_bytes"] / 1e6
                print(f"[ingest] {source}: {stats['lines']:,} lines, {mb:,.0f} MB, {mb / (now - started):,.1f} MB/s",
                      file=sys.stderr, flush=True)
    except DumpReadError as err:
        if settings.on_corrupt_file == "fail":
            raise
        stats["status"] = "failed"
        stats["error"] = str(err)
        stats["checksum_mismatch"] = isinstance(err, ChecksumMismatch)
    except BaseException as exc:
        if decoder is not None:
            decoder.fail(exc)  # the other pieces stop waiting for blocks
        raise
    finally:
        try:
            rows.close()
        finally:
            rejects.close()
    stats["rows"], stats["rejects"] = rows.rows, rejects.rows
    stats["seconds"] = round(time.time() - started, 3)
    print(f"[ingest] done {source}: {stats['lines']:,} lines -> {stats['rows']:,} rows, "
          f"{stats['rejects']:,} rejects ({stats['status']})", file=sys.stderr, flush=True)
    return stats


def _ingest_task(settings: _TaskSettings, task: dict) -> tuple[dict, None]:
    return ingest_file(task["file_index"], task["path"], settings, task.get("kind"), task.get("piece", 0),
                       task.get("pieces", 1), task.get("size", 0), task.get("sha256")), None


# ---------------------------------------------------------------------------------------------
# Driver side


def ingest_files(stage: Stage, spark, files: list[tuple[int, str]], settings: _TaskSettings,
                 kinds: dict[str, str] | None = None, pieces: dict[str, int] | None = None,
                 sizes: dict[str, int] | None = None, workers: int = 1, digests: dict[str, str] | None = None) -> list[dict]:
    """Runs one task per piece of each (file_index, path) dump through ``stage.tasks`` (which keeps
    the tasks an interrupted run finished; ``pieces`` per path, 1 when absent; ``workers``: processes
    of the in-process runner; ``digests``: published sha256 per path); returns each file's counters,
    its pieces' added up."""
    import functools

    pieces, sizes = pieces or {}, sizes or {}
    tasks = [{"file_index": i, "path": p, "kind": (kinds or {}).get(p), "piece": k, "pieces": pieces.get(p, 1),
              "size": sizes.get(p, 0), "sha256": (digests or {}).get(p)}
             for i, p in files for k in reversed(range(pieces.get(p, 1)))]  # a file's last piece reads longest: first
    results = stage.tasks(spark, "dumps", tasks, functools.partial(_ingest_task, settings), workers=workers)
    return merge_pieces([stats for stats, _ in results])


def merge_pieces(per_piece: list[dict]) -> list[dict]:
    """One line of counters per file from its pieces' (in the order the files first appear)."""
    files: dict[int, dict] = {}
    for stats in sorted(per_piece, key=lambda s: (s["file_index"], s.get("piece", 0))):
        merged = files.get(stats["file_index"])
        if merged is None:
            files[stats["file_index"]] = {**stats, "rejects_by_reason": dict(stats["rejects_by_reason"]),
                                          "deleted_after_crawl": dict(stats.get("deleted_after_crawl", {})),
                                          "piece_seconds": [stats["seconds"]]}
            continue
        merged["piece_seconds"].append(stats["seconds"])
        for key in ("lines", "rows", "rejects", "decompressed_bytes", "rows_outside_file_month"):
            merged[key] += stats[key]
        merged["checksum_mismatch"] = merged.get("checksum_mismatch", False) or stats.get("checksum_mismatch", False)
        for reason, n in stats["rejects_by_reason"].items():
            merged["rejects_by_reason"][reason] = merged["rejects_by_reason"].get(reason, 0) + n
        for kind, n in stats.get("deleted_after_crawl", {}).items():
            merged["deleted_after_crawl"][kind] = merged["deleted_after_crawl"].get(kind, 0) + n
        merged["compressed_bytes"] = max(merged["compressed_bytes"], stats["compressed_bytes"])
        merged["seconds"] = max(merged["seconds"], stats["seconds"])
        if merged["status"] == "ok" and stats["status"] != "ok":
            merged["status"], merged["error"] = stats["status"], stats["error"]
    order = list(dict.fromkeys(s["file_index"] for s in per_piece))
    out = []
    for index in order:
        merged = files[index]
        merged.pop("piece", None)
        if merged["pieces"] == 1:
            merged.pop("piece_seconds")
        out.append(merged)
    return out


BUCKET_TARGET_BYTES = 16 << 20
MAX_BUCKETS = 1 << 20
"""The most pieces of the thread hash space: 16 TiB of compressed comments at 16 MiB a piece."""


def _comment_bytes(infos: list[dict], kinds: dict[str, str] | None) -> int:
    kinds = kinds or {}
    names = [parse_dump_name(i["path"]) for i in infos]
    return sum(i["size"] for i, name in zip(infos, names) if kinds.get(i["path"], name.kind if name else "RC") == "RC")


def auto_thread_buckets(infos: list[dict], kinds: dict[str, str] | None = None) -> int:
    """A power of two near one piece per 16 MiB of compressed comment dumps, at least 4, with no cap
    below ``MAX_BUCKETS``: the extract job groups contiguous pieces into tasks of about 16 MiB, so
    pieces must not be larger, whatever the corpus."""
    wanted = max(4, -(-_comment_bytes(infos, kinds) // BUCKET_TARGET_BYTES))
    return min(MAX_BUCKETS, 1 << (wanted - 1).bit_length())


def read_checksums(url: str) -> dict[str, str]:
    """{file name: sha256} of a checksum list as ``sha256sum`` writes it (and the releases publish):
    ``<64 hex digits> <space or *><name>`` a line; blank lines and ``#`` comments are skipped, a
    name's folders dropped. Anything else is an IngestError naming the line."""
    pattern = re.compile(r"([0-9a-fA-F]{64}) [ *](.+)")
    try:
        data = storage.read_bytes_if_exists(url)
    except OSError as err:
        raise IngestError(f"checksums={url}: cannot be read ({err})") from None
    if data is None:
        raise IngestError(f"checksums={url}: no such file")
    digests: dict[str, str] = {}
    for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = pattern.fullmatch(line.strip())
        if match is None:
            raise IngestError(f"checksums={url}, line {number}: not '<sha256>  <file name>' ({line.strip()[:80]!r})")
        name, digest = match[2].strip().replace("\\", "/").rsplit("/", 1)[-1], match[1].lower()
        if digests.get(name, digest) != digest:
            raise IngestError(f"checksums={url}, line {number}: {name} is listed twice with different sha256s")
        digests[name] = digest
    return digests


def published_digests(cfg: IngestConfig, files: list[str], say) -> dict[str, str]:
    """The published sha256 of each input (by file name) from ``cfg.checksums``; each input not
    in the list is said once."""
    if not cfg.checksums:
        return {}
    listed = read_checksums(cfg.checksums)
    digests = {f: listed[f.rsplit("/", 1)[-1]] for f in files if f.rsplit("/", 1)[-1] in listed}
    for f in files:
        if f not in digests:
            say(f"{f.rsplit('/', 1)[-1]} is not in the checksum list {cfg.checksums}: read without a check")
    return digests


def set_aside(staging: str, per_file: list[dict]) -> None:
    """``on_corrupt_file=record``: a dump whose checksum does not match has no trustworthy line, so
    its rows and rejects (every piece's) leave the output; its lines are counted as set aside."""
    for stats in per_file:
        if not stats.get("checksum_mismatch"):
            continue
        stem = f"part-{stats['file_index']:06d}"
        for table in (*TABLES.values(), layout.REJECTS):
            fs, root = storage.filesystem(storage.join(staging, table))
            for path in fs.find(root) if fs.exists(root) else []:
                if path.rsplit("/", 1)[-1].startswith(stem):
                    fs.rm(path)
        stats["set_aside"], stats["rows"], stats["rejects"], stats["rejects_by_reason"] = stats["lines"], 0, 0, {}


def material(cfg: IngestConfig, infos: list[dict], kinds: dict[str, str] | None = None,
             digests: dict[str, str] | None = None) -> dict:
    """What decides the output (its fingerprint: ``extraction.spark.stage``): the inputs
    (``storage.file_info``: path, size, mtime), their published sha256s when checked, and the
    settings that shape rows."""
    material = {
        "files": infos,
        "on_corrupt_file": cfg.on_corrupt_file,
        "max_records_per_file": cfg.max_records_per_file,
        "thread_buckets": cfg.thread_buckets or auto_thread_buckets(infos, kinds),
        "keep_deleted_text": cfg.keep_deleted_text,
        "code": "ingest-v5",
    }
    if digests:
        material["sha256"] = digests
    return material


def _order_for_scheduling(infos: list[dict]) -> list[tuple[int, str]]:
    """Stable indices by path; largest files first so the longest tasks start first."""
    order = sorted(range(len(infos)), key=lambda i: (-infos[i]["size"], i))
    return [(i, infos[i]["path"]) for i in order]


def _clear_error(exc: BaseException) -> IngestError | None:
    text = str(exc)
    match = re.search(r"cannot read dump '[^']*': [^\n]*", text)
    return IngestError(match.group(0)) if match else None


def run_ingest(cfg: IngestConfig, spark=None) -> dict:
    """Runs the ingest job and returns its report (also written to ``<output>/ingest_report.json``)."""
    from extraction.spark import cores, local_cores, session_for, where

    cfg.validate()
    storage.check_writable(cfg.corpus or cfg.output)  # before Spark starts: one line, not a late traceback
    files = storage.expand_inputs(cfg.inputs)
    kinds = {f: dump_kind(f, cfg.max_window_bytes) for f in files}
    unknown = [f for f, kind in kinds.items() if kind is None]
    if unknown:
        raise IngestError(f"cannot tell comments from submissions for {unknown[:3]}: name files RC_YYYY-MM.zst / "
                          "RS_YYYY-MM.zst or <subreddit>_comments.zst / <subreddit>_submissions.zst, or start them "
                          "with a comment (body) or a submission (title) record")
    swapped = _named_as_the_other_kind(files, kinds, cfg.max_window_bytes)
    if swapped:
        raise IngestError(swapped)
    print_ = lambda msg: print(f"[ingest] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    infos = [storage.file_info(f) for f in files]  # one stat per input, remote ones included
    if cfg.corpus:  # a batch of a corpus folder: its folder there, the corpus's pieces
        cfg = as_batch(cfg, files, lambda: auto_thread_buckets(infos, kinds), print_)
    output = cfg.output
    digests = published_digests(cfg, files, print_)
    stage = Stage("ingest", output, DONE_MARKER, [*TABLES.values(), layout.REJECTS, REPORT_FILE],
                  material(cfg, infos, kinds, digests), force=cfg.force)
    if stage.is_complete():
        print_(f"{output} is complete for these inputs and settings; nothing to do (force=true runs again)")
        return storage.read_json(storage.join(output, REPORT_FILE))

    with stage.running() as staging:  # refuses a folder not its own, or one another job writes; keeps finished tasks
        spark = session_for(cfg.spark, sum(i["size"] for i in infos), spark)
        buckets = cfg.thread_buckets or auto_thread_buckets(infos, kinds)
        settings = _TaskSettings(staging, cfg.read_size_bytes, cfg.max_window_bytes, cfg.on_corrupt_file,
                                 cfg.progress_interval_s, cfg.max_records_per_file, buckets, cfg.piece_wait_s,
                                 cfg.keep_deleted_text)
        started = time.time()
        workers = cores(spark) if spark is not None else local_cores(cfg.spark)
        pieces = pieces_per_file(infos, workers, cfg.pieces_per_file, cfg.piece_min_bytes)
        if spark is None and max(pieces.values(), default=1) == 1:
            workers = 1  # small dumps, one task each: starting worker processes costs more than it saves
        stage.plan({"pieces": pieces})  # (from the cores: an interrupted run's files were named for its pieces)
        split = {p.rsplit("/", 1)[-1]: k for p, k in pieces.items() if k > 1}
        print_(f"{len(files)} files -> {output}, {where(spark, workers)}"
               + (f"; parsed in pieces: {', '.join(f'{n} {k}' for n, k in sorted(split.items()))}" if split else ""))
        try:
            per_file = ingest_files(stage, spark, _order_for_scheduling(infos), settings, kinds, pieces,
                                    {i["path"]: i["size"] for i in infos}, workers, digests)
        except Exception as exc:  # Spark wraps executor errors; surface ours by name
            clear = _clear_error(exc)
            if clear is not None:
                raise clear from None
            raise
        seconds = time.time() - started
        set_aside(staging, per_file)
        report = build_report(per_file, seconds, workers)
        report["checksums"] = {"list": cfg.checksums, "checked": len(digests), "unchecked": len(files) - len(digests)} \
            if cfg.checksums else None
        report["thread_buckets"] = buckets
        storage.remove(storage.join(staging, RELAY_FOLDER))  # the lines handed between a file's pieces
        storage.remove_unfinished(staging)  # parts of attempts Spark killed or retried
        _check_counts(staging, report)
        stage.commit(report, REPORT_FILE, files=files, finished_utc=int(time.time()))
    print(format_report(report, output))
    return report


def _named_as_the_other_kind(files: list[str], kinds: dict[str, str], max_window_bytes: int) -> str | None:
    """A line naming the files whose name says comments (RC) but whose records are submissions, or
    the other way round: read as their name says, every line would be a missing_field reject."""
    what = TABLES
    wrong = []
    for path in files:
        if parse_dump_name(path) is None:
            continue  # its kind came from its records already
        seen = record_kind(path, max_window_bytes)
        if seen is not None and seen != kinds[path]:
            wrong.append((path, seen))
    if not wrong:
        return None
    path, seen = wrong[0]
    name = path.rsplit("/", 1)[-1]
    fix = name.replace(kinds[path] + "_", seen + "_", 1) if name.startswith(kinds[path] + "_") else \
        name.replace(f"_{what[kinds[path]]}", f"_{what[seen]}")
    more = f" ({len(wrong) - 1} more such file{'s' if len(wrong) > 2 else ''})" if len(wrong) > 1 else ""
    return (f"{path} is named as {what[kinds[path]]} but holds {what[seen]} (its first records have "
            f"{'body and parent_id' if seen == 'RC' else 'a title'}): rename it {fix}{more}")


def _check_counts(staging: str, report: dict) -> None:
    """Rows in the Parquet footers must equal rows the tasks counted: nothing lost or doubled."""
    for table in (*TABLES.values(), layout.REJECTS):
        expected = report["totals"][f"{table}_rows" if table != layout.REJECTS else "rejects"]
        fs, path = storage.filesystem(storage.join(staging, table))
        parts = [storage.join(staging, table, p[len(path):].lstrip("/")) for p in fs.find(path) if p.endswith(".parquet")] \
            if fs.exists(path) else []
        written = storage.parquet_rows(parts)
        if written != expected:
            raise IngestError(f"{table}: tasks counted {expected} rows but {written} were written")


def build_report(per_file: list[dict], seconds: float, cores: int) -> dict:
    totals = {
        "files": len(per_file),
        "failed_files": sum(f["status"] != "ok" for f in per_file),
        "lines": sum(f["lines"] for f in per_file),
        "comments_rows": sum(f["rows"] for f in per_file if f["kind"] == "RC"),
        "submissions_rows": sum(f["rows"] for f in per_file if f["kind"] == "RS"),
        "rejects": sum(f["rejects"] for f in per_file),
        "compressed_bytes": sum(f["compressed_bytes"] for f in per_file),
        "decompressed_bytes": sum(f["decompressed_bytes"] for f in per_file),
        "rows_outside_file_month": sum(f.get("rows_outside_file_month", 0) for f in per_file),
        "set_aside": sum(f.get("set_aside", 0) for f in per_file),
    }
    reasons: dict[str, int] = {}
    for f in per_file:
        for reason, n in f["rejects_by_reason"].items():
            reasons[reason] = reasons.get(reason, 0) + n
    totals["rejects_by_reason"] = dict(sorted(reasons.items()))
    deleted: dict[str, int] = {}
    for f in per_file:
        for kind, n in f.get("deleted_after_crawl", {}).items():
            deleted[kind] = deleted.get(kind, 0) + n
    totals["deleted_after_crawl"] = dict(sorted(deleted.items()))
    """Rows whose text was withheld (or kept, with ``keep_deleted_text``), per ``deletion``."""
    for f in per_file:
        assert f["lines"] == f["rows"] + f["rejects"] + f.get("set_aside", 0), f  # a row, a reject or set aside
    return {
        "totals": totals,
        "seconds": round(seconds, 3),
        "cores": cores,
        "lines_per_second": round(totals["lines"] / max(seconds, 1e-9), 1),
        "decompressed_mb_per_second": round(totals["decompressed_bytes"] / 1e6 / max(seconds, 1e-9), 2),
        "files": sorted(per_file, key=lambda f: f["path"]),
    }


def format_report(report: dict, output: str) -> str:
    t = report["totals"]
    lines = [
        f"Ingest report ({output})",
        f"{'file':<28}{'status':>8}{'lines':>12}{'rows':>12}{'rejects':>9}{'MB':>9}{'s':>8}",
    ]
    for f in report["files"]:
        lines.append(
            f"{f['path'].rsplit('/', 1)[-1]:<28}{f['status']:>8}{f['lines']:>12,}{f['rows']:>12,}"
            f"{f['rejects']:>9,}{f['decompressed_bytes'] / 1e6:>9,.1f}{f.get('seconds', 0):>8.1f}"
        )
    lines.append(
        f"total: {t['lines']:,} lines = {t['comments_rows']:,} comments + {t['submissions_rows']:,} "
        f"submissions + {t['rejects']:,} rejects"
        + (f" ({', '.join(f'{k} {v:,}' for k, v in t['rejects_by_reason'].items())})" if t["rejects_by_reason"] else "")
        + (f" + {t['set_aside']:,} set aside (their file's checksum does not match)" if t.get("set_aside") else "")
    )
    if t.get("deleted_after_crawl"):
        lines.append("deleted or removed after the crawl (text withheld unless keep_deleted_text): "
                     + ", ".join(f"{k} {v:,}" for k, v in t["deleted_after_crawl"].items()))
    lines.append(
        f"{report['seconds']:.1f} s, {report['lines_per_second']:,.0f} lines/s, "
        f"{report['decompressed_mb_per_second']:.1f} MB/s on {report['cores']} core{'s' if report['cores'] != 1 else ''}"
    )
    for f in report["files"]:
        if f["status"] != "ok":
            lines.append(f"FAILED {f['path']}: {f['error']}")
    if t["rows_outside_file_month"]:
        outside = {f["path"].rsplit("/", 1)[-1]: f["rows_outside_file_month"] for f in report["files"] if f.get("rows_outside_file_month")}
        lines.append(f"{t['rows_outside_file_month']:,} rows have a created_utc outside their file's month (kept, in "
                     f"their own month's folder): {outside}")
    lines.append(f"tables: {storage.join(output, 'comments')}, {storage.join(output, 'submissions')}, {storage.join(output, 'rejects')}")
    return "\n".join(lines)


def main() -> None:
    from extraction import spark
    from reddit_pretrain.hydra_job import run_hydra

    run_hydra("ingest", IngestConfig, run_ingest, "'inputs=[dumps/RC_2015-01.zst,dumps/RS_2015-01.zst]' output=ingest",
              hint=spark.log_hint)

if __name__ == "__main__":
    main()
