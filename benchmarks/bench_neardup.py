"""Near-duplicate replies (``near_duplicate_response``): what it removes, how exactly, what it costs.

    python benchmarks/bench_neardup.py [--comments 200000] [--clusters 12] [--sample 20000]
                                       [--cost-comments 1000000] [--scale 4] [--repeats 2] [--master local[2]]

In one run:

* **planted clusters**: a generated month with ``--clusters`` copypasta clusters (an original of 70-100
  words and 8-15 copies, each one edit from it, word 5-gram Jaccard to it >= 0.85, recorded by the
  generator), extracted with the default rules: per cluster the members written, those that reach
  the corpus rules as a response, and those kept (the target: at most one in >= 95% of clusters);
  and of the replies that have no near duplicate at all (exact Jaccard, every pair), the share kept
  by this rule (the target: >= 99%);
* **pairs against the truth**: on ``--sample`` replies of that month that reach the corpus rules, the
  pairs at the threshold by exact Jaccard over every pair (prefix filtering, ``tests.kit.reference``)
  against the pairs the rule finds (LSH candidates, verified): precision and recall, and the same
  for the clusters;
* **cost**: extract of the 1M-comment benchmark month with the rule off and on, ``--repeats`` times
  each, then off again (one SparkSession, ``local[2]``; the fastest on against the fastest off),
  then the same at ``--scale`` times as many comments: seconds, the rule's own seconds (its task
  stages, the band rows' writes included, its two jobs and the clusters step in the driver), the
  rule's seconds per comment at scale against the 1M month (by the wall difference, and by its own
  seconds: ``SHARED_STAGES`` over the cores plus its jobs' wall), and the peak memory of each run. ``--master local[1]`` runs the cost part on one core,
  where no core idles while another works and the wall difference is the rule's work
  (``--comments 0``: no planted month);
* **chains.mode=longest**: the tokens of the kept sessions of the 1M month with ``leaves`` and with
  ``longest`` (a byte-level BPE of 8,192 tokens trained on the leaves run's sessions).

Prints tables and writes benchmarks/results/neardup.json.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_extract import PeakMemory  # noqa: E402
from benchmarks.common import CACHE, machine, synthetic_month, table, write_results  # noqa: E402

SHARED_STAGES = ("signatures", "writes", "pairs")
"""The rule's stages that run inside the jobs every extract runs (sessions, corpus rules): their task
seconds over the cores are its share of those jobs; its own jobs (texts, verify, clusters) count by
their wall seconds, which hold their tasks'."""

CORPUS_REASONS = (None, "bland", "duplicate_session", "duplicate_response", "near_duplicate_response")
"""A session with one of these reached the corpus rules (no session rule dropped it)."""


def _read(folder: Path):
    import pyarrow.parquet as pq

    return pq.read_table(folder)


def planted(comments: int, clusters: int, work: Path) -> tuple[dict, list[str], dict]:
    from extraction.sessions.job import ExtractConfig, run_extract
    from extraction.ingest.job import IngestConfig, run_ingest
    from extraction.sessions.neardup import shingle_set
    from tests.kit.reference import similar_pairs
    from reddit_pretrain_app.synth import SynthConfig, write_month

    dumps = CACHE / f"neardup-{comments}-{clusters}"
    stats = write_month(str(dumps), SynthConfig(comments=comments, seed=11, copypasta_clusters=clusters))
    run_ingest(IngestConfig(inputs=[str(dumps / "*.zst")], output=str(work / "ingest"), force=True))
    cfg = ExtractConfig(input=str(work / "ingest"), output=str(work / "extract"), force=True)
    cfg.filters.bland_min_count = max(5, comments // 4000)
    report = run_extract(cfg)
    kept = _read(work / "extract" / "sessions")
    rejects = _read(work / "extract" / "rejects")
    kept_ids = set(kept.column("session_id").to_pylist())
    reason = dict(zip(rejects.column("session_id").to_pylist(), rejects.column("drop_reason").to_pylist()))
    reason.update({sid: None for sid in kept_ids})
    response = {sid: turns[-1] for t in (kept, rejects) for sid, turns in zip(t.column("session_id").to_pylist(),
                                                                              t.column("turns").to_pylist())}
    rows, at_most_one = [], 0
    planted_ids = set()
    for i, members in enumerate(stats.copypasta):
        ids = {m["id"] for m in members}
        planted_ids |= ids
        judged = [sid for sid in ids if sid in reason and reason[sid] in CORPUS_REASONS]
        kept_here = sum(sid in kept_ids for sid in ids)
        at_most_one += kept_here <= 1
        rows.append({"cluster": i, "members": len(members), "min jaccard": min(m["jaccard"] for m in members),
                     "responses judged": len(judged), "kept": kept_here,
                     "dropped as near duplicate": sum(reason.get(sid) == "near_duplicate_response" for sid in ids)})
    # Replies that reach the corpus rules, and those with no near duplicate among them (exact, every pair).
    judged = sorted(sid for sid, r in reason.items() if r in CORPUS_REASONS)
    sets = {sid: shingle_set(response[sid], cfg.filters.near_duplicate_shingle) for sid in judged}
    sets = {sid: g for sid, g in sets.items() if g}
    t = time.time()
    truth = similar_pairs(sets, cfg.filters.near_duplicate_threshold)
    truth_seconds = time.time() - t
    linked = {x for pair in truth for x in pair}
    # among those, replies equal to another after normalisation are exact duplicates to this rule's eye too
    distinct = [sid for sid in sets if sid not in linked]
    distinct_kept = sum(reason[sid] != "near_duplicate_response" for sid in distinct)
    summary = {
        "comments": comments, "clusters": clusters, "clusters_with_at_most_one_kept": at_most_one,
        "share_clusters_at_most_one_kept": round(at_most_one / max(1, clusters), 4),
        "replies_judged_with_shingles": len(sets), "replies_with_no_near_duplicate": len(distinct),
        "share_of_those_kept_by_the_rule": round(distinct_kept / max(1, len(distinct)), 5),
        "replies_dropped_as_near_duplicates": sum(r == "near_duplicate_response" for r in reason.values()),
        "of_which_planted": sum(reason.get(sid) == "near_duplicate_response" for sid in planted_ids),
        "near_duplicate_clusters_found": report["near_duplicates"]["clusters"],
        "true_pairs_all_pairs_seconds": round(truth_seconds, 2),
    }
    return {"summary": summary, "clusters": rows, "sizes": report["near_duplicates"]["sizes"]}, judged, response


def pairs_vs_truth(judged: list[str], response: dict, sample: int, filters) -> dict:
    import numpy as np
    import pyarrow as pa

    from extraction.sessions import neardup
    from tests.kit.reference import similar_pairs
    from extraction.sessions.near_sessions import ND_BANDS, near_duplicate_pairs, verify_pairs

    rng = random.Random(5)
    ids = sorted(rng.sample(judged, min(sample, len(judged))))
    texts = pa.array([response[i] for i in ids], pa.string())
    k, t = filters.near_duplicate_shingle, filters.near_duplicate_threshold
    sets = {sid: neardup.shingle_set(response[sid], k) for sid in ids}
    sets = {sid: g for sid, g in sets.items() if g}
    truth = set(similar_pairs(sets, t))
    started = time.time()
    h, row = neardup.shingles(texts, k)
    sig, present = neardup.signatures(h, row, len(ids), filters.near_duplicate_bands * filters.near_duplicate_rows)
    keys = neardup.band_keys(sig, filters.near_duplicate_bands, filters.near_duplicate_rows)
    names = pa.array([ids[i] for i in present], pa.string())
    each = np.repeat(np.arange(len(present)), keys.shape[1])
    sizes = np.array([len(sets.get(ids[i], ())) for i in present])
    text_hash = neardup.text_hashes(*neardup.words(texts), len(ids))[present]
    bands = pa.table({"band": pa.array(keys.ravel(), pa.uint64()), "session_id": names.take(pa.array(each)),
                      "bucket": pa.array([0] * keys.size, pa.int64()), "shingles": pa.array(sizes[each], pa.int32()),
                      "text_hash": pa.array(text_hash[each], pa.uint64()),
                      "band_index": pa.array(np.tile(np.arange(keys.shape[1]), len(present)).astype(np.int8))}, schema=ND_BANDS)
    candidates, same = near_duplicate_pairs(bands, filters.near_duplicate_max_group, t)
    text_of = dict(zip(ids, neardup.normalize(texts).to_pylist()))  # (verify_pairs reads normalised texts)
    sketch_of = dict(zip(names.to_pylist(), (row.tobytes() for row in neardup.sketch(sig))))
    with_texts = candidates
    for side in ("a", "b"):
        members = with_texts.column(side).to_pylist()
        with_texts = with_texts.append_column(f"{side}_text", pa.array([text_of[x] for x in members], pa.string())) \
            .append_column(f"{side}_sketch", pa.array([sketch_of[x] for x in members], pa.binary()))
    verified = pa.concat_tables([verify_pairs(with_texts, k, t), same])
    seconds = time.time() - started
    links = list(zip(verified.column("a").to_pylist(), verified.column("b").to_pylist()))

    def clusters(pairs):
        members, roots = neardup.components(pa.array([a for a, _ in pairs], pa.string()), pa.array([b for _, b in pairs], pa.string()))
        return dict(zip(members.to_pylist(), roots.to_pylist()))

    true_root, found_root = clusters(sorted(truth)), clusters(links)
    root = lambda of, x: of.get(x, x)  # noqa: E731
    # a link is right when its two replies are alike by exact Jaccard; a true pair is found when the rule
    # puts its two replies in one cluster (equal texts are linked to one of them only, not pair by pair)
    right = sum(neardup.jaccard(sets[a], sets[b]) >= t for a, b in links)
    together = sum(root(found_root, a) == root(found_root, b) for a, b in truth)
    same_drop = sum(found_root.get(m) == r for m, r in true_root.items())
    return {"sample": len(ids), "with_shingles": len(sets), "true_pairs": len(truth), "candidate_pairs": candidates.num_rows,
            "links_found": len(links), "link_precision": round(right / max(1, len(links)), 5),
            "pair_recall": round(together / max(1, len(truth)), 5),
            "dropped_in_truth": len(true_root), "dropped_found": len(found_root),
            "dropped_recall": round(same_drop / max(1, len(true_root)), 5),
            "dropped_precision": round(sum(true_root.get(m) == r for m, r in found_root.items()) / max(1, len(found_root)), 5),
            "lsh_seconds": round(seconds, 2)}


def cost(comments: int, work: Path, spark, repeats: int = 2, master: str = "local[2]") -> dict:
    from extraction.sessions.job import ExtractConfig, run_extract
    from extraction.ingest.job import IngestConfig, run_ingest
    from extraction.spark import SparkConfig

    month = synthetic_month(comments, seed=0, megathreads=1, megathread_comments=min(100_000, comments // 10), deep_chains=1,
                            deep_chain_depth=3000)
    spark_cfg = SparkConfig(master=master, in_process_below_bytes=0)
    cores = spark.sparkContext.defaultParallelism
    run_ingest(IngestConfig(inputs=[str(month / "*.zst")], output=str(work / f"ingest_{comments}"), spark=spark_cfg), spark)
    rows = []
    plan = [("off", False), ("on", True)] * repeats + [("off again", False)]  # the machine's speed drifts: each side repeated
    for i, (name, on) in enumerate(plan):
        cfg = ExtractConfig(input=str(work / f"ingest_{comments}"), output=str(work / f"cost_{comments}_{i}_{name.replace(' ', '_')}"),
                            force=True, spark=spark_cfg)
        cfg.filters.bland_min_count = comments // 4000
        cfg.filters.near_duplicate = on
        started = time.time()
        with PeakMemory() as memory:
            report = run_extract(cfg, spark)
        own = sum(v for k, v in report["stage_seconds"].items() if k.startswith("near duplicates"))
        shared = sum(report["stage_seconds"].get(f"near duplicates: {k}", 0) for k in SHARED_STAGES)
        jobs = sum(v for k, v in report["job_seconds"].items() if k.startswith("near duplicates"))
        rows.append({"comments": comments, "run": name, "on": on, "seconds": round(time.time() - started, 2),
                     "rule task seconds": round(own, 2), "rule job seconds": round(jobs, 2),
                     "rule seconds in shared jobs": round(shared, 3),
                     "peak GiB": round(memory.peak / 2**30, 2), "kept": report["sessions"]["kept"],
                     "near dropped": {r["rule"]: r["out"] for r in report["rules"]}.get("near_duplicate_response", 0),
                     "stages": report["stage_seconds"], "jobs": report["job_seconds"]})
    off = min(r["seconds"] for r in rows if not r["on"])
    for r in rows:
        r["vs off"] = round(r["seconds"] / off, 3)
    on = min((r for r in rows if r["on"]), key=lambda r: r["seconds"])  # the fastest on against the fastest off
    return {"comments": comments, "runs": rows, "ratio_on_vs_off": on["vs off"],
            "rule_seconds_per_million": round((on["seconds"] - off) / comments * 1e6, 3),
            "rule_own_seconds_per_million": round((on["rule seconds in shared jobs"] / cores + on["rule job seconds"]) / comments * 1e6, 3),
            "master": master}


def longest_tokens(work: Path, spark, comments: int) -> dict:
    import pyarrow.parquet as pq
    from transformers import PreTrainedTokenizerFast

    from extraction.sessions.job import ExtractConfig, run_extract
    from extraction.spark import SparkConfig
    from extraction.tokenize.train_tokenizer import train_tokenizer

    spark_cfg = SparkConfig(master="local[2]", in_process_below_bytes=0)
    out = {}
    for mode in ("leaves", "longest"):
        cfg = ExtractConfig(input=str(work / f"ingest_{comments}"), output=str(work / f"mode_{mode}"), force=True, spark=spark_cfg)
        cfg.filters.bland_min_count = comments // 4000
        cfg.chains.mode = mode
        report = run_extract(cfg, spark)
        out[mode] = {"kept": report["sessions"]["kept"]}
    train_tokenizer(str(work / "mode_leaves" / "sessions"), str(work / "bpe"), vocab_size=8192)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(work / "bpe"))
    for mode in out:
        turns = pq.read_table(work / f"mode_{mode}" / "sessions", columns=["turns"]).column("turns").to_pylist()
        texts = [tokenizer.eos_token.join(t) + tokenizer.eos_token for t in turns]
        tokens = sum(len(ids) for start in range(0, len(texts), 20_000)
                     for ids in tokenizer(texts[start:start + 20_000])["input_ids"])
        out[mode].update(tokens=tokens, words=sum(len(x.split()) for t in turns for x in t))
    out["tokens_saved"] = out["leaves"]["tokens"] - out["longest"]["tokens"]
    out["share_saved"] = round(out["tokens_saved"] / max(1, out["leaves"]["tokens"]), 4)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--comments", type=int, default=200_000, help="comments of the planted month")
    parser.add_argument("--clusters", type=int, default=40)
    parser.add_argument("--sample", type=int, default=20_000)
    parser.add_argument("--cost-comments", type=int, default=1_000_000, help="0: no cost runs")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2, help="cost runs: off and on this many times each, then off")
    parser.add_argument("--master", default="local[2]",
                        help="Spark master of the cost runs; another than local[2] writes neardup_<master>.json and "
                             "leaves out chains.mode=longest (local[1]: no core idles while another works, so the wall "
                             "difference is the rule's work)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-neardup-"))
    print(f"machine: {machine()}")
    result = {"machine": machine()}
    if args.comments:
        quality, judged, response = planted(args.comments, args.clusters, work)
        print(table(quality["clusters"], ["cluster", "members", "min jaccard", "responses judged", "kept", "dropped as near duplicate"]))
        print(table([{"what": k, "value": v} for k, v in quality["summary"].items()], ["what", "value"]))
        print("cluster sizes found:", quality["sizes"])
        from extraction.sessions.filters import FiltersConfig

        truth = pairs_vs_truth(judged, response, args.sample, FiltersConfig())
        print(table([{"what": k, "value": v} for k, v in truth.items()], ["what", "value"]))
        result.update(planted=quality, pairs_vs_truth=truth)
    default_master = args.master == "local[2]"
    if args.cost_comments:
        from extraction.spark import SparkConfig, build_spark

        spark = build_spark(SparkConfig(master=args.master, in_process_below_bytes=0))
        main_cost = cost(args.cost_comments, work, spark, args.repeats, args.master)
        if default_master:
            result["longest"] = longest_tokens(work, spark, args.cost_comments)
        scaled = cost(args.cost_comments * args.scale, work, spark, args.repeats, args.master) if args.scale > 1 else None
        rows = main_cost["runs"] + (scaled["runs"] if scaled else [])
        print(table(rows, ["comments", "run", "seconds", "vs off", "rule task seconds", "rule job seconds", "peak GiB", "kept",
                           "near dropped"]))
        result.update(cost=main_cost, cost_scaled=scaled)
        if scaled:
            result["rule_cost_per_comment_scaled_vs_main"] = round(
                scaled["rule_seconds_per_million"] / max(1e-9, main_cost["rule_seconds_per_million"]), 3)
            result["rule_own_cost_per_comment_scaled_vs_main"] = round(
                scaled["rule_own_seconds_per_million"] / max(1e-9, main_cost["rule_own_seconds_per_million"]), 3)
            print(f"the rule's seconds per comment at {args.scale}x against 1x: wall difference "
                  f"{result['rule_cost_per_comment_scaled_vs_main']}, its own stages {result['rule_own_cost_per_comment_scaled_vs_main']}")
        if "longest" in result:
            print("chains.mode=longest against leaves:", result["longest"])
    name = "neardup" if default_master else "neardup_" + "".join(c for c in args.master if c.isalnum())
    path = write_results(name, result)
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
