"""Today's dumps (issue 41, item 1): text deleted or removed after the crawl is never stored, in any
output of any stage, and the month still accounts for every line."""

from __future__ import annotations

import json
import pyarrow.parquet as pq
import pytest

from extraction.ingest.job import IngestConfig, run_ingest
from extraction.sessions.export_dataset import export_dataset
from extraction.sessions.filters import FiltersConfig
from extraction.sessions.job import ExtractConfig, run_extract
from reddit_pretrain_app.synth import SynthConfig, write_month


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


@pytest.mark.slow
def test_a_month_in_2024s_shape_runs_end_to_end(tmp_path):
    """A generated month as Arctic Shift publishes one today (``SynthConfig.shape="2024"``: ``_meta``
    on every item, ids not in time order, ``retrieved_on``, moderators' stickied notes with replies,
    Reddit's toxic mark): no text of an item deleted or removed after the crawl in any output of
    ingest, extract or the dataset export; no moderator note in a kept session; every line a row or
    a counted reject."""
    stats = write_month(str(tmp_path / "dumps"), SynthConfig(month="2024-01", comments=8_000, seed=41, shape="2024",
                                                             megathreads=1, megathread_comments=800, copypasta_clusters=4))
    assert len(stats.deleted_later) > 400 and len(stats.mod_notes) > 20
    ingest = run_ingest(IngestConfig(inputs=[str(tmp_path / "dumps" / "*.zst")], output=str(tmp_path / "i")))
    t = ingest["totals"]
    assert t["lines"] == t["comments_rows"] + t["submissions_rows"] + t["rejects"]  # every line a row or a reject
    assert set(t["deleted_after_crawl"]) == {"deleted", "removed", "removed by reddit"}
    assert sum(t["deleted_after_crawl"].values()) >= len(stats.deleted_later) - t["rejects"]
    report = run_extract(ExtractConfig(input=str(tmp_path / "i"), output=str(tmp_path / "x"),
                                       filters=FiltersConfig(bland_min_count=10, near_duplicate_session=True)))
    assert report["sessions"]["kept"] > 300 and report["comments"]["cut_by_turn_rule"]["moderator"] >= len(stats.mod_notes) - 2
    export_dataset(str(tmp_path / "x"), str(tmp_path / "hf"))

    seen = 0
    for f in sorted(tmp_path.rglob("*")):
        if not f.is_file() or "dumps" in f.parts:
            continue
        if f.suffix == ".parquet":
            table = pq.read_table(f)
            text = "\n".join(s for row in table.to_pylist() for s in _strings(row))
            if "raw" in table.column_names:  # ingest rejects keep raw bytes: none of a deleted item
                text += "\n".join(r.decode("utf-8", "replace") for r in table.column("raw").to_pylist() if r)
        elif f.suffix in (".json", ".html", ".jsonl", ".txt", ".md"):
            text = f.read_text(errors="replace")
        else:
            continue
        seen += 1
        assert "leak" not in text, f
    assert seen > 10
    rows = pq.read_table(tmp_path / "i" / "comments").to_pylist()
    withheld = [r for r in rows if r["deletion"]]
    assert all(r["body"] in ("[deleted]", "[removed]") and r["author"] == r["body"] for r in withheld)
    by_id = {r["id"]: r for r in rows}
    assert any(r["parent_kind"] == "comment" and (by_id.get(r["parent_id"]) or {}).get("deletion") for r in rows)  # replies kept
    kept = pq.read_table(tmp_path / "x" / "sessions").to_pylist()
    notes = set(stats.mod_notes)
    assert kept and not any(notes & set(s["turn_ids"]) for s in kept)
    assert report["rules"][[r["rule"] for r in report["rules"]].index("toxic_mark")]["out"] > 0
    assert json.loads((tmp_path / "i" / "ingest_report.json").read_text())["totals"]["deleted_after_crawl"]

    # The earliest copy is kept: of every duplicate (exact or near), the one named by duplicate_of is
    # the earlier (its reply's time, then the id as a base-36 number), though ids do not follow time.
    rejects = pq.read_table(tmp_path / "x" / "rejects").to_pylist()
    when = {r["session_id"]: (r["created_utc"][-1], len(r["session_id"]), r["session_id"]) for r in kept + rejects}
    copies = [r for r in rejects if r["duplicate_of"]]
    assert len(copies) > 50 and all(when[r["duplicate_of"]] <= when[r["session_id"]] for r in copies)
    assert sum(r["session_id"] < r["duplicate_of"] for r in copies) > 10  # the later copy has the smaller id
