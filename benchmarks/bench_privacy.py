"""PII masking and pseudonymous authors (``extraction.sessions.privacy``): what they catch, and what they cost.

    python benchmarks/bench_privacy.py [--comments 100000] [--cost-comments 1000000]

1. Quality, on a generated month with planted e-mail addresses, phone numbers (US and international
   forms) and IPv4/IPv6 addresses inside ordinary English comments (``SynthConfig.p_pii``), and
   ``u/name`` mentions (``p_mention``), extracted with privacy on and off (default rules otherwise):
   the planted values found in any stored turn; of the sessions that reach the rules (not dropped
   for their length) and whose response carries a planted value, the share kept, against the share
   of the other such sessions, and why the rest were dropped; of the sessions carrying a value that
   the session rules pass once the value is removed, the share they pass with it masked (a session
   kept or dropped for its conversation, not for the detail); author names and mentions stored verbatim.
2. Cost, on the 1M-comment benchmark month (``benchmarks.common.synthetic_month``, ingested once):
   extract with ``privacy.scrub_pii`` and ``privacy.pseudonymize_authors`` on against both off, the
   same SparkSession (``local[2]``), one run each: seconds and the ratio.

Prints tables and writes benchmarks/results/privacy.json.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import CACHE, extract_off_on_off, table, write_results  # noqa: E402


def sessions(folder: Path):
    import pyarrow.dataset as ds

    return ds.dataset(str(folder / "sessions"), format="parquet", partitioning="hive").to_table(
        columns=["session_id", "turns", "authors", "subreddit", "over_18", "scores", "has_title"])


def rejects(folder: Path):
    import pyarrow.dataset as ds

    return ds.dataset(str(folder / "rejects"), format="parquet").to_table(
        columns=["session_id", "turns", "drop_reason", "subreddit", "over_18", "scores", "has_title"])


def quality(comments: int, work: Path) -> dict:
    import pyarrow as pa

    from extraction.sessions.job import ExtractConfig, run_extract
    from extraction.ingest.job import IngestConfig, run_ingest
    from extraction.sessions.privacy import PrivacyConfig
    from reddit_pretrain_app.synth import SynthConfig, write_month

    dumps = CACHE / f"privacy-{comments}"
    stats = write_month(str(dumps), SynthConfig(comments=comments, seed=7, p_pii=0.03, p_mention=0.02))
    run_ingest(IngestConfig(inputs=[str(dumps / "*.zst")], output=str(work / "ingest"), force=True))
    base = ExtractConfig(input=str(work / "ingest"), force=True)
    base.filters.bland_min_count = max(5, comments // 4000)
    runs = {}
    for name, on in (("on", True), ("off", False)):
        cfg = replace(base, output=str(work / f"extract_{name}"), privacy=PrivacyConfig(on, on, "benchmark salt"))
        report = run_extract(cfg)
        kept, dropped = sessions(work / f"extract_{name}"), rejects(work / f"extract_{name}")
        runs[name] = {"report": report, "kept": kept, "dropped": dropped}
    values = sorted(set(stats.pii_values))
    # Sessions whose response carries a planted value, found in the run without masking.
    off_all = pa.concat_tables([runs["off"]["kept"].select(["session_id", "turns"]), runs["off"]["dropped"].select(["session_id", "turns"])])
    responses = off_all.column("turns").to_pylist()
    pattern = re.compile("|".join(re.escape(v) for v in values))
    length = {sid for sid, r in zip(runs["off"]["dropped"].column("session_id").to_pylist(),
                                    runs["off"]["dropped"].column("drop_reason").to_pylist()) if r in ("min_turns", "max_turns")}
    # Sessions that reach the rules (not dropped for their length) and whose response carries a value.
    carrying = {sid for sid, turns in zip(off_all.column("session_id").to_pylist(), responses)
                if turns and pattern.search(turns[-1]) and sid not in length}
    on_kept = set(runs["on"]["kept"].column("session_id").to_pylist())
    on_candidates = set(on_kept) | set(runs["on"]["dropped"].column("session_id").to_pylist())
    others = on_candidates - carrying - length
    off_kept = set(runs["off"]["kept"].column("session_id").to_pylist())
    stored_on = pa.concat_tables([runs["on"]["kept"].select(["turns", "authors"]), runs["on"]["dropped"].select(["turns"]).append_column(
        "authors", pa.nulls(runs["on"]["dropped"].num_rows, pa.list_(pa.string())))])
    text_on = "\n".join(t for turns in stored_on.column("turns").to_pylist() if turns for t in turns if t)
    authors_on = [a for row in runs["on"]["kept"].column("authors").to_pylist() for a in row]
    found_on = sum(1 for v in values if v in text_on)
    text_off = "\n".join(t for turns in runs["off"]["kept"].column("turns").to_pylist() for t in turns if t)
    def reasons(run: str) -> dict:
        table = runs[run]["dropped"]
        picked = [r for sid, r in zip(table.column("session_id").to_pylist(), table.column("drop_reason").to_pylist()) if sid in carrying]
        return dict(sorted(((r, picked.count(r)) for r in set(picked)), key=lambda kv: -kv[1]))

    # The masked detail against no detail at all: each session carrying a value, judged by the session
    # rules (their plain-Python references) on its turns as the rules read them (a plain word in each
    # placeholder's place) and on the same turns with the placeholders removed.
    from extraction.sessions.filters import LoadedRules
    from extraction.sessions.privacy import PII_KINDS

    rules = LoadedRules.load(base.filters)
    words = {stored: word for _, _, stored, word in PII_KINDS}
    on_all = pa.concat_tables([runs["on"]["kept"].select(["session_id", "turns", "subreddit", "over_18", "scores", "has_title"]),
                               runs["on"]["dropped"].select(["session_id", "turns", "subreddit", "over_18", "scores", "has_title"])])
    pass_removed = pass_masked = 0
    for row in on_all.to_pylist():
        if row["session_id"] not in carrying:
            continue
        judged = []
        for replace_with in (lambda p: words[p], lambda p: ""):
            turns = [re.sub("|".join(map(re.escape, words)), lambda m: replace_with(m.group(0)), t or "") for t in row["turns"]]
            judged.append(rules.session_reason(turns, row["subreddit"], row["over_18"], row["scores"][-1], row["has_title"]))
        if judged[1] is None:
            pass_removed += 1
            pass_masked += judged[0] is None
    return {
        "carrying_pii_passing_the_session_rules_with_the_value_removed": pass_removed,
        "of_those_passing_with_the_value_masked": round(pass_masked / max(1, pass_removed), 4),
        "drop_reasons_carrying_pii_on": reasons("on"), "drop_reasons_carrying_pii_off": reasons("off"),
        "comments": comments, "planted_values": len(values), "planted_found_in_stored_turns_on": found_on,
        "planted_found_in_kept_turns_off": sum(1 for v in values if v in text_off),
        "sessions_carrying_pii": len(carrying),
        "kept_share_carrying_pii_on": round(len(carrying & on_kept) / max(1, len(carrying)), 4),
        "kept_share_carrying_pii_off": round(len(carrying & off_kept) / max(1, len(carrying)), 4),
        "kept_share_other_sessions_on": round(len(others & on_kept) / max(1, len(others)), 4),
        "authors_stored_verbatim_on": sum(1 for a in authors_on if a and re.fullmatch(r"user[0-9]+", a)),
        "authors_stored_verbatim_off": sum(1 for a in runs["off"]["kept"].column("authors").to_pylist() for a in [a]
                                           if a and any(re.fullmatch(r"user[0-9]+", x or "") for x in a)),
        "mentions_verbatim_on": len(re.findall(r"\bu/user[0-9]+", text_on)),
        "pii_masked": runs["on"]["report"]["comments"]["pii_masked"],
        "author_sample_on": authors_on[:3],
        "candidates_on": len(on_candidates),
    }


def cost(comments: int, work: Path) -> dict:
    from extraction.sessions.privacy import PrivacyConfig

    return extract_off_on_off(comments, work, lambda cfg, on: setattr(cfg, "privacy", PrivacyConfig(on, on, "benchmark salt")))


def main() -> int:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--comments", type=int, default=100_000, help="comments of the planted month (quality)")
    parser.add_argument("--cost-comments", type=int, default=1_000_000, help="comments of the cost month (0: no cost run)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-privacy-"))
    q = quality(args.comments, work)
    print(table([{"what": k, "value": v} for k, v in q.items() if not isinstance(v, (dict, list))], ["what", "value"]))
    print("PII masked:", q["pii_masked"], "authors stored as:", q["author_sample_on"])
    print("why sessions carrying PII were dropped, on:", q["drop_reasons_carrying_pii_on"])
    print("why sessions carrying PII were dropped, off:", q["drop_reasons_carrying_pii_off"])
    c = cost(args.cost_comments, work) if args.cost_comments else None
    if c:
        print(table(c["runs"], ["run", "on", "seconds", "vs off", "task seconds", "kept"]))
    path = write_results("privacy", {"quality": q, "cost": c})
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
