"""Chain building, corpus rules and splits on hand-written threads, on a real local Spark."""

import pytest
from pyspark.sql import functions as F

from extraction.chains import (
    ChainsConfig, SplitConfig, apply_duplicates, assign_split, build_sessions, hash_split, mark_turns,
    reference_sessions,
)
from extraction.filters import FiltersConfig, Rules
from extraction.records import COMMENT_SCHEMA, SUBMISSION_SCHEMA
from extraction.ingest import spark_ddl

RULES = Rules.load(FiltersConfig())


def comment(cid, parent, link="L", body=None, author="alice", score=3, ts=1420070400):
    kind = "submission" if parent == link else "comment"
    return (cid, link, parent, kind, "AskReddit", author, body or f"reply {cid} to the thing", score, ts, "2015-01")


def sessions_of(spark, rows, cfg=ChainsConfig(), submissions=None):
    comments = spark.createDataFrame(rows, spark_ddl(COMMENT_SCHEMA))
    subs = spark.createDataFrame(submissions, spark_ddl(SUBMISSION_SCHEMA)) if submissions else None
    out = build_sessions(mark_turns(comments, RULES), subs, cfg).collect()
    return {r.session_id: r for r in out}


def test_leaf_sessions_walk_to_the_root(spark):
    rows = [comment("a", "L"), comment("b", "a"), comment("c", "b"), comment("d", "a")]
    s = sessions_of(spark, rows)
    assert sorted(s) == ["c", "d"]  # leaves only
    assert s["c"].turn_ids == ["a", "b", "c"] and s["c"].chain_end == "root" and s["c"].drop_reason is None
    assert s["d"].turn_ids == ["a", "d"]
    assert s["c"].turns == ["reply a to the thing", "reply b to the thing", "reply c to the thing"]


def test_replies_mode_gives_one_session_per_reply(spark):
    rows = [comment("a", "L"), comment("b", "a"), comment("c", "b")]
    s = sessions_of(spark, rows, ChainsConfig(mode="replies"))
    assert {k: v.turn_ids for k, v in s.items()} == {"a": ["a"], "b": ["a", "b"], "c": ["a", "b", "c"]}
    assert s["a"].drop_reason == "min_turns" and s["b"].drop_reason is None


def test_deep_chain_keeps_the_last_turns_or_is_dropped(spark):
    rows = [comment("c0", "L")] + [comment(f"c{i}", f"c{i - 1}") for i in range(1, 3000)]
    s = sessions_of(spark, rows)
    assert list(s) == ["c2999"]
    assert s["c2999"].turn_ids == [f"c{i}" for i in range(2995, 3000)]
    assert s["c2999"].chain_end == "truncated" and s["c2999"].drop_reason is None
    dropped = sessions_of(spark, rows, ChainsConfig(long_chains="drop"))
    assert dropped["c2999"].drop_reason == "max_turns"


def test_deleted_middle_turn_cuts_the_chain_and_both_halves_are_used(spark):
    rows = [comment("a", "L"), comment("b", "a"), comment("x", "b", body="[deleted]", author="[deleted]"),
            comment("c", "x"), comment("d", "c"), comment("e", "d")]
    s = sessions_of(spark, rows)
    assert s["e"].turn_ids == ["c", "d", "e"] and s["e"].chain_end == "cut_deleted"
    assert s["b"].turn_ids == ["a", "b"]  # the deleted reply no longer makes b an inner node
    assert "x" not in s


def test_orphan_cuts_the_chain(spark):
    rows = [comment("b", "missing"), comment("c", "b")]
    s = sessions_of(spark, rows)
    assert s["c"].turn_ids == ["b", "c"] and s["c"].chain_end == "missing_parent"
    lone = sessions_of(spark, [comment("z", "gone")])
    assert lone["z"].drop_reason == "min_turns"


def test_megathread_and_bot_cut(spark):
    rows = [comment(f"t{i}", "L") for i in range(400)] + [comment(f"r{i}", f"t{i}") for i in range(400)]
    rows.append(comment("bot1", "t0", author="AutoModerator"))
    s = sessions_of(spark, rows)
    assert len(s) == 400 and all(v.num_turns == 2 for v in s.values())


def test_title_on_and_off(spark):
    rows = [comment("a", "L"), comment("b", "a")]
    subs = [("L", "AskReddit", "op", "What is your favourite book", "", False, 2, 10, 1420070000, "2015-01")]
    off = sessions_of(spark, rows, ChainsConfig(), subs)
    on = sessions_of(spark, rows, ChainsConfig(include_title=True), subs)
    assert off["b"].turn_ids == ["a", "b"] and off["b"].has_title is False and off["b"].over_18 is False
    assert on["b"].turn_ids == ["t3_L", "a", "b"] and on["b"].turns[0] == "What is your favourite book"
    assert on["b"].has_title is True
    # A chain that is cut (not reaching the top level) gets no title.
    cut = sessions_of(spark, [comment("q", "gone"), comment("r", "q")], ChainsConfig(include_title=True), subs)
    assert cut["r"].has_title is False


def test_spark_chains_match_the_python_reference(spark, tmp_path):
    from extraction.ingest import IngestConfig, run_ingest
    from extraction.synth import SynthConfig, write_month

    write_month(str(tmp_path / "d"), SynthConfig(comments=6000, seed=21, deep_chains=1, deep_chain_depth=400))
    run_ingest(IngestConfig(inputs=[str(tmp_path / "d" / "RC_2015-01.zst")], output=str(tmp_path / "i")), spark)
    comments = spark.read.parquet(str(tmp_path / "i" / "comments"))
    for cfg in (ChainsConfig(), ChainsConfig(mode="replies", max_turns=3, min_turns=1)):
        got = {r.session_id: (r.turn_ids, r.chain_end, r.drop_reason)
               for r in build_sessions(mark_turns(comments, RULES), None, cfg).collect()}
        ref = reference_sessions([r.asDict() for r in comments.collect()],
                                 lambda c: RULES.turn_reason(c["body"], c["author"]), cfg)
        assert got == {r.session_id: (r.turn_ids, r.chain_end, r.drop_reason) for r in ref}


def test_dedupe_by_id_keeps_one_row_per_id_deterministically(spark):
    from extraction.chains import dedupe_by_id

    df = spark.createDataFrame([("a", "x", 2), ("a", "w", 9), ("b", "z", 1), ("a", "x", 1)], "id string, body string, score int")
    assert sorted(map(tuple, dedupe_by_id(df).collect())) == [("a", "w", 9), ("b", "z", 1)]
    assert dedupe_by_id(df).columns == ["id", "body", "score"]


def test_duplicates_keep_the_smallest_session_id(spark):
    df = spark.createDataFrame(
        [("s3", ["hi there", "same answer"]), ("s1", ["hi there", "same answer"]), ("s2", ["other", "same answer"]),
         ("s4", ["x y", "unique one"])],
        "session_id string, turns array<string>",
    ).withColumn("drop_reason", F.lit(None).cast("string")).withColumn("response", F.element_at("turns", -1))
    out = {r.session_id: r.drop_reason for r in apply_duplicates(df, True, True).collect()}
    assert out == {"s1": None, "s3": "duplicate_session", "s2": "duplicate_response", "s4": None}


def test_splits_are_by_thread_and_deterministic(spark):
    rows = [(f"s{i}", f"link{i % 500}", 1420070400 + i) for i in range(5000)]
    df = spark.createDataFrame(rows, "session_id string, link_id string, created_utc long")
    cfg = SplitConfig(valid_fraction=0.1, test_fraction=0.1)
    out = assign_split(df, df, cfg).collect()
    assert all(r.split == hash_split(r.link_id, cfg) for r in out)
    per_link = {}
    for r in out:
        per_link.setdefault(r.link_id, set()).add(r.split)
    assert all(len(v) == 1 for v in per_link.values())
    counts = {s: sum(r.split == s for r in out) for s in ("train", "valid", "test")}
    assert counts["train"] > counts["valid"] > 0 and counts["test"] > 0

    by_date = SplitConfig(method="date", valid_from="2015-01-01", test_from="2015-01-01")
    assert {r.split for r in assign_split(df, df, by_date).collect()} == {"test"}
    with pytest.raises(ValueError):
        SplitConfig(method="date", valid_from="2015-02-01", test_from="2015-01-01").validate()
