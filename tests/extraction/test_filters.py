"""Each rule pinned down on hand-written text, without Spark."""

import pytest

from extraction.sessions.filters import FiltersConfig, LoadedRules

from extraction.sessions.rules import trigrams


@pytest.fixture(scope="module")
def rules():
    return LoadedRules.load(FiltersConfig())


GOOD = ["what do you think of the new phone", "i think it is great for the price"]


def judge(rules, turns, subreddit="AskReddit", over_18=False, score=5, title=False):
    return rules.session_reason(turns, subreddit, over_18, score, title)


def test_a_plain_session_passes(rules):
    assert judge(rules, GOOD) is None


@pytest.mark.parametrize(
    "turns, kwargs, reason",
    [
        (GOOD, {"subreddit": "CircleJerk"}, "subreddit_blocklist"),
        (GOOD, {"over_18": True}, "nsfw"),
        (GOOD, {"subreddit": "gonewild"}, "nsfw"),
        (["see http://imgur.com/x it is the one", GOOD[1]], {}, "url"),
        ([GOOD[0], "it is on www.example.com for you"], {}, "url"),
        ([GOOD[0], "go to example.com/page for the info"], {}, "url"),
        ([GOOD[0], "it is [here] for you"], {}, "markup"),
        ([GOOD[0], "it is great (really) for me"], {}, "markup"),
        ([" ".join(["the"] * 150), " ".join(["it is"] * 30)], {}, "max_words"),
        ([GOOD[0], "it is " + "a" * 31 + " for me"], {}, "long_word"),
        ([GOOD[0], "it is GREAT for me"], {}, "shouting"),
        ([GOOD[0], "yes"], {}, "min_words"),
        ([GOOD[0], "it is no no no good for me"], {}, "word_repeat"),
        ([GOOD[0], "Das ist wirklich gut"], {}, "common_word"),
        ([GOOD[0], "you should kill yourself then"], {}, "offensive"),
        (GOOD, {"score": 0}, "min_score"),
    ],
)
def test_each_session_rule(rules, turns, kwargs, reason):
    assert judge(rules, turns, **kwargs) == reason


def test_rules_are_switches_with_thresholds():
    relaxed = LoadedRules.load(FiltersConfig(markup=False, min_target_score=-10, word_repeat_times=4, max_words_total=2000))
    assert relaxed.session_reason([GOOD[0], "it is [here] for you"], "x", False, 5) is None
    assert relaxed.session_reason(GOOD, "x", False, -3) is None
    assert relaxed.session_reason([GOOD[0], "it is no no no good"], "x", False, 5) is None
    assert relaxed.session_reason([GOOD[0], "it is no no no no good"], "x", False, 5) == "word_repeat"


def test_missing_score_passes_and_first_failing_rule_is_named(rules):
    assert judge(rules, GOOD, score=None) is None
    # url comes before markup and min_score in SESSION_RULES order
    assert judge(rules, [GOOD[0], "[x] http://a.com"], score=0) == "url"


def test_a_title_turn_is_context_but_skips_comment_word_rules(rules):
    shouting_title = ["BREAKING NEWS about the thing", GOOD[0], GOOD[1]]
    assert judge(rules, shouting_title, title=True) is None
    assert judge(rules, shouting_title, title=False) == "shouting"


@pytest.mark.parametrize(
    "body, author, reason",
    [
        ("[deleted]", "[deleted]", "deleted"),
        ("[removed]", "someone", "deleted"),
        (None, "someone", "deleted"),
        ("I am a bot", "AutoModerator", "bots"),
        ("beep", "some_helper_bot", "bots"),
        ("&gt; you said this\n\nno", "someone", "quotes"),
        ("first line\n> quoted", "someone", "quotes"),
        ("a perfectly fine reply", "someone", None),
        ("I like robots", "abbot_costello", None),
    ],
)
def test_turn_rules(rules, body, author, reason):
    assert rules.turn_reason(body, author) == reason


def test_trigrams():
    assert trigrams("The cat  sat on\nthe mat") == ["the cat sat", "cat sat on", "sat on the", "on the mat"]
    assert trigrams("two words") == []


def test_lists_load_from_user_paths(tmp_path):
    blocklist = tmp_path / "subs.txt"
    blocklist.write_text("# my list\nFooBar\n\n")
    rules = LoadedRules.load(FiltersConfig(subreddit_blocklist_path=str(blocklist)))
    assert rules.session_reason(GOOD, "foobar", False, 5) == "subreddit_blocklist"
    assert rules.session_reason(GOOD, "circlejerk", False, 5) is None
    with pytest.raises(FileNotFoundError):
        LoadedRules.load(FiltersConfig(offensive_phrases_path=str(tmp_path / "missing.txt")))


@pytest.mark.parametrize("reply, english", [("It's cool.", True), ("Relax, it's funny.", True), ("I'm in.", True),
                                            ("Reddit readers are just too smart.", True), ("He was right", True),
                                            ("Das ist wirklich gut", False), ("lol 🙃", False)])
def test_common_word_list_has_word_forms_and_contractions_match(rules, reply, english):
    import pyarrow as pa

    from extraction.sessions.features import Texts, text_features

    assert (judge(rules, [GOOD[0], reply]) != "common_word") is english
    assert bool(text_features(Texts(pa.array([reply])), rules)["common_word"][0]) is english
