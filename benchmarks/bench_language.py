"""Language identification for the ``language`` rule: which identifier, what the rule catches, what it costs.

    python benchmarks/bench_language.py [--texts 300] [--comments 100000] [--cost-comments 1000000]

1. Identifiers on Reddit-length texts (one to three sentences, 20 to 250 characters): English
   comments of a generated month, and for each of Spanish, German, French, Italian, Dutch,
   Portuguese and Russian ``--texts`` texts of one to three sentences written in that language
   (``reddit_pretrain_app.synth.FOREIGN_PHRASES``, natural sentences, not tuned to any identifier). For pycld2
   and py3langid alone and for the rule's own path (the cheap English pass, then pycld2): the share
   named right per language (undetermined counts as wrong) and texts per second on one core.
2. The rule on a generated month with whole threads in those languages (``p_foreign_thread``):
   of the foreign-thread sessions, the share the default rules drop (any rule); of the sessions
   that reach the rule (the language rule is tried after the other session rules but the
   classifier), the share of foreign-thread sessions it drops and of English ones (apart: English-thread sessions holding one of the generator's single foreign
   comments, ``p_non_english``).
3. The cost on the 1M-comment benchmark month (Spark ``local[2]``, one SparkSession): extract with
   the language rule, PII masking and pseudonyms on against the three off.

Prints tables and writes benchmarks/results/language.json.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import CACHE, extract_off_on_off, synthetic_month, table, write_results  # noqa: E402


def labelled_texts(per_language: int) -> list[tuple[str, str]]:
    import json

    import zstandard

    from reddit_pretrain_app.synth_text import FOREIGN_PHRASES

    rng = random.Random(5)
    month = synthetic_month(30_000, seed=9)  # English only: the generator's default month
    english = []
    with open(month / "RC_2015-01.zst", "rb") as f:
        reader = zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(f)
        for line in reader.read().splitlines():
            try:
                body = json.loads(line).get("body")
            except ValueError:  # the generator's malformed and invalid-UTF-8 lines
                continue
            if body and 20 <= sum(c.isalpha() for c in body) and len(body) <= 250 and body.isascii():
                english.append(body)
    out = [("en", t) for t in rng.sample(english, per_language * 3)]
    for language, phrases in sorted(FOREIGN_PHRASES.items()):
        out += [(language, " ".join(rng.sample(phrases, rng.randint(1, 3)))) for _ in range(per_language)]
    return out


def identifiers(texts: list[tuple[str, str]]) -> list[dict]:
    import py3langid

    from extraction.sessions.rules import read_list
    from extraction.sessions.language import _cld2, comment_language

    common = frozenset(read_list("lists/top50_english.txt"))
    methods = {
        "pycld2 alone": lambda t: _cld2(t)[0],
        "py3langid alone": lambda t: py3langid.classify(t)[0],
        "the rule's path (cheap pass, then pycld2)": lambda t: comment_language(t, common, 20)[0],
    }
    rows = []
    for name, identify in methods.items():
        started = time.perf_counter()
        got = [identify(t) for _, t in texts]
        seconds = time.perf_counter() - started
        row = {"identifier": name, "texts/s": round(len(texts) / seconds)}
        for language in sorted({lang for lang, _ in texts}):
            pairs = [(want, g) for (want, _), g in zip(texts, got) if want == language]
            row[language] = round(sum(w == g for w, g in pairs) / len(pairs), 3)
        rows.append(row)
    return rows


def rule_on_month(comments: int, work: Path) -> dict:
    import pyarrow.dataset as ds

    from extraction.sessions.job import ExtractConfig, run_extract
    from extraction.ingest.job import IngestConfig, run_ingest
    from reddit_pretrain_app.synth import SynthConfig, write_month

    dumps = CACHE / f"language-{comments}"
    stats = write_month(str(dumps), SynthConfig(comments=comments, seed=8, p_foreign_thread=0.1))
    run_ingest(IngestConfig(inputs=[str(dumps / "*.zst")], output=str(work / "ingest"), force=True))
    cfg = ExtractConfig(input=str(work / "ingest"), output=str(work / "extract"), force=True)
    cfg.filters.bland_min_count = max(5, comments // 4000)
    report = run_extract(cfg)
    from extraction.sessions.filters import LoadedRules

    names = [r.name for r in LoadedRules.load(cfg.filters).on("session")]
    before = {"min_turns", "max_turns", *names[:names.index("language")]}  # the rules tried before it
    from reddit_pretrain_app.synth_text import _NON_ENGLISH

    kept = ds.dataset(str(work / "extract" / "sessions"), format="parquet", partitioning="hive").to_table(
        columns=["link_id", "language", "turns"]).to_pylist()
    dropped = ds.dataset(str(work / "extract" / "rejects"), format="parquet").to_table(
        columns=["link_id", "drop_reason", "language", "turns"]).to_pylist()
    planted = set(_NON_ENGLISH)  # single foreign comments the generator puts in English threads (p_non_english)
    reached = [(r["link_id"], None, bool(planted & set(r["turns"]))) for r in kept] + \
        [(r["link_id"], r["drop_reason"], bool(planted & set(r["turns"]))) for r in dropped if r["drop_reason"] not in before]
    foreign = [reason for link, reason, _ in reached if link in stats.foreign_threads]
    english = [reason for link, reason, mixed in reached if link not in stats.foreign_threads and not mixed]
    mixed = [reason for link, reason, m in reached if link not in stats.foreign_threads and m]
    by_language: dict[str, list[int]] = {}
    for link, reason, _ in reached:
        language = stats.foreign_threads.get(link)
        if language:
            hit = by_language.setdefault(language, [0, 0])
            hit[0] += reason == "language"
            hit[1] += 1
    every = [r["link_id"] for r in kept] + [r["link_id"] for r in dropped]  # every candidate session, whatever dropped it
    foreign_all = [link for link in every if link in stats.foreign_threads]
    foreign_kept = sum(r["link_id"] in stats.foreign_threads for r in kept)
    return {"comments": comments, "foreign_threads": len(stats.foreign_threads),
            "foreign_sessions": len(foreign_all), "foreign_sessions_kept": foreign_kept,
            "foreign_sessions_dropped_by_any_rule": round(1 - foreign_kept / max(1, len(foreign_all)), 4),
            "foreign_sessions_reaching_the_rule": len(foreign),
            "foreign_dropped_by_language": round(sum(r == "language" for r in foreign) / max(1, len(foreign)), 4),
            "english_sessions_reaching_the_rule": len(english),
            "english_dropped_by_language": round(sum(r == "language" for r in english) / max(1, len(english)), 4),
            "english_thread_sessions_with_a_planted_foreign_comment": len(mixed),
            "of_those_dropped_by_language": round(sum(r == "language" for r in mixed) / max(1, len(mixed)), 4),
            "dropped_by_language_per_language": {k: round(a / b, 3) for k, (a, b) in sorted(by_language.items())},
            "language_rule_row": next(r for r in report["rules"] if r["rule"] == "language")}


def cost(comments: int, work: Path) -> dict:
    from extraction.sessions.privacy import PrivacyConfig

    def switch(cfg, on: bool) -> None:  # the language rule and both privacy transforms together
        cfg.privacy = PrivacyConfig(on, on, "benchmark salt")
        cfg.filters.language = on
        cfg.filters.near_duplicate = False  # off in all runs: its fixed cost would make the ratio look smaller

    return extract_off_on_off(comments, work, switch, repeats=2)


def main() -> int:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=300, help="texts per foreign language (and 3x as many English)")
    parser.add_argument("--comments", type=int, default=100_000, help="comments of the month with foreign threads")
    parser.add_argument("--cost-comments", type=int, default=1_000_000, help="comments of the cost month (0: no cost run)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-language-"))
    ids = identifiers(labelled_texts(args.texts))
    print(table(ids, list(ids[0])))
    rule = rule_on_month(args.comments, work)
    print(table([{"what": k, "value": v} for k, v in rule.items() if not isinstance(v, dict)], ["what", "value"]))
    print("dropped by the language rule, per language:", rule["dropped_by_language_per_language"])
    c = cost(args.cost_comments, work) if args.cost_comments else None
    if c:
        print(table(c["runs"], ["run", "on", "seconds", "vs off", "task seconds", "kept"]))
    print(f"results: {write_results('language', {'identifiers': ids, 'rule': rule, 'cost': c})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
