"""Chains, session rules, corpus rules and splits of ``extraction.sessions.reddit_threads`` (no Spark needed):
hand-written threads, and every session of generated months against the plain-Python reference."""

import numpy as np
import pyarrow as pa
import pytest

from extraction.sessions.chains import ChainsConfig, SplitConfig, hash_split
from extraction.sessions.job import ExtractConfig
from extraction.sessions.report import merge_reports
from extraction.sessions.filters import FiltersConfig
from extraction.ingest.records import COMMENT_SCHEMA, SUBMISSION_SCHEMA
from extraction.sessions.privacy import Privacy
from tests.kit.reference import reference_extract
from extraction.sessions.corpus_rules import resolve_duplicates
from extraction.sessions.thread_keys import dedupe_by_id, thread_bucket
from tests.kit.local import run_local

COMMENTS = COMMENT_SCHEMA.remove(COMMENT_SCHEMA.get_field_index("month"))
SUBMISSIONS = SUBMISSION_SCHEMA.remove(SUBMISSION_SCHEMA.get_field_index("month"))
FIELDS = ("link_id", "subreddit", "turn_ids", "turns", "authors", "scores", "created_utc", "num_turns", "has_title",
          "over_18", "chain_end", "drop_reason", "split", "language", "language_confidence", "duplicate_of")


def comment(cid, parent, link="L", body=None, author="alice", score=3, ts=1420070400):
    kind = "submission" if parent == link else "comment"
    return {"id": cid, "link_id": link, "parent_id": parent, "parent_kind": kind, "subreddit": "AskReddit", "author": author,
            "body": body or f"it is reply {cid} to the thing", "score": score, "created_utc": ts}


def run(rows, chains=ChainsConfig(), filters=FiltersConfig(bland=False), split=SplitConfig(), submissions=None, buckets=1):
    comments = pa.Table.from_pylist(rows, schema=COMMENTS)
    subs = pa.Table.from_pylist(submissions, schema=SUBMISSIONS) if submissions is not None else None
    sessions, built, finished = run_local(comments, subs, chains, filters, split, buckets)
    return {r["session_id"]: r for r in sessions.to_pylist()}, built, finished


def test_leaf_sessions_walk_to_the_root():
    s, _, _ = run([comment("a", "L"), comment("b", "a"), comment("c", "b"), comment("d", "a")])
    assert sorted(s) == ["c", "d"]  # leaves only
    assert s["c"]["turn_ids"] == ["a", "b", "c"] and s["c"]["chain_end"] == "root" and s["c"]["drop_reason"] is None
    assert s["d"]["turn_ids"] == ["a", "d"]
    assert s["c"]["turns"] == ["it is reply a to the thing", "it is reply b to the thing", "it is reply c to the thing"]


def test_replies_mode_gives_one_session_per_reply():
    s, _, _ = run([comment("a", "L"), comment("b", "a"), comment("c", "b")], ChainsConfig(mode="replies"))
    assert {k: v["turn_ids"] for k, v in s.items()} == {"a": ["a"], "b": ["a", "b"], "c": ["a", "b", "c"]}
    assert s["a"]["drop_reason"] == "min_turns" and s["b"]["drop_reason"] is None


def test_longest_mode_gives_one_session_per_chain_head():
    """a -> b (leaf), a -> c -> d -> e (leaf), c -> f (leaf): one session for top-level a, its longest
    path; g -> h, g -> i (a tie: the smaller id); j -> [deleted] k -> l -> m: the cut makes l a head."""
    rows = [comment("a", "L"), comment("b", "a"), comment("c", "a"), comment("d", "c"), comment("e", "d"), comment("f", "c"),
            comment("g", "L"), comment("i", "g"), comment("h", "g"),
            comment("j", "L"), comment("k", "j", body="[deleted]"), comment("l", "k"), comment("m", "l")]
    s, _, _ = run(rows, ChainsConfig(mode="longest"))
    assert {k: v["turn_ids"] for k, v in s.items()} == {"e": ["a", "c", "d", "e"], "h": ["g", "h"], "m": ["l", "m"], "j": ["j"]}
    assert s["j"]["drop_reason"] == "min_turns"  # (its only reply is deleted: j is a leaf of one turn)
    leaves, _, _ = run(rows)
    assert sorted(leaves) == ["b", "e", "f", "h", "i", "j", "m"]


def test_deep_chain_keeps_the_last_turns_or_is_dropped():
    rows = [comment("c0", "L")] + [comment(f"c{i}", f"c{i - 1}") for i in range(1, 3000)]
    s, _, _ = run(rows)
    assert list(s) == ["c2999"]
    assert s["c2999"]["turn_ids"] == [f"c{i}" for i in range(2995, 3000)]
    assert s["c2999"]["chain_end"] == "truncated" and s["c2999"]["drop_reason"] is None
    dropped, _, _ = run(rows, ChainsConfig(long_chains="drop"))
    assert dropped["c2999"]["drop_reason"] == "max_turns"


def test_deleted_middle_turn_cuts_the_chain_and_both_halves_are_used():
    rows = [comment("a", "L"), comment("b", "a"), comment("x", "b", body="[deleted]", author="[deleted]"),
            comment("c", "x"), comment("d", "c"), comment("e", "d")]
    s, _, _ = run(rows)
    assert s["e"]["turn_ids"] == ["c", "d", "e"] and s["e"]["chain_end"] == "cut_deleted"
    assert s["b"]["turn_ids"] == ["a", "b"]  # the deleted reply no longer makes b an inner node
    assert "x" not in s


def test_orphans_and_parents_in_another_thread_cut_the_chain():
    s, _, _ = run([comment("b", "missing"), comment("c", "b")])
    assert s["c"]["turn_ids"] == ["b", "c"] and s["c"]["chain_end"] == "missing_parent"
    lone, _, _ = run([comment("z", "gone")])
    assert lone["z"]["drop_reason"] == "min_turns"
    # A parent id that exists, but in another thread, is no parent (Reddit never links across threads).
    cross, _, _ = run([comment("p", "M", link="M"), comment("q", "p", link="L"), comment("r", "q", link="L")])
    assert cross["r"]["turn_ids"] == ["q", "r"] and cross["r"]["chain_end"] == "missing_parent"


def test_megathread_and_bot_cut():
    rows = [comment(f"t{i}", "L") for i in range(400)] + [comment(f"r{i}", f"t{i}") for i in range(400)]
    rows.append(comment("bot1", "t0", author="AutoModerator"))
    s, _, _ = run(rows)
    assert len(s) == 400 and all(v["num_turns"] == 2 for v in s.values())


def test_title_and_selftext():
    rows = [comment("a", "L"), comment("b", "a")]
    subs = [{"id": "L", "subreddit": "AskReddit", "author": "op", "title": "What is your favourite book", "selftext": "Mine is Dune",
             "over_18": False, "num_comments": 2, "score": 10, "created_utc": 1420070000}]
    off, _, _ = run(rows, submissions=subs)
    on, _, _ = run(rows, ChainsConfig(include_title=True), submissions=subs)
    both, _, _ = run(rows, ChainsConfig(include_title=True, include_selftext=True), submissions=subs)
    assert off["b"]["turn_ids"] == ["a", "b"] and off["b"]["has_title"] is False and off["b"]["over_18"] is False
    assert on["b"]["turn_ids"] == ["t3_L", "a", "b"] and on["b"]["turns"][0] == "What is your favourite book"
    assert on["b"]["has_title"] is True and on["b"]["authors"][0] == "op" and on["b"]["scores"][0] == 10
    assert both["b"]["turns"][0] == "What is your favourite book\n\nMine is Dune"
    # A chain that is cut (not reaching the top level) gets no title; no submission, no over_18.
    cut, _, _ = run([comment("q", "gone"), comment("r", "q")], ChainsConfig(include_title=True), submissions=subs)
    assert cut["r"]["has_title"] is False
    none, _, _ = run(rows)
    assert none["b"]["over_18"] is None


def test_duplicates_keep_the_smallest_session_id():
    keys = pa.table({"_rkey": pa.array([7, 7, 7, 9], pa.uint64()), "_skey": pa.array([1, 1, 2, 3], pa.uint64()),
                     "session_id": ["s3", "s1", "s2", "s4"], "bucket": [0, 1, 0, 1]})
    out = {r["session_id"]: r["reason"] for r in resolve_duplicates(keys, True, True).to_pylist()}
    assert out == {"s3": "duplicate_session", "s2": "duplicate_response"}
    assert {r["session_id"] for r in resolve_duplicates(keys, False, True).to_pylist()} == {"s2", "s3"}
    assert resolve_duplicates(keys, False, False).num_rows == 0
    # The same through the whole path, across buckets: identical sessions in two threads.
    rows = [comment("a1", "L1", link="L1", body="what do you think of it"), comment("b1", "a1", link="L1", body="it is the same answer"),
            comment("a2", "L2", link="L2", body="what do you think of it"), comment("b2", "a2", link="L2", body="it is the same answer"),
            comment("a3", "L3", link="L3", body="and another question here"), comment("b3", "a3", link="L3", body="it is the same answer")]
    s, _, _ = run(rows, filters=FiltersConfig(bland=False), buckets=3)
    assert {k: v["drop_reason"] for k, v in s.items()} == {"b1": None, "b2": "duplicate_session", "b3": "duplicate_response"}


def test_splits_are_by_thread_and_deterministic():
    rows = [comment(f"c{i}", f"L{i % 50}", link=f"L{i % 50}", ts=1420070400 + 86400 * (i % 50)) for i in range(500)]
    cfg = SplitConfig(valid_fraction=0.1, test_fraction=0.1)
    s, _, _ = run(rows, ChainsConfig(mode="replies", min_turns=1), split=cfg)
    assert all(v["split"] == hash_split(v["link_id"], cfg) for v in s.values())
    assert {v["split"] for v in s.values()} == {"train", "valid", "test"}
    by_date, _, _ = run(rows, ChainsConfig(mode="replies", min_turns=1),
                        split=SplitConfig(method="date", valid_from="2015-01-20", test_from="2015-02-10"))
    for v in by_date.values():
        day = (v["created_utc"][0] - 1420070400) // 86400  # the thread's first comment is its only one
        assert v["split"] == ("test" if day >= 40 else "valid" if day >= 19 else "train")


def test_dedupe_by_id_keeps_one_row_per_id_deterministically():
    t = pa.table({"id": ["a", "a", "b", "a"], "body": ["x", "w", "z", "x"], "score": [2, 9, 1, 1]})
    out, repeats = dedupe_by_id(t)
    assert sorted(map(tuple, (r.values() for r in out.to_pylist()))) == [("a", "w", 9), ("b", "z", 1)]
    assert repeats == 2 and out.column_names == ["id", "body", "score"]


def test_thread_bucket_is_stable_and_spreads():
    ids = pa.array([f"t{i}" for i in range(10_000)])
    b = thread_bucket(ids, 16)
    assert np.array_equal(b, thread_bucket(ids, 16)) and b.min() == 0 and b.max() == 15
    assert np.bincount(b).min() > 10_000 / 16 * 0.8
    assert thread_bucket(pa.array(["t7"]), 16)[0] == b[7]


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """A generated month (every quirk of the generator) as Arrow tables, without Spark."""
    import zstandard

    from extraction.ingest.columns import parse_block
    from reddit_pretrain_app.synth import SynthConfig, write_month

    root = tmp_path_factory.mktemp("threads")
    write_month(str(root), SynthConfig(comments=8000, seed=17, megathreads=1, megathread_comments=800, deep_chains=1,
                                       deep_chain_depth=300, p_url=0.08, p_markup=0.08, p_pii=0.03, p_mention=0.02,
                                       p_foreign_thread=0.05, copypasta_clusters=6))
    tables = {}
    for kind in ("RC", "RS"):
        with open(root / f"{kind}_2015-01.zst", "rb") as f:
            lines = zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(f).read().splitlines()
        rows = parse_block(kind, f"{kind}_2015-01.zst", 1, lines).rows
        tables[kind] = pa.Table.from_batches([rows]).drop_columns(["month"])
    # Overlapping dumps: a few ids twice, one with a different body.
    extra = tables["RC"].slice(0, 40).to_pylist()
    extra[0]["body"] = "a different body for the same id"
    return pa.concat_tables([tables["RC"], pa.Table.from_pylist(extra, schema=tables["RC"].schema)]), tables["RS"]


def preset(name: str, **filters):
    """ChainsConfig and FiltersConfig of conf/preset/<name>.yaml (``filters`` set on top)."""
    from omegaconf import OmegaConf

    from reddit_pretrain import CONF_DIR

    values = OmegaConf.load(f"{CONF_DIR}/preset/{name}.yaml")
    return (OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ChainsConfig), values.chains)),
            OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(FiltersConfig), values.filters, filters)))


CONFIGS = {
    "default": (ChainsConfig(), FiltersConfig(bland_min_count=15), SplitConfig(valid_fraction=0.1, test_fraction=0.1), True),
    "replies-titles-date": (ChainsConfig(mode="replies", include_title=True, include_selftext=True, max_turns=4, long_chains="drop"),
                            FiltersConfig(bland_min_count=8, bland_fraction=0.5),
                            SplitConfig(method="date", valid_from="2015-01-20", test_from="2015-01-26"), True),
    "comments-only": (ChainsConfig(include_title=True, max_turns=3), FiltersConfig(bland=False, duplicate_response=False,
                                                                                   markup=False, min_score=False), SplitConfig(), False),
    "longest-titles": (ChainsConfig(mode="longest", include_title=True, max_turn_words=40), FiltersConfig(bland_min_count=15),
                       SplitConfig(), True),
    "dialogpt-released": (*preset("dialogpt_released"), SplitConfig(), True),
    "dialogpt-paper": (*preset("dialogpt_paper", bland_min_count=15), SplitConfig(), True),
}


CONFIGS["near-sessions"] = (ChainsConfig(), FiltersConfig(bland_min_count=15, near_duplicate=False, near_duplicate_session=True),
                            SplitConfig(), True)
CONFIGS["near-both-titles"] = (ChainsConfig(include_title=True, max_turns=3), FiltersConfig(bland=False, near_duplicate_session=True),
                               SplitConfig(), True)


PRIVATE = Privacy(scrub_pii=True, pseudonymize_authors=True, salt="test salt")
CONFIGS["default-private"] = (*CONFIGS["default"], PRIVATE)
CONFIGS["replies-titles-date-private"] = (*CONFIGS["replies-titles-date"], PRIVATE)


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("buckets", [1, 5])
def test_every_session_and_the_accounting_match_the_reference(generated, name, buckets):
    comments, submissions = generated
    chains, filters, split, use_subs, *private = CONFIGS[name]
    privacy = private[0] if private else None
    subs = submissions if use_subs else None
    sessions, built, finished = run_local(comments, subs, chains, filters, split, buckets, privacy)
    got = {r["session_id"]: r for r in sessions.to_pylist()}
    ref, accounting = reference_extract(comments.to_pylist(), subs.to_pylist() if subs is not None else None, chains, filters,
                                        split, privacy)
    assert set(got) == set(ref)
    for sid, expected in ref.items():
        assert {f: got[sid][f] for f in FIELDS} == {f: expected[f] for f in FIELDS}, sid
    reasons = {r["drop_reason"] for r in ref.values()}
    assert {"min_turns", "url"} <= reasons and (not filters.bland or "bland" in reasons)
    assert not filters.thread_comments or "thread_comments" in reasons
    assert not filters.language or "language" in reasons
    assert not filters.near_duplicate or "near_duplicate_response" in reasons
    assert not filters.near_duplicate_session or "near_duplicate_session" in reasons
    report = merge_reports(ExtractConfig(chains=chains, filters=filters, split=split), built, finished)
    assert report["comments"] == accounting
    if privacy is not None:
        import re

        assert all(report["comments"]["pii_masked"][k] > 0 for k in ("email", "phone", "ip"))
        stored = [t for s in got.values() for t in s["turns"] if t]
        assert not [t for t in stored if re.search(r"@gmail\.com|\bu/user[0-9]+|\b[0-9]{3}-[0-9]{4}\b", t)]
        assert any("<EMAIL>" in t for t in stored) and any("<PHONE>" in t for t in stored) and any("<IP>" in t for t in stored)
        authors = {a for s in got.values() for a in s["authors"]}
        assert authors and all(a is None or a == "[deleted]" or re.fullmatch("[0-9a-f]{16}", a) for a in authors)
    assert report["sessions"]["kept"] == sum(r["drop_reason"] is None for r in ref.values())
    assert {r["rule"]: r["out"] for r in report["rules"]} == {
        rule: sum(r["drop_reason"] == rule for r in ref.values()) for rule in {r["rule"] for r in report["rules"]}}


def test_every_rule_drops_a_hand_written_session_as_the_reference_does():
    """One thread per rule, each failing that rule only at its response; the vectorised stages and
    the plain-Python reference agree on every session, and every rule is seen to fire."""
    from extraction.sessions.chains import ALL_SESSION_REASONS

    def thread(link, reply, context="what do you think about the weather today", subreddit="AskReddit", score=3,
               author="bob"):
        rows = [comment(f"{link}a", link, link=link, body=context), comment(f"{link}b", f"{link}a", link=link, body=reply,
                                                                           score=score, author=author)]
        for r in rows:
            r["subreddit"] = subreddit
        return rows

    rows = (thread("L1", "it is fine", subreddit="circlejerk") + thread("L2", "it is fine", subreddit="gonewild")
            + thread("L3", "see www.example.com for it") + thread("L4", "it is [fine]")
            + thread("L5", "it is " + " ".join(["fine"] * 199)) + thread("L6", "it is fine", context="a" * 31 + " the weather")
            + thread("L7", "it is FINE TODAY") + thread("L8", "fine") + thread("L9", "it is is is fine")
            + thread("L10", "voilà très bien merci") + thread("L11", "you kill yourself then") + thread("L12", "it is fine", score=0)
            + thread("L13", "what do you think about the weather")
            + thread("L14", "so it goes then") + thread("L15", "so it goes then")  # the same session twice
            + thread("L16", "so it goes then", context="and what about tomorrow then"))  # the same response
    rows += [comment("L17a", "L17", link="L17", body="a lone top-level comment")]
    rows += [comment(f"L18{i}", f"L18{i - 1}" if i else "L18", link="L18") for i in range(8)]
    rows += thread("L19", "it is fine but few")
    rows += thread("L20", "Je ne suis pas d'accord avec toi, mais il a vraiment une bonne idée.",
                   context="Quelqu'un sait où on peut acheter ça ? Merci pour le partage.")  # the language rule
    pasta = ("my grandfather told me this story when i was a boy and i have never forgotten a single word of it since "
             "that long summer we spent at the lake house by the old mill")
    rows += thread("L21", pasta) + thread("L22", pasta + " truly")  # near duplicates: one word appended
    story = ("we drove up the coast road last spring with the windows down and the radio on and stopped at every small "
             "town bakery we could find because my sister had read that the best bread in the country was somewhere "
             "along that road and she was determined to find it before the week was over so we ate a great deal of bread "
             "and saw very little of anything else")
    rows += thread("L23", "i think you are right about that", context=story)  # the same exchange, the reply reworded:
    rows += thread("L24", "no that is not how it works", context=story)      # near-duplicate sessions, not replies
    rows += thread("L25", "well that is a fine thing to say about it")
    rows[-1]["collapsed_reason_code"] = "POTENTIALLY_TOXIC"  # Reddit's own tag (today's dumps)
    subs = [{"id": f"L{i}", "subreddit": "AskReddit", "author": "op", "title": "t", "selftext": "", "over_18": False,
             "num_comments": 1 if i == 19 else 5, "score": 1, "created_utc": 1420070000} for i in range(1, 26)]
    comments = pa.Table.from_pylist(rows, schema=COMMENTS)
    submissions = pa.Table.from_pylist(subs, schema=SUBMISSIONS)
    filters = FiltersConfig(bland_min_count=3, bland_fraction=0.5, thread_comments=True, near_duplicate_session=True)
    chains = ChainsConfig(long_chains="drop")
    ref, _ = reference_extract(comments.to_pylist(), subs, chains, filters, SplitConfig())
    for buckets in (1, 4):
        sessions, _, _ = run_local(comments, submissions, chains, filters, SplitConfig(), buckets)
        got = {r["session_id"]: r for r in sessions.to_pylist()}
        assert {k: v["drop_reason"] for k, v in got.items()} == {k: v["drop_reason"] for k, v in ref.items()}
    reasons = {v["drop_reason"] for v in ref.values()}
    assert (ref["L24b"]["drop_reason"], ref["L24b"]["duplicate_of"]) == ("near_duplicate_session", "L23b")
    # (the classifier rule needs a model: tests/extraction/test_classifier.py trains two and checks it the same way)
    assert set(ALL_SESSION_REASONS) - {"classifier"} <= reasons, set(ALL_SESSION_REASONS) - reasons


def test_html_entities_are_undone_once_before_the_rules_and_in_the_sessions():
    rows = [comment("a", "L", body="Tom &amp; Jerry &lt;3 it is the best"), comment("b", "a", body="&gt; Tom\nit is a quote"),
            comment("c", "a", body="you typed &amp;gt; and it is fine"), comment("d", "c", body="it is 5 &gt; 3 is it not")]
    ref, _ = reference_extract(rows, None, ChainsConfig(), FiltersConfig(bland=False), SplitConfig())
    s, _, _ = run(rows)
    assert s["d"]["turns"] == ["Tom & Jerry <3 it is the best", "you typed &gt; and it is fine", "it is 5 > 3 is it not"]
    assert "b" not in s  # a quote once unescaped: cut by the quote rule
    assert {k: v["turns"] for k, v in s.items()} == {k: v["turns"] for k, v in ref.items()}
    raw, _, _ = run(rows, filters=FiltersConfig(bland=False, unescape_html=False))
    assert raw["d"]["turns"][0] == "Tom &amp; Jerry &lt;3 it is the best"


def test_a_removed_or_deleted_self_text_counts_as_absent():
    rows = [comment("a", "L"), comment("b", "a")]
    sub = {"id": "L", "subreddit": "AskReddit", "author": "op", "title": "Q &amp; A", "over_18": False, "num_comments": 2,
           "score": 1, "created_utc": 1420070000}
    chains = ChainsConfig(include_title=True, include_selftext=True)
    for self_text, expected in (("[removed]", "Q & A"), (" [deleted] ", "Q & A"), ("", "Q & A"), (None, "Q & A"),
                                ("Body &gt; all", "Q & A\n\nBody > all")):
        subs = [{**sub, "selftext": self_text}]
        s, _, _ = run(rows, chains, submissions=subs)
        ref, _ = reference_extract(rows, subs, chains, FiltersConfig(bland=False), SplitConfig())
        assert s["b"]["turns"][0] == ref["b"]["turns"][0] == expected, self_text


@pytest.mark.parametrize("mode", ["leaves", "replies"])
def test_parent_cycles_are_cut_and_counted_never_walked(mode):
    """A comment that is its own parent, and A -> B -> A (with replies below the loop, in a thread of
    its own each): no session holds a comment twice, the walk stops at the loop (``parent_cycle``),
    the report counts the comments on loops, and the reference agrees."""
    rows = [comment("self1", "self1", link="S"), comment("self2", "self1", link="S"),
            comment("ca1", "cb1", link="C"), comment("cb1", "ca1", link="C"), comment("cc1", "ca1", link="C"),
            comment("cd1", "cc1", link="C"),
            comment("x1", "x3", link="X"), comment("x2", "x1", link="X"), comment("x3", "x2", link="X"),
            comment("x4", "x3", link="X"), comment("ok1", "L"), comment("ok2", "ok1")]
    for r in rows:
        r["parent_kind"] = "comment" if r["parent_id"] != r["link_id"] else "submission"
    chains = ChainsConfig(mode=mode)
    s, built, finished = run(rows, chains)
    for sid, session in s.items():
        assert len(session["turn_ids"]) == len(set(session["turn_ids"])), (sid, session["turn_ids"])
    assert s["self2"]["turn_ids"] == ["self1", "self2"] and s["self2"]["chain_end"] == "parent_cycle"
    assert s["cd1"]["turn_ids"] == ["ca1", "cc1", "cd1"] and s["cd1"]["chain_end"] == "parent_cycle"
    assert s["x4"]["turn_ids"] == ["x3", "x4"] and s["ok2"]["chain_end"] == "root"
    ref, accounting = reference_extract(rows, None, chains, FiltersConfig(bland=False), SplitConfig())
    assert {k: (v["turn_ids"], v["chain_end"], v["drop_reason"]) for k, v in s.items()} == \
        {k: (v["turn_ids"], v["chain_end"], v["drop_reason"]) for k, v in ref.items()}
    report = merge_reports(ExtractConfig(chains=chains, filters=FiltersConfig(bland=False)), built, finished)
    assert report["comments"]["parent_cycles"] == accounting["parent_cycles"] == 6  # self1, ca1, cb1, x1, x2, x3
    assert report["comments"] == accounting


def test_cycle_members_of_a_parent_array():
    from extraction.sessions.thread_keys import cycle_members

    pidx = np.array([0, 0, 3, 2, 3, -1, 5, 8, 9, 7, 9])
    assert cycle_members(pidx).tolist() == [True, False, True, True, False, False, False, True, True, True, False]
    assert cycle_members(np.array([], dtype=np.int64)).tolist() == []


def test_moderator_notes_cut_the_chain_as_the_reference_does():
    """Today's marks: a comment a moderator distinguished, or a stickied one, cuts the chain (its
    replies start their own); months without the marks (null) are not affected; the DialoGPT presets
    leave the rule off."""
    import os

    import yaml

    from reddit_pretrain import CONF_DIR

    rows = [comment("m", "L", body="Please read the rules of this subreddit before you post here"),
            comment("u1", "m", body="i did read them and i still have a question"),
            comment("u2", "u1", body="then ask it in the weekly thread please"),
            comment("a", "L", body="what do you think about the weather today"),
            comment("d", "a", body="removed for breaking rule two of this sub"),
            comment("b", "d", body="that seems a bit harsh to me honestly"),
            comment("c", "b", body="agreed it was not that bad of a reply")]
    rows[0].update(stickied=True, distinguished="moderator")
    rows[4]["distinguished"] = "moderator"
    comments = pa.Table.from_pylist(rows, schema=COMMENTS)
    ref, accounting = reference_extract(comments.to_pylist(), None, ChainsConfig(), FiltersConfig(bland=False), SplitConfig())
    got, built, _ = run(rows)
    assert {k: (v["turn_ids"], v["chain_end"]) for k, v in got.items()} == \
        {k: (v["turn_ids"], v["chain_end"]) for k, v in ref.items()}
    assert got["u2"]["turn_ids"] == ["u1", "u2"] and got["u2"]["chain_end"] == "cut_moderator"
    assert got["c"]["turn_ids"] == ["b", "c"] and "d" not in got and "m" not in got
    assert sum(b["stats"]["cut_by_turn_rule"]["moderator"] for b in built) == accounting["cut_by_turn_rule"]["moderator"] == 2
    unmarked, _, _ = run([{k: v for k, v in r.items() if k not in ("stickied", "distinguished")} for r in rows])
    assert unmarked["c"]["turn_ids"][0] == "a"  # no marks: nothing cut
    for preset in ("dialogpt_released", "dialogpt_paper"):
        with open(os.path.join(CONF_DIR, "preset", f"{preset}.yaml")) as f:
            on = yaml.safe_load(f)["filters"]["rules"]
        assert "moderator" not in on


def test_reddits_toxic_mark_drops_the_session_as_the_reference_does():
    rows = [comment("a", "L", body="what do you think about the weather today"),
            comment("b", "a", body="you are an idiot and so is your weather"),
            comment("c", "a", body="it is sunny and warm where i live today"),
            comment("d", "c", body="that sounds lovely i wish it was here too")]
    rows[1]["collapsed_reason_code"] = "POTENTIALLY_TOXIC"
    rows[3]["collapsed_reason_code"] = "LOW_SCORE"  # another reason: not Reddit's toxic tag
    comments = pa.Table.from_pylist(rows, schema=COMMENTS)
    ref, _ = reference_extract(comments.to_pylist(), None, ChainsConfig(), FiltersConfig(bland=False), SplitConfig())
    got, _, _ = run(rows)
    assert {k: v["drop_reason"] for k, v in got.items()} == {k: v["drop_reason"] for k, v in ref.items()} \
        == {"b": "toxic_mark", "d": None}
    off, _, _ = run(rows, filters=FiltersConfig(bland=False, toxic_mark=False))
    assert off["b"]["drop_reason"] is None


def test_the_earliest_copy_is_kept_not_the_smallest_id():
    """Exact and near duplicates keep the earliest session (its reply's created_utc), ties by the id
    read as a base-36 number: ids stopped following time (2026), and c13 is older than c1000."""
    later, early = 1700000900, 1700000100
    q, a = "what do you think of it", "it is the same answer as everyone gives"
    rows = [comment("a1", "L1", link="L1", body=q, ts=later), comment("b1", "a1", link="L1", body=a, ts=later),   # smaller id, later
            comment("zz", "L2", link="L2", body=q, ts=early), comment("zy", "zz", link="L2", body=a, ts=early),   # larger id, earlier
            comment("c1000", "L3", link="L3", body="and another question here", ts=early),
            comment("c1001", "c1000", link="L3", body=a, ts=early),
            comment("c12", "L4", link="L4", body="and another question here", ts=early),
            comment("c13", "c12", link="L4", body=a, ts=early)]
    pasta = ("my grandfather told me this story when i was a boy and i have never forgotten a single word of it since "
             "that long summer we spent at the lake house by the old mill")
    rows += [comment("n1", "L5", link="L5", body="tell me a story", ts=later), comment("n2", "n1", link="L5", body=pasta + " truly", ts=later),
             comment("p1", "L6", link="L6", body="tell me another", ts=early), comment("p2", "p1", link="L6", body=pasta, ts=early)]
    filters = FiltersConfig(bland=False)
    comments = pa.Table.from_pylist(rows, schema=COMMENTS)
    ref, _ = reference_extract(comments.to_pylist(), None, ChainsConfig(), filters, SplitConfig())
    for buckets in (1, 3):
        got, _, _ = run(rows, filters=filters, buckets=buckets)
        decided = {k: (v["drop_reason"], v["duplicate_of"]) for k, v in got.items()}
        assert decided == {k: (v["drop_reason"], v["duplicate_of"]) for k, v in ref.items()}
        assert decided["zy"] == (None, None) and decided["b1"] == ("duplicate_session", "zy")
        assert decided["c13"] == ("duplicate_response", "zy")  # the same reply, the earliest of all
        assert decided["c1001"] == ("duplicate_session", "c13")  # the same second: c13 is the smaller base-36 number
        assert decided["p2"] == (None, None) and decided["n2"] == ("near_duplicate_response", "p2")


def test_longest_mode_keeps_the_earliest_of_the_longest_leaves():
    """Ties of chains: of two leaves as deep, the earlier (not the smaller id), as the reference does."""
    rows = [comment("g", "L", ts=1700000000), comment("i", "g", ts=1700000100), comment("h", "g", ts=1700000200),
            comment("k", "L", ts=1700000000), comment("c1000", "k", ts=1700000300), comment("c13", "k", ts=1700000300)]
    comments = pa.Table.from_pylist(rows, schema=COMMENTS)
    ref, _ = reference_extract(comments.to_pylist(), None, ChainsConfig(mode="longest"), FiltersConfig(bland=False), SplitConfig())
    got, _, _ = run(rows, ChainsConfig(mode="longest"))
    assert sorted(got) == sorted(ref) == ["c13", "i"]  # i is earlier than h; c13 is the smaller base-36 number
