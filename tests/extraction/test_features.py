"""Every vectorised feature equals the plain-Python rule it stands for (``filters.LoadedRules``), text by text."""

import random
import sys
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from extraction.sessions import features
from extraction.sessions.features import Texts, text_features, turn_cut
from extraction.sessions.filters import RULES, SESSION_RULES, TURN_RULES, FiltersConfig, LoadedRules
from extraction.sessions.rules import trigrams, words

# Texts that have tripped, or could trip, a vectorised form: Unicode whitespace and case, \x1c-\x1f
# (str.split() splits on them), URLs next to non-ASCII letters, phrases next to them, quotes.
TRICKY = [
    "", " ", "plain words here", "it's the one you want", "It's cool.", "TV sucks.",
    "see http://imgur.com/x now", "go to www.example.com", "café.com is the place", "über-site.de/page",
    "naïve.org", "ok.COM here", "the thing.com/ wait", "a.b", "x.co", "ünïcödé.tv",
    "[markup] here", "(parens) too", "no markup",
    "AAAAA shouting", "AAAA not", "ÀÀÀÀÀ accents", "ΣΣΣΣΣ greek", "İstanbul İİİ", "ΑΣ ΑΣ ΑΣ", "ΟΔΟΣ",
    "word word word", "Word word WORD", "a b a b", "yes yes", "x\x1cx\x1cx", "no\x1dno\x1eno",
    "nbsp\xa0nbsp\xa0nbsp", "ideographic\u3000space\u3000space", "em\u2003space", "line\u2028sep",
    "you should kill yourself then", "kill yourselfish", "ékill yourself", "kill yourselfé", "KILL YOURSELF",
    "> quoted", "&gt; quoted", "text\n   > quoted", "text\n\xa0> quoted", "text\x1c> quoted", " [deleted] ",
    "[removed]", "\xa0[deleted]\u3000", "x" * 31, "x" * 30, "é" * 31, "é" * 30, "tab\tseparated\twords",
    "😂😂😂", "👍 ok ok ok", "Das ist wirklich gut", "これは本当に面白いですね", "Kelvin \u212a here",
    "\u1df40", "ßtraße", "the the", None,
]


def random_texts(n: int, seed: int) -> list:
    rng = random.Random(seed)
    pieces = ["the", "it's", "The", "THE", "cat", "CAT", "www.", ".com", "http", "://", "[", ")", "é", "É", "Σ", "İ",
              "\u212a", "😂", "kill", "yourself", ">", "&gt;", "\n", " ", "  ", "\t", "\x1c", "\x1f", "\xa0", "\u2003",
              "\u3000", "x" * 29, "ab", "ab", "is", "are", "lol", "[deleted]", "AAAAA", "Das", "ist"]
    return [None if rng.random() < 0.01 else "".join(rng.choice(pieces) + rng.choice(["", " ", " "]) for _ in range(rng.randint(0, 18)))
            for _ in range(n)]


@pytest.fixture(scope="module", params=["default", "tuned"])
def rules(request):
    if request.param == "default":
        return LoadedRules.load(FiltersConfig())
    return LoadedRules.load(FiltersConfig(max_word_chars=12, word_repeat_times=2, shouting_pattern=r"\b[A-Z]{3,}\b", markup_chars="[]é"))


def reference_features(rules: LoadedRules, text) -> dict:
    """Every declared feature's plain-Python reference on one text."""
    return {f.name: f.dtype(f.reference(rules, text or "")) for f in rules.features()}


def test_the_default_rules_read_every_feature(rules):
    assert {f.name for f in rules.features()} == {"url", "n_words", "long_word", "shouting", "markup", "word_repeat",
                                                  "common_word", "offensive"}


@pytest.mark.parametrize("texts", [TRICKY, random_texts(4000, 1)], ids=["tricky", "random"])
def test_every_text_feature_matches_the_reference(rules, texts):
    got = text_features(Texts(pa.array(texts, pa.string())), rules)
    for i, text in enumerate(texts):
        expected = reference_features(rules, text)
        assert {k: got[k][i] for k in expected} == expected, repr(text)


@pytest.mark.parametrize("texts", [TRICKY, random_texts(4000, 2)], ids=["tricky", "random"])
def test_turn_rules_match_the_reference(rules, texts):
    authors = ["AutoModerator", "some_helper_bot", "alice", None, "ÉBOT", "robotics", "İBOT", "ΣBOT", "Tip-Bot",
               "botany", "AUTOMODERATOR", "x\u1c89bot"] * (len(texts) // 12 + 1)
    authors = authors[: len(texts)]
    cut = turn_cut(Texts(pa.array(texts, pa.string())), pa.array(authors, pa.string()), rules)
    for i, (body, author) in enumerate(zip(texts, authors)):
        reason = rules.turn_reason(body, author)
        assert (TURN_RULES[cut[i] - 1] if cut[i] else None) == reason, (body, author)


@pytest.mark.parametrize("texts", [TRICKY, random_texts(3000, 3)], ids=["tricky", "random"])
def test_trigram_hashes_count_the_same_trigrams(texts):
    grams, rows = Texts(pa.array(texts, pa.string())).words.trigram_hashes()
    for i, text in enumerate(texts):
        expected = trigrams(text or "")
        mine = grams[rows == i]
        assert len(mine) == len(expected), repr(text)
        # equal trigrams, equal hashes; different trigrams, different hashes
        by_gram = {}
        for g, h in zip(expected, mine):
            assert by_gram.setdefault(g, h) == h
        assert len(set(by_gram.values())) == len(by_gram)
    # The same trigram in two texts hashes alike
    a, _ = Texts(pa.array(["the cat sat"])).words.trigram_hashes()
    b, _ = Texts(pa.array(["x THE cat SAT"])).words.trigram_hashes()
    assert a[0] == b[1]


def test_word_splitting_and_lowering_agree_with_python_on_every_code_point():
    """The premises of the vectorised forms: Arrow's UTF-8 whitespace is str.split()'s, and
    utf8_lower equals str.lower except on the characters listed in features._PY_LOWER."""
    points = [cp for cp in range(sys.maxunicode + 1) if not 0xD800 <= cp < 0xE000]
    spaces = [cp for cp in points if chr(cp).isspace()]
    split = pc.utf8_split_whitespace(pa.array(["a" + chr(cp) + "b" for cp in spaces])).to_pylist()
    assert all(len(x) == 2 for x in split)
    assert pc.list_value_length(pc.utf8_split_whitespace(pa.array(["a\u200bb"]))).to_pylist() == [1]
    lowered = pc.utf8_lower(pa.array([chr(cp) for cp in points])).to_pylist()
    differ = [chr(cp) for cp, low in zip(points, lowered) if chr(cp).lower() != low]
    flagged = pc.match_substring_regex(pa.array(differ + ["\u03a3"]), features._PY_LOWER).to_pylist()
    assert all(flagged), [hex(ord(c)) for c, f in zip(differ, flagged) if not f]


def test_every_rule_is_declared_once_with_its_switch_and_thresholds():
    fields = FiltersConfig.__dataclass_fields__
    assert len({r.name for r in RULES}) == len(RULES)
    for rule in RULES:
        assert rule.switch in fields and fields[rule.switch].type == Optional[bool], rule.name
        assert isinstance(getattr(FiltersConfig(), rule.switch), bool), rule.name  # resolved from filters.rules
        assert all(t in fields for t in rule.thresholds), rule.name
    assert [r for r in SESSION_RULES] == [r.name for r in RULES if r.kind == "session"]


def test_a_pattern_re2_cannot_run_falls_back_to_python():
    rules = LoadedRules.load(FiltersConfig(shouting_pattern=r"(\w)\1\1"))  # a backreference: not RE2
    texts = ["aaa b", "abc", "ééé"]
    got = text_features(Texts(pa.array(texts)), rules)["shouting"]
    assert got.tolist() == [True, False, True]
    assert np.array_equal(got, np.array([rules.is_shouting(t) for t in texts]))


@pytest.mark.parametrize("times", [2, 3, 4, 5])
def test_word_repeats_of_any_length_match_the_reference(times):
    from extraction.sessions.rules import _has_repeat, words

    rng = random.Random(times)
    texts = [" ".join(rng.choice(["a", "A", "b"]) for _ in range(rng.randrange(0, 9))) for _ in range(3000)] + [None, ""]
    got = Texts(pa.array(texts, pa.string())).words.repeats(len(texts), times)
    assert [bool(g) for g in got] == [_has_repeat(words(t or ""), times) for t in texts]


def test_word_hashes_are_stable_and_the_same_for_every_form_of_a_column(monkeypatch):
    import numpy as np
    import pyarrow as pa

    from extraction.sessions.features import word_hash

    # pinned: the same on every machine and in every process (hashes move between tasks)
    assert [hex(h) for h in word_hash(["", "hello", "copypasta is long text"])] == \
        ["0x2cb0f69f4abea221", "0x89ea2d0cc5b586e3", "0x91bb8e1d4a025b57"]
    words = ["", "a", "abcdefgh", "abcdefghi", "ab\x00", "ab", "héllo wörld", "x" * 1000, "x" * 1001, "日本語のテキスト"]
    h = word_hash(words)
    assert len(set(h.tolist())) == len(words)  # lengths and the bytes past each 8 all count
    column = pa.array(["zz", None] + words)
    assert np.array_equal(word_hash(column)[2:], h) and word_hash(column)[1] == h[0]  # null hashes as ""
    assert np.array_equal(word_hash(column.slice(2)), h)
    assert np.array_equal(word_hash(pa.chunked_array([column.slice(0, 5), column.slice(5)]))[2:], h)
    assert np.array_equal(word_hash(column.cast(pa.large_string()))[2:], h)
    assert len(word_hash(pa.array([], pa.string()))) == 0
    import extraction.sessions.features as features

    monkeypatch.setattr(features, "_GROUP_WORDS", 3)  # many small groups of strings: the same hashes
    assert np.array_equal(word_hash(column)[2:], h)
