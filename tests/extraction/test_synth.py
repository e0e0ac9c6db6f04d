import collections

import orjson
import zstandard

from extraction.ingest.dumps import iter_line_blocks
from reddit_pretrain_app.synth import SynthConfig, write_month


def load(path):
    out = []
    for block in iter_line_blocks(str(path)):
        for raw in block.lines:
            try:
                out.append(orjson.loads(raw))
            except orjson.JSONDecodeError:
                out.append(None)
    return out


def test_deterministic_for_a_seed(tmp_path):
    cfg = SynthConfig(comments=3000, seed=7)
    write_month(str(tmp_path / "a"), cfg)
    write_month(str(tmp_path / "b"), cfg)
    for name in ("RC_2015-01.zst", "RS_2015-01.zst"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    write_month(str(tmp_path / "c"), SynthConfig(comments=3000, seed=8))
    assert (tmp_path / "c" / "RC_2015-01.zst").read_bytes() != (tmp_path / "a" / "RC_2015-01.zst").read_bytes()


def test_shapes_and_quirks(tmp_path):
    cfg = SynthConfig(comments=30_000, megathreads=1, megathread_comments=8_000, deep_chains=1,
                      deep_chain_depth=3_000, p_malformed_line=0.0003, p_invalid_utf8_line=0.0003, seed=3)
    stats = write_month(str(tmp_path), cfg)
    rc = tmp_path / "RC_2015-01.zst"
    assert zstandard.get_frame_parameters(rc.read_bytes()[:18]).window_size == 2**31
    records = load(rc)
    assert len(records) == cfg.comments == stats.comments
    bad = sum(r is None for r in records)
    assert bad == stats.malformed_lines + stats.invalid_utf8_lines > 0
    comments = [r for r in records if r is not None]
    per_thread = collections.Counter(r["link_id"] for r in comments)
    sizes = sorted(per_thread.values())
    assert sizes[-1] >= 7_900  # the megathread (minus a few damaged lines)
    assert sizes[len(sizes) // 2] <= 6  # most threads are tiny
    # The r/counting chain: walk parent pointers from its last comment.
    depth: dict[str, int] = {}
    for r in comments:  # parents come before children in a dump
        parent = r["parent_id"]
        depth[r["id"]] = depth.get(parent[3:], 0) + 1 if parent.startswith("t1_") else 1
    assert max(depth.values()) > 1_000  # thousands deep, cut only where a line was damaged
    assert stats.orphans > 0
    assert any(isinstance(r["created_utc"], str) for r in comments)
    assert any(isinstance(r["created_utc"], int) for r in comments)
    assert any("score" not in r for r in comments)
    bodies = [r["body"] for r in comments]
    assert "[deleted]" in bodies and "[removed]" in bodies
    assert any("http" in b for b in bodies) and any(b.startswith(("&gt;", ">")) for b in bodies)
    assert any(ord(ch) > 0xFFFF for b in bodies for ch in b)  # 4-byte UTF-8 (emoji)
    assert any(r["author"] == "AutoModerator" for r in comments)
    subs = load(tmp_path / "RS_2015-01.zst")
    assert any(s["over_18"] for s in subs) and len(subs) == stats.submissions
    assert stats.submissions < stats.threads  # some submissions are missing, as in real dumps
