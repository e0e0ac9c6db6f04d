"""The extract job end to end on a real local Spark: generated dump, then the real month."""

import json

import pytest

from extraction.sessions.chains import ChainsConfig, SplitConfig
from extraction.sessions.job import DONE_MARKER, ExtractConfig, ExtractError, run_extract
from extraction.sessions.filters import FiltersConfig
from extraction.ingest.job import IngestConfig, run_ingest
from reddit_pretrain_app.synth import SynthConfig, write_month


@pytest.fixture(scope="module")
def ingested(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("extract")
    write_month(str(root / "dumps"), SynthConfig(comments=15_000, seed=31, megathreads=1, megathread_comments=3000,
                                                 deep_chains=1, deep_chain_depth=500, copypasta_clusters=8))
    run_ingest(IngestConfig(inputs=[str(root / "dumps" / "*.zst")], output=str(root / "ingest")), spark)
    return root


def rows(spark, path):
    return sorted(tuple(map(str, r)) for r in spark.read.parquet(str(path)).collect())


def files(out):
    """Every output file under sessions/ and rejects/ with its bytes."""
    return {str(p.relative_to(out)): p.read_bytes() for folder in ("sessions", "rejects") for p in sorted((out / folder).rglob("*"))
            if p.is_file()}


@pytest.mark.slow
def test_extract_end_to_end(spark, ingested, tmp_path, capsys):
    cfg = ExtractConfig(input=str(ingested / "ingest"), output=str(tmp_path / "x"),
                        filters=FiltersConfig(bland_min_count=20),
                        split=SplitConfig(valid_fraction=0.1, test_fraction=0.1))
    report = run_extract(cfg, spark)
    out = tmp_path / "x"
    sessions = spark.read.parquet(str(out / "sessions"))
    rejects = spark.read.parquet(str(out / "rejects"))
    s = report["sessions"]
    assert sessions.count() == s["kept"] > 0 and rejects.count() == s["candidates"] - s["kept"]
    assert {r.split for r in sessions.select("split").distinct().collect()} == {"train", "valid", "test"}
    assert report["threads_in_two_splits"] == 0
    assert sessions.groupBy("link_id").agg({"split": "count"}).count() > 0
    assert min(r.num_turns for r in sessions.select("num_turns").collect()) >= 2
    assert max(r.num_turns for r in sessions.select("num_turns").collect()) <= 5
    reasons = {r.drop_reason for r in rejects.select("drop_reason").distinct().collect()}
    assert {"min_turns", "url", "bland", "near_duplicate_response"} <= reasons
    near = rejects.where("drop_reason = 'near_duplicate_response'").select("session_id", "duplicate_of").collect()
    kept_ids = {r.session_id for r in sessions.select("session_id").collect()}
    bland_ids = {r.session_id for r in rejects.where("drop_reason = 'bland'").select("session_id").collect()}
    # each names the smallest id of its cluster: kept, unless bland (the only rule after the session rules that can drop it)
    assert near and all(r.duplicate_of < r.session_id and r.duplicate_of in kept_ids | bland_ids for r in near)
    assert any(r.duplicate_of in kept_ids for r in near)
    assert report["near_duplicates"]["clusters"] > 0 and len(report["near_duplicates"]["examples"]) == 3
    funnel = {r["rule"]: r for r in report["rules"]}
    assert sum(r["out"] for r in report["rules"]) == s["candidates"] - s["kept"]
    assert funnel["bland"]["out"] > 0
    c = report["comments"]
    ingested_comments = json.loads((ingested / "ingest" / "ingest_report.json").read_text())["totals"]["comments_rows"]
    assert c["comments"] == ingested_comments
    assert c["duplicate_ids"] == 0
    assert (c["used_in_sessions"] + sum(c["cut_by_turn_rule"].values()) + sum(c["only_in_rejected_sessions"].values())
            + c["not_in_any_session"]) == ingested_comments
    assert c["cut_by_turn_rule"]["deleted"] > 0 and c["cut_by_turn_rule"]["bots"] > 0
    assert (out / "extract_report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # One progress line per stage, and the seconds of each stage in the report.
    err = capsys.readouterr().err
    assert all(f"[extract] {i}/3 " in err for i in (1, 2, 3)) and "Broadcasting" not in err
    assert {"read", "turn rules", "features", "chains", "session rules", "split", "corpus rules", "writes", "report"} <= set(report["stage_seconds"])
    page = (out / "extract_report.html").read_text()
    assert "Every comment accounted for" in page
    # The report says what each rule dropped as a share, with its settings, shows three rejected
    # sessions of each rule that dropped any (as stored in rejects/), and the ingest side and the run.
    assert funnel["url"]["percent"] == round(100 * funnel["url"]["out"] / funnel["url"]["in"], 2) > 0
    assert funnel["bland"]["settings"] == {"on": True, "filters.bland_min_count": 20, "filters.bland_fraction": 0.9}
    assert funnel["max_words"]["settings"]["filters.max_words_total"] == cfg.filters.max_words_total
    assert {r["rule"] for r in report["turn_rules"]} == set(c["cut_by_turn_rule"])
    stored = {}
    for r in rejects.select("drop_reason", "turns").collect():
        stored.setdefault(r.drop_reason, []).append(list(r.turns))
    assert set(report["examples"]) == reasons
    for reason, examples in report["examples"].items():
        assert len(examples) == min(3, len(stored[reason]))
        for example in examples:
            assert any(len(example) == len(turns) and all(t.startswith(e.rstrip("…")) for e, t in zip(example, turns))
                       for turns in stored[reason])
    ingest = json.loads((ingested / "ingest" / "ingest_report.json").read_text())
    assert report["ingest"]["rejects_by_reason"] == ingest["totals"]["rejects_by_reason"] != {}
    assert sorted(i["file"] for i in report["ingest"]["inputs"]) == ["RC_2015-01.zst", "RS_2015-01.zst"]
    assert report["run"]["date_utc"][:2] == "20" and "+git." in report["run"]["code_version"]
    for heading in ("dropped %", "Examples of rejected sessions", "Near duplicates", "near-duplicate replies", "replies in the cluster", "lines set aside, by reason", "RC_2015-01.zst",
                    report["run"]["code_version"]):
        assert heading in page
    assert "src=\"data:image/png;base64," in page and "<link" not in page and "src=\"http" not in page  # one file

    # Re-running does nothing; forcing it writes the same files, byte for byte.
    before = files(out)
    marker = (out / DONE_MARKER).read_text()
    run_extract(cfg, spark)
    assert (out / DONE_MARKER).read_text() == marker
    cfg.force = True
    run_extract(cfg, spark)
    assert files(out) == before and any(name.startswith("sessions/split=valid/") for name in before)

    # The Spark job gives what the same three steps give in one process, over any number of buckets.
    import pyarrow.parquet as pq

    from tests.kit.local import run_local

    comments = pq.read_table(ingested / "ingest" / "comments").drop_columns(["month", "bucket"])
    submissions = pq.read_table(ingested / "ingest" / "submissions").drop_columns(["month", "bucket"])
    local, _, _ = run_local(comments, submissions, cfg.chains, cfg.filters, cfg.split, buckets=3)
    kept = {r["session_id"]: r for r in local.to_pylist() if r["drop_reason"] is None}
    written = {r["session_id"]: r for r in pq.read_table(out / "sessions").to_pylist()}
    assert set(kept) == set(written)
    assert all(written[k]["turns"] == v["turns"] and written[k]["split"] == v["split"] for k, v in kept.items())


@pytest.mark.slow
def test_comments_only_replies_mode_with_titles_off(spark, ingested, tmp_path):
    cfg = ExtractConfig(input=str(ingested / "ingest"), output=str(tmp_path / "y"), use_submissions=False,
                        chains=ChainsConfig(mode="replies", include_title=True),
                        filters=FiltersConfig(bland=False, duplicate_response=False))
    report = run_extract(cfg, spark)
    sessions = spark.read.parquet(str(tmp_path / "y" / "sessions"))
    assert sessions.filter("has_title").count() == 0  # no submissions, so no titles
    assert sessions.filter("over_18 is not null").count() == 0  # ... and nothing says over_18
    assert report["sessions"]["kept"] > 0
    assert {r["rule"]: r["out"] for r in report["rules"]}["bland"] == 0  # switched off


def test_missing_input_is_a_clear_error(tmp_path):
    with pytest.raises(ExtractError, match="run the ingest job first"):
        run_extract(ExtractConfig(input=str(tmp_path / "nothing"), output=str(tmp_path / "z")))


@pytest.mark.slow
def test_real_dump(spark, real_dump, tmp_path):
    ingest = run_ingest(IngestConfig(inputs=[str(real_dump)], output=str(tmp_path / "i")), spark)
    report = run_extract(ExtractConfig(input=str(tmp_path / "i"), output=str(tmp_path / "x"),
                                       filters=FiltersConfig(bland_min_count=5)), spark)
    c = report["comments"]
    assert c["comments"] == ingest["totals"]["comments_rows"] == 1075 - ingest["totals"]["rejects"]
    assert report["sessions"]["candidates"] > 0
    assert (c["duplicate_ids"] + c["used_in_sessions"] + sum(c["cut_by_turn_rule"].values())
            + sum(c["only_in_rejected_sessions"].values()) + c["not_in_any_session"]) == c["comments"]


@pytest.mark.slow
def test_repeated_comment_ids_are_counted_and_kept_once(spark, ingested, tmp_path):
    """The same month ingested twice (overlapping dumps): every id once, the repeats counted."""
    import shutil

    dumps = tmp_path / "dumps"
    dumps.mkdir()
    shutil.copy(ingested / "dumps" / "RC_2015-01.zst", dumps / "RC_2015-01.zst")
    shutil.copy(ingested / "dumps" / "RC_2015-01.zst", dumps / "RC_2015-01-recrawl.zst")
    run_ingest(IngestConfig(inputs=[str(dumps / "*.zst")], output=str(tmp_path / "i")), spark)
    twice = run_extract(ExtractConfig(input=str(tmp_path / "i"), output=str(tmp_path / "x"), use_submissions=False,
                                      filters=FiltersConfig(bland=False)), spark)
    once = run_extract(ExtractConfig(input=str(ingested / "ingest"), output=str(tmp_path / "y"), use_submissions=False,
                                     filters=FiltersConfig(bland=False)), spark)
    assert twice["comments"]["duplicate_ids"] == once["comments"]["comments"] == twice["comments"]["comments"] // 2
    assert rows(spark, tmp_path / "x" / "sessions") == rows(spark, tmp_path / "y" / "sessions")


@pytest.mark.slow
def test_small_inputs_run_in_this_process_with_the_same_bytes(spark, ingested, tmp_path, capsys):
    """Below ``spark.in_process_below_bytes`` on a local master no Spark runs, and the outputs are
    the bytes the Spark tasks write."""
    from extraction.spark import SparkConfig, session_for

    local = SparkConfig(master="local[2]")
    assert session_for(local, local.in_process_below_bytes - 1) is None
    assert session_for(SparkConfig(master="local[2]", in_process_below_bytes=0), 1) is spark  # the active session
    assert session_for(SparkConfig(master=None), 1) is spark  # under spark-submit: always Spark

    def tables(root):
        return {str(p.relative_to(root)): p.read_bytes() for folder in ("comments", "submissions", "rejects")
                for p in sorted((root / folder).rglob("*")) if p.is_file()}

    capsys.readouterr()
    report = run_ingest(IngestConfig(inputs=[str(ingested / "dumps" / "*.zst")], output=str(tmp_path / "i"), spark=local))
    assert "in this process" in capsys.readouterr().err and report["cores"] == 1
    assert tables(tmp_path / "i") == tables(ingested / "ingest") != {}

    filters = FiltersConfig(bland_min_count=20, near_duplicate_session=True)  # both near-duplicate rules share the jobs
    alone = run_extract(ExtractConfig(input=str(tmp_path / "i"), output=str(tmp_path / "x"), filters=filters, spark=local))
    assert "in this process" in capsys.readouterr().err
    on_spark = run_extract(ExtractConfig(input=str(ingested / "ingest"), output=str(tmp_path / "y"), filters=filters), spark)
    assert files(tmp_path / "x") == files(tmp_path / "y") != {}
    of_the_run = ("seconds", "job_seconds", "stage_seconds", "input", "run",  # times, paths, the date
                  "exchange", "exchange_bytes", "tasks")  # reduce tasks follow the cores (1 here, 2 on Spark): the same outputs
    assert alone["exchange_bytes"] > 0 and not (tmp_path / "x" / "_work").exists()  # counted, then removed
    assert {k: v for k, v in alone.items() if k not in of_the_run} == {k: v for k, v in on_spark.items() if k not in of_the_run}
    out = {r["rule"]: r["out"] for r in alone["rules"]}
    assert out["near_duplicate_response"] > 0 and out["near_duplicate_session"] > 0
    assert alone["near_duplicates"]["sessions"]["clusters"] > 0


@pytest.mark.slow
def test_a_damaged_ingest_or_extract_output_stops_the_next_job(spark, ingested, tokenizer_dir, tmp_path):
    """A comments part deleted, submissions/ removed, the marker missing: extract stops before any
    work with one clear error; the same for tokenize over a damaged extract output."""
    import shutil

    from extraction.tokenize.job import TokenizeConfig, TokenizeError, run_tokenize

    damaged = tmp_path / "ingest"
    shutil.copytree(ingested / "ingest", damaged)
    shutil.rmtree(damaged / "submissions")
    with pytest.raises(ExtractError, match="submissions missing but the ingest report counts"):
        run_extract(ExtractConfig(input=str(damaged), output=str(tmp_path / "x")), spark)
    shutil.copytree(ingested / "ingest" / "submissions", damaged / "submissions")
    next(p for p in sorted((damaged / "comments").rglob("*.parquet"))).unlink()
    with pytest.raises(ExtractError, match="comments holds .* rows but the ingest report counts"):
        run_extract(ExtractConfig(input=str(damaged), output=str(tmp_path / "x")), spark)
    (damaged / "_INGEST_DONE.json").unlink()
    with pytest.raises(ExtractError, match="not a complete ingest output"):
        run_extract(ExtractConfig(input=str(damaged), output=str(tmp_path / "x")), spark)

    out = tmp_path / "good"
    run_extract(ExtractConfig(input=str(ingested / "ingest"), output=str(out), filters=FiltersConfig(bland=False),
                              split=SplitConfig(valid_fraction=0.2, test_fraction=0.2)), spark)
    next(p for p in sorted((out / "sessions" / "split=train").glob("*.parquet"))).unlink()
    with pytest.raises(TokenizeError, match="split=train holds .* sessions but the extract report counts"):
        run_tokenize(TokenizeConfig(input=str(out), output=str(tmp_path / "shards"), tokenizer=tokenizer_dir), spark)


def test_a_full_disk_is_one_line_and_gives_its_space_back(extracted, small_disk):
    import os

    from reddit_pretrain.storage import OutputNotWritable
    from tests.conftest import used_bytes

    disk = small_disk(160 << 10)
    with pytest.raises(OutputNotWritable, match=rf"no space left on {disk} \(tmpfs\) writing {disk}/out/"):
        run_extract(ExtractConfig(input=str(extracted / "ingest"), output=str(disk / "out")))
    assert os.listdir(disk / "out") == [] and used_bytes(disk) < 16 << 10


def test_the_console_report_shows_every_rule_and_plain_counts(extracted):
    """A rule that dropped nothing is listed (it is on), one switched off says so, counts are text
    (no dict reprs), and the report names the field behind a rejection its text does not show."""
    from extraction.sessions.report import format_report

    report = json.loads((extracted / "extract" / "extract_report.json").read_text())
    text = format_report(report, "out")
    rules = [line.split()[0] for line in text.splitlines()[2:] if line and not line.startswith(("sessions:", "comments:"))]
    assert {r["rule"] for r in report["rules"]} <= set(rules)
    assert any(line.split()[:2] == ["thread_comments", "off"] for line in text.splitlines())
    assert not [line for line in text.splitlines() if "{" in line], text
    assert "cut by turn rules (deleted " in text
    assert all(f.startswith("reply score ") for f in report["example_fields"]["min_score"])
    assert all(f.startswith("r/") for f in report["example_fields"]["nsfw"])


def test_buckets_holding_submissions_but_no_comments_are_a_valid_input(tmp_path):
    """Threads of a month that drew no comment, and comments whose submission is in another month,
    leave thread buckets that hold submissions and no comments (every per-subreddit dump has them):
    extract takes such an ingest output, in process and as a whole."""
    from extraction.ingest.dumps import dump_compressor

    def write(path, records):
        with open(path, "wb") as f, dump_compressor(3, 27).stream_writer(f, closefd=False) as w:
            w.write(b"".join(json.dumps(r).encode() + b"\n" for r in records))

    t0 = 1420070400  # 2015-01-01
    submissions = [{"id": f"s{i}", "subreddit": "askx", "author": f"op{i}", "title": f"Question number {i}?",
                    "selftext": "", "num_comments": 0, "score": 1, "created_utc": t0 + i} for i in range(40)]
    comments = []
    for i in range(3):  # three threads with replies, 37 without; one more thread whose submission is in December
        for link in (f"s{i}", "olddec"):
            parent = f"t3_{link}"
            for depth in range(3):
                cid = f"c{link}{i}{depth}"
                comments.append({"id": cid, "parent_id": parent, "link_id": f"t3_{link}", "subreddit": "askx",
                                 "author": f"u{depth % 2}", "body": f"reply {depth} about thing {i} in {link} here",
                                 "score": 2, "created_utc": t0 + 100 + depth})
                parent = f"t1_{cid}"
    (tmp_path / "dumps").mkdir()
    write(tmp_path / "dumps" / "RC_2015-01.zst", comments)
    write(tmp_path / "dumps" / "RS_2015-01.zst", submissions)
    run_ingest(IngestConfig(inputs=[str(tmp_path / "dumps" / "*.zst")], output=str(tmp_path / "ingest"), thread_buckets=16))
    report = run_extract(ExtractConfig(input=str(tmp_path / "ingest"), output=str(tmp_path / "extract"),
                                       filters=FiltersConfig(bland=False)))
    assert report["comments"]["comments"] == len(comments)
    assert (tmp_path / "extract" / DONE_MARKER).exists()
