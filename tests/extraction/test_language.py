"""The language of comments and sessions (extraction/sessions/language.py) and the language rule."""

import pyarrow as pa
import pytest

from extraction.sessions.features import Texts
from extraction.sessions.filters import FiltersConfig, LoadedRules
from extraction.sessions.rules import read_list
from extraction.sessions.language import UNDETERMINED, comment_language, comment_languages, session_language
from reddit_pretrain_app.synth_text import FOREIGN_PHRASES

COMMON = frozenset(read_list("lists/top50_english.txt"))


@pytest.mark.parametrize("text", ["lol", "same", "+1", "this ^", "Thanks!", "ok 👍", "", None, "1234 5678 !!!"])
def test_short_turns_are_undetermined_never_foreign(text):
    assert comment_language(text, COMMON, 20)[0] == UNDETERMINED


@pytest.mark.parametrize("language", sorted(FOREIGN_PHRASES))
def test_reddit_length_texts_of_other_languages_are_named(language):
    for first, second in zip(FOREIGN_PHRASES[language], FOREIGN_PHRASES[language][1:]):
        code, confidence, _ = comment_language(f"{first} {second}", COMMON, 20)
        assert (code, confidence >= 0.5) == (language, True), (first, code, confidence)


def test_english_is_settled_by_the_cheap_pass_or_the_identifier():
    for text in ["I think that is a good idea and it was fun for all of us.", "Honestly the phone is slow, I paid 889 for mine.",
                 "I’m sure it’s the one that was on sale “last week” 😂",  # curly quotes and emoji: still the cheap pass
                 "What do you think of the new phone? 😂", "Not sure, but the battery on mine lasts two days."]:
        assert comment_language(text, COMMON, 20)[0] == "en", text


def test_the_vectorised_form_gives_what_python_gives():
    texts = [f"{a} {b}" for phrases in FOREIGN_PHRASES.values() for a, b in zip(phrases, phrases[1:])]
    texts += ["I think that is a good idea and it was fun for all of us.", "lol", None, "", "Déjà vu, it is the same as in the film.",
              "Straße und Fluß"]
    codes, confidence, letters = comment_languages(Texts(pa.array(texts, pa.string())), COMMON, 20)
    assert [(c, p, n) for c, p, n in zip(codes, confidence, letters)] == [comment_language(t, COMMON, 20) for t in texts]


def test_text_cld2_cannot_read_is_undetermined():
    assert comment_language("\ud800 Je ne suis pas d'accord avec ça, mais bon", COMMON, 20)[0] == UNDETERMINED  # a lone surrogate


def test_a_session_takes_the_language_of_most_letters_and_short_turns_count_for_nothing():
    assert session_language(["und", "fr", "en"], [0.0, 0.9, 1.0], [3, 40, 30]) == ("fr", round(0.9 * 40 / 70, 3))
    assert session_language(["en", "fr"], [1.0, 0.9], [30, 30]) == ("en", 0.5)  # a tie: the earlier turn
    assert session_language(["und", "und"], [0.0, 0.0], [3, 5]) == (UNDETERMINED, 0.0)


def test_the_rule_drops_sessions_in_other_languages_only():
    rules = LoadedRules.load(FiltersConfig())
    # (the reply holds "a", one of the common words, so the common_word rule tried before lets it through)
    french = ["Quelqu'un sait où on peut acheter ça ? Merci pour le partage.", "Je ne suis pas d'accord avec toi, mais il a raison."]
    english = ["What do you think about the weather today?", "It is fine, I think it was warm all day."]
    assert rules.session_reason(french, "AskReddit", False, 5) == "language"
    assert rules.session_reason(english, "AskReddit", False, 5) is None
    assert rules.session_reason(["What do you think about the weather today?", "same"], "AskReddit", False, 5) != "language"
    assert LoadedRules.load(FiltersConfig(languages=["en", "fr"])).session_reason(french, "AskReddit", False, 5) != "language"


def test_the_rule_is_tried_after_the_other_session_rules_but_the_classifier():
    # the dearest of the session rules but one: the others settle most sessions before it reads a letter
    names = [r.name for r in LoadedRules.load(FiltersConfig(classifier=False)).on("session")]
    assert names[-1] == "language"
    from extraction.sessions.filters import RULES
    order = [r.name for r in RULES if r.kind == "session"]
    assert order.index("language") == order.index("classifier") - 1
    rules = LoadedRules.load(FiltersConfig())
    assert rules.session_reason(["Quelqu'un sait où on peut acheter ça ?", "Je ne suis pas d'accord avec toi."],
                                "AskReddit", False, 5) == "common_word"
