"""A corpus folder (extraction.ingest.corpus): months added in batches, each ingested beside the
others into the same pieces of the thread hash space; the extract job over the corpus reads every
complete batch and gives the rows of one ingest of all the months."""

import io
import json

import pyarrow.dataset as ds
import pytest
import zstandard

from extraction.ingest import IngestError
from extraction.ingest.job import IngestConfig, run_ingest
from extraction.sessions.filters import FiltersConfig
from extraction.sessions.job import ExtractConfig, run_extract
from extraction.tokenize.job import TokenizeConfig, run_tokenize
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
