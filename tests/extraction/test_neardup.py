"""The near-duplicate machinery piece by piece (the whole rule against the reference: test_reddit_threads.py)."""

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
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


@pytest.mark.parametrize("base36", [True, False])
def test_component_rows_are_first_places_of_members_and_roots(base36):
    """Random links among 300 ids (Reddit's, packed; or any others, string-sorted) against a union-find
    in Python: every member but each component's smallest id, sorted, with its root, both given as
    the first place of the id in ``a`` then ``b``."""
    rng = np.random.default_rng(3 + base36)
    names = [np.base_repr(int(x), 36).lower() if base36 else f"id-{x}" for x in rng.choice(10**9, 300, replace=False)]
    a = [names[i] for i in rng.integers(0, 300, 250)]
    b = [names[i] for i in rng.integers(0, 300, 250)]
    parent = {x: x for x in a + b}

    def find(x):
        while parent[x] != x:
            x = parent[x]
        return x

    for x, y in zip(a, b):
        rx, ry = find(x), find(y)
        parent[max(rx, ry)] = min(rx, ry)
    want = sorted((x, find(x)) for x in set(a + b) if find(x) != x)
    member, root = neardup.component_rows(neardup.id_order(pa.array(a + b)), len(a))
    ids = a + b
    assert [(ids[m], ids[r]) for m, r in zip(member, root)] == want
    assert all(ids.index(ids[m]) == m and ids.index(ids[r]) == r for m, r in zip(member, root))
    assert [len(x) for x in neardup.component_rows(neardup.id_order(pa.array([], pa.string())), 0)] == [0, 0]


def test_the_guides_s_curve_is_the_one_computed():
    guide = (REPO / "docs" / "guide.md").read_text()
    table = guide[guide.index("| Jaccard of the pair |"):].splitlines()[:3]
    jaccards = [float(x) for x in table[0].split("|")[2:-1]]
    chances = [float(x) for x in table[2].split("|")[2:-1]]
    for s, p in zip(jaccards, chances):
        assert neardup.s_curve(s, 20, 5) == pytest.approx(p, abs=0.0051), s
    assert re.search(r"missed 4 times in 10,000", guide) and round(1 - neardup.s_curve(0.8, 20, 5), 4) == 0.0004


def test_planted_copies_are_one_edit_from_their_original(tmp_path):
    from reddit_pretrain_app.synth import SynthConfig, write_month

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
    from extraction.sessions.near_sessions import pair_jaccard

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
    from extraction.sessions.filters import FiltersConfig, LoadedRules
    from extraction.ingest.records import COMMENT_SCHEMA
    from extraction.sessions.reddit_threads import build_candidates
    from extraction.sessions.near_sessions import near_duplicate_inputs, near_duplicate_pairs
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
    candidates, _, _, _ = build_candidates(comments, None, ChainsConfig(), filters, SplitConfig(), LoadedRules.load(filters))
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


def _pairs_by_definition(rows: list[dict], max_group: int, threshold: float) -> tuple[set, set]:
    """``near_duplicate_pairs`` written out row by row: copies of a text (equal text hash) are linked to
    their smallest id by the rows of their first band, and only that id takes part in the groups of a
    band key: every pair in a group of at most ``max_group`` texts, else each with the smallest;
    pairs the shingle counts rule out are left out. Rows of bucket -1 (an earlier batch's) come
    before every other, and no pair of two of them is made."""
    from collections import defaultdict

    ids_of, keys = defaultdict(set), defaultdict(set)
    for r in rows:
        ids_of[r["text_hash"]].add((r["session_id"], r["bucket"], r["shingles"]))
    first = lambda member: (member[1] >= 0, member[0])  # noqa: E731
    rep = {t: min(ids, key=first) for t, ids in ids_of.items()}
    same = {(r["session_id"], r["bucket"], rep[r["text_hash"]][0], rep[r["text_hash"]][1]) for r in rows
            if r["band_index"] == 0 and r["session_id"] != rep[r["text_hash"]][0]}
    for r in rows:
        keys[r["band"]].add(rep[r["text_hash"]])
    pairs = set()
    for members in keys.values():
        members = sorted(members, key=first)
        links = [(a, b) for i, b in enumerate(members) for a in members[i + 1:]] if len(members) <= max_group \
            else [(a, members[0]) for a in members[1:]]
        pairs |= {(a[0], a[1], b[0], b[1]) for a, b in links
                  if min(a[2], b[2]) >= threshold * max(a[2], b[2]) and (a[1] >= 0 or b[1] >= 0)}
    return pairs, same


@pytest.mark.parametrize("seed,earlier,keys", [(0, False, False), (1, False, True), (2, True, False), (3, True, True)])
def test_band_rows_with_copies_in_many_buckets_give_the_pairs_of_the_definition(seed, earlier, keys):
    """Template replies with copies in many buckets (their band keys shared by copies alone, or by
    other texts too), keys colliding between texts in one band and across bands: the candidate pairs and the
    links between copies are those of the definition, whatever rows the step leaves out early.
    ``earlier``: some copies an earlier batch's (bucket -1: ordered first, no pair of two made);
    ``keys``: the ids order keys (``thread_keys.earliest_keys``), as the extract job's are."""
    from extraction.sessions.near_sessions import ND_BANDS, near_duplicate_pairs
    from extraction.sessions.thread_keys import earliest_keys

    rng = np.random.default_rng(seed)
    rows, next_id = [], 36 ** 5
    pool = rng.integers(0, 2**64, 60, dtype=np.uint64)  # few keys: texts collide often
    for text in range(40):
        # a text's 20 keys differ (a band key mixes in its band's number); a third of the texts have keys of their own
        bands = rng.choice(pool, 20, replace=False) if text % 3 else rng.integers(0, 2**64, 20, dtype=np.uint64)
        shingles = int(rng.integers(5, 12))
        for copy in range(int(rng.integers(1, 7))):
            sid = np.base_repr(next_id + int(rng.integers(0, 10**6)), 36).lower()
            if keys:
                sid = earliest_keys(pa.array([sid]), pa.array([int(rng.integers(1.4e9, 1.4e9 + 50))])).to_pylist()[0]
            next_id += 10**6
            bucket = -1 if earlier and rng.random() < 0.4 else int(rng.integers(0, 8))
            rows += [{"band": int(k), "session_id": sid, "bucket": bucket, "shingles": shingles, "text_hash": 1000 + text,
                      "band_index": i} for i, k in enumerate(bands)]
    # Two replies alike in one band alone (not the first), each written once: their only pair.
    alike = [earliest_keys(pa.array([i]), pa.array([1_400_000_100])).to_pylist()[0] if keys else i for i in ("zz0001", "zz0002")]
    for sid, text in zip(alike, (98, 99)):
        rows += [{"band": 7 if i == 5 else int(rng.integers(0, 2**64, dtype=np.uint64)), "session_id": sid, "bucket": 0,
                  "shingles": 9, "text_hash": text, "band_index": i} for i in range(20)]
    rng.shuffle(rows)
    table = pa.Table.from_pylist(rows, schema=ND_BANDS)
    for max_group in (3, 64):
        pairs, same = near_duplicate_pairs(table, max_group, 0.8)
        got = {tuple(r.values()) for r in pairs.to_pylist()}
        got_same = {(r["a"], r["a_bucket"], r["b"], r["b_bucket"]) for r in same.to_pylist()}
        want, want_same = _pairs_by_definition(rows, max_group, 0.8)
        assert got == want and len(got) == pairs.num_rows
        assert got_same == want_same and len(got_same) == same.num_rows
        assert want and want_same and (alike[1], 0, alike[0], 0) in got
        if earlier:  # (pairs with an earlier copy, and copies linked to an earlier one, are among them)
            assert any(p[3] == -1 for p in got) and any(s[3] == -1 for s in got_same)
            # A batch's run pairs only the rows ``batches.pairing_rows`` keeps: about half, the same
            # pairs and the same links of the batch's copies (earlier copies were linked there).
            from extraction.sessions import batches

            mine = pa.array(table.column("bucket").to_numpy() >= 0)
            bands, old = table.filter(mine), table.filter(pc.invert(mine))
            new = batches.new_texts(bands, old)
            kept, state = batches.pairing_rows(bands, batches.sorted_order(bands.column("band").to_numpy()), old, new)
            assert np.array_equal(state.column("band").to_numpy(), np.sort(bands.column("band").to_numpy()[new]))
            pairs, same = near_duplicate_pairs(kept, max_group, 0.8)
            assert {tuple(r.values()) for r in pairs.to_pylist()} == want and kept.num_rows < table.num_rows
            assert {(r["a"], r["a_bucket"], r["b"], r["b_bucket"]) for r in same.to_pylist() if r["a_bucket"] >= 0} \
                == {s for s in want_same if s[1] >= 0}


def test_order_keys_become_integers_in_their_string_order():
    """``thread_keys.order_key_integers``: order keys after prefixes of up to two characters, ids of
    mixed lengths (one with a leading zero), seconds of a month or of twenty years (ranked), in the
    order and with the equality of the strings; anything that is not an order key is refused, and
    ``id_order`` then ranks the strings."""
    from extraction.sessions.thread_keys import earliest_keys, order_key_integers

    def string_ranks(ids):
        return np.unique(np.array(ids.to_pylist(), dtype=object), return_inverse=True)[1]

    rng = np.random.default_rng(9)
    for trial in range(24):
        n = int(rng.integers(2, 400))
        low, high = [(1, 36**3), (36**5, 36**7), (36**6, 36**7 + 40), (0, 50)][trial % 4]
        ids = [np.base_repr(int(v), 36).lower() for v in rng.integers(low, high, n)]
        ids[:3] = ["0" + i for i in ids[:3]] if trial % 4 == 2 else ids[:3]
        seconds = rng.integers(1_400_000_000, 1_400_000_000 + [60, 2_600_000, 700_000_000][trial % 3], n)
        prefixes = np.array(["", " ", "~", "~ "])[rng.integers(0, 1 + trial % 4, n)]
        keys = pc.binary_join_element_wise(pa.array(prefixes), earliest_keys(pa.array(ids), pa.array(seconds)), "")
        keys = pa.concat_arrays([keys, pc.take(keys, pa.array(rng.integers(0, n, n)))])  # (repeats)
        got = order_key_integers(keys)
        assert got is not None and got.dtype == np.uint64 and int(got.max()) < 2**63
        want = string_ranks(keys)
        assert np.array_equal(np.argsort(got, kind="stable"), np.argsort(want, kind="stable"))
        assert np.array_equal(np.unique(got, return_inverse=True)[1], want)
        assert np.array_equal(np.argsort(neardup.id_order(keys.slice(1)), kind="stable"), np.argsort(want[1:], kind="stable"))
    for other in (["!00000000011a", "abc"], ["!000000000131a"], ["!00000000011A"], ["abc!00000000011a"],
                  ["!000000000x1a"], ["zz0001", "a"], ["\x01!00000000011a"]):
        assert order_key_integers(pa.array(other)) is None, other
        assert np.array_equal(np.unique(neardup.id_order(pa.array(other)), return_inverse=True)[1], string_ranks(pa.array(other)))
    assert order_key_integers(pa.array([], pa.string())) is None and order_key_integers(pa.array(["!00000000011a", None])) is None


def test_among_is_membership_for_sorted_and_unsorted_values():
    """``batches._among``: sorted values by binary searches, others through a table of the wanted
    keys' low bits first; values sharing a wanted key's low bits but not the key are not in it."""
    from extraction.sessions.batches import _among

    rng = np.random.default_rng(5)
    wanted = np.unique(rng.integers(0, 2**64, 5000, dtype=np.uint64))
    values = np.concatenate([rng.choice(wanted, 3000), wanted[:2000] ^ np.uint64(1 << 40),
                             rng.integers(0, 2**64, 3000, dtype=np.uint64)])
    for v in (values, np.sort(values)):
        assert np.array_equal(np.asarray(_among(v, wanted)), np.isin(v, wanted))
    assert not np.asarray(_among(values, wanted[:0])).any() and len(_among(values[:0], wanted)) == 0


@pytest.mark.parametrize("alphabet", ["0123456789abcdefghijklmnopqrstuvwxyz", "0123456789abcdefghijklmnopqrstuvwxyzAB_"])
def test_id_order_is_the_string_order(alphabet):
    """Reddit's base-36 ids packed in 64 bits (any other id: ranked by a string sort), on ids of
    0-13 characters, repeated, from a sliced array: order and equality are the strings'."""
    rng = np.random.default_rng(len(alphabet))
    ids = ["".join(rng.choice(list(alphabet), int(rng.integers(0, 14 if "_" in alphabet else 13)))) for _ in range(400)]
    ids += ids[:50]
    array = pa.array(["pad"] + ids)[1:]
    key = neardup.id_order(array)
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    assert all(key[i] < key[j] if ids[i] < ids[j] else key[i] == key[j] for i, j in zip(order, order[1:]))
