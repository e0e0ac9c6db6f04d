"""Privacy of the stored sessions: PII masked and authors pseudonymised, before any rule reads a text.

* ``privacy.scrub_pii``: e-mail addresses, IPv6 and IPv4 addresses and phone numbers (US forms,
  and international ones written with a leading ``+``) become ``<EMAIL>``, ``<IP>`` and ``<PHONE>``
  in every stored turn (comment bodies, titles and self texts). The rules read the same text with a
  plain lower-case word in each place instead (``email``, ``ipaddress``, ``phone``): a session is
  kept or dropped for its conversation, and the placeholders' ``<``, ``>`` and capitals never look
  like a quote, markup, a URL or shouting. Scores, years, prices, times and version numbers
  (``v2.7.18``) are left alone; a four-part dotted number is taken as an IPv4 address.
* ``privacy.pseudonymize_authors``: every author becomes the keyed BLAKE2b hash of its lower-cased
  name (key: the salt's SHA-256; 8 bytes, 16 hex digits): the same author gets the same pseudonym in every month and run with the
  same salt, and no name can be recovered without it. ``[deleted]`` and missing authors stay as
  they are. Reddit's own mentions (``u/name``, ``/u/name``) become ``u/<the mentioned author's
  pseudonym>``, so a reply naming its parent's author still points at the same pseudonym. The bot
  rule runs before, on the real names.

The salt comes from ``privacy.salt``, else the environment (``REDDIT_PRETRAIN_SALT``), else a file
made once with 32 random bytes (``~/.config/reddit-pretrain/salt``, mode 0600). The report names
which, never the salt itself.

Each transform has a plain-Python form (``scrub_text``, ``pseudonym``, ``pseudonymize_mentions_text``)
and a vectorised one over Arrow columns (RE2); the patterns are written so both engines read them
the same way (ASCII classes, ``re.ASCII``), and tests compare the two.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass

_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_HEX = "[0-9A-Fa-f]{1,4}"
PII_KINDS: tuple[tuple[str, str, str, str], ...] = (
    # kind, pattern, stored placeholder, what the rules read instead (in this order: an e-mail
    # address holds dots and digits, an IPv4 address digits a phone pattern could take)
    ("email", r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}", "<EMAIL>", "email"),
    ("ip", rf"\b(?:{_HEX}:){{7}}{_HEX}\b|\b(?:{_HEX}:){{1,6}}(?::{_HEX}){{1,6}}\b", "<IP>", "ipaddress"),
    ("ip", rf"\b(?:{_OCTET}\.){{3}}{_OCTET}\b", "<IP>", "ipaddress"),
    ("phone", r"(?:\+?1[ .-]?)?(?:\([0-9]{3}\)|\b[0-9]{3})[ .-]?[0-9]{3}[ .-]?[0-9]{4}\b", "<PHONE>", "phone"),
    ("phone", r"\+[0-9]{1,3}[ .-]?\(?[0-9]{1,4}\)?[ .-]?[0-9]{3,4}[ .-]?[0-9]{3,4}\b", "<PHONE>", "phone"),
)
KINDS = ("email", "phone", "ip")
ANY_PII = "|".join(f"(?:{pattern})" for _, pattern, _, _ in PII_KINDS)
"""Matches a text that holds anything to mask (the rows the per-kind passes need to see)."""
_COMPILED = [(kind, re.compile(pattern, re.ASCII), stored, rule) for kind, pattern, stored, rule in PII_KINDS]
MENTION = r"(?:^|[^A-Za-z0-9_/])/?u/[A-Za-z0-9_-]{3,20}"
"""Where a ``u/name`` mention may be (RE2 has no look-behind: the character before is part of it)."""
_MENTION = re.compile(r"(^|[^A-Za-z0-9_/])(/?u/)([A-Za-z0-9_-]{3,20})", re.ASCII)
KEPT_AUTHORS = ("[deleted]",)


@dataclass
class PrivacyConfig:
    """What of the users' privacy the stored sessions keep (``extraction.sessions.privacy``)."""

    scrub_pii: bool = True
    """E-mail addresses, phone numbers and IP addresses become ``<EMAIL>``, ``<PHONE>``, ``<IP>``
    before any rule reads a text (the rules read a plain word instead); counts in the report."""
    pseudonymize_authors: bool = True
    """Authors (and ``u/name`` mentions) become keyed hashes of their names (``privacy.salt``)."""
    salt: str | None = None
    """The key of the pseudonyms: the same salt gives the same pseudonyms in every run. Unset: the
    environment's ``REDDIT_PRETRAIN_SALT``, else ``~/.config/reddit-pretrain/salt`` (made once)."""


def resolve_salt(cfg: PrivacyConfig) -> tuple[str, str]:
    """(salt, where it came from) for ``cfg``; makes the per-user salt file on first use."""
    if cfg.salt:
        return cfg.salt, "privacy.salt"
    if os.environ.get("REDDIT_PRETRAIN_SALT"):
        return os.environ["REDDIT_PRETRAIN_SALT"], "REDDIT_PRETRAIN_SALT"
    path = os.path.join(os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config"), "reddit-pretrain", "salt")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(os.urandom(32).hex())
        os.replace(tmp, path)
    with open(path) as f:
        return f.read().strip(), path


@dataclass(frozen=True)
class Privacy:
    """A resolved ``PrivacyConfig`` as the tasks use it (the salt itself travels to the executors)."""

    scrub_pii: bool
    pseudonymize_authors: bool
    salt: str

    @classmethod
    def of(cls, cfg: PrivacyConfig) -> "Privacy":
        salt = resolve_salt(cfg)[0] if cfg.pseudonymize_authors else ""
        return cls(cfg.scrub_pii, cfg.pseudonymize_authors, salt)

    @property
    def active(self) -> bool:
        return self.scrub_pii or self.pseudonymize_authors


# ---------------------------------------------------------------------------------------------
# Plain Python (the reference)


def _key(salt: str) -> bytes:
    return hashlib.sha256(salt.encode()).digest()


def pseudonym(name: str | None, salt: str) -> str | None:
    """The keyed BLAKE2b hash of the lower-cased name (8 bytes, 16 hex digits; the key is the salt's
    SHA-256): stable for a salt, not reversible without it. ``[deleted]`` and None stay."""
    return pseudonymizer(salt)(name)


def _keyed(salt: str):
    """A fresh keyed BLAKE2b (8 bytes) for ``salt`` on each call: the key set up once, then copied."""
    return hashlib.blake2b(key=_key(salt), digest_size=8).copy


def pseudonymizer(salt: str):
    """``pseudonym`` for one salt, the keyed hash set up once and copied for each name."""
    keyed = _keyed(salt)

    def one(name: str | None) -> str | None:
        if name is None or name in KEPT_AUTHORS:
            return name
        h = keyed()
        h.update(name.lower().encode())
        return h.hexdigest()

    return one


def pseudonymize_mentions_text(text: str, salt: str) -> str:
    return _MENTION.sub(lambda m: f"{m.group(1)}u/{pseudonym(m.group(3), salt)}", text)


def scrub_text(text: str | None, privacy: Privacy) -> tuple[str | None, str | None, dict[str, int]]:
    """(the stored text, the text the rules read, matches per kind) of one text."""
    counts = dict.fromkeys(KINDS, 0)
    if text is None:
        return None, None, counts
    if privacy.pseudonymize_authors:
        text = pseudonymize_mentions_text(text, privacy.salt)
    stored = rule = text
    if privacy.scrub_pii:
        for kind, pattern, placeholder, word in _COMPILED:
            counts[kind] += len(pattern.findall(stored))
            stored = pattern.sub(placeholder, stored)
            rule = pattern.sub(word, rule)
    return stored, rule, counts


# ---------------------------------------------------------------------------------------------
# Vectorised (the extract job)


def scrub_column(texts, privacy: Privacy):
    """(stored texts, texts the rules read, matches per kind) of an Arrow string column, as
    ``scrub_text`` gives them one by one."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    texts = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
    counts = dict.fromkeys(KINDS, 0)
    if privacy.pseudonymize_authors and len(texts):
        hit = np.flatnonzero(pc.fill_null(pc.match_substring_regex(texts, MENTION), False).to_numpy(zero_copy_only=False))
        if len(hit):  # mentions are rare: Python rewrites those rows only
            values = texts.to_pylist()
            for i in hit:
                values[i] = pseudonymize_mentions_text(values[i], privacy.salt)
            texts = pa.array(values, pa.string())
    stored = rule = texts
    if privacy.scrub_pii and len(texts):
        # One pass finds the rows with anything to mask (few); the passes per kind run on those alone.
        # A row without a match cannot gain one: no placeholder holds an @, a digit or a colon.
        hit = pc.fill_null(pc.match_substring_regex(texts, ANY_PII), False)
        rows = np.flatnonzero(hit.to_numpy(zero_copy_only=False))
        if len(rows):
            some_stored = some_rule = pc.take(texts, pa.array(rows, pa.int64()))
            for kind, pattern, placeholder, word in PII_KINDS:
                counts[kind] += int(pc.sum(pc.count_substring_regex(some_stored, pattern)).as_py() or 0)
                some_stored = pc.replace_substring_regex(some_stored, pattern, placeholder)
                some_rule = pc.replace_substring_regex(some_rule, pattern, word)
            stored = pc.replace_with_mask(texts, hit, some_stored)
            rule = pc.replace_with_mask(texts, hit, some_rule)
    return stored, rule, counts


def pseudonymize_column(names, salt: str):
    """``pseudonym`` of each name of an Arrow string column: each distinct name hashed once, ASCII
    names lower-cased by Arrow (others by Python, as ``pseudonym`` does), the hex digits written
    by numpy; only the keyed hash itself runs name by name (cProfile: this was 1.4 s of every
    million comments' extract, now about half)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    names = names.combine_chunks() if isinstance(names, pa.ChunkedArray) else names
    encoded = pc.dictionary_encode(names)
    distinct = encoded.dictionary
    if not len(distinct):
        return pc.take(distinct, encoded.indices)
    lowered = pc.ascii_lower(distinct).cast(pa.binary()).to_pylist()
    for i in np.flatnonzero(~pc.string_is_ascii(distinct).to_numpy(zero_copy_only=False)):
        lowered[i] = distinct[int(i)].as_py().lower().encode()
    keyed = _keyed(salt)
    digests = []
    for name in lowered:
        h = keyed()
        h.update(name)
        digests.append(h.digest())
    raw = np.frombuffer(b"".join(digests), np.uint8)
    digits = np.frombuffer(b"0123456789abcdef", np.uint8)
    hexed = np.empty(2 * len(raw), np.uint8)
    hexed[0::2], hexed[1::2] = digits[raw >> 4], digits[raw & 15]
    hashed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), len(distinct), [None, pa.py_buffer(hexed.tobytes())])
    kept = pc.is_in(distinct, value_set=pa.array(sorted(KEPT_AUTHORS), pa.string()))
    mapped = pc.if_else(kept, distinct, hashed.cast(pa.binary()).cast(pa.string()))
    return pc.take(mapped, encoded.indices)
