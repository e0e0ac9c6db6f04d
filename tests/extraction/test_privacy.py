"""PII masking and pseudonymous authors (extraction/sessions/privacy.py): the forms caught, what is left
alone, the two engines agreeing, stable keyed pseudonyms, and the salt's sources."""

import os
import stat

import pyarrow as pa
import pytest

from extraction.sessions.privacy import Privacy, PrivacyConfig, pseudonym, pseudonymize_column, resolve_salt, scrub_column, scrub_text

ON = Privacy(scrub_pii=True, pseudonymize_authors=True, salt="pepper")

CAUGHT = [
    ("write to john.doe+reddit@gmail.com today", "write to <EMAIL> today", "write to email today"),
    ("k.lee@mail.example.org.", "<EMAIL>.", "email."),
    ("call (415) 555-0132 or 415-555-0199 or 415.555.0100", "call <PHONE> or <PHONE> or <PHONE>", None),
    ("+1 415 555 0132 and 4155550123", "<PHONE> and <PHONE>", None),
    ("in London: +44 20 7946 0958", "in London: <PHONE>", None),
    ("my box is 192.168.1.20, and 10.0.0.1", "my box is <IP>, and <IP>", "my box is ipaddress, and ipaddress"),
    ("v6 2001:0db8:85a3:0000:0000:8a2e:0370:7334 or fe80::1 or 2001:db8::8a2e:370:7334", "v6 <IP> or <IP> or <IP>", None),
]
LEFT_ALONE = [
    "score 1234, in 2015 and 1999-2003, paid $1,299.99 or 15.50 EUR",
    "python 3.11.7 and v2.7.18, firmware 10.2.1, at 12:30:45 or 9:15",
    "the 10.0.0.256 is no address; call me in 5 minutes; 555-0132 is short",
    "ratio 16:9, build 20151231, id 1234567",
]


@pytest.mark.parametrize("text, stored, read", CAUGHT)
def test_pii_forms_are_masked_and_the_rules_read_a_plain_word(text, stored, read):
    got_stored, got_read, counts = scrub_text(text, ON)
    assert got_stored == stored and sum(counts.values()) == stored.count("<")
    if read is not None:
        assert got_read == read
    # What the rules read: a lower-case word where the placeholder is (no <, >, capitals: no quote, markup or shouting).
    assert got_read == stored.replace("<EMAIL>", "email").replace("<PHONE>", "phone").replace("<IP>", "ipaddress")


@pytest.mark.parametrize("text", LEFT_ALONE)
def test_numbers_that_are_not_pii_are_left_alone(text):
    assert scrub_text(text, ON)[0] == text


def test_the_vectorised_form_gives_what_python_gives():
    texts = [t for t, _, _ in CAUGHT] + LEFT_ALONE + [None, "", "thanks u/Some_User and /u/other-one, see r/pics",
                                                     "é192.168.0.1é x@y.co", "Ünïcödé u/ürsula ok"]
    stored, read, counts = scrub_column(pa.array(texts, pa.string()), ON)
    expected = [scrub_text(t, ON) for t in texts]
    assert stored.to_pylist() == [e[0] for e in expected] and read.to_pylist() == [e[1] for e in expected]
    assert counts == {k: sum(e[2][k] for e in expected) for k in counts}


def test_pseudonyms_are_keyed_stable_and_shared_with_mentions():
    a = pseudonym("SomeUser", "pepper")
    assert a == pseudonym("someuser", "pepper") == pseudonym("SomeUser", "pepper")  # the same in every run
    assert a != pseudonym("SomeUser", "salt") and len(a) == 16 and int(a, 16) >= 0
    assert pseudonym("[deleted]", "pepper") == "[deleted]" and pseudonym(None, "pepper") is None
    assert scrub_text("thanks u/SomeUser!", ON)[0] == f"thanks u/{a}!"  # a mention names the same pseudonym
    column = pseudonymize_column(pa.array(["SomeUser", None, "[deleted]", "SomeUser"]), "pepper")
    assert column.to_pylist() == [a, None, "[deleted]", a]
    # the column's names are each hashed as pseudonym hashes one (Python lower-cases what is not ASCII)
    names = ["ÄrgerLich", "İstanbul", "ΣΟΦΙΑ", "x_Y-1", "", "[Deleted]", None, "x_y-1"]
    chunked = pa.chunked_array([pa.array(names[:3]), pa.array(names[3:])])
    assert pseudonymize_column(chunked, "pepper").to_pylist() == [pseudonym(n, "pepper") for n in names]
    assert pseudonymize_column(pa.array([None, None], pa.string()), "pepper").to_pylist() == [None, None]


def test_the_salt_comes_from_the_setting_the_environment_or_a_private_file(tmp_path, monkeypatch):
    assert resolve_salt(PrivacyConfig(salt="given")) == ("given", "privacy.salt")
    monkeypatch.setenv("REDDIT_PRETRAIN_SALT", "from env")
    assert resolve_salt(PrivacyConfig()) == ("from env", "REDDIT_PRETRAIN_SALT")
    monkeypatch.delenv("REDDIT_PRETRAIN_SALT")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    salt, source = resolve_salt(PrivacyConfig())
    assert source == str(tmp_path / "reddit-pretrain" / "salt") and len(salt) == 64
    assert stat.S_IMODE(os.stat(source).st_mode) == 0o600
    assert resolve_salt(PrivacyConfig()) == (salt, source)  # made once, then read
