"""Extract job: ingested comments (and submissions) -> filtered dialogue sessions, split, reported.

    python -m extraction.extract input=out/ingest output=out/extract
    python -m extraction.extract input=out/ingest output=out/x chains.mode=replies chains.include_title=true \\
        filters.bland_min_count=50 split.method=date split.valid_from=2015-01-25 split.test_from=2015-01-28

Reads the ingest job's Parquet tables (``extraction.ingest``; submissions are optional), runs the
stages of ``extraction.chains`` and writes, under ``output``:

* ``sessions/split=<train|valid|test>/*.parquet``: kept sessions (session_id, link_id, subreddit,
  turn_ids, turns, authors, created_utc, scores, num_turns, has_title, over_18, chain_end, split)
* ``rejects/*.parquet``: the sessions set aside, with ``drop_reason``, the first rule that dropped them
* ``extract_report.json``, ``extract_report.png`` and ``extract_report.html``: counts in and out per
  rule, per split, per subreddit, length histograms, and where every ingested comment went.

Every ingested comment is accounted for in the report: used in a kept session, or counted under
one reason (a repeated id: one row per id is kept, deterministically; the turn rule that cut it, the first rule that dropped every session it was in, or
``not_in_any_session``: above the last ``max_turns`` of every chain, or under a cut leaf only).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field

from extraction import storage
from extraction.chains import ALL_SESSION_REASONS, ChainsConfig, SplitConfig, dedupe_by_id, extract_sessions, mark_turns
from extraction.filters import TURN_RULES, FiltersConfig, Rules, resolve_list_path
from extraction.spark import SparkConfig

DONE_MARKER = "_EXTRACT_DONE.json"
REPORT_FILE = "extract_report.json"
SPLITS = ("train", "valid", "test")


class ExtractError(RuntimeError):
    """A clear, user-facing reason the extract job stopped."""


@dataclass
class ExtractConfig:
    """The extract job: where the ingested tables are, where sessions go, and every rule."""

    input: str = "out/ingest"
    """Output folder of the ingest job (comments/ and, if present, submissions/)."""
    output: str = "out/extract"
    chains: ChainsConfig = field(default_factory=ChainsConfig)
    filters: FiltersConfig = field(default_factory=FiltersConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    use_submissions: bool = True
    """Join submissions (titles, over_18) when the input has them; false runs on comments only."""
    report_top_subreddits: int = 20
    sessions_per_file: int = 1_000_000
    """Target rows per Parquet file of sessions (files are range-partitioned by session_id)."""
    force: bool = False
    spark: SparkConfig = field(default_factory=SparkConfig)

    def validate(self) -> None:
        self.chains.validate()
        self.filters.validate()
        self.split.validate()
        if not storage.exists(storage.join(self.input, "comments")):
            raise ExtractError(f"{self.input} has no comments/ table: run the ingest job first (extraction.ingest)")


def fingerprint(cfg: ExtractConfig) -> str:
    """The input's completion marker (its own fingerprint), the settings, and the list contents."""
    import fsspec

    ingest_marker = storage.join(cfg.input, "_INGEST_DONE.json")
    lists = {}
    for name, value in asdict(cfg.filters).items():
        if name.endswith("_path"):
            with fsspec.open(resolve_list_path(value), "rb") as f:
                lists[name] = hashlib.sha256(f.read()).hexdigest()
    material = {
        "input": storage.read_json(ingest_marker).get("fingerprint") if storage.exists(ingest_marker) else None,
        "chains": asdict(cfg.chains), "filters": asdict(cfg.filters), "split": asdict(cfg.split),
        "use_submissions": cfg.use_submissions, "sessions_per_file": cfg.sessions_per_file, "lists": lists,
        "code": "extract-v1",
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def run_extract(cfg: ExtractConfig, spark=None) -> dict:
    """Runs the extract job and returns its report (also written beside the output)."""
    from extraction.spark import build_spark

    cfg.validate()
    print_ = lambda msg: print(f"[extract] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    staged = storage.StagedOutput(cfg.output, DONE_MARKER, fingerprint(cfg))
    if not cfg.force and staged.is_complete():
        print_(f"{cfg.output} is complete for this input and settings; nothing to do (force=true runs again)")
        return storage.read_json(storage.join(cfg.output, REPORT_FILE))
    spark = spark or build_spark(cfg.spark)
    with _join_settings(spark):
        return _run(cfg, spark, staged, print_)


@contextlib.contextmanager
def _join_settings(spark):
    """Shuffle joins only, with adaptive execution splitting skewed partitions.

    Spark's static size estimates of projections of cached data came out far too small and
    broadcast the comments table (driver out of memory); even the adaptive, measured broadcasts
    ran a long-lived 4 GiB driver out of memory when deserialised as hash tables after many
    jobs. Sort-merge joins cost a little more on small inputs and keep memory bounded.
    """
    settings = {"spark.sql.autoBroadcastJoinThreshold": "-1", "spark.sql.adaptive.autoBroadcastJoinThreshold": "-1",
                "spark.sql.adaptive.enabled": "true", "spark.sql.adaptive.skewJoin.enabled": "true"}
    previous = {key: spark.conf.get(key, None) for key in settings}
    for key, value in settings.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def _run(cfg: ExtractConfig, spark, staged, print_) -> dict:
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    staging = staged.begin()
    started = time.time()

    ingested = spark.read.parquet(storage.hadoop_uri(storage.join(cfg.input, "comments")))
    comments = dedupe_by_id(ingested)
    submissions_path = storage.join(cfg.input, "submissions")
    submissions = None
    if cfg.use_submissions and storage.exists(submissions_path):
        submissions = spark.read.parquet(storage.hadoop_uri(submissions_path))
    print_(f"{cfg.input} -> {cfg.output} ({'with' if submissions is not None else 'without'} submissions)")

    rules = Rules.load(cfg.filters)
    # The turn rules run once (Python UDF); chains, the blandness count and the report reuse them.
    marked = mark_turns(comments, rules).persist(StorageLevel.MEMORY_AND_DISK)
    sessions = extract_sessions(marked, submissions, cfg.chains, cfg.filters, cfg.split, rules)
    sessions = sessions.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        spark.sparkContext.setJobDescription("extract: sessions and rules")
        total_sessions = sessions.count()
        kept = sessions.filter(F.col("drop_reason").isNull()).drop("drop_reason")
        files = max(1, -(-total_sessions // cfg.sessions_per_file))
        spark.sparkContext.setJobDescription("extract: write sessions")
        # Row groups of 32 MiB (Parquet's default is 128): the tokenize job's tasks are runs of row groups.
        (kept.repartitionByRange(files, "session_id").sortWithinPartitions("session_id")
         .write.mode("overwrite").option("parquet.block.size", 32 << 20).partitionBy("split").parquet(storage.hadoop_uri(storage.join(staging, "sessions"))))
        spark.sparkContext.setJobDescription("extract: write rejects")
        (sessions.filter(F.col("drop_reason").isNotNull())
         .repartitionByRange(files, "session_id").sortWithinPartitions("session_id")
         .write.mode("overwrite").parquet(storage.hadoop_uri(storage.join(staging, "rejects"))))
        spark.sparkContext.setJobDescription("extract: report")
        report = build_report(marked, sessions, cfg, ingested.count())
    finally:
        sessions.unpersist()
        marked.unpersist()
    report["seconds"] = round(time.time() - started, 3)
    report["input"] = cfg.input
    report["config"] = {"chains": asdict(cfg.chains), "filters": asdict(cfg.filters), "split": asdict(cfg.split)}
    storage.write_json_atomic(storage.join(staging, REPORT_FILE), report)
    from extraction.report import render_report

    render_report(report, storage.join(staging, "extract_report.png"), storage.join(staging, "extract_report.html"))
    staged.commit(["sessions", "rejects", REPORT_FILE, "extract_report.png", "extract_report.html"],
                  finished_utc=int(time.time()))
    print(format_report(report, cfg.output))
    return report


def _histogram(df, column: str, edges: list[int]) -> dict:
    """Counts of ``column`` in [edges[i], edges[i+1]) buckets, the last one open."""
    from pyspark.sql import functions as F

    bucket = F.lit(len(edges) - 1)
    for i in range(len(edges) - 1, 0, -1):
        bucket = F.when(F.col(column) < edges[i], F.lit(i - 1)).otherwise(bucket)
    counts = {r["b"]: r["n"] for r in df.groupBy(bucket.alias("b")).agg(F.count(F.lit(1)).alias("n")).collect()}
    labels = [f"{edges[i]}" if edges[i + 1] - edges[i] == 1 else f"{edges[i]}-{edges[i + 1] - 1}"
              for i in range(len(edges) - 1)] + [f"{edges[-1]}+"]
    return {label: counts.get(i, 0) for i, label in enumerate(labels)}


def build_report(marked, sessions, cfg: ExtractConfig, ingested_comments: int) -> dict:
    """Counts per rule, split and subreddit, length histograms, and the comment accounting."""
    from pyspark.sql import functions as F

    by_reason = {r["drop_reason"]: r["n"] for r in sessions.groupBy("drop_reason").agg(F.count(F.lit(1)).alias("n")).collect()}
    total = sum(by_reason.values())
    funnel, remaining = [], total
    for rule in ALL_SESSION_REASONS:
        out = by_reason.get(rule, 0)
        funnel.append({"rule": rule, "in": remaining, "out": out})
        remaining -= out
    unknown = set(by_reason) - set(ALL_SESSION_REASONS) - {None}
    assert not unknown, unknown
    kept = sessions.filter(F.col("drop_reason").isNull())
    per_split = {r["split"]: r["n"] for r in kept.groupBy("split").agg(F.count(F.lit(1)).alias("n")).collect()}
    sub_rows = (
        sessions.groupBy("subreddit")
        .agg(F.count(F.lit(1)).alias("sessions"), F.sum(F.col("drop_reason").isNull().cast("long")).alias("kept"))
        .orderBy(F.desc("kept"), F.desc("sessions"), "subreddit")
        .limit(cfg.report_top_subreddits)
        .collect()
    )
    words = kept.select(
        "num_turns", F.aggregate(F.transform("turns", lambda t: F.size(F.filter(F.split(t, r"(?U)\s+"), lambda w: w != ""))), F.lit(0),
                                 lambda a, b: a + b).alias("words"))
    split_threads = kept.groupBy("link_id").agg(F.countDistinct("split").alias("n")).filter("n > 1").count()

    # Where every ingested comment went.
    turn_reasons = {r["cut_reason"]: r["n"] for r in marked.groupBy("cut_reason").agg(F.count(F.lit(1)).alias("n")).collect()}
    unique_comments = sum(turn_reasons.values())
    used = kept.select(F.explode("turn_ids").alias("id")).distinct()
    rank = F.create_map(*[x for i, r in enumerate(ALL_SESSION_REASONS) for x in (F.lit(r), F.lit(i))])
    dropped = (
        sessions.filter(F.col("drop_reason").isNotNull())
        .select(F.explode("turn_ids").alias("id"), rank[F.col("drop_reason")].alias("rank"))
        .groupBy("id").agg(F.min("rank").alias("rank"))
    )
    valid = marked.filter(F.col("cut_reason").isNull()).select("id")
    unused = valid.join(used, "id", "left_anti")
    in_rejected = {
        ALL_SESSION_REASONS[r["rank"]]: r["n"]
        for r in unused.join(dropped, "id").groupBy("rank").agg(F.count(F.lit(1)).alias("n")).collect()
    }
    used_count = valid.join(used, "id", "left_semi").count()
    unused_count = unused.count()
    accounting = {
        "comments": ingested_comments,
        "duplicate_ids": ingested_comments - unique_comments,
        "used_in_sessions": used_count,
        "cut_by_turn_rule": {r: turn_reasons.get(r, 0) for r in TURN_RULES},
        "only_in_rejected_sessions": in_rejected,
        "not_in_any_session": unused_count - sum(in_rejected.values()),
    }
    accounted = accounting["duplicate_ids"] + used_count + sum(accounting["cut_by_turn_rule"].values()) + unused_count
    if accounted != ingested_comments:
        raise ExtractError(f"comment accounting does not add up: {accounted} != {ingested_comments}")
    return {
        "sessions": {"candidates": total, "kept": total - sum(v for k, v in by_reason.items() if k), "per_split": per_split},
        "rules": funnel,
        "threads_in_two_splits": split_threads,
        "subreddits": [{"subreddit": r["subreddit"], "sessions": r["sessions"], "kept": r["kept"]} for r in sub_rows],
        "turns_histogram": _histogram(kept, "num_turns", list(range(1, cfg.chains.max_turns + 2))),
        "words_histogram": _histogram(words, "words", [0, 5, 10, 20, 40, 80, 120, 160, 200, 300]),
        "comments": accounting,
    }


def format_report(report: dict, output: str) -> str:
    s = report["sessions"]
    lines = [f"Extract report ({output})", f"{'rule':<22}{'in':>12}{'dropped':>12}"]
    for row in report["rules"]:
        if row["out"] or row["rule"] in ("min_turns",):
            lines.append(f"{row['rule']:<22}{row['in']:>12,}{row['out']:>12,}")
    lines.append(f"sessions: {s['candidates']:,} candidates -> {s['kept']:,} kept "
                 + ", ".join(f"{k} {s['per_split'].get(k, 0):,}" for k in SPLITS))
    c = report["comments"]
    lines.append(f"comments: {c['comments']:,} = {c['duplicate_ids']:,} duplicate ids + {c['used_in_sessions']:,} used + cut {c['cut_by_turn_rule']} + "
                 f"only in rejected sessions {sum(c['only_in_rejected_sessions'].values()):,} + "
                 f"in no session {c['not_in_any_session']:,}")
    lines.append(f"{report['seconds']:.1f} s; sessions in {output}/sessions, rejects in {output}/rejects, "
                 f"report {output}/extract_report.html")
    return "\n".join(lines)


def main() -> None:
    from extraction.cli import run_hydra

    run_hydra("extract", ExtractConfig, run_extract, (ExtractError, ValueError, FileNotFoundError))

if __name__ == "__main__":
    main()
