"""The near-duplicate machinery piece by piece (the whole rule against the reference: test_threads.py)."""

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from extraction.sessions import neardup

REPO = Path(__file__).resolve().parents[2]


def test_texts_are_compared_without_case_punctuation_markup_or_emoji():
    texts = ["**The QUICK brown fox** jumps, over the lazy dog!", "the quick brown fox jumps over the lazy dog 🔥",
             "  the\tquick\nbrown fox jumps over the lazy dog", None, "¿Qué tal? Très bien"]
    assert neardup.normalize(pa.array(texts)).to_pylist() == ["the quick brown fox jumps over the lazy dog"] * 3 + \
        ["", "qué tal très bien"]
    sets = [neardup.shingle_set(t, 5) for t in texts]
    assert sets[0] == sets[1] == sets[2] and len(sets[0]) == 5 and sets[3] == set()
    assert neardup.shingle_set("only four words here", 5) == set()  # short replies have no shingle: not judged
    assert len(neardup.shingle_set("one two three four five", 5)) == 1


def test_ascii_texts_are_normalised_in_numpy_as_the_regex_does():
    """``normalize`` does ASCII texts byte by byte: the same texts as Arrow's lower-casing and one RE2
    replacement (``_normalize_unicode``), in any mix with other texts, nulls, empty texts and slices."""
    import pyarrow.compute as pc

    rng = np.random.default_rng(2)
    pieces = ["a", "Zq", "9", " ", "  ", "\t", "\n", "-", "_", ".", "'", "\x00", "\x7f", "~", "\r", "é", "Ä", "🙂", "ß", "İ"]
    texts = ["".join(rng.choice(pieces[:15] if i % 3 else pieces, rng.integers(0, 25))) for i in range(5000)]
    texts += ["", " ", "   a   ", None, "A", "a!", "!a", "x " * 5, "ONE two", "\u00a0a\u00a0b"]
    column = pa.array(texts, pa.string())
    for part in (column, column.slice(37, 2000), pa.array([t for t in texts if t is None or t.isascii()], pa.string())):
        expected = neardup._normalize_unicode(pc.fill_null(part, "")).to_pylist()
        assert neardup.normalize(part).to_pylist() == expected
        assert neardup.normalize(pa.chunked_array([part])).to_pylist() == expected
    assert neardup.normalize(pa.array(["", None], pa.string())).to_pylist() == ["", ""]


def test_text_hashes_are_equal_exactly_for_equal_texts_and_shingles_are_counted_distinct():
    texts = pa.array(["a b c d", "a b c d", "a b c d e", "b a c d", "", "a", "a b c d a b c d", "x y x y x y"], pa.string())
    h, row = neardup.words(texts, normalized=True)
    hashes = neardup.text_hashes(h, row, len(texts))
    assert hashes[0] == hashes[1] and len(set(hashes[[0, 2, 3, 5, 6]].tolist())) == 5 and hashes[4] == 0
    sh, srow = neardup.word_shingles(h, row, 2)
    assert neardup.distinct_per_row(sh, srow, len(texts)).tolist() == [3, 3, 4, 3, 0, 0, 4, 2]
    assert np.array_equal(neardup.text_hashes(*neardup.words(pa.array(["A, b c-d"])), 1), hashes[:1])  # once normalised


def test_shingles_of_a_column_are_those_of_each_text():
    rng = np.random.default_rng(0)
    words = ["a", "b", "c", "d", "Ünï", "e-f"]
    texts = [" ".join(rng.choice(words, rng.integers(0, 12))) for _ in range(400)] + ["", None]
    h, row = neardup.shingles(pa.array(texts, pa.string()), 3)
    for i, t in enumerate(texts):
        assert set(h[row == i].tolist()) == neardup.shingle_set(t, 3), t
        n = len((t or "").replace("-", " ").split())
        assert (row == i).sum() == max(0, n - 2)


def test_signatures_estimate_the_jaccard_without_bias():
    rng = np.random.default_rng(1)
    errors = []
    for _ in range(300):
        base = rng.integers(0, 2**63, 40, dtype=np.uint64)
        k = int(rng.integers(0, 30))
        other = np.concatenate([base[k:], rng.integers(0, 2**63, k, dtype=np.uint64)])
        sig, present = neardup.signatures(np.concatenate([base, other]), np.repeat([0, 1], 40), 2, 100, block=16, per=7)
        truth = neardup.jaccard(set(base.tolist()), set(other.tolist()))
        errors.append((sig[0] == sig[1]).mean() - truth)
    assert abs(np.mean(errors)) < 0.01 and np.std(errors) < 0.06  # 100 values: about 0.04 of spread


def test_a_reply_posted_thousands_of_times_gives_n_minus_one_pairs():
    n = 5000
    keys = np.repeat(np.arange(20, dtype=np.uint64), n)  # every copy in all 20 bands
    ids = pa.array([f"c{i:05d}" for i in range(n)] * 20)
    a, b = neardup.candidate_pairs(keys, ids, max_group=64)
    assert len(a) == n - 1 and set(ids.take(pa.array(b)).to_pylist()) == {"c00000"}
    small = neardup.candidate_pairs(np.zeros(5, np.uint64), pa.array(["e", "d", "c", "b", "a"]), max_group=64)
    assert len(small[0]) == 10  # a small group: every pair, each once, a above b
    names = np.array(["e", "d", "c", "b", "a"])
    assert all(x > y for x, y in zip(names[small[0]], names[small[1]]))


def test_clusters_link_through_chains_and_keep_the_smallest_id():
    members, roots = neardup.components(pa.array(["b", "c", "e", "g"]), pa.array(["a", "b", "d", "f"]))
    assert dict(zip(members.to_pylist(), roots.to_pylist())) == {"b": "a", "c": "a", "e": "d", "g": "f"}


def test_the_guides_s_curve_is_the_one_computed():
    guide = (REPO / "docs" / "guide.md").read_text()
    table = guide[guide.index("| Jaccard of the pair |"):].splitlines()[:3]
    jaccards = [float(x) for x in table[0].split("|")[2:-1]]
    chances = [float(x) for x in table[2].split("|")[2:-1]]
    for s, p in zip(jaccards, chances):
        assert neardup.s_curve(s, 20, 5) == pytest.approx(p, abs=0.0051), s
    assert re.search(r"missed 4 times in 10,000", guide) and round(1 - neardup.s_curve(0.8, 20, 5), 4) == 0.0004


def test_planted_copies_are_one_edit_from_their_original(tmp_path):
    from reddit_pretrain.synth import SynthConfig, write_month

    stats = write_month(str(tmp_path), SynthConfig(comments=3000, seed=2, copypasta_clusters=5))
    assert len(stats.copypasta) == 5
    for cluster in stats.copypasta:
        assert 9 <= len(cluster) <= 16
        original = next(m for m in cluster if m["jaccard"] == 1.0)
        for m in cluster:
            assert m["jaccard"] >= 0.85
            assert round(neardup.jaccard(neardup.shingle_set(original["text"], 5), neardup.shingle_set(m["text"], 5)), 4) \
                == m["jaccard"]
            assert abs(len(m["text"].split()) - len(original["text"].split())) <= 1


def test_the_vectorised_jaccard_of_pairs_is_the_exact_one():
    from extraction.sessions.threads import pair_jaccard

    rng = np.random.default_rng(3)
    vocabulary = ["a", "b", "c", "d", "e", "f", "g"]
    texts = [" ".join(rng.choice(vocabulary, rng.integers(0, 15))) for _ in range(300)] + ["", "a b"]
    code = rng.integers(0, len(texts), 2000)
    got = pair_jaccard(pa.array(texts), code, 2)
    for i in range(1000):
        a, b = neardup.shingle_set(texts[code[i]], 2), neardup.shingle_set(texts[code[1000 + i]], 2)
        assert got[i] == pytest.approx(neardup.jaccard(a, b)), (texts[code[i]], texts[code[1000 + i]])


def test_a_thread_of_one_reply_posted_twenty_thousand_times_stays_linear():
    """An "F" megathread: 20,000 copies of one reply and 2,000 one-word variants. Equal texts become
    links to one of them; the variants' band groups are stars beyond near_duplicate_max_group; no
    pair count grows with the square of the copies."""
    from extraction.sessions.chains import ChainsConfig, SplitConfig
    from extraction.sessions.filters import FiltersConfig, Rules
    from extraction.ingest.records import COMMENT_SCHEMA
    from extraction.sessions.threads import build_candidates, near_duplicate_inputs, near_duplicate_pairs
    from tests.kit.local import run_local

    rng = np.random.default_rng(4)
    words = "press f to pay respects to the fallen hero of this old thread".split()
    rows = [{"id": "t0", "link_id": "M", "parent_id": "M", "parent_kind": "submission", "subreddit": "AskReddit",
             "author": "op", "body": "he died doing what he loved most in his whole life", "score": 5, "created_utc": 1}]
    for i in range(22_000):
        text = list(words)
        if i >= 20_000:
            text[rng.integers(len(text))] = f"w{rng.integers(50)}"
        rows.append({"id": f"r{i:06d}", "link_id": "M", "parent_id": "t0", "parent_kind": "comment", "subreddit": "AskReddit",
                     "author": f"u{i}", "body": " ".join(text), "score": 5, "created_utc": 2})
    comments = pa.Table.from_pylist(rows, schema=COMMENT_SCHEMA.remove(COMMENT_SCHEMA.get_field_index("month")))
    filters = FiltersConfig(bland=False, language=False, duplicate_response=False, duplicate_session=False)
    candidates, _, _, _ = build_candidates(comments, None, ChainsConfig(), filters, SplitConfig(), Rules.load(filters))
    bands, texts, aliases = near_duplicate_inputs(candidates, 0, filters)
    pairs, same = near_duplicate_pairs(bands, filters.near_duplicate_max_group, filters.near_duplicate_threshold)
    assert texts.num_rows <= 2_001 and aliases.num_rows >= 19_999  # one signature per distinct text
    assert pairs.num_rows < 20 * texts.num_rows  # linear, not 22,000 squared
    sessions, _, _ = run_local(comments, None, ChainsConfig(), filters, SplitConfig())
    reasons = sessions.column("drop_reason").to_pylist()
    assert reasons.count("near_duplicate_response") >= 19_999
    kept_copies = [t[-1] for t, r in zip(sessions.column("turns").to_pylist(), reasons) if r is None and t[-1] == " ".join(words)]
    assert len(kept_copies) == 1


def test_the_sketch_filter_lets_pairs_above_the_threshold_through_and_most_below_go():
    from math import comb

    cutoff = neardup.agreement_cutoff(0.8, 100)
    p = 0.8
    assert sum(comb(100, c) * p ** c * (1 - p) ** (100 - c) for c in range(cutoff)) <= neardup.SKETCH_MISS
    rng = np.random.default_rng(4)
    kept = {True: [], False: []}
    for _ in range(400):
        base = rng.integers(0, 2**63, 60, dtype=np.uint64)
        k = int(rng.integers(0, 45))
        other = np.concatenate([base[k:], rng.integers(0, 2**63, k, dtype=np.uint64)])
        sig, _ = neardup.signatures(np.concatenate([base, other]), np.repeat([0, 1], 60), 2, 100)
        sk = neardup.sketch(sig)
        truth = neardup.jaccard(set(base.tolist()), set(other.tolist()))
        kept[truth >= 0.8].append(int((sk[0] == sk[1]).sum()) >= cutoff)
    assert all(kept[True]) and len(kept[True]) > 20  # never a pair at or above the threshold
    assert np.mean(kept[False]) < 0.5  # most pairs below it spared the exact check
