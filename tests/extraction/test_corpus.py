"""A corpus folder (extraction.ingest.corpus): months added in batches, each ingested beside the
others into the same pieces of the thread hash space; the extract job over the corpus reads every
complete batch and gives the rows of one ingest of all the months."""

import io
import json
import shutil

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest
import zstandard

from extraction.ingest import IngestError
from extraction.ingest.job import IngestConfig, run_ingest
from extraction.sessions.filters import FiltersConfig
from extraction.sessions import ExtractError
from extraction.sessions.job import ExtractConfig, run_extract
from extraction.spark import SparkConfig
from extraction.tokenize.job import TokenizeConfig, TokenizeError, run_tokenize
from extraction.tokenize.train_tokenizer import train_tokenizer
from reddit_pretrain import layout
from reddit_pretrain_app.synth import SynthConfig, write_month
from tests.extraction.test_dumps import write_zst

FILTERS = FiltersConfig(bland_min_count=15, near_duplicate_session=True)


def _rows(folder):
    return ds.dataset(str(folder), format="parquet", partitioning="hive").to_table().sort_by("session_id")


def _lines(path) -> list[bytes]:
    with open(path, "rb") as f:
        reader = zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(f)
        return io.BufferedReader(reader).read().splitlines(keepends=True)


@pytest.fixture(scope="module")
def two_months(tmp_path_factory):
    """One generated month's comments cut in two dumps, RC_2015-01 and RC_2015-02 (so threads run
    across both), with the month's submissions beside the first."""
    root = tmp_path_factory.mktemp("corpus")
    write_month(str(root / "gen"), SynthConfig(comments=6_000, seed=31, copypasta_clusters=4))
    lines = _lines(root / "gen" / "RC_2015-01.zst")
    (root / "a").mkdir()
    (root / "b").mkdir()
    write_zst(root / "a" / "RC_2015-01.zst", b"".join(lines[: len(lines) // 2]))
    write_zst(root / "b" / "RC_2015-02.zst", b"".join(lines[len(lines) // 2:]))
    (root / "a" / "RS_2015-01.zst").write_bytes((root / "gen" / "RS_2015-01.zst").read_bytes())
    (root / "c").mkdir()
    write_zst(root / "c" / "RC_2015-03.zst", b"".join(lines[:100]))
    return root


def test_months_added_in_batches_extract_as_one_ingest(two_months, tmp_path, capsys):
    root = two_months
    one = run_ingest(IngestConfig(inputs=[str(root / "a" / "*.zst"), str(root / "b" / "*.zst")], output=str(tmp_path / "one"),
                                  thread_buckets=8))
    reference = run_extract(ExtractConfig(input=str(tmp_path / "one"), output=str(tmp_path / "x-one"), filters=FILTERS))

    corpus = tmp_path / "corpus"
    first = run_ingest(IngestConfig(inputs=[str(root / "a" / "*.zst")], corpus=str(corpus), thread_buckets=8))
    assert "a new corpus, its thread hash space cut into 8 pieces" in capsys.readouterr().err
    assert json.loads((corpus / layout.CORPUS_FILE).read_text())["pieces"] == 8
    before = sorted(p.relative_to(corpus) for p in (corpus / "ingest" / "2015-01").rglob("*") if p.is_file())
    second = run_ingest(IngestConfig(inputs=[str(root / "b" / "*.zst")], corpus=str(corpus)))  # takes the corpus's pieces
    assert second["thread_buckets"] == 8
    assert first["totals"]["comments_rows"] + second["totals"]["comments_rows"] == one["totals"]["comments_rows"]
    assert sorted(p.relative_to(corpus) for p in (corpus / "ingest" / "2015-01").rglob("*") if p.is_file()) == before  # untouched
    # The second batch's threads began in the first: the same pieces hold them in both batches.
    assert {p.parent.name for p in (corpus / "ingest" / "2015-02" / "comments").rglob("*.parquet")} <= \
        {p.parent.name for p in (corpus / "ingest" / "2015-01" / "comments").rglob("*.parquet")}

    report = run_extract(ExtractConfig(input=str(corpus), output=str(tmp_path / "x-corpus"), filters=FILTERS))
    for table in ("sessions", "rejects"):
        assert _rows(tmp_path / "x-corpus" / table).equals(_rows(tmp_path / "x-one" / table)), table
    assert report["sessions"] == reference["sessions"] and report["rules"] == reference["rules"]
    assert [i["file"] for i in report["ingest"]["inputs"]] == ["RC_2015-01.zst", "RS_2015-01.zst", "RC_2015-02.zst"]
    train_tokenizer(str(tmp_path / "x-corpus" / "sessions"), str(tmp_path / "tok"), vocab_size=600)
    manifest = run_tokenize(TokenizeConfig(input=str(tmp_path / "x-corpus"), output=str(tmp_path / "shards"),
                                           tokenizer=str(tmp_path / "tok")))
    assert sorted(p.rsplit("/", 1)[-1] for p in manifest["source_dumps"]) == ["RC_2015-01.zst", "RC_2015-02.zst", "RS_2015-01.zst"]

    # Adding the same dumps again: the batch is complete (nothing to do); under another name: refused.
    capsys.readouterr()
    run_ingest(IngestConfig(inputs=[str(root / "b" / "*.zst")], corpus=str(corpus)))
    assert "is complete for these inputs and settings; nothing to do" in capsys.readouterr().err
    with pytest.raises(IngestError, match=r"RC_2015-02.zst already in .* \(batch 2015-02\): a month is added once"):
        run_ingest(IngestConfig(inputs=[str(root / "b" / "*.zst")], corpus=str(corpus), batch="again"))
    with pytest.raises(IngestError, match="batch 2015-02 of .* holds other dumps"):
        run_ingest(IngestConfig(inputs=[str(root / "c" / "RC_2015-03.zst")], corpus=str(corpus), batch="2015-02"))
    with pytest.raises(IngestError, match="cuts the thread hash space into 8 pieces; thread_buckets=16 differs"):
        run_ingest(IngestConfig(inputs=[str(root / "c" / "RC_2015-03.zst")], corpus=str(corpus), thread_buckets=16))
    assert sorted(p.name for p in (corpus / "ingest").iterdir()) == ["2015-01", "2015-02"]

    # A batch without its marker (being written, or killed) is left out, and named.
    (corpus / "ingest" / "2015-03" / "comments").mkdir(parents=True)
    capsys.readouterr()
    again = run_extract(ExtractConfig(input=str(corpus), output=str(tmp_path / "x-corpus"), filters=FILTERS))
    err = capsys.readouterr().err
    assert "batches without their marker left out" in err and "2015-03" in err
    assert "nothing to do" in err and again["sessions"] == report["sessions"]  # the same complete batches: done already

    # A batch added: the corpus's extract is another input now, and runs again over all three.
    run_ingest(IngestConfig(inputs=[str(root / "c" / "RC_2015-03.zst")], corpus=str(corpus)))
    third = run_extract(ExtractConfig(input=str(corpus), output=str(tmp_path / "x-corpus"), filters=FILTERS))
    assert "RC_2015-03.zst" in [i["file"] for i in third["ingest"]["inputs"]] and "nothing to do" not in capsys.readouterr().err


def test_a_corpus_with_no_complete_batch_is_refused(tmp_path):
    corpus = tmp_path / "corpus"
    (corpus / "ingest" / "2015-01").mkdir(parents=True)
    (corpus / layout.CORPUS_FILE).write_text(json.dumps({"format_version": 1, "pieces": 4}))
    with pytest.raises(IngestError, match="holds no complete batch: add months with reddit-pretrain ingest corpus="):
        run_extract(ExtractConfig(input=str(corpus), output=str(tmp_path / "x")))


BATCH_FILTERS = FiltersConfig(bland_min_count=15, near_duplicate_session=True)


def _all_rows(folder):
    """Kept sessions and rejects as one table (kept: no drop_reason), by session_id."""
    kept, rejects = _rows(folder / "sessions"), _rows(folder / "rejects")
    kept = kept.append_column("drop_reason", pa.nulls(kept.num_rows, pa.string())) \
        .append_column("duplicate_of", pa.nulls(kept.num_rows, pa.string()))
    return pa.concat_tables([kept.select(rejects.column_names), rejects]).sort_by("session_id")


def _ids(folder):
    return set(ds.dataset(str(folder), format="parquet").to_table(columns=["id"]).column("id").to_pylist())


@pytest.fixture(scope="module")
def batches_extracted(two_months, tmp_path_factory):
    """The two months as one ingest and one extract, and as a corpus of two batches extracted one after the other."""
    root, out = two_months, tmp_path_factory.mktemp("batches")
    run_ingest(IngestConfig(inputs=[str(root / "a" / "*.zst"), str(root / "b" / "*.zst")], output=str(out / "one"),
                            thread_buckets=8))
    run_extract(ExtractConfig(input=str(out / "one"), output=str(out / "x-one"), filters=BATCH_FILTERS))
    corpus = out / "corpus"
    run_ingest(IngestConfig(inputs=[str(root / "a" / "*.zst")], corpus=str(corpus), thread_buckets=8))
    run_ingest(IngestConfig(inputs=[str(root / "b" / "*.zst")], corpus=str(corpus)))
    with pytest.raises(ExtractError, match="extract batch=2015-01 first"):
        run_extract(ExtractConfig(input=str(corpus), batch="2015-02", filters=BATCH_FILTERS))
    first = run_extract(ExtractConfig(input=str(corpus), batch="2015-01", filters=BATCH_FILTERS, output="unused"))
    second = run_extract(ExtractConfig(input=str(corpus), batch="2015-02", filters=BATCH_FILTERS))
    return out, corpus, first, second


def test_a_batch_gives_the_sessions_of_one_run_over_all_months_that_end_in_it(batches_extracted):
    out, corpus, first, second = batches_extracted
    one = _all_rows(out / "x-one")
    a, b = _all_rows(corpus / "extract" / "2015-01"), _all_rows(corpus / "extract" / "2015-02")
    new = _ids(corpus / "ingest" / "2015-02" / "comments") - _ids(corpus / "ingest" / "2015-01" / "comments")
    in_b = pa.array([turns[-1] in new for turns in one.column("turn_ids").to_pylist()])
    one_a = one.filter(pc.invert(in_b))
    replaced = set(a.column("session_id").to_pylist()) - set(one_a.column("session_id").to_pylist())
    # The sessions whose last turn is in the second batch: the same turns, ids, splits and decisions, but
    # that a copy here of a session there whose last turn gained a reply here is dropped naming it (one
    # run has the longer session only; counted, replied_later). A session is no near duplicate of one it continues.
    one_b = one.filter(in_b)
    assert b.select(["session_id", "turn_ids", "split"]).equals(one_b.select(["session_id", "turn_ids", "split"]))
    differ = [(m, o) for m, o in zip(b.to_pylist(), one_b.to_pylist()) if m != o]
    assert all(m["duplicate_of"] in replaced and o["drop_reason"] is None and m | {"drop_reason": None, "duplicate_of": None} == o
               for m, o in differ) and len(differ) < 5
    assert second["batch"]["earlier"] == ["2015-01"] and second["batch"]["earlier_comments_read"] > 0
    assert first["batch"]["earlier"] == [] and first["comments"]["comments"] + second["comments"]["comments"] == \
        sum(1 for _ in _ids(corpus / "ingest" / "2015-01" / "comments") | new)

    # The first batch's sessions: those of one run, and the sessions whose last turn gained a reply later (counted).
    assert set(one_a.column("session_id").to_pylist()) <= set(a.column("session_id").to_pylist())
    assert len(replaced) == second["batch"]["replied_later"] > 0
    # ... decided with the counts known then: a session one run finds bland may be kept, or named by a copy
    # that one run does not have; nothing else differs.
    mine = {r["session_id"]: r for r in a.to_pylist()}
    changed = [(r, mine[r["session_id"]]) for r in one_a.to_pylist() if r != mine[r["session_id"]]]
    assert changed and all(r["drop_reason"] == "bland" or m["duplicate_of"] in replaced for r, m in changed)
    assert second["batch"]["newly_frequent_trigrams"] > 0

    # A copy in the second batch of a session in the first (kept or dropped there) is dropped, naming the earliest.
    named = [r for r in b.to_pylist() if r["duplicate_of"] in mine]
    exact = [r for r in named if r["drop_reason"] in ("duplicate_session", "duplicate_response")]
    near = [r for r in named if r["drop_reason"] in ("near_duplicate_response", "near_duplicate_session")]
    assert exact and near and len(exact) + len(near) == len(named)
    assert second["batch"]["near_duplicates_of_earlier"] >= len(near) and second["batch"]["bridged_clusters"] >= 0
    # ... a near duplicate naming the earliest of its cluster there (its root: kept, or dropped by another rule)
    assert all(mine[r["duplicate_of"]]["drop_reason"] != r["drop_reason"] for r in near)
    for r in exact:
        earliest = mine[r["duplicate_of"]]
        assert earliest["drop_reason"] not in ("duplicate_session", "duplicate_response") or \
            earliest["drop_reason"] == "duplicate_session" and r["drop_reason"] == "duplicate_response"


def test_a_batchs_state_is_read_in_place_through_a_memory_map(batches_extracted):
    """Every later batch reads every earlier batch's state: its files are uncompressed, so a memory-mapped
    read allocates nothing (the columns are the file's bytes) and gives the table a copying read gives."""
    out, corpus, first, second = batches_extracted
    files = sorted((corpus / "extract" / "2015-01" / "state").rglob("*.arrow"))
    assert {f.parent.name for f in files} == {"keys", "trigrams", "near_bands", "near_texts"}
    for f in files:
        with pa.memory_map(str(f)) as source:
            before = pa.total_allocated_bytes()
            table = pa.ipc.open_file(source).read_all()
            assert pa.total_allocated_bytes() == before and table.num_rows > 0, f
            assert table.equals(pa.ipc.open_file(pa.BufferReader(f.read_bytes())).read_all())


def test_a_batch_is_refused_with_other_rules_or_out_of_order(batches_extracted, capsys):
    out, corpus, first, second = batches_extracted
    with pytest.raises(ExtractError, match=r"other settings \(filters.bland_min_count changed\)"):
        run_extract(ExtractConfig(input=str(corpus), batch="2015-02", filters=FiltersConfig(bland_min_count=16,
                                                                                            near_duplicate_session=True)))
    with pytest.raises(ExtractError, match="input must be a corpus folder"):
        run_extract(ExtractConfig(input=str(out / "one"), batch="2015-02", filters=BATCH_FILTERS))
    with pytest.raises(ExtractError, match="no complete batch 2015-03"):
        run_extract(ExtractConfig(input=str(corpus), batch="2015-03", filters=BATCH_FILTERS))
    capsys.readouterr()
    assert run_extract(ExtractConfig(input=str(corpus), batch="2015-01", filters=BATCH_FILTERS))["batch"] == first["batch"]
    assert "nothing to do" in capsys.readouterr().err
    with pytest.raises(ExtractError, match="batch 2015-02 comes after 2015-01 and is extracted already"):
        run_extract(ExtractConfig(input=str(corpus), batch="2015-01", filters=BATCH_FILTERS, force=True))


@pytest.mark.slow
def test_a_batch_on_spark_gives_the_same_bytes(batches_extracted, tmp_path, spark):
    out, corpus, first, second = batches_extracted
    copy = tmp_path / "corpus"
    shutil.copytree(corpus, copy)
    shutil.rmtree(copy / "extract" / "2015-02")
    run_extract(ExtractConfig(input=str(copy), batch="2015-02", filters=BATCH_FILTERS,
                              spark=SparkConfig(in_process_below_bytes=0)), spark)
    for table in ("sessions", "rejects", "state"):
        mine = sorted(p.relative_to(copy / "extract" / "2015-02") for p in (copy / "extract" / "2015-02" / table).rglob("*")
                      if p.is_file())
        theirs = sorted(p.relative_to(corpus / "extract" / "2015-02") for p in (corpus / "extract" / "2015-02" / table).rglob("*")
                        if p.is_file())
        assert mine == theirs and all((copy / "extract" / "2015-02" / p).read_bytes() == (corpus / "extract" / "2015-02" / p).read_bytes()
                                      for p in mine), table
    # Its state/near_texts was written by the driver (small); with reduce_bytes below it, by Spark tasks, and
    # every kind of state in more files (one per reduce task; near_texts: per range of first-set tasks): the
    # same sessions, rejects and state rows.
    report = run_extract(ExtractConfig(input=str(copy), batch="2015-02", filters=BATCH_FILTERS, reduce_bytes=1, force=True,
                                       spark=SparkConfig(in_process_below_bytes=0)), spark)
    assert report["exchange"]["reduce_tasks"] > 4 and report["exchange"]["steps"]["near duplicates: state"]["tasks"] > 4
    for table in ("sessions", "rejects"):
        assert _rows(copy / "extract" / "2015-02" / table).equals(_rows(corpus / "extract" / "2015-02" / table))
    for kind in ("keys", "trigrams", "near_bands", "near_texts"):
        mine, theirs = (pa.concat_tables(pa.ipc.open_file(str(f)).read_all() for f in sorted((root / "extract" / "2015-02" / "state" / kind).glob("*.arrow")))
                        for root in (copy, corpus))
        files = report["exchange"]["steps"]["near duplicates: state"]["tasks"] if kind == "near_texts" else report["exchange"]["reduce_tasks"]
        assert len(list((copy / "extract" / "2015-02" / "state" / kind).glob("*.arrow"))) == files
        assert mine.sort_by([(c, "ascending") for c in mine.column_names if c != "sketch"]).equals(
            theirs.sort_by([(c, "ascending") for c in theirs.column_names if c != "sketch"])), kind


def test_each_batch_is_a_shard_set_of_the_corpus_tokenizer(batches_extracted, tmp_path):
    out, corpus, first, second = batches_extracted
    copy = tmp_path / "corpus"
    shutil.copytree(corpus, copy, ignore=shutil.ignore_patterns("shards"))
    train_tokenizer(str(copy / "extract" / "2015-01" / "sessions"), str(tmp_path / "tok"), vocab_size=600)
    with pytest.raises(TokenizeError, match="no extracted batch 2015-03"):
        run_tokenize(TokenizeConfig(input=str(copy), batch="2015-03", tokenizer=str(tmp_path / "tok")))
    manifests = [run_tokenize(TokenizeConfig(input=str(copy), batch=b, tokenizer=str(tmp_path / "tok")))
                 for b in ("2015-01", "2015-02")]
    assert [sorted(p.rsplit("/", 1)[-1] for p in m["source_dumps"]) for m in manifests] == \
        [["RC_2015-01.zst", "RS_2015-01.zst"], ["RC_2015-02.zst"]]
    record = json.loads((copy / layout.CORPUS_FILE).read_text())
    sets = record["shard_sets"]
    assert sorted(sets) == ["2015-01", "2015-02"] and sets["2015-02"]["months"] == ["2015-02"]
    assert sets["2015-02"]["sessions"]["train"] == second["sessions"]["per_split"]["train"]
    assert sets["2015-02"]["tokens"] == {s: v["tokens"] for s, v in manifests[1]["splits"].items()}
    assert sets["2015-01"]["rules"] == sets["2015-02"]["rules"] and record["tokenizer"]["eos_token"] == "<|endoftext|>"
    train_tokenizer(str(copy / "extract" / "2015-01" / "sessions"), str(tmp_path / "tok2"), vocab_size=500)
    with pytest.raises(TokenizeError, match="written with another tokenizer"):
        run_tokenize(TokenizeConfig(input=str(copy), batch="2015-02", tokenizer=str(tmp_path / "tok2"), force=True))


def test_a_cluster_of_a_batch_joins_the_earliest_earlier_cluster_and_counts_those_it_bridges():
    """Links of a batch's sessions to earlier batches' cluster roots (``batches.marked``): in one step
    and in rounds, the batch's members are dropped naming the earliest root, and an earlier root that
    the batch's cluster joined to another is counted (bridged), not dropped."""
    from extraction.sessions import batches, clusters
    from extraction.sessions.near_sessions import ND_VERIFIED, near_duplicate_clusters
    from extraction.sessions.near_tasks import _earlier_roots_out
    from extraction.sessions.thread_keys import earliest_keys

    e1, e2, n1, n2, n3 = earliest_keys(pa.array(["e1", "e2", "n1", "n2", "n3"]), pa.array([100, 200, 50, 400, 500])).to_pylist()
    old = batches.marked(pa.array([e2, e1, "~" + e2])).to_pylist()
    assert batches.unmarked(pa.array(old)).to_pylist() == [e2, e1, "~" + e2]
    links = pa.table({"a": [n1, n2, n2, "~" + n3], "a_bucket": [0, 1, 1, 1], "b": [old[0], n1, old[1], old[2]],
                      "b_bucket": [-1, 0, -1, -1], "jaccard": [1.0] * 4, "a_text": [None] * 4, "b_text": [None] * 4},
                     schema=ND_VERIFIED)
    expected = [("n1", "e1", "near_duplicate_response"), ("n2", "e1", "near_duplicate_response"),
                ("n3", "e2", "near_duplicate_session")]  # (n1 was posted before e1: an earlier batch's still comes first)
    one_step, _ = near_duplicate_clusters(links)
    sets, _, nodes, _ = clusters.first_sets(links, 1)
    fp = None
    while True:
        sent, _, seen = clusters.next_sets(sets, 1)
        if seen == fp:
            break
        sets, fp = sent, seen
    in_rounds, _, _ = clusters.finish(sets, nodes, 1)
    for dropped in (one_step, in_rounds):
        mine, where, bridged = _earlier_roots_out(dropped, dropped.column("bucket").to_numpy())
        assert bridged == 1 and sorted(zip(*(mine.column(c).to_pylist() for c in ("session_id", "duplicate_of", "reason")))) \
            == expected and set(where) == {0, 1}


def test_three_batches_give_the_sessions_of_one_run_over_all_months_that_end_in_each(tmp_path):
    """A text kept by an earlier batch's state is not kept again by a later one (each text once): a
    third batch still finds it there, and gives, like the second, the rows of one run over all months."""
    write_month(str(tmp_path / "gen"), SynthConfig(comments=4_500, seed=7, copypasta_clusters=6))
    lines = _lines(tmp_path / "gen" / "RC_2015-01.zst")
    months = ["2015-01", "2015-02", "2015-03"]
    for i, month in enumerate(months):
        (tmp_path / month).mkdir()
        write_zst(tmp_path / month / f"RC_{month}.zst", b"".join(lines[i * len(lines) // 3: (i + 1) * len(lines) // 3]))
    (tmp_path / "2015-01" / "RS_2015-01.zst").write_bytes((tmp_path / "gen" / "RS_2015-01.zst").read_bytes())
    dumps = [str(tmp_path / m / "*.zst") for m in months]
    run_ingest(IngestConfig(inputs=dumps, output=str(tmp_path / "one"), thread_buckets=4))
    run_extract(ExtractConfig(input=str(tmp_path / "one"), output=str(tmp_path / "x-one"), filters=BATCH_FILTERS))
    corpus = tmp_path / "corpus"
    for i, month in enumerate(months):
        run_ingest(IngestConfig(inputs=[dumps[i]], corpus=str(corpus), thread_buckets=4))
    reports = [run_extract(ExtractConfig(input=str(corpus), batch=m, filters=BATCH_FILTERS)) for m in months]
    one = _all_rows(tmp_path / "x-one")
    last = {r["session_id"]: r for r in one.to_pylist()}
    kept, extra = set(), 0
    for i, month in enumerate(months):
        ids = _ids(corpus / "ingest" / month / "comments") - set().union(*(_ids(corpus / "ingest" / m / "comments") for m in months[:i]))
        mine = _all_rows(corpus / "extract" / month)
        theirs = one.filter(pa.array([turns[-1] in ids for turns in one.column("turn_ids").to_pylist()]))
        # The sessions of one run, and (but in the last batch) those whose last turn gained a reply later.
        assert set(theirs.column("session_id").to_pylist()) <= set(mine.column("session_id").to_pylist())
        extra += mine.num_rows - theirs.num_rows
        mine = mine.filter(pc.is_in(mine.column("session_id"), value_set=theirs.column("session_id")))
        assert mine.select(["session_id", "turn_ids", "split"]).equals(theirs.select(["session_id", "turn_ids", "split"]))
        # The same decisions but bland with the counts known then, and copies of sessions one run does not have.
        differ = [(m, last[m["session_id"]]) for m in mine.to_pylist() if m != last[m["session_id"]]]
        assert all(o["drop_reason"] == "bland" or m["duplicate_of"] in kept - set(last) for m, o in differ), differ[:3]
        assert not i or reports[i]["batch"]["near_duplicates_of_earlier"] > 0
        kept |= set(_all_rows(corpus / "extract" / month).column("session_id").to_pylist())
    assert extra == sum(r["batch"]["replied_later"] for r in reports) and len(kept) == one.num_rows + extra
    # Texts the first batch keeps are not kept again: fewer band rows than the texts each batch compared.
    rows = {m: sum(pa.ipc.open_file(str(p)).read_all().num_rows for p in (corpus / "extract" / m / "state" / "near_bands").glob("*.arrow"))
            for m in months}
    texts = {m: sum(pa.ipc.open_file(str(p)).read_all().num_rows for p in (corpus / "extract" / m / "state" / "near_texts").glob("*.arrow"))
             for m in months}
    assert rows["2015-03"] / texts["2015-03"] < rows["2015-01"] / texts["2015-01"]


def test_earlier_rows_are_read_from_the_row_groups_that_hold_them_only(tmp_path):
    import numpy as np
    import pyarrow.parquet as pq

    from extraction.sessions import batches

    links = [f"t{i % 37}" for i in range(1000)]
    table = pa.table({"id": [f"c{i}" for i in range(1000)], "link_id": links, "body": [f"text {i}" for i in range(1000)]})
    pq.write_table(table, tmp_path / "a.parquet", row_group_size=64)  # 16 row groups
    pq.write_table(table.slice(0, 10), tmp_path / "b.parquet")
    wanted = pa.array(["t3", "t30", "t99"])
    got = batches.read_threads([str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")], ["id", "body", "absent"], "link_id", wanted)
    expected = np.flatnonzero(np.isin(links, ["t3", "t30"]))
    assert got.column_names == ["id", "body"]
    assert got.column("id").to_pylist() == [f"c{i}" for i in expected] + ["c3"]
    assert batches.read_threads([str(tmp_path / "b.parquet")], ["id"], "link_id", pa.array(["t99"])) is None


def test_row_groups_whose_key_range_holds_no_wanted_thread_are_not_read(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    from extraction.sessions import batches

    table = pa.table({"id": [f"c{i:04d}" for i in range(1000)], "link_id": [f"t{i // 100:02d}" for i in range(1000)]})
    pq.write_table(table, tmp_path / "a.parquet", row_group_size=100)  # one thread a row group, in order
    read = []
    original = pq.ParquetFile.read_row_groups
    monkeypatch.setattr(pq.ParquetFile, "read_row_groups", lambda self, groups, **kw: read.append(list(groups)) or original(self, groups, **kw))
    got = batches.read_threads([str(tmp_path / "a.parquet")], ["id"], "link_id", pa.array(["t03", "t07", None, "t99"]))
    assert got.column("id").to_pylist() == [f"c{i:04d}" for i in list(range(300, 400)) + list(range(700, 800))]
    assert read == [[3, 7], [3, 7]]  # the key of the two row groups whose range holds a wanted thread, then their rows
