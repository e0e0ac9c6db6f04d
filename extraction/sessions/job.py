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

How it runs: the ingest job wrote comments and submissions into pieces of a fixed 64-bit hash
space of thread ids (``threads.thread_places``; a piece is a contiguous range of it), so a piece
holds whole threads. The job groups contiguous pieces into tasks of about ``task_bytes`` each (the
unit of work follows the data, not how finely the input was cut), then runs three sets of Spark
tasks, whatever the input:

1. one task per range of pieces (``extraction.sessions.reddit_threads.build_candidates``): whole threads
   in memory, every feature computed once per comment, vectorised; chains, session rules and
   split as array expressions. It writes its candidate sessions, its trigram counts and the
   hashes the duplicate rules need to ``_work/`` in staging (``extraction.spark.exchange``: one
   file per task, a batch per hash partition, the layout of Spark's shuffle, rows never in the JVM);
2. reduce tasks (one per ``reduce_bytes`` of exchanged files, at least one per core), each over a
   contiguous range of hash partitions, opening every task's file once: the corpus-wide trigram
   counts (frequent trigrams, summed as 64-bit hashes) and the duplicate groups
   (``threads.resolve_duplicates``); the near-duplicate candidate pairs, looked up and verified
   the same way;
3. one task per range of pieces again (``threads.finish_bucket``): bland and duplicates applied,
   the Parquet outputs written, the task's report counts returned. The driver adds them up;
   nothing is recomputed for the report.

The files an exchange opens are the tasks of one set times the tasks of the other (the report's
``exchange`` table counts them), so they grow with the data, not with the number of pieces.

Outputs are the same bytes on a re-run: file names come from task numbers (the tasks come from
the input's file sizes and ``task_bytes`` alone, never from the cores), rows are sorted by
session id, and Parquet is written by pyarrow with fixed settings. An input smaller than
``spark.in_process_below_bytes`` on a local master runs the same tasks in this process, without
starting Spark (``extraction.spark.session_for``), and gives the same bytes.
"""

from __future__ import annotations

import functools
import hashlib
import os
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from reddit_pretrain import layout, storage
from reddit_pretrain.layout import SPLITS
from extraction.sessions import ExtractError
from extraction.sessions.chains import ChainsConfig, SplitConfig
from extraction.sessions.filters import FiltersConfig, LoadedRules
from extraction.sessions.rules import resolve_list_path
from extraction.sessions.privacy import Privacy, PrivacyConfig, resolve_salt
from extraction.sessions.report import (annotate_rules, format_report, ingest_summary, load_plotting_in_background,
                                        merge_reports, rejected_examples, render_report, run_info)
from extraction.sessions.reddit_threads import (COMMENT_COLUMNS, MARK_COLUMNS, SESSION_COLUMNS, SUBMISSION_COLUMNS,
                                                Timer, build_candidates)
from extraction.sessions.corpus_rules import finish_bucket, frequent_trigrams, resolve_duplicates
from extraction.sessions.near_sessions import ND_DROPPED, near_duplicate_inputs, near_duplicates_on
from extraction.spark import SparkConfig, cores, exchange, session_for, where
from extraction.spark.stage import Stage
from extraction.ingest.corpus import ingest_roots, is_corpus
from extraction.sessions.work import (_DROPPED, _GRAMS, _KEYS, _ROW_GROUP_ROWS, MIN_PARTITIONS, _Settings, _all, _np, _peak_rss,
                                      _read_parquet, _work_file)
from extraction.sessions.near_tasks import (_clusters_in_rounds, _near_clusters_task, _near_pairs, _near_state_task,
                                            _near_texts_task, _near_verify_task)
from extraction.sessions import batches

DONE_MARKER = layout.EXTRACT_DONE
REPORT_FILE = layout.EXTRACT_REPORT
OUTPUTS = [layout.SESSIONS, layout.REJECTS, REPORT_FILE, layout.EXTRACT_REPORT_PNG, layout.EXTRACT_REPORT_HTML,
           layout.EXTRACT_STATE]
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
    """Most rows per Parquet file of sessions (each task writes its own files, sorted by session_id)."""
    task_bytes: int = 16 << 20
    """Ingested Parquet (comments and submissions) per task of the first set, about: contiguous
    pieces of the thread hash space are grouped up to this size, in hash order (a piece larger than
    it, a megathread's, is a task alone). A task holds its threads in memory: about 33x this at its
    peak, 1.9 KB a comment (docs/guide.md, "Memory per task"). Part of the fingerprint: it decides the output's files."""
    clusters_in_driver_bytes: int = 256 << 20
    """Verified near-duplicate links (their exchanged Arrow files) up to this size are clustered in
    one step in the driver; more are clustered by Spark tasks in rounds (``extraction.sessions.clusters``),
    so the driver's memory does not grow with the corpus. Any value gives the same output."""
    reduce_bytes: int = 64 << 20
    """Exchanged bytes per task of the steps that read every task's exchanged files (the corpus rules, the
    near-duplicate verification), at least one such task per core. Any value gives the same sessions (a corpus's
    batch: at least ``MIN_TASKS`` whatever the cores, its ``state/`` cut into one file per such task, and its
    ``state/near_texts`` written by the driver when no more than this: a Spark job would cost more)."""
    batch: str | None = None
    """A corpus's batch (``input`` a corpus folder): only the sessions whose last turn is in this
    batch, judged against every batch before it (``extraction.sessions.batches``), written to
    ``<corpus>/extract/<batch>/`` (``output`` is not used). Unset: every batch as one input."""
    force: bool = False
    spark: SparkConfig = field(default_factory=SparkConfig)

    def validate(self) -> None:
        self.chains.validate()
        self.filters.validate()
        self.split.validate()
        if self.task_bytes < 1 or self.reduce_bytes < 1:
            raise ExtractError("task_bytes and reduce_bytes must be positive")
        if not is_corpus(self.input) and not storage.exists(storage.join(self.input, layout.COMMENTS)):
            raise ExtractError(f"{self.input} has no comments/ table: run the ingest job first (extraction.ingest.job)")


def material(cfg: ExtractConfig, roots: list[str]) -> dict:
    """What decides the output (its fingerprint: ``extraction.spark.stage``): the input's completion
    marker (its own fingerprint; a corpus's ``roots``: each batch's), the settings, and the list contents."""
    import fsspec

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
        "input": _input_fingerprint(cfg.input, roots),
        "chains": asdict(cfg.chains), "filters": asdict(cfg.filters), "split": asdict(cfg.split),
        "privacy": {"scrub_pii": cfg.privacy.scrub_pii, "pseudonymize_authors": cfg.privacy.pseudonymize_authors,
                    "salt": hashlib.sha256(resolve_salt(cfg.privacy)[0].encode()).hexdigest()
                    if cfg.privacy.pseudonymize_authors else None},
        "use_submissions": cfg.use_submissions, "sessions_per_file": cfg.sessions_per_file, "lists": lists,
        "task_bytes": cfg.task_bytes, "code": "extract-v7",
    }
    return material


def _input_fingerprint(url: str, roots: list[str]) -> str | dict | None:
    """The ingest output's own fingerprint (its marker's), or a corpus's: each complete batch's."""
    def marked(root: str) -> str | None:
        marker = storage.join(root, layout.INGEST_DONE)
        return storage.read_json(marker).get("fingerprint") if storage.exists(marker) else None

    if roots == [url]:
        return marked(url)
    return {root.rstrip("/").rsplit("/", 1)[-1]: marked(root) for root in roots}


def run_extract(cfg: ExtractConfig, spark=None) -> dict:
    """Runs the extract job and returns its report (also written beside the output)."""

    cfg.validate()
    earlier, earlier_out = [], []
    if cfg.batch:  # a corpus's batch, against the batches before it
        root, earlier, earlier_out = batches.batch_roots(cfg.input, cfg.batch)
        cfg = replace(cfg, output=batches.extract_folder(cfg.input, cfg.batch))
    storage.check_writable(cfg.output)  # before Spark starts: one line, not a late traceback
    if cfg.filters.classifier:  # loaded once here, so a wrong path or label is one line before Spark starts
        from extraction.sessions.classifier import ClassifierError, from_config

        try:
            from_config(cfg.filters).labels
        except ClassifierError as e:
            raise ExtractError(str(e)) from None
    roots, unfinished = ([root], []) if cfg.batch else ingest_roots(cfg.input)  # the input, or a corpus's complete batches
    decided = material(cfg, roots)
    if cfg.batch:  # what the batch is judged against: the earlier batches' extracts
        decided["earlier"] = {folder.rstrip("/").rsplit("/", 1)[-1]: storage.read_json(
            storage.join(folder, DONE_MARKER)).get("fingerprint") for folder in earlier_out}
        batches.check_rules(cfg.input, batches.rules_of(decided))
    stage = Stage("extract", cfg.output, DONE_MARKER, OUTPUTS, decided, force=cfg.force)
    say = stage.say
    if unfinished:
        say(f"{cfg.input}: batches without their marker left out (being written, or killed: run their ingest "
            f"again): {', '.join(unfinished)}")
    if stage.is_complete():
        say(f"{cfg.output} is complete for this input and settings; nothing to do (force=true runs again)")
        return storage.read_json(storage.join(cfg.output, REPORT_FILE))
    if cfg.batch:
        batches.check_none_later(cfg.input, cfg.batch)
    plan = plan_buckets(cfg, roots, earlier)

    load_plotting_in_background()  # while the jobs run, not after them
    with stage.running() as staging:  # refuses a folder not its own, or one another job writes; keeps finished tasks
        spark = session_for(cfg.spark, plan.bytes, spark)
        started = time.time()
        tasks = plan.tasks(cfg.task_bytes)
        say(f"{cfg.input} -> {cfg.output}: {plan.comments_files} comment files in {len(plan.buckets):,} pieces of the "
            f"thread hash space, {len(tasks):,} tasks of about {_mib(plan.bytes / len(tasks))} "
            f"({'with' if plan.use_submissions else 'without'} submissions), {where(spark)}")
        settings = _Settings(cfg.chains, cfg.filters, cfg.split, storage.join(staging, "_work"), staging, len(tasks),
                             max(len(tasks), MIN_PARTITIONS), cfg.sessions_per_file, Privacy.of(cfg.privacy), bool(cfg.batch), tuple(earlier_out))
        wall: dict[str, float] = {}
        steps: dict[str, dict[str, int]] = {}

        def job(name: str, tasks: list[dict], fn, here: bool = False) -> list[tuple[dict, bytes | None]]:
            """``here``: in this process even on Spark (one small task: a Spark job costs more than it)."""
            results = stage.tasks(None if here else spark, name, tasks, fn)
            wall[name] = stage.steps[name]["seconds"]  # (timed by the stage; the rounds of one step add up)
            step = steps.setdefault(name, {"tasks": 0, "files_opened": 0})
            step["tasks"] += len(results)
            step["files_opened"] += sum(r.get("opened", 0) for r, _ in results)
            return results

        built = job("sessions", tasks, functools.partial(_sessions_task, settings))
        built.sort(key=lambda r: r[0]["task"])
        say(f"1/3 chains, turn and session rules: {sum(r['stats']['comments'] for r, _ in built):,} comments -> "
            f"{sum(r['stats']['candidates'] for r, _ in built):,} candidate sessions ({wall['sessions']:.1f} s)")
        count = reduce_tasks(sum(r["exchanged"] for r, _ in built), MIN_TASKS if cfg.batch else cores(spark), cfg.reduce_bytes)
        corpus = exchange.ranges(settings.partitions, count)  # (a batch's state: the same files anywhere)
        reducers = exchange.ranges(settings.tasks, count)  # (the near-duplicate lookups: ranges of first-set tasks)
        reduced = job("corpus rules", [{"reducer": k, "first": lo, "last": hi} for k, (lo, hi) in enumerate(corpus)],
                      functools.partial(_corpus_task, settings))
        reduced.sort(key=lambda r: r[0]["reducer"])
        frequent = sum(r["frequent"] for r, _ in reduced)  # (each reduce task wrote its own: the driver holds none)
        say(f"2/3 corpus counts in {len(corpus):,} reduce tasks: {frequent:,} frequent trigrams, "
            f"{sum(r['duplicates'] for r, _ in reduced):,} duplicates ({wall['corpus rules']:.1f} s)")
        near, near_results, near_files = None, [], 0
        if near_duplicates_on(cfg.filters):
            candidates = sum(r.get("near_pairs", 0) for r, _ in reduced)
            checked = []
            if candidates:  # (no candidate pair in the whole corpus: nothing to look up or verify)
                near_results += job("near duplicates: texts", [{"task": r["task"], "reducers": len(corpus)} for r, _ in built],
                                    functools.partial(_near_texts_task, settings))
                checked = job("near duplicates: verify", [{"reducer": k, "first": lo, "last": hi, "reducers": len(corpus)}
                                                          for k, (lo, hi) in enumerate(reducers)],
                              functools.partial(_near_verify_task, settings))
            links = _all(settings, "nd_aliases") + (_all(settings, "nd_verified", len(reducers)) if candidates else []) \
                + _all(settings, "nd_same", len(corpus))
            link_bytes = sum(r.get("link_bytes", 0) for r, _ in built + reduced + checked)  # (as the tasks wrote them)
            if link_bytes <= cfg.clusters_in_driver_bytes:
                (near, _), = job("near duplicates: clusters", [{"links": links}], functools.partial(_near_clusters_task, settings),
                                 here=True)
                near_results += checked + [(near, None)]
            else:  # links too many for one process: Spark tasks in rounds (extraction.sessions.clusters)
                near, rounds = _clusters_in_rounds(settings, job, len(reducers), links)
                near_results += checked + rounds + [(near, None)]
            near_files = near["files"]
            say(f"   near duplicates: {sum(r['pairs'] for r, _ in checked):,} candidate pairs, "
                f"{near['verified']:,} verified, {near['near_duplicates']['clusters']:,} clusters of replies"
                + (f", {near['near_duplicates']['sessions']['clusters']:,} of sessions" if "sessions" in near['near_duplicates'] else "")
                + f", {near['dropped']:,} sessions to drop ({sum(wall[k] for k in wall if k.startswith('near')):.1f} s)")
        finished = job("write", [{"task": r["task"], "reducers": len(corpus), "near_files": near_files, "comments": r["stats"]["comments"],
                                  "valid": r["stats"]["valid"]} for r, _ in built], functools.partial(_write_task, settings))
        finished.sort(key=lambda r: r[0]["task"])
        if cfg.batch and near:  # (its state/near_texts: by session id, for the later batches' lookups; here when small)
            near_results += job("near duplicates: state", [{"first": lo, "last": hi} for lo, hi in reducers], functools.partial(
                _near_state_task, settings), here=sum(r.get("state_bytes", 0) for r, _ in finished) <= cfg.reduce_bytes)
        say(f"3/3 bland, duplicates, splits and writes ({wall['write']:.1f} s)")
        exchanged = storage.tree_bytes(settings.work)  # what the tasks handed each other (Spark's shuffle, in files)
        storage.remove_unfinished(staging)  # (_work and the task records go with staging at the commit)

        report = merge_reports(cfg, [r for r, _ in built], [r for r, _ in finished] + [r for r, _ in reduced + near_results])
        expected = plan.ingested_comments
        if expected is not None and expected != report["comments"]["comments"]:
            raise ExtractError(f"{cfg.input}: the ingest report counts {expected:,} comments but its tables hold "
                               f"{report['comments']['comments']:,}: the ingest output is damaged; run ingest again")
        report["seconds"] = round(time.time() - started, 3)
        report["job_seconds"] = wall
        report["exchange_bytes"] = exchanged
        report["exchange"] = {"pieces": len(plan.buckets), "tasks": len(tasks), "reduce_tasks": len(corpus),
                              "task_bytes": {"median": int(np.median([t["bytes"] for t in tasks])),
                                             "max": max(t["bytes"] for t in tasks)},
                              "worker_peak_rss": max(r["peak_rss"] for r, _ in built),
                              "steps": steps}
        report["input"] = cfg.input
        if cfg.batch:
            stats = [r["stats"] for r, _ in built]
            report["batch"] = {"name": cfg.batch, "earlier": [f.rstrip("/").rsplit("/", 1)[-1] for f in earlier_out],
                               "earlier_comments_read": sum(s.get("earlier_comments", 0) for s in stats),
                               "replied_later": sum(s.get("replied_later", 0) for s in stats),
                               "newly_frequent_trigrams": sum(r.get("newly_frequent", 0) for r, _ in reduced)}
            report["batch"] |= {"near_duplicates_of_earlier": sum(r.get("earlier_links", 0) for r, _ in near_results),
                                "bridged_clusters": near["bridged"]} if near else {}
        report["config"] = {"chains": asdict(cfg.chains), "filters": asdict(cfg.filters), "split": asdict(cfg.split),
                            "privacy": {"scrub_pii": cfg.privacy.scrub_pii, "pseudonymize_authors": cfg.privacy.pseudonymize_authors,
                                        "salt_from": resolve_salt(cfg.privacy)[1] if cfg.privacy.pseudonymize_authors else None}}
        t = time.time()
        annotate_rules(report, cfg)
        report["examples"], report["example_fields"] = rejected_examples(storage.join(staging, layout.REJECTS))
        report["ingest"] = ingest_summary(plan.ingest_report)
        report["run"] = run_info()
        render_report(report, storage.join(staging, layout.EXTRACT_REPORT_PNG), storage.join(staging, layout.EXTRACT_REPORT_HTML))
        stage.commit(report, REPORT_FILE, finished_utc=int(time.time()))
    if cfg.batch:
        batches.record_rules(cfg.input, batches.rules_of(decided))
    report["stage_seconds"]["report"] = round(time.time() - t, 3)
    print(format_report(report, cfg.output))
    return report


# ---------------------------------------------------------------------------------------------
# Planning (driver)


MIN_TASKS = 4
"""At least this many tasks when the input has as many pieces (a small month still uses a few cores);
a constant, not the cluster's cores, so the same input gives the same files on any cluster."""


@dataclass
class BucketPlan:
    buckets: dict[int, dict[str, list[str]]]
    """piece of the thread hash space -> {"comments": files, "submissions": files, "bytes": n}."""
    use_submissions: bool
    comments_files: int
    ingested_comments: int | None
    ingest_report: dict

    @property
    def bytes(self) -> int:
        return sum(b["bytes"] for b in self.buckets.values())

    def tasks(self, task_bytes: int) -> list[dict]:
        """Contiguous pieces grouped into tasks of about ``task_bytes`` of ingested Parquet each (at
        least ``MIN_TASKS`` when there are as many pieces; a piece larger than that is a task alone):
        the pieces whose first byte, counted in hash order, falls in the same multiple of the target
        form a task, so tasks are at most the target plus one piece. Numbered in hash order, listed
        the largest first (the longest tasks start first)."""
        order = sorted(self.buckets)
        target = max(1, min(task_bytes, -(-self.bytes // MIN_TASKS)))
        groups: list[list[int]] = []
        start = 0  # the bytes before this piece, in hash order: a task is the pieces starting in one multiple of target
        key = big = None
        for piece in order:
            size = self.buckets[piece]["bytes"]
            was_big, big, was_key, key = big, size > target, key, start // target
            if not groups or big or was_big or key != was_key or len(order) <= MIN_TASKS:
                groups.append([])
            groups[-1].append(piece)
            start += size
        tasks = []
        for t, pieces in enumerate(groups):
            entries = [self.buckets[p] for p in pieces]
            tasks.append({"task": t, "pieces": [pieces[0], pieces[-1]], "bytes": sum(e["bytes"] for e in entries),
                          "comments": [f for e in entries for f in e["comments"]],
                          "submissions": [f for e in entries for f in e["submissions"]]}
                         | ({k: [f for e in entries for f in e[k]] for k in ("earlier_comments", "earlier_submissions")}
                            if "earlier_comments" in entries[0] else {}))
        return sorted(tasks, key=lambda t: (-t["bytes"], t["task"]))


def reduce_tasks(exchange_bytes: int, cores: int, reduce_bytes: int) -> int:
    """Tasks of the steps that read every task's exchanged files: one per ``reduce_bytes`` of them, a
    multiple of the cores (3 equal tasks on 2 cores take as long as 4); each reads a range of partitions."""
    cores = max(1, cores)
    return -(-max(cores, -(-exchange_bytes // max(1, reduce_bytes))) // cores) * cores


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def plan_buckets(cfg: ExtractConfig, roots: list[str], earlier: list[str] = ()) -> BucketPlan:
    """The files of the ingest outputs ``roots`` grouped by thread bucket (an ingest output without
    buckets, from an older version, is one bucket): the input, or a corpus's complete batches
    (``extraction.ingest.corpus``), a piece's files from all of them together. ``earlier`` (a
    batch's run, ``extraction.sessions.batches``): the earlier batches, whose files of a piece are
    listed apart (``earlier_comments``, ``earlier_submissions``) and do not count in its bytes."""
    buckets: dict[int, dict] = {}
    comments_files = 0
    reports = []
    use_submissions = False
    for root in list(roots) + list(earlier):
        old = root in earlier
        report_path = storage.join(root, layout.INGEST_REPORT)
        report = storage.read_json(report_path) if storage.exists(report_path) else {}
        submissions = storage.join(root, layout.SUBMISSIONS)
        here = cfg.use_submissions and storage.exists(submissions)
        use_submissions = use_submissions or here
        found: dict[int, dict] = {}
        for table in (layout.COMMENTS, layout.SUBMISSIONS) if here else (layout.COMMENTS,):
            fs, path_in = storage.filesystem(storage.join(root, table))
            listed = fs.find(path_in, detail=True) if fs.exists(path_in) else {}
            for path, info in sorted(listed.items()):
                name = path.rsplit("/", 1)[-1]
                if not name.endswith(".parquet") or name.startswith((".", "_")):
                    continue
                bucket = layout.bucket_of(path) or 0
                entry = found.setdefault(bucket, {"comments": [], "submissions": [], "bytes": 0})
                url = path if storage.is_local(root) else f"{fs.protocol[0] if isinstance(fs.protocol, (tuple, list)) else fs.protocol}://{path}"
                entry[table].append(url)
                entry["bytes"] += int(info.get("size") or 0)
                comments_files += table == "comments" and not old
        if not old:  # (an earlier batch was checked when it was extracted)
            check_ingest_output(cfg, root, report, found)  # every bucket: one may hold submissions and no comments
        for bucket, entry in found.items():
            into = buckets.setdefault(bucket, {"comments": [], "submissions": [], "bytes": 0}
                                      | ({"earlier_comments": [], "earlier_submissions": []} if earlier else {}))
            into["earlier_comments" if old else "comments"] += entry["comments"]
            into["earlier_submissions" if old else "submissions"] += entry["submissions"]
            into["bytes"] += 0 if old else entry["bytes"]
        if not old:
            reports.append(report)
        elif report.get("thread_buckets") != reports[0].get("thread_buckets"):
            raise ExtractError(f"{root} is cut into other pieces of the thread hash space than {roots[0]}")
    if not comments_files:
        raise ExtractError(f"{cfg.input}/comments holds no Parquet files: run the ingest job first (extraction.ingest.job)")
    pieces = {r.get("thread_buckets") for r in reports}
    if len(pieces) > 1:
        raise ExtractError(f"{cfg.input}: its batches are cut into different pieces of the thread hash space ({sorted(pieces)})")
    report = reports[0] if len(reports) == 1 else _merged_reports(reports)
    ingested = report.get("totals", {}).get("comments_rows")
    return BucketPlan({b: e for b, e in buckets.items() if e["comments"]}, use_submissions, comments_files, ingested, report)


def _merged_reports(reports: list[dict]) -> dict:
    """A corpus's batches' ingest reports as one: their files, and their totals added."""
    totals: dict = {}
    for report in reports:
        for key, value in report.get("totals", {}).items():
            if isinstance(value, dict):
                into = totals.setdefault(key, {})
                for k, v in value.items():
                    into[k] = into.get(k, 0) + v
            elif isinstance(value, (int, float)):
                totals[key] = totals.get(key, 0) + value
    return {"files": [f for r in reports for f in r.get("files", [])], "totals": totals}


def check_ingest_output(cfg: ExtractConfig, root: str, report: dict, buckets: dict[int, dict]) -> None:
    """An ingest output (the input, or a corpus's batch) must be what its marker and report
    describe: complete, with every table it reported and the rows of each (from the Parquet footers
    of every bucket, those whose threads have no comment in these months too), before any work starts."""
    if not storage.exists(storage.join(root, layout.INGEST_DONE)) or not report:
        raise ExtractError(f"{root} is not a complete ingest output (no {layout.INGEST_DONE} or {layout.INGEST_REPORT}): "
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
            raise ExtractError(f"{root}/{table} {missing} but the ingest report counts {totals[key]:,}: the ingest "
                               "output is damaged; run ingest again (force=true)")


# ---------------------------------------------------------------------------------------------
# Tasks (executors)


def _sessions_task(settings: _Settings, task: dict) -> tuple[dict, bytes | None]:

    timer = Timer()
    comments = _read_parquet(task["comments"], COMMENT_COLUMNS + MARK_COLUMNS)
    submissions = _read_parquet(task["submissions"], SUBMISSION_COLUMNS) if task["submissions"] else None
    rows, earlier = comments.num_rows, None
    if "earlier_comments" in task:  # a corpus's batch: the earlier batches' rows of its threads too
        comments, submissions, earlier = batches.with_earlier(comments, submissions, task, COMMENT_COLUMNS + MARK_COLUMNS,
                                                              SUBMISSION_COLUMNS)
    timer.lap("read")
    rules = LoadedRules.load(settings.filters)
    candidates, stats, grams, counts = build_candidates(comments, submissions, settings.chains, settings.filters,
                                                        settings.split, rules, timer, settings.privacy, earlier, rows)
    t, parts = task["task"], settings.partitions
    exchange.write_table(_work_file(settings, "candidates", t), candidates)
    exchanged = exchange.write_partitioned(_work_file(settings, "trigrams", t), pa.table({"h": grams, "n": counts}, schema=_GRAMS),
                                           exchange.hash_partition(grams, parts), parts)
    alive = candidates.filter(pc.is_null(candidates.column("drop_reason")))
    keys = pa.table({"_rkey": alive.column("_rkey"), "_skey": alive.column("_skey"), "session_id": alive.column("session_id"),
                     "bucket": pa.array(np.full(alive.num_rows, t, dtype=np.int64)), "_order": alive.column("_order")},
                    schema=_KEYS)
    exchanged += exchange.write_partitioned(_work_file(settings, "keys", t), keys,
                                            exchange.hash_partition(_np(keys.column("_rkey")), parts), parts)
    timer.lap("writes")
    link_bytes = 0
    if near_duplicates_on(settings.filters):
        bands, texts, aliases = near_duplicate_inputs(candidates, t, settings.filters)
        texts = batches.continuing(texts, candidates, earlier) if earlier is not None else texts
        timer.lap("near duplicates: signatures")
        link_bytes = exchange.write_table(_work_file(settings, "nd_aliases", t), aliases)
        exchanged += exchange.write_partitioned(_work_file(settings, "nd_bands", t), bands,
                                                exchange.hash_partition(_np(bands.column("band")), parts), parts)
        exchange.write_table(_work_file(settings, "nd_texts", t), texts)
        timer.lap("near duplicates: writes")
    return {"task": t, "stats": stats, "exchanged": exchanged, "link_bytes": link_bytes,
            "opened": len(task["comments"]) + len(task["submissions"]), "bytes": task["bytes"], "peak_rss": _peak_rss(), "seconds": timer.seconds}, None


def _corpus_task(settings: _Settings, task: dict) -> tuple[dict, bytes | None]:
    """The corpus-wide counts and duplicate groups of one range of hash partitions, from every
    task's exchanged files (one open each)."""
    timer = Timer()
    read = exchange.Reader()
    k, first, last = task["reducer"], task["first"], task["last"]
    frequent = np.zeros(0, np.uint64)
    lo, hi = batches.hash_range(first, last, settings.partitions)
    stored = newly = 0
    if settings.filters.bland:
        grams = read.partitions(_all(settings, "trigrams"), first, last, _GRAMS)
        if settings.batch:  # a corpus's batch: its trigrams counted over every batch so far
            grams, stored, newly = batches.counted_so_far(settings.staging, list(settings.earlier), lo, hi, grams,
                                                          settings.filters.bland_min_count)
        frequent = frequent_trigrams(_np(grams.column("h")), _np(grams.column("n")), settings.filters.bland_min_count)
    keys = read.partitions(_all(settings, "keys"), first, last, _KEYS)
    if settings.batch:  # every earlier batch's sessions are earlier than this one's
        batches.write_state(settings.staging, batches.KEYS, lo, hi, keys, "_rkey")
        earlier, opened = batches.earlier_keys(list(settings.earlier), lo, hi, keys, _KEYS)
        keys, stored = batches.earlier_first(earlier, keys), stored + opened
    dropped = resolve_duplicates(keys, settings.filters.duplicate_session, settings.filters.duplicate_response)
    dropped = dropped.filter(pc.greater_equal(dropped.column("bucket"), 0))  # (bucket -1: an earlier batch's, decided there)
    exchange.write_partitioned(_work_file(settings, "dropped", k), dropped.cast(_DROPPED), _np(dropped.column("bucket")),
                               settings.tasks)
    timer.lap("corpus rules")
    storage.write_bytes_atomic(_work_file(settings, "frequent", k), frequent.tobytes())  # sorted, a hash range each
    result = {"reducer": k, "frequent": len(frequent), "duplicates": dropped.num_rows}
    if settings.batch:  # (trigrams frequent only with this batch's counts: the earlier batches' bland is not decided again)
        result["newly_frequent"] = newly
    if near_duplicates_on(settings.filters):
        result |= _near_pairs(settings, read, k, first, last)
        stored += result.pop("stored")
        timer.lap("near duplicates: pairs")
    return {**result, "opened": read.opened + stored, "seconds": timer.seconds}, None


def _write_task(settings: _Settings, task: dict) -> tuple[dict, bytes | None]:
    import pyarrow.parquet as pq

    timer = Timer()
    read = exchange.Reader()
    t = task["task"]
    candidates = read.table(_work_file(settings, "candidates", t))
    dropped = read.partition(_all(settings, "dropped", task["reducers"]), t, _DROPPED)
    near, state_bytes = None, 0
    if near_duplicates_on(settings.filters):
        near = read.partition(_all(settings, "nd_dropped", task["near_files"]), t, ND_DROPPED)
        if settings.batch:  # what later batches' near duplicates are judged against (_near_state_task)
            rows, where = batches.near_state(read.table(_work_file(settings, "nd_texts", t)), near, settings.tasks)
            state_bytes = exchange.write_partitioned(_work_file(settings, "nd_state", t), rows, where, settings.tasks)
    frequent = None
    if settings.filters.bland:  # the reduce tasks' hash ranges in order: sorted as a whole
        frequent = np.concatenate([np.frombuffer(read.bytes(url), dtype=np.uint64)
                                   for url in _all(settings, "frequent", task["reducers"])])
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
            write(storage.join(settings.staging, layout.SESSIONS, layout.split_folder(name), layout.session_part(t, seq)),
                  rows.slice(start, settings.sessions_per_file))
    rejects = sessions.filter(pc.invert(kept_mask)).select(SESSION_COLUMNS + ["drop_reason", "split", "duplicate_of"])
    write(storage.join(settings.staging, layout.REJECTS, layout.reject_part(t)), rejects)
    timer.lap("writes")
    return {"task": t, "report": stats, "opened": read.opened, "state_bytes": state_bytes, "seconds": timer.seconds}, None


def main() -> None:
    from extraction import spark
    from reddit_pretrain.hydra_job import run_hydra

    run_hydra("extract", ExtractConfig, run_extract,
              "input=ingest output=extract 'filters.subreddit_blocklist_path=/lists/blocked subs.txt'", hint=spark.log_hint)

if __name__ == "__main__":
    main()
