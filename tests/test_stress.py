"""A stress run over damaged input, with the accounting checked end to end (issue 14): a month with
5% damaged lines, a second month overlapping the first (the same comment ids again), and a
truncated file read in record mode, through ingest, extract and tokenize on a real local Spark."""

import json
import shutil

import pyarrow.parquet as pq
import pytest
import zstandard

from extraction.sessions.job import ExtractConfig, run_extract
from extraction.sessions.filters import FiltersConfig
from extraction.ingest.job import IngestConfig, run_ingest
from reddit_pretrain_app.synth import SynthConfig, write_month
from extraction.tokenize.job import TokenizeConfig, run_tokenize


@pytest.mark.slow
def test_every_line_and_every_comment_is_accounted_for(spark, tokenizer_dir, tmp_path):
    dumps = tmp_path / "dumps"
    write_month(str(dumps), SynthConfig(month="2015-01", comments=6000, seed=71, p_malformed_line=0.03,
                                        p_invalid_utf8_line=0.02))  # 5% damaged lines
    # An overlapping recrawl of the same month: the same ids again (half of them).
    raw = zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(open(dumps / "RC_2015-01.zst", "rb")).read()
    lines = raw.splitlines()
    (dumps / "RC_2015-01-recrawl.zst").write_bytes(zstandard.ZstdCompressor().compress(b"\n".join(lines[: len(lines) // 2]) + b"\n"))
    # A truncated dump (cut inside its zstd frame), read in record mode.
    write_month(str(tmp_path / "other"), SynthConfig(month="2015-02", comments=3000, seed=72))
    whole = (tmp_path / "other" / "RC_2015-02.zst").read_bytes()
    (dumps / "RC_2015-02.zst").write_bytes(whole[: len(whole) * 2 // 3])
    shutil.copy(tmp_path / "other" / "RS_2015-02.zst", dumps / "RS_2015-02.zst")

    ingest = run_ingest(IngestConfig(inputs=[str(dumps / "*.zst")], output=str(tmp_path / "ingest"), on_corrupt_file="record"), spark)
    t = ingest["totals"]
    assert t["failed_files"] == 1 and t["rejects"] > 0.04 * 6000
    assert t["lines"] == t["comments_rows"] + t["submissions_rows"] + t["rejects"]  # every line read: a row or a reject
    for f in ingest["files"]:
        assert f["lines"] == f["rows"] + f["rejects"]
    failed = next(f for f in ingest["files"] if f["status"] == "failed")
    assert failed["path"].endswith("RC_2015-02.zst") and "truncated" in failed["error"] and failed["lines"] > 0
    rejected = pq.read_table(tmp_path / "ingest" / "rejects")
    assert rejected.num_rows == t["rejects"]
    assert set(rejected.column("reason").to_pylist()) <= {"malformed_json", "invalid_utf8", "empty_line"}

    report = run_extract(ExtractConfig(input=str(tmp_path / "ingest"), output=str(tmp_path / "extract"),
                                       filters=FiltersConfig(bland_min_count=20)), spark)
    c = report["comments"]
    assert c["comments"] == t["comments_rows"] and c["duplicate_ids"] > 0.4 * 3000
    assert c["comments"] == (c["duplicate_ids"] + c["used_in_sessions"] + sum(c["cut_by_turn_rule"].values())
                             + sum(c["only_in_rejected_sessions"].values()) + c["not_in_any_session"])
    s = report["sessions"]
    sessions = pq.read_table(tmp_path / "extract" / "sessions")
    rejects = pq.read_table(tmp_path / "extract" / "rejects")
    assert sessions.num_rows == s["kept"] and rejects.num_rows == s["candidates"] - s["kept"]
    assert sum(r["out"] for r in report["rules"]) == rejects.num_rows
    ids = sessions.column("session_id").to_pylist() + rejects.column("session_id").to_pylist()
    assert len(ids) == len(set(ids))  # every repeated comment kept once

    manifest = run_tokenize(TokenizeConfig(input=str(tmp_path / "extract"), output=str(tmp_path / "shards"),
                                           tokenizer=tokenizer_dir, max_session_tokens=4096), spark)
    for split, n in s["per_split"].items():
        done = manifest["splits"][split]
        assert done["sessions"] == n and done["written"] + done["empty"] + done["encode_error"] + done["too_long"] == n
    assert json.loads((tmp_path / "shards" / "manifest.json").read_text())["splits"] == manifest["splits"]
