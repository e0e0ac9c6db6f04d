"""Extract job: ingested comments (and submissions) -> filtered dialogue sessions, split, reported.

    python -m extraction.sessions.job input=out/ingest output=out/extract
    python -m extraction.sessions.job input=out/ingest output=out/x chains.mode=replies chains.include_title=true \\
        filters.bland_min_count=50 split.method=date split.valid_from=2015-01-25 split.test_from=2015-01-28

Reads the ingest job's Parquet tables (``extraction.ingest.job``; submissions are optional), runs the
stages of ``extraction.sessions.chains`` and writes, under ``output``:

* ``sessions/split=<train|valid|test>/*.parquet``: kept sessions (session_id, link_id, subreddit,
  turn_ids, turns, authors, created_utc, scores, num_turns, has_title, over_18, chain_end, split)
* ``rejects/*.parquet``: the sessions set aside, with ``drop_reason``, the first rule that dropped them
* ``extract_report.json``, ``extract_report.png`` and ``extract_report.html``: counts in and out per
  rule, per split, per subreddit, length histograms, and where every ingested comment went.

Every ingested comment is accounted for in the report: used in a kept session, or counted under
one reason (a repeated id: one row per id is kept, deterministically; the turn rule that cut it, the first rule that dropped every session it was in, or
``not_in_any_session``: above the last ``max_turns`` of every chain, or under a cut leaf only).

How it runs: the ingest job wrote comments and submissions bucketed by thread
(``threads.thread_bucket``), so a bucket holds whole threads. Three sets of Spark tasks, three
Spark jobs in all, whatever the input:

1. one task per bucket (``extraction.sessions.threads.build_candidates``): whole threads in memory, every
   feature computed once per comment, vectorised; chains, session rules and split as array
   expressions. It writes the bucket's candidate sessions, its trigram counts and the hashes the
   duplicate rules need to ``_work/`` in staging (``extraction.spark.exchange``: one file per task, a
   batch per next task, the layout of Spark's shuffle, rows never in the JVM);
2. one task per range of hashes: the corpus-wide trigram counts (frequent trigrams, summed as
   64-bit hashes) and the duplicate groups (``threads.resolve_duplicates``);
3. one task per bucket (``threads.finish_bucket``): bland and duplicates applied, the Parquet
   outputs written, the bucket's report counts returned. The driver adds them up; nothing is
   recomputed for the report.

Outputs are the same bytes on a re-run: file names come from bucket numbers, rows are sorted by
session id, and Parquet is written by pyarrow with fixed settings. An input smaller than
``spark.in_process_below_bytes`` on a local master runs the same tasks in this process, without
starting Spark (``extraction.spark.session_for``), and gives the same bytes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from reddit_pretrain import layout, storage
from reddit_pretrain.layout import SPLITS
from extraction.sessions import ExtractError
from extraction.sessions.chains import ChainsConfig, SplitConfig
from extraction.sessions.filters import FiltersConfig, Rules, resolve_list_path
from extraction.sessions.privacy import Privacy, PrivacyConfig, resolve_salt
from extraction.sessions.features import as_array
from extraction.sessions.report import (annotate_rules, format_report, ingest_summary, load_plotting_in_background,
                                        merge_reports, rejected_examples, render_report, run_info)
from extraction.sessions.threads import (COMMENT_COLUMNS, ND_BANDS, ND_DROPPED, ND_PAIRS, ND_PAIRS_A, ND_VERIFIED,
                                         SESSION_COLUMNS, SUBMISSION_COLUMNS, Timer, build_candidates, finish_bucket,
                                         frequent_trigrams, near_duplicate_clusters, near_duplicate_inputs, near_duplicates_on,
                                         near_duplicate_pairs, resolve_duplicates, unique_pairs, verify_pairs, with_texts)
from extraction.spark import SparkConfig, exchange, run_tasks, session_for, where

DONE_MARKER = layout.EXTRACT_DONE
REPORT_FILE = layout.EXTRACT_REPORT
OUTPUTS = [layout.SESSIONS, layout.REJECTS, REPORT_FILE, layout.EXTRACT_REPORT_PNG, layout.EXTRACT_REPORT_HTML]
"""What the extract job writes in its output folder (beside its marker); it replaces nothing else."""


@dataclass
class ExtractConfig:
    """The extract job: where the ingested tables are, where sessions go, and every rule."""

    input: str = "out/ingest"
    """Output folder of the ingest job (comments/ and, if present, submissions/)."""
    output: str = "out/extract"
    chains: ChainsConfig = field(default_factory=ChainsConfig)
    filters: FiltersConfig = field(default_factory=FiltersConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    """PII masked and authors pseudonymised in the stored sessions (``extraction.sessions.privacy``)."""
    use_submissions: bool = True
    """Join submissions (titles, over_18) when the input has them; false runs on comments only."""
    report_top_subreddits: int = 20
    sessions_per_file: int = 1_000_000
    """Most rows per Parquet file of sessions (each thread bucket writes its own files, sorted by session_id)."""
    force: bool = False
    spark: SparkConfig = field(default_factory=SparkConfig)

    def validate(self) -> None:
        self.chains.validate()
        self.filters.validate()
        self.split.validate()
        if not storage.exists(storage.join(self.input, layout.COMMENTS)):
            raise ExtractError(f"{self.input} has no comments/ table: run the ingest job first (extraction.ingest.job)")


def fingerprint(cfg: ExtractConfig) -> str:
    """The input's completion marker (its own fingerprint), the settings, and the list contents."""
    import fsspec

    ingest_marker = storage.join(cfg.input, layout.INGEST_DONE)
    lists = {}
    for name, value in asdict(cfg.filters).items():
        if name.endswith("_path") and name != "classifier_path":
            with fsspec.open(resolve_list_path(value), "rb") as f:
                lists[name] = hashlib.sha256(f.read()).hexdigest()
    if cfg.filters.classifier:  # the model's files, so another model (or a retrained one) runs again
        from reddit_pretrain.shards import sha256_files

        root = cfg.filters.classifier_path
        files = sorted(os.path.join(d, f) for d, _, names in os.walk(root) for f in names) if os.path.isdir(root) else [root]
        lists["classifier"] = dict(zip((os.path.relpath(f, root) for f in files), sha256_files(files)))
    material = {
        "input": storage.read_json(ingest_marker).get("fingerprint") if storage.exists(ingest_marker) else None,
        "chains": asdict(cfg.chains), "filters": asdict(cfg.filters), "split": asdict(cfg.split),
        "privacy": {"scrub_pii": cfg.privacy.scrub_pii, "pseudonymize_authors": cfg.privacy.pseudonymize_authors,
                    "salt": hashlib.sha256(resolve_salt(cfg.privacy)[0].encode()).hexdigest()
                    if cfg.privacy.pseudonymize_authors else None},
        "use_submissions": cfg.use_submissions, "sessions_per_file": cfg.sessions_per_file, "lists": lists,
        "code": "extract-v5",
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def run_extract(cfg: ExtractConfig, spark=None) -> dict:
    """Runs the extract job and returns its report (also written beside the output)."""

    cfg.validate()
    storage.check_writable(cfg.output)  # before Spark starts: one line, not a late traceback
    if cfg.filters.classifier:  # loaded once here, so a wrong path or label is one line before Spark starts
        from extraction.sessions.classifier import ClassifierError, from_config

        try:
            from_config(cfg.filters).labels
        except ClassifierError as e:
            raise ExtractError(str(e)) from None
    say = lambda msg: print(f"[extract] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    staged = storage.StagedOutput(cfg.output, DONE_MARKER, fingerprint(cfg), OUTPUTS, job="extract")
    if not cfg.force and staged.is_complete():
        say(f"{cfg.output} is complete for this input and settings; nothing to do (force=true runs again)")
        return storage.read_json(storage.join(cfg.output, REPORT_FILE))
    plan = plan_buckets(cfg)

    load_plotting_in_background()  # while the jobs run, not after them
    with staged.writing() as staging:  # refuses a folder not its own, or one another job writes
        spark = session_for(cfg.spark, plan.bytes, spark)
        started = time.time()
        say(f"{cfg.input} -> {cfg.output}: {plan.comments_files} comment files in {len(plan.buckets)} thread buckets "
            f"({'with' if plan.use_submissions else 'without'} submissions), {where(spark)}")
        settings = _Settings(cfg.chains, cfg.filters, cfg.split, storage.join(staging, "_work"), staging,
                             max(plan.buckets) + 1, len(plan.buckets), cfg.sessions_per_file, Privacy.of(cfg.privacy))
        wall: dict[str, float] = {}

        def job(name: str, tasks: list[dict], fn, here: bool = False) -> list[tuple[dict, bytes | None]]:
            """``here``: in this process even on Spark (one small task: a Spark job costs more than it)."""
            t = time.time()
            results = run_tasks(None if here else spark, f"extract: {name}", tasks, fn)
            wall[name] = round(time.time() - t, 3)
            return results

        built = job("sessions", plan.tasks(), functools.partial(_sessions_task, settings))
        built.sort(key=lambda r: r[0]["bucket"])
        say(f"1/3 chains, turn and session rules: {sum(r['stats']['comments'] for r, _ in built):,} comments -> "
            f"{sum(r['stats']['candidates'] for r, _ in built):,} candidate sessions ({wall['sessions']:.1f} s)")
        reduced = job("corpus rules", [{"reducer": r} for r in range(settings.reducers)], functools.partial(_corpus_task, settings))
        reduced.sort(key=lambda r: r[0]["reducer"])
        frequent = np.concatenate([np.frombuffer(blob, dtype=np.uint64) for _, blob in reduced]) if reduced else np.zeros(0, np.uint64)
        storage.write_bytes_atomic(storage.join(settings.work, "frequent.npy"), frequent.tobytes())
        say(f"2/3 corpus counts: {len(frequent):,} frequent trigrams, "
            f"{sum(r['duplicates'] for r, _ in reduced):,} duplicates ({wall['corpus rules']:.1f} s)")
        near, near_results = None, []
        if near_duplicates_on(cfg.filters):
            buckets = [{"bucket": r["bucket"]} for r, _ in built]
            candidates = sum(r.get("near_pairs", 0) for r, _ in reduced)
            checked = []
            if candidates:  # (no candidate pair in the whole corpus: nothing to look up or verify)
                near_results += job("near duplicates: texts", buckets, functools.partial(_near_texts_task, settings))
                checked = job("near duplicates: verify", buckets, functools.partial(_near_verify_task, settings))
            (near, _), = job("near duplicates: clusters", [{"buckets": [r["bucket"] for r, _ in built],
                                                            "verified": bool(candidates)}],
                             functools.partial(_near_clusters_task, settings), here=True)
            near_results += checked + [(near, None)]
            say(f"   near duplicates: {sum(r['pairs'] for r, _ in checked):,} candidate pairs, "
                f"{near['verified']:,} verified, {near['near_duplicates']['clusters']:,} clusters of replies"
                + (f", {near['near_duplicates']['sessions']['clusters']:,} of sessions" if "sessions" in near['near_duplicates'] else "")
                + f", {near['dropped']:,} sessions to drop ({sum(wall[k] for k in wall if k.startswith('near')):.1f} s)")
        finished = job("write", [{"bucket": r["bucket"], "comments": r["stats"]["comments"], "valid": r["stats"]["valid"]}
                                 for r, _ in built], functools.partial(_write_task, settings))
        finished.sort(key=lambda r: r[0]["bucket"])
        say(f"3/3 bland, duplicates, splits and writes ({wall['write']:.1f} s)")
        exchanged = storage.tree_bytes(settings.work)  # what the tasks handed each other (Spark's shuffle, in files)
        storage.remove(settings.work)
        storage.remove_unfinished(staging)


        report = merge_reports(cfg, [r for r, _ in built], [r for r, _ in finished] + [r for r, _ in reduced + near_results])
        expected = plan.ingested_comments
        if expected is not None and expected != report["comments"]["comments"]:
            raise ExtractError(f"{cfg.input}: the ingest report counts {expected:,} comments but its tables hold "
                               f"{report['comments']['comments']:,}: the ingest output is damaged; run ingest again")
        report["seconds"] = round(time.time() - started, 3)
        report["job_seconds"] = wall
        report["exchange_bytes"] = exchanged
        report["input"] = cfg.input
        report["config"] = {"chains": asdict(cfg.chains), "filters": asdict(cfg.filters), "split": asdict(cfg.split),
                            "privacy": {"scrub_pii": cfg.privacy.scrub_pii, "pseudonymize_authors": cfg.privacy.pseudonymize_authors,
                                        "salt_from": resolve_salt(cfg.privacy)[1] if cfg.privacy.pseudonymize_authors else None}}
        t = time.time()
        annotate_rules(report, cfg)
        report["examples"], report["example_fields"] = rejected_examples(storage.join(staging, layout.REJECTS))
        report["ingest"] = ingest_summary(plan.ingest_report)
        report["run"] = run_info()
        storage.write_json_atomic(storage.join(staging, REPORT_FILE), report)
        render_report(report, storage.join(staging, layout.EXTRACT_REPORT_PNG), storage.join(staging, layout.EXTRACT_REPORT_HTML))
        staged.commit(finished_utc=int(time.time()))
    report["stage_seconds"]["report"] = round(time.time() - t, 3)
    print(format_report(report, cfg.output))
    return report


# ---------------------------------------------------------------------------------------------
# Planning (driver)


@dataclass
class BucketPlan:
    buckets: dict[int, dict[str, list[str]]]
    """bucket -> {"comments": files, "submissions": files, "bytes": n}."""
    use_submissions: bool
    comments_files: int
    ingested_comments: int | None
    ingest_report: dict

    @property
    def bytes(self) -> int:
        return sum(b["bytes"] for b in self.buckets.values())

    def tasks(self) -> list[dict]:
        """One task per bucket, the largest first (the longest tasks start first)."""
        order = sorted(self.buckets, key=lambda b: (-self.buckets[b]["bytes"], b))
        return [{"bucket": b, **self.buckets[b]} for b in order]


def plan_buckets(cfg: ExtractConfig) -> BucketPlan:
    """The ingest output's files grouped by thread bucket (an ingest output without buckets, from an
    older version, is one bucket)."""
    report_path = storage.join(cfg.input, layout.INGEST_REPORT)
    report = storage.read_json(report_path) if storage.exists(report_path) else {}
    submissions = storage.join(cfg.input, layout.SUBMISSIONS)
    use_submissions = cfg.use_submissions and storage.exists(submissions)
    buckets: dict[int, dict] = {}
    comments_files = 0
    for table in (layout.COMMENTS, layout.SUBMISSIONS) if use_submissions else (layout.COMMENTS,):
        fs, root = storage.filesystem(storage.join(cfg.input, table))
        for path, info in sorted(fs.find(root, detail=True).items()):
            name = path.rsplit("/", 1)[-1]
            if not name.endswith(".parquet") or name.startswith((".", "_")):
                continue
            bucket = layout.bucket_of(path) or 0
            entry = buckets.setdefault(bucket, {"comments": [], "submissions": [], "bytes": 0})
            url = path if storage.is_local(cfg.input) else f"{fs.protocol[0] if isinstance(fs.protocol, (tuple, list)) else fs.protocol}://{path}"
            entry[table].append(url)
            entry["bytes"] += int(info.get("size") or 0)
            comments_files += table == "comments"
    if not comments_files:
        raise ExtractError(f"{cfg.input}/comments holds no Parquet files: run the ingest job first (extraction.ingest.job)")
    ingested = report.get("totals", {}).get("comments_rows")
    check_ingest_output(cfg, report, buckets)  # every bucket: one may hold submissions and no comments
    return BucketPlan({b: e for b, e in buckets.items() if e["comments"]}, use_submissions, comments_files, ingested, report)


def check_ingest_output(cfg: ExtractConfig, report: dict, buckets: dict[int, dict]) -> None:
    """The input must be what the ingest job's marker and report describe: complete, with every
    table it reported and the rows of each (from the Parquet footers of every bucket, those whose
    threads have no comment in these months too), before any work starts."""
    if not storage.exists(storage.join(cfg.input, layout.INGEST_DONE)) or not report:
        raise ExtractError(f"{cfg.input} is not a complete ingest output (no {layout.INGEST_DONE} or {layout.INGEST_REPORT}): "
                           "run the ingest job (again)")

    totals = report.get("totals", {})
    tables = {"comments": "comments_rows"}
    if cfg.use_submissions:
        tables["submissions"] = "submissions_rows"
    for table, key in tables.items():
        files = [url for entry in buckets.values() for url in entry[table]]
        found = storage.parquet_rows(files)
        if key in totals and found != totals[key]:
            missing = "missing" if not files else f"holds {found:,} rows"
            raise ExtractError(f"{cfg.input}/{table} {missing} but the ingest report counts {totals[key]:,}: the ingest "
                               "output is damaged; run ingest again (force=true)")


# ---------------------------------------------------------------------------------------------
# Tasks (executors)


@dataclass(frozen=True)
class _Settings:
    chains: ChainsConfig
    filters: FiltersConfig
    split: SplitConfig
    work: str
    staging: str
    buckets: int
    """Highest bucket number + 1 (files of buckets without comments do not exist)."""
    reducers: int
    sessions_per_file: int
    privacy: Privacy


_KEYS = pa.schema([("_rkey", pa.uint64()), ("_skey", pa.uint64()), ("session_id", pa.string()), ("bucket", pa.int64())])
_GRAMS = pa.schema([("h", pa.uint64()), ("n", pa.int64())])
_DROPPED = pa.schema([("bucket", pa.int64()), ("session_id", pa.string()), ("reason", pa.string()),
                      ("duplicate_of", pa.string())])
_ROW_GROUP_ROWS = 32_768
"""Parquet row groups of the sessions: the tokenize job's tasks are runs of them."""


def _read_parquet(files: list[str], columns: list[str] | None = None) -> pa.Table | None:
    import pyarrow.parquet as pq

    tables = []
    for url in files:
        fs, path = storage.filesystem(url)
        with fs.open(path, "rb") as f:
            tables.append(pq.read_table(f, columns=[c for c in columns if c in pq.read_schema(f).names] if columns else None))
    return pa.concat_tables(tables, promote_options="permissive") if tables else None


def _work_file(settings: _Settings, kind: str, index: int) -> str:
    return storage.join(settings.work, kind, f"{index:05d}.arrow")


def _sessions_task(settings: _Settings, task: dict) -> tuple[dict, bytes | None]:

    timer = Timer()
    comments = _read_parquet(task["comments"], COMMENT_COLUMNS)
    submissions = _read_parquet(task["submissions"], SUBMISSION_COLUMNS) if task["submissions"] else None
    timer.lap("read")
    rules = Rules.load(settings.filters)
    candidates, stats, grams, counts = build_candidates(comments, submissions, settings.chains, settings.filters,
                                                        settings.split, rules, timer, settings.privacy)
    b = task["bucket"]
    exchange.write_table(_work_file(settings, "candidates", b), candidates)
    exchange.write_partitioned(_work_file(settings, "trigrams", b), pa.table({"h": grams, "n": counts}, schema=_GRAMS),
                               exchange.hash_partition(grams, settings.reducers), settings.reducers)
    alive = candidates.filter(pc.is_null(candidates.column("drop_reason")))
    keys = pa.table({"_rkey": alive.column("_rkey"), "_skey": alive.column("_skey"), "session_id": alive.column("session_id"),
                     "bucket": pa.array(np.full(alive.num_rows, b, dtype=np.int64))}, schema=_KEYS)
    exchange.write_partitioned(_work_file(settings, "keys", b), keys,
                               exchange.hash_partition(_np(keys.column("_rkey")), settings.reducers), settings.reducers)
    timer.lap("writes")
    if near_duplicates_on(settings.filters):

        bands, texts, aliases = near_duplicate_inputs(candidates, b, settings.filters)
        timer.lap("near duplicates: signatures")
        exchange.write_table(_work_file(settings, "nd_aliases", b), aliases)
        exchange.write_partitioned(_work_file(settings, "nd_bands", b), bands,
                                   exchange.hash_partition(_np(bands.column("band")), settings.reducers), settings.reducers)
        exchange.write_table(_work_file(settings, "nd_texts", b), texts)
        timer.lap("near duplicates: writes")
    return {"bucket": b, "stats": stats, "seconds": timer.seconds}, None


def _corpus_task(settings: _Settings, task: dict) -> tuple[dict, bytes | None]:

    timer = Timer()
    r = task["reducer"]
    frequent = np.zeros(0, np.uint64)
    if settings.filters.bland:
        grams = exchange.read_partition([_work_file(settings, "trigrams", b) for b in range(settings.buckets)], r, _GRAMS)
        frequent = frequent_trigrams(_np(grams.column("h")), _np(grams.column("n")), settings.filters.bland_min_count)
    keys = exchange.read_partition([_work_file(settings, "keys", b) for b in range(settings.buckets)], r, _KEYS)
    dropped = resolve_duplicates(keys, settings.filters.duplicate_session, settings.filters.duplicate_response)
    exchange.write_partitioned(_work_file(settings, "dropped", r), dropped.cast(_DROPPED), _np(dropped.column("bucket")),
                               settings.buckets)
    timer.lap("corpus rules")
    if near_duplicates_on(settings.filters):

        bands = exchange.read_partition([_work_file(settings, "nd_bands", b) for b in range(settings.buckets)], r, ND_BANDS)
        pairs, same = near_duplicate_pairs(bands, settings.filters.near_duplicate_max_group, settings.filters.near_duplicate_threshold)
        exchange.write_partitioned(_work_file(settings, "nd_pairs", r), pairs, _np(pairs.column("a_bucket")), settings.buckets)
        exchange.write_table(_work_file(settings, "nd_same", r), same)
        timer.lap("near duplicates: pairs")
        return {"reducer": r, "frequent": len(frequent), "duplicates": dropped.num_rows, "near_pairs": pairs.num_rows,
                "seconds": timer.seconds}, frequent.tobytes()
    return {"reducer": r, "frequent": len(frequent), "duplicates": dropped.num_rows, "seconds": timer.seconds}, frequent.tobytes()


def _near_texts_task(settings: _Settings, task: dict) -> tuple[dict, bytes | None]:
    """Near duplicates, first lookup: the candidate pairs whose ``a`` is in this bucket, with a's text,
    passed on to the bucket of ``b``."""

    timer = Timer()
    b = task["bucket"]
    pairs = exchange.read_partition([_work_file(settings, "nd_pairs", r) for r in range(settings.reducers)], b, ND_PAIRS)
    pairs = unique_pairs(pairs)  # a pair sharing several bands comes from several tasks: looked up once
    pairs = with_texts(pairs, exchange.read_table(_work_file(settings, "nd_texts", b)), "a")
    exchange.write_partitioned(_work_file(settings, "nd_pairs_a", b), pairs, _np(pairs.column("b_bucket")), settings.buckets)
    timer.lap("near duplicates: texts")
    return {"bucket": b, "pairs": pairs.num_rows, "seconds": timer.seconds}, None


def _near_verify_task(settings: _Settings, task: dict) -> tuple[dict, bytes | None]:
    """Near duplicates, second lookup: the pairs whose ``b`` is in this bucket, with b's text, verified."""

    timer = Timer()
    b = task["bucket"]
    pairs = exchange.read_partition([_work_file(settings, "nd_pairs_a", a) for a in range(settings.buckets)], b, ND_PAIRS_A)
    pairs = with_texts(pairs, exchange.read_table(_work_file(settings, "nd_texts", b)), "b")
    timer.lap("near duplicates: texts")
    verified = verify_pairs(pairs, settings.filters.near_duplicate_shingle, settings.filters.near_duplicate_threshold)
    exchange.write_table(_work_file(settings, "nd_verified", b), verified)
    timer.lap("near duplicates: verify")
    return {"bucket": b, "pairs": pairs.num_rows, "verified": verified.num_rows, "seconds": timer.seconds}, None


def _near_clusters_task(settings: _Settings, task: dict) -> tuple[dict, bytes | None]:
    """Near duplicates, last step (one task, run in the driver): the clusters of the verified pairs,
    the dropped members passed on to their buckets."""

    timer = Timer()
    kinds = ("nd_aliases", "nd_verified") if task.get("verified", True) else ("nd_aliases",)
    verified = exchange.read_partition([_work_file(settings, kind, b) for kind in kinds for b in task["buckets"]]
                                       + [_work_file(settings, "nd_same", r) for r in range(settings.reducers)], 0, ND_VERIFIED)
    dropped, summary = near_duplicate_clusters(verified)
    exchange.write_partitioned(_work_file(settings, "nd_dropped", 0), dropped, _np(dropped.column("bucket")), settings.buckets)
    timer.lap("near duplicates: clusters")
    return {"near_duplicates": summary, "verified": verified.num_rows, "dropped": dropped.num_rows, "seconds": timer.seconds}, None


def _write_task(settings: _Settings, task: dict) -> tuple[dict, bytes | None]:
    import pyarrow.parquet as pq


    timer = Timer()
    b = task["bucket"]
    candidates = exchange.read_table(_work_file(settings, "candidates", b))
    dropped = exchange.read_partition([_work_file(settings, "dropped", r) for r in range(settings.reducers)], b, _DROPPED)
    near = None
    if near_duplicates_on(settings.filters):

        near = exchange.read_partition([_work_file(settings, "nd_dropped", 0)], b, ND_DROPPED)
    frequent = None
    if settings.filters.bland:
        fs, path = storage.filesystem(storage.join(settings.work, "frequent.npy"))
        with fs.open(path, "rb") as f:
            frequent = np.frombuffer(f.read(), dtype=np.uint64)
    timer.lap("read")
    sessions, stats = finish_bucket(candidates, dropped, frequent, settings.filters, task["comments"], task["valid"], timer,
                                    near)

    def write(url: str, table: pa.Table) -> None:
        fs, path = storage.filesystem(url)
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with fs.open(path + ".tmp", "wb") as sink:
            pq.write_table(table, sink, compression="zstd", row_group_size=_ROW_GROUP_ROWS)
        storage.rename(url + ".tmp", url)

    kept_mask = pc.is_null(sessions.column("drop_reason"))
    kept = sessions.filter(kept_mask)
    split = kept.column("split")
    for name in SPLITS:
        rows = kept.filter(pc.equal(split, name)).select(SESSION_COLUMNS)
        for seq, start in enumerate(range(0, rows.num_rows, settings.sessions_per_file)):
            write(storage.join(settings.staging, layout.SESSIONS, layout.split_folder(name), layout.session_part(b, seq)),
                  rows.slice(start, settings.sessions_per_file))
    rejects = sessions.filter(pc.invert(kept_mask)).select(SESSION_COLUMNS + ["drop_reason", "split", "duplicate_of"])
    write(storage.join(settings.staging, layout.REJECTS, layout.reject_part(b)), rejects)
    timer.lap("writes")
    return {"bucket": b, "report": stats, "seconds": timer.seconds}, None


def _np(array) -> np.ndarray:

    return as_array(array).to_numpy(zero_copy_only=False)


def main() -> None:
    from extraction import spark
    from reddit_pretrain.cli import run_hydra

    run_hydra("extract", ExtractConfig, run_extract, (ExtractError, ValueError, FileNotFoundError, storage.OutputNotWritable,
                                                       spark.SparkStartError), hint=spark.log_hint)

if __name__ == "__main__":
    main()
