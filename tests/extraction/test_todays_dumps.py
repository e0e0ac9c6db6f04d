"""Today's dumps (issue 41, item 1): text deleted or removed after the crawl is never stored, in any
output of any stage, and the month still accounts for every line."""

from __future__ import annotations

import json
import random

import orjson
import pyarrow.parquet as pq
import pytest
import zstandard

from extraction.ingest.job import IngestConfig, run_ingest
from extraction.sessions.export_dataset import export_dataset
from extraction.sessions.filters import FiltersConfig
from extraction.sessions.job import ExtractConfig, run_extract
from reddit_pretrain.synth import SynthConfig, write_month


def _rewrite(path, change) -> list[dict]:
    """The dump at ``path`` with ``change(record, rng)`` applied to each record, written again with a
    long zstd window (as the releases are); returns the records."""
    records = [orjson.loads(line) for line in zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(path.open("rb")).read().splitlines()
               if line.strip()]
    rng = random.Random(5)
    for r in records:
        change(r, rng)
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=27)
    path.write_bytes(zstandard.ZstdCompressor(compression_params=params).compress(b"\n".join(map(orjson.dumps, records)) + b"\n"))
    return records


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
def test_text_deleted_after_the_crawl_appears_in_no_output(tmp_path):
    write_month(str(tmp_path / "dumps"), SynthConfig(month="2024-01", comments=6_000, seed=41, megathreads=1,
                                                     megathread_comments=800, copypasta_clusters=4))
    kinds = ["deleted", "removed", "removed by reddit"]

    def delete_some(record, rng):
        roll = rng.random()
        record["_meta"] = {"retrieved_2nd_on": int(float(record["created_utc"])) + 129600, "is_edited": False,
                           "was_deleted_later": False, "was_initially_deleted": False}
        if roll < 0.15:  # its author or Reddit took it down after the crawl: the dump still holds the text
            kind = kinds[int(roll * 100) % 3]
            record["_meta"].update({"was_deleted_later": True, "removal_type": kind})
            secret = f"SECRET{record['id']}"
            for field in ("body", "title", "selftext"):
                if record.get(field):
                    record[field] = f"{record[field]} {secret}"
            record["author"] = f"{secret}author"

    comments = _rewrite(tmp_path / "dumps" / "RC_2024-01.zst", delete_some)
    _rewrite(tmp_path / "dumps" / "RS_2024-01.zst", delete_some)
    hidden = sum("was_deleted_later" in r["_meta"] and r["_meta"]["was_deleted_later"] for r in comments)
    assert hidden > 500

    ingest = run_ingest(IngestConfig(inputs=[str(tmp_path / "dumps" / "*.zst")], output=str(tmp_path / "i")))
    t = ingest["totals"]
    assert t["lines"] == t["comments_rows"] + t["submissions_rows"] + t["rejects"]  # every line a row or a reject
    assert sum(t["deleted_after_crawl"].values()) >= hidden and set(t["deleted_after_crawl"]) == set(kinds)
    report = run_extract(ExtractConfig(input=str(tmp_path / "i"), output=str(tmp_path / "x"),
                                       filters=FiltersConfig(bland_min_count=10, near_duplicate_session=True)))
    assert report["sessions"]["kept"] > 300
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
        elif f.suffix == ".arrow":
            import pyarrow as pa

            text = "\n".join(s for row in pa.ipc.open_file(f).read_all().to_pylist() for s in _strings(row))
        else:
            continue
        seen += 1
        assert "SECRET" not in text, f
    assert seen > 10
    rows = pq.read_table(tmp_path / "i" / "comments").to_pylist()
    withheld = [r for r in rows if r["deletion"]]
    assert len(withheld) >= hidden and all(r["body"] in ("[deleted]", "[removed]") for r in withheld)
    assert {r["body"] for r in withheld if r["deletion"].startswith("removed")} == {"[removed]"}
    by_id = {r["id"]: r for r in rows}
    replies = [r for r in rows if r["parent_kind"] == "comment" and by_id.get(r["parent_id"], {}).get("deletion")]
    assert replies  # replies to a withheld comment keep their parent
    assert json.loads((tmp_path / "i" / "ingest_report.json").read_text())["totals"]["deleted_after_crawl"]
