"""Comment chains -> dialogue sessions, the corpus-wide rules, and splits: Spark stages.

Each stage is a function DataFrame -> DataFrame with its parameters as arguments (no session,
no paths, no I/O); ``extraction.extract`` wires them. ``reference_sessions`` is the same chain
walk in plain Python, for tests.

How chains are built, and why this way: a session ends at a comment (a leaf, or any reply in
``replies`` mode) and walks up through its parents, at most ``max_turns`` of them. The walk is
``max_turns - 1`` left joins of the growing chains against the comments on the parent's comment
id. Each join is keyed by comment id, which hashes evenly, so a megathread of 100k+ comments is
spread over every task like any other rows (grouping by thread would put it on one task), and a
chain thousands deep costs ``max_turns`` joins, never a walk to its root: work is linear in the
comments and memory per task is bounded by the partition size. Chains that have stopped are set
aside before each join, so their null keys do not pile up in one partition. The joins that are
keyed by thread (submission title and over_18, thread start for date splits) are where skew can
appear; Spark's adaptive execution splits skewed join partitions (``spark.sql.adaptive.skewJoin``,
on by default) and broadcasts the small side where it fits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd  # module level: pandas_udf resolves its type hints here

from extraction.filters import CORPUS_RULES, SESSION_RULES, FiltersConfig, Rules

CHAIN_REASONS = ("min_turns", "max_turns")
"""Sessions dropped for their length, before any filter rule."""
ALL_SESSION_REASONS = CHAIN_REASONS + SESSION_RULES + CORPUS_RULES


@dataclass
class ChainsConfig:
    """How sessions are cut from comment trees. Defaults follow DialoGPT."""

    mode: str = "leaves"
    """``leaves``: one session per leaf (root-to-leaf path), as DialoGPT. ``replies``: one per
    reply, with its ancestors as context, as PolyAI's conversational-datasets."""
    min_turns: int = 2
    max_turns: int = 5
    long_chains: str = "keep_last"
    """Chains longer than max_turns: ``keep_last`` keeps the last max_turns turns, ``drop`` drops them."""
    include_title: bool = False
    """Use the submission title as the first turn, when the chain reaches the top level and fits."""
    include_selftext: bool = False
    """With include_title: append the submission's self text to the title turn."""

    def validate(self) -> None:
        if self.mode not in ("leaves", "replies"):
            raise ValueError(f"chains.mode must be 'leaves' or 'replies', not {self.mode!r}")
        if self.long_chains not in ("keep_last", "drop"):
            raise ValueError(f"chains.long_chains must be 'keep_last' or 'drop', not {self.long_chains!r}")
        if not 1 <= self.min_turns <= self.max_turns:
            raise ValueError("need 1 <= chains.min_turns <= chains.max_turns")


@dataclass
class SplitConfig:
    """train / valid / test, always by whole threads so no thread is in two splits."""

    method: str = "hash"
    """``hash``: by a hash of the thread id (link_id). ``date``: by the thread's first comment time."""
    valid_fraction: float = 0.01
    test_fraction: float = 0.01
    valid_from: str | None = None
    """``date`` method: threads starting on or after this UTC date (YYYY-MM-DD) go to valid..."""
    test_from: str | None = None
    """...and on or after this one to test."""

    def validate(self) -> None:
        if self.method == "hash":
            if self.valid_fraction < 0 or self.test_fraction < 0 or self.valid_fraction + self.test_fraction >= 1:
                raise ValueError("split fractions must be >= 0 and leave room for train")
        elif self.method == "date":
            if not self.valid_from or not self.test_from or self.valid_from > self.test_from:
                raise ValueError("split.method=date needs valid_from <= test_from (YYYY-MM-DD)")
        else:
            raise ValueError(f"split.method must be 'hash' or 'date', not {self.method!r}")


# ---------------------------------------------------------------------------------------------
# Spark stages


def dedupe_by_id(df):
    """One row per ``id``; where an id repeats (overlapping dumps, re-crawls), the row that is
    smallest in column order is kept, so the choice is the same on every run."""
    from pyspark.sql import functions as F

    others = [c for c in df.columns if c != "id"]
    return df.groupBy("id").agg(F.min(F.struct(*others)).alias("_row")).select("id", *[F.col(f"_row.{c}").alias(c) for c in others]).select(*df.columns)

_TURN = "struct(id, author, body AS text, score, created_utc)"


def mark_turns(comments, rules: Rules):
    """Adds ``cut_reason``: the turn rule a comment fails (it then cuts chains), else null."""
    from pyspark.sql import functions as F
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("string")
    def turn_reason(body: pd.Series, author: pd.Series) -> pd.Series:
        return pd.Series([rules.turn_reason(b, a) for b, a in zip(body, author)], dtype=object)

    return comments.withColumn("cut_reason", turn_reason(F.col("body"), F.col("author")))


def build_sessions(comments, submissions, cfg: ChainsConfig):
    """Sessions from marked comments (``mark_turns``) and, optionally, submissions.

    Columns: session_id (the last turn's comment id), link_id, subreddit, turn_ids, turns,
    authors, created_utc, scores (arrays, first turn first), num_turns, has_title, over_18,
    chain_end (``root``, ``missing_parent``, ``cut_<rule>`` or ``truncated``), and drop_reason
    (``min_turns``/``max_turns`` or null).
    """
    from pyspark.sql import functions as F

    cfg.validate()
    c = comments.select("id", "parent_id", "parent_kind", "link_id", "subreddit", "author", "body",
                        "score", "created_utc", "cut_reason")
    valid = c.filter(F.col("cut_reason").isNull())
    if cfg.mode == "leaves":
        has_valid_child = valid.filter(F.col("parent_kind") == "comment").select(F.col("parent_id").alias("_pid")).distinct()
        ends = valid.join(has_valid_child, valid.id == has_valid_child._pid, "left_anti")
    else:
        ends = valid
    chain = ends.select(
        F.col("id").alias("session_id"),
        "link_id",
        "subreddit",
        F.array(F.expr(_TURN)).alias("chain"),
        F.when(F.col("parent_kind") == "comment", F.col("parent_id")).alias("next_id"),
        F.when(F.col("parent_kind") == "submission", F.lit("root")).alias("chain_end"),
    )
    parents = c.select(
        F.col("id").alias("p_id"),
        F.col("parent_id").alias("p_parent"),
        F.col("parent_kind").alias("p_kind"),
        F.expr(_TURN).alias("p_turn"),
        F.col("cut_reason").alias("p_cut"),
    )
    for _ in range(cfg.max_turns - 1):
        # Chains that have stopped get a key no comment id can match (ids never contain NUL):
        # distinct keys hash evenly, where a null key would send them all to one partition.
        key = F.coalesce(F.col("next_id"), F.concat(F.lit("\u0000"), F.col("session_id")))
        joined = chain.join(parents, key == F.col("p_id"), "left")
        active = F.col("next_id").isNotNull()
        usable = active & F.col("p_id").isNotNull() & F.col("p_cut").isNull()
        chain = joined.select(
            "session_id",
            "link_id",
            "subreddit",
            F.when(usable, F.concat(F.array("p_turn"), F.col("chain"))).otherwise(F.col("chain")).alias("chain"),
            F.when(usable & (F.col("p_kind") == "comment"), F.col("p_parent")).alias("next_id"),
            F.when(~active, F.col("chain_end"))
            .when(F.col("p_id").isNull(), F.lit("missing_parent"))
            .when(F.col("p_cut").isNotNull(), F.concat(F.lit("cut_"), F.col("p_cut")))
            .when(F.col("p_kind") == "submission", F.lit("root"))
            .alias("chain_end"),
        )
    chain = chain.withColumn(
        "chain_end", F.when(F.col("next_id").isNotNull(), F.lit("truncated")).otherwise(F.col("chain_end"))
    ).drop("next_id")

    if submissions is not None:
        subs = submissions.select(
            F.col("id").alias("s_id"), F.col("title").alias("s_title"), F.col("selftext").alias("s_selftext"),
            F.col("over_18").alias("over_18"), F.col("created_utc").alias("s_created"), F.col("author").alias("s_author"),
            F.col("score").alias("s_score"),
        )
        subs = dedupe_by_id(subs.withColumnRenamed("s_id", "id")).withColumnRenamed("id", "s_id")
        chain = chain.join(subs, chain.link_id == subs.s_id, "left")
        title_text = F.col("s_title")
        if cfg.include_selftext:
            title_text = F.when(F.coalesce(F.col("s_selftext"), F.lit("")) == "", title_text).otherwise(
                F.concat_ws("\n\n", title_text, F.col("s_selftext")))
        use_title = (
            F.lit(cfg.include_title)
            & (F.col("chain_end") == "root")
            & F.col("s_title").isNotNull()
            & (F.size("chain") < cfg.max_turns)
        )
        title_turn = F.struct(
            F.concat(F.lit("t3_"), F.col("link_id")).alias("id"), F.col("s_author").alias("author"),
            title_text.alias("text"), F.col("s_score").alias("score"), F.col("s_created").alias("created_utc"),
        )
        chain = chain.withColumn("has_title", use_title).withColumn(
            "chain", F.when(use_title, F.concat(F.array(title_turn), F.col("chain"))).otherwise(F.col("chain"))
        )
    else:
        chain = chain.withColumn("over_18", F.lit(None).cast("boolean")).withColumn("has_title", F.lit(False))

    num_turns = F.size("chain")
    drop = (
        F.when(num_turns < cfg.min_turns, F.lit("min_turns"))
        .when((F.col("chain_end") == "truncated") & F.lit(cfg.long_chains == "drop"), F.lit("max_turns"))
    )
    return chain.select(
        "session_id",
        "link_id",
        "subreddit",
        F.col("chain.id").alias("turn_ids"),
        F.col("chain.text").alias("turns"),
        F.col("chain.author").alias("authors"),
        F.col("chain.created_utc").alias("created_utc"),
        F.col("chain.score").alias("scores"),
        num_turns.alias("num_turns"),
        "has_title",
        "over_18",
        "chain_end",
        drop.alias("drop_reason"),
    )


def apply_session_rules(sessions, rules: Rules):
    """Sets ``drop_reason`` to the first session rule failed, for sessions not yet dropped."""
    from pyspark.sql import functions as F
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("string")
    def session_reason(turns: pd.Series, subreddit: pd.Series, over_18: pd.Series, scores: pd.Series,
                       has_title: pd.Series) -> pd.Series:
        out = []
        for t, sub, nsfw, sc, title in zip(turns, subreddit, over_18, scores, has_title):
            response_score = sc[-1] if len(sc) else None
            out.append(rules.session_reason(
                list(t), sub, None if pd.isna(nsfw) else bool(nsfw),
                None if response_score is None or pd.isna(response_score) else int(response_score), bool(title),
            ))
        return pd.Series(out, dtype=object)

    reason = session_reason("turns", "subreddit", "over_18", "scores", "has_title")
    return sessions.withColumn("drop_reason", F.coalesce(F.col("drop_reason"), reason))


_TRIGRAM_FLUSH_ENTRIES = 500_000
"""A task sends its partial trigram counts on when its table reaches this many entries."""


def _partial_trigram_counts(batches):
    """mapInArrow body: trigram counts of the ``body`` column, combined inside the task first."""
    import collections

    import pyarrow as pa

    from extraction.filters import trigrams

    counts: collections.Counter = collections.Counter()

    def flush():
        batch = pa.RecordBatch.from_pydict({"trigram": list(counts), "n": list(counts.values())},
                                           schema=pa.schema([("trigram", pa.string()), ("n", pa.int64())]))
        counts.clear()
        return batch

    for batch in batches:
        for body in batch.column("body").to_pylist():
            if body:
                counts.update(trigrams(body))
        if len(counts) >= _TRIGRAM_FLUSH_ENTRIES:
            yield flush()
    if counts:
        yield flush()


def frequent_trigrams(comments, min_count: int):
    """Trigrams seen more than ``min_count`` times among all comment bodies (column ``trigram``).

    Counting is combined inside each task (bounded by _TRIGRAM_FLUSH_ENTRIES), then summed by a
    Spark aggregation, whose own partial aggregation keeps frequent trigrams from being hotspots.
    """
    from pyspark.sql import functions as F

    return (
        comments.select("body")
        .mapInArrow(_partial_trigram_counts, "trigram STRING, n BIGINT")
        .groupBy("trigram")
        .agg(F.sum("n").alias("n"))
        .filter(F.col("n") > min_count)
        .select("trigram")
    )


def apply_bland(sessions, frequent, fraction: float):
    """DialoGPT 7: drops responses whose trigrams are at least ``fraction`` frequent ones."""
    from pyspark.sql import functions as F
    from pyspark.sql.functions import pandas_udf

    from extraction.filters import trigrams

    @pandas_udf("array<string>")
    def response_trigrams(response: pd.Series) -> pd.Series:
        return pd.Series([trigrams(r) for r in response], dtype=object)

    alive = sessions.filter(F.col("drop_reason").isNull())
    grams = alive.select("session_id", F.explode(response_trigrams("response")).alias("trigram"))
    grams = grams.join(frequent.withColumn("frequent", F.lit(1)), "trigram", "left")
    bland = (
        grams.groupBy("session_id")
        .agg((F.sum(F.coalesce("frequent", F.lit(0))) / F.count(F.lit(1))).alias("_frequent_share"))
        .filter(F.col("_frequent_share") >= fraction)
        .select("session_id", F.lit("bland").alias("_bland"))
    )
    return (
        sessions.join(bland, "session_id", "left")
        .withColumn("drop_reason", F.coalesce("drop_reason", "_bland"))
        .drop("_bland")
    )


def apply_duplicates(sessions, on_sessions: bool, on_responses: bool):
    """Exact duplicates among surviving sessions: the smallest session_id of each group stays.

    Groups are found with an aggregation (map-side partial mins, so a response shared by
    millions of sessions is no hotspot) and joined back on the unique session_id.
    """
    from pyspark.sql import functions as F

    checks = []
    if on_sessions:
        checks.append(("duplicate_session", F.sha2(F.concat_ws("\u241e", "turns"), 256)))
    if on_responses:
        checks.append(("duplicate_response", F.sha2(F.col("response"), 256)))
    for reason, key in checks:
        alive = sessions.filter(F.col("drop_reason").isNull())
        keepers = alive.groupBy(key.alias("_key")).agg(F.min("session_id").alias("_keep")).select("_keep")
        sessions = (
            sessions.join(keepers, sessions.session_id == keepers._keep, "left")
            .withColumn("drop_reason", F.when(F.col("drop_reason").isNotNull(), F.col("drop_reason"))
                        .when(F.col("_keep").isNull(), F.lit(reason)))
            .drop("_keep")
        )
    return sessions


def assign_split(sessions, comments, cfg: SplitConfig):
    """Adds ``split`` (train/valid/test) by thread: a hash of link_id, or the thread's start date."""
    from pyspark.sql import functions as F

    cfg.validate()
    if cfg.method == "hash":
        # First 8 hex digits of sha256(link_id) as a fraction in [0, 1): stable across runs,
        # Spark versions and languages (hashlib gives the same number).
        u = F.conv(F.substring(F.sha2(F.col("link_id"), 256), 1, 8), 16, 10).cast("double") / float(2**32)
        split = F.when(u < cfg.test_fraction, "test").when(u < cfg.test_fraction + cfg.valid_fraction, "valid").otherwise("train")
        return sessions.withColumn("split", split)
    starts = comments.groupBy("link_id").agg(F.min("created_utc").alias("_thread_start"))
    day = F.to_date(F.from_unixtime(F.col("_thread_start")))
    split = F.when(day >= F.lit(cfg.test_from).cast("date"), "test").when(
        day >= F.lit(cfg.valid_from).cast("date"), "valid").otherwise("train")
    return sessions.join(starts, "link_id", "left").withColumn("split", split).drop("_thread_start")


def hash_split(link_id: str, cfg: SplitConfig) -> str:
    """The hash split of ``assign_split`` in plain Python."""
    import hashlib

    u = int(hashlib.sha256(link_id.encode()).hexdigest()[:8], 16) / 2**32
    return "test" if u < cfg.test_fraction else "valid" if u < cfg.test_fraction + cfg.valid_fraction else "train"


def extract_sessions(marked, submissions, chains: ChainsConfig, filters: FiltersConfig, split: SplitConfig,
                     rules: Rules):
    """All stages after ``mark_turns``: sessions with ``drop_reason`` (null = kept) and ``split``."""
    from pyspark.sql import functions as F

    comments = marked
    sessions = build_sessions(marked, submissions, chains)
    sessions = apply_session_rules(sessions, rules)
    sessions = sessions.withColumn("response", F.element_at("turns", -1))
    if filters.bland:
        sessions = apply_bland(sessions, frequent_trigrams(comments, filters.bland_min_count), filters.bland_fraction)
    sessions = apply_duplicates(sessions, filters.duplicate_session, filters.duplicate_response)
    return assign_split(sessions, comments, split).drop("response")


# ---------------------------------------------------------------------------------------------
# Plain-Python reference of the chain walk (tests compare the Spark stages with it)


@dataclass
class RefSession:
    session_id: str
    turn_ids: list[str]
    chain_end: str
    drop_reason: str | None = None
    extra: dict = field(default_factory=dict)


def reference_sessions(comments: list[dict], cut_reason, cfg: ChainsConfig) -> list[RefSession]:
    """The chain walk of ``build_sessions`` (without titles) over normalised comment dicts."""
    by_id = {c["id"]: c for c in comments}
    cut = {c["id"]: cut_reason(c) for c in comments}
    valid = [c for c in comments if cut[c["id"]] is None]
    parents_of_valid = {c["parent_id"] for c in valid if c["parent_kind"] == "comment"}
    ends = [c for c in valid if cfg.mode == "replies" or c["id"] not in parents_of_valid]
    out = []
    for end in ends:
        chain, node, chain_end = [end["id"]], end, None
        while True:
            if node["parent_kind"] == "submission":
                chain_end = "root"
                break
            if len(chain) >= cfg.max_turns:
                chain_end = "truncated"
                break
            parent = by_id.get(node["parent_id"])
            if parent is None:
                chain_end = "missing_parent"
                break
            if cut[parent["id"]] is not None:
                chain_end = f"cut_{cut[parent['id']]}"
                break
            chain.insert(0, parent["id"])
            node = parent
        drop = None
        if len(chain) < cfg.min_turns:
            drop = "min_turns"
        elif chain_end == "truncated" and cfg.long_chains == "drop":
            drop = "max_turns"
        out.append(RefSession(end["id"], chain, chain_end, drop))
    return out
