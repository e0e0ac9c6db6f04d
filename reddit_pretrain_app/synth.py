"""Synthetic Pushshift dumps for tests, the demo and benchmarks.

Writes ``RC_YYYY-MM.zst`` and ``RS_YYYY-MM.zst`` the way Pushshift does (one zstd frame, long
distance matching, window up to 2 GiB) with realistic thread shapes (many tiny threads, a few
megathreads, r/counting-style chains thousands deep) and the quirks of the real dumps listed in
``shared/DATA.md``: ``created_utc`` as int or string, missing fields, ``[deleted]``/``[removed]``,
bots, URLs, markup, quotes, non-English text, multi-byte UTF-8, orphans, NSFW submissions, and a
few malformed or non-UTF-8 lines.

Streaming with bounded memory: only the threads being written are held (their comment ids), so
tens of millions of comments cost no more memory than the largest thread. Deterministic per seed:
the same config writes the same bytes.

CLI::

    python -m reddit_pretrain_app.synth --out data/synth --month 2015-01 --comments 1000000 --seed 0
"""

from __future__ import annotations

import argparse
import calendar
import json
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field

import orjson

from extraction.ingest.dumps import dump_compressor
from reddit_pretrain.hydra_job import tool
from reddit_pretrain_app.synth_text import (FOREIGN_PHRASES, TOPICS, _BOTS, _base36, _Conversation, _EMOJI, _NEXT_ROLE,
                                            _NON_ENGLISH, _Text, _Today)

@dataclass
class SynthConfig:
    """What a synthetic month looks like. Probabilities are per comment unless stated."""

    month: str = "2015-01"
    """Month the dumps are named after (``RC_<month>.zst``); timestamps fall inside it."""
    comments: int = 100_000
    """Total comments written to the RC file."""
    seed: int = 0
    mean_thread_comments: float = 12.0
    """Mean size of an ordinary thread (heavy-tailed: most are tiny)."""
    megathreads: int = 0
    """Number of megathreads of ``megathread_comments`` each (taken from ``comments``)."""
    megathread_comments: int = 100_000
    deep_chains: int = 0
    """Number of r/counting-style threads: one chain, each comment replying to the previous."""
    deep_chain_depth: int = 2_000
    subreddits: int = 300
    active_threads: int = 48
    """Threads written concurrently, interleaved in time as in a real dump."""
    p_string_created_utc: float = 0.25
    p_missing_score: float = 0.02
    p_deleted_body: float = 0.03
    p_removed_body: float = 0.02
    p_deleted_author: float = 0.04
    p_bot: float = 0.02
    p_url: float = 0.03
    p_markup: float = 0.04
    p_quote: float = 0.02
    p_shouting: float = 0.01
    p_conversation: float = 0.6
    """Share of comments in topical conversations a model can learn from (a thread has a topic; a
    question is answered about it, an answer is agreed with or questioned); the rest are Zipf noise."""
    p_non_english: float = 0.03
    p_emoji: float = 0.04
    p_orphan: float = 0.003
    p_malformed_line: float = 0.0002
    p_invalid_utf8_line: float = 0.0001
    p_missing_submission: float = 0.02
    """Per thread: no RS record (deleted submission); its comments still point at it."""
    p_nsfw_submission: float = 0.04
    p_pii: float = 0.0
    """Share of comments that get an e-mail address, a phone number (US or international form) or an
    IPv4/IPv6 address inside otherwise ordinary text; each value planted is listed in the stats."""
    p_mention: float = 0.0
    """Share of comments that thank another author by name (``u/<name>``)."""
    p_foreign_thread: float = 0.0
    """Share of ordinary threads written wholly in another language (Spanish, German, French, Italian,
    Dutch, Portuguese or Russian): the title and every comment; listed in the stats."""
    copypasta_clusters: int = 0
    """Clusters of near copies planted as ordinary replies: an original of ``copypasta_words`` words
    and ``copypasta_copies`` copies, each one small edit from it (a word replaced, dropped or
    appended) with a word 5-gram Jaccard to it of at least ``copypasta_min_jaccard``; listed in the
    stats with each copy's Jaccard. Drawn from a random stream of their own."""
    copypasta_copies: tuple[int, int] = (8, 15)
    copypasta_words: tuple[int, int] = (70, 100)
    copypasta_min_jaccard: float = 0.85
    zstd_level: int = 3
    zstd_window_log: int = 31
    """2**31 = 2 GiB, as Pushshift's ``--long=31``."""
    write_submissions: bool = True
    shape: str = "2015"
    """``2015``: a Pushshift month. ``2024``: as Arctic Shift publishes a month today (its own random
    stream, so the rest of the month is the 2015 shape's): ``_meta`` on every item, with shares deleted
    and removed after the crawl (``p_deleted_later``; such an item's text ends with ``leak<id>``, listed
    in the stats, so a test can find any copy of it), already deleted at the crawl, or edited; comment
    ids scrambled (not in time order, as Reddit's ids since 2026); ``retrieved_on`` on every item;
    ``distinguished``, ``stickied``, ``author_flair_text``, ``collapsed_reason_code`` (some
    ``POTENTIALLY_TOXIC``, ``p_toxic``) and ``subreddit_type``; and moderators' stickied notes
    (``p_mod_note`` of top-level comments) that users reply to. (The other stats, ``copypasta`` and
    ``pii_values``, name comment ids as generated, before the scramble.)"""
    p_deleted_later: float = 0.08
    p_mod_note: float = 0.03
    p_toxic: float = 0.01


@dataclass
class SynthStats:
    comments: int = 0
    submissions: int = 0
    threads: int = 0
    malformed_lines: int = 0
    invalid_utf8_lines: int = 0
    orphans: int = 0
    max_thread_comments: int = 0
    paths: list[str] = field(default_factory=list)
    pii_values: list[str] = field(default_factory=list)
    """Every PII value planted (``p_pii``), to check none is stored."""
    deleted_later: dict[str, str] = field(default_factory=dict)
    """The 2024 shape: id (comment ids as written; submissions ``t3_<id>``) -> its ``leak`` token, for
    the items deleted or removed after the crawl."""
    mod_notes: list[str] = field(default_factory=list)
    """The 2024 shape: the ids of the moderators' stickied notes."""
    foreign_threads: dict[str, str] = field(default_factory=dict)
    """Thread (submission id) -> its language, for the threads written in another (``p_foreign_thread``)."""
    copypasta: list[list[dict]] = field(default_factory=list)
    """Per planted cluster (``copypasta_clusters``), its members as written: ``id`` (comment id),
    ``text``, ``jaccard`` (word 5-gram Jaccard to the cluster's original, 1.0 for the original)."""


GENERATOR_VERSION = 2
"""Bumped whenever the same config writes other text (2: topical conversations), so caches of
generated months (``benchmarks/common.synthetic_month``) are not reused across versions."""

class _Thread:
    __slots__ = ("link_id", "subreddit", "planned", "written", "ids", "roles", "nouns", "shape", "count_from", "topic",
                 "title_noun", "language")

    def __init__(self, link_id: str, subreddit: str, planned: int, shape: str, topic: str = "phone"):
        self.link_id = link_id
        self.subreddit = subreddit
        self.planned = planned
        self.written = 0
        self.ids: list[str] = []
        self.roles: list[str] = []  # each comment's part in the conversation ("noise" when none)
        self.nouns: list[str | None] = []  # the topic noun each comment spoke of
        self.title_noun: str | None = None
        self.shape = shape  # "normal", "mega" or "chain"
        self.count_from = 0
        self.topic = topic
        self.language: str | None = None  # None: English; else a key of FOREIGN_PHRASES


class _Generator:
    def __init__(self, cfg: SynthConfig):
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.text = _Text(self.rng)
        self.talk = _Conversation(self.rng)
        year, month = (int(x) for x in cfg.month.split("-"))
        self.month_start = calendar.timegm((year, month, 1, 0, 0, 0))
        self.month_seconds = calendar.monthrange(year, month)[1] * 86400
        # Ids grow with time as on Reddit, so months never share an id ("c13" ... "xyz12").
        months_since_2005 = (year - 2005) * 12 + month
        self.next_comment = 36**4 + months_since_2005 * 50_000_000
        self.next_submission = 36**3 + months_since_2005 * 5_000_000
        self.subreddits = [f"sub{_base36(i)}" for i in range(cfg.subreddits)]
        self.subreddits[:6] = ["AskReddit", "funny", "pics", "counting", "worldnews", "gaming"]
        self.sub_cum = []
        total = 0.0
        for i in range(cfg.subreddits):
            total += 1.0 / (i + 1)
            self.sub_cum.append(total)
        self.stats = SynthStats()
        self.planted = self.stats.pii_values
        self.plants = self._copypasta() if cfg.copypasta_clusters else []
        """(comment index, cluster, text, jaccard) still to write, in index order."""

    def _copypasta(self) -> list[tuple[int, int, str, float]]:
        """The planted clusters' texts and the comment indices they go to (``copypasta_clusters``)."""
        from extraction.sessions.neardup import jaccard, shingle_set

        cfg = self.cfg
        rng = random.Random(f"copypasta {cfg.seed}")  # its own stream: the rest of the month is drawn as without it
        text = _Text(rng)
        members = []
        for cluster in range(cfg.copypasta_clusters):
            words: list[str] = []
            target = rng.randint(*cfg.copypasta_words)
            while len(words) < target:
                words += text.sentence(8, 20).split()
            original = " ".join(words[:target])
            grams = shingle_set(original, 5)
            members.append((cluster, original, 1.0))
            for _ in range(rng.randint(*cfg.copypasta_copies)):
                for _attempt in range(100):
                    edited = list(words[:target])
                    kind, at = rng.randrange(3), rng.randrange(target)
                    if kind == 0:
                        edited[at] = rng.choice([w for w in text.words[:200] if w != edited[at]])
                    elif kind == 1:
                        del edited[at]
                    else:
                        edited.append(rng.choice(text.words[:200]))
                    copy = " ".join(edited)
                    similarity = jaccard(grams, shingle_set(copy, 5))
                    if copy != original and similarity >= cfg.copypasta_min_jaccard:
                        break
                else:
                    raise ValueError("copypasta_words too short for copypasta_min_jaccard")
                members.append((cluster, copy, round(similarity, 4)))
        rng.shuffle(members)
        at = sorted(rng.sample(range(cfg.comments), len(members)))
        self.stats.copypasta = [[] for _ in range(cfg.copypasta_clusters)]
        return [(i, c, t, j) for i, (c, t, j) in zip(at, members)]

    def timestamp(self, done: int) -> int:
        return self.month_start + int(self.month_seconds * done / max(1, self.cfg.comments))

    def created(self, ts: int):
        return str(ts) if self.rng.random() < self.cfg.p_string_created_utc else ts

    def new_thread(self, shape: str, planned: int, done: int) -> tuple[_Thread, dict | None]:
        cfg, rng = self.cfg, self.rng
        sid = _base36(self.next_submission)
        self.next_submission += 1
        subreddit = "counting" if shape == "chain" else rng.choices(self.subreddits, cum_weights=self.sub_cum)[0]
        thread = _Thread(sid, subreddit, planned, shape, rng.choice(sorted(TOPICS)))
        if cfg.p_foreign_thread and shape == "normal" and rng.random() < cfg.p_foreign_thread:  # no draw when off
            thread.language = rng.choice(sorted(FOREIGN_PHRASES))
            self.stats.foreign_threads[sid] = thread.language
        self.stats.threads += 1
        self.stats.max_thread_comments = max(self.stats.max_thread_comments, planned)
        if rng.random() < cfg.p_missing_submission:
            return thread, None
        ts = self.timestamp(done)
        if thread.language:
            title = self.foreign(thread.language, 1).rstrip(".!?")
        elif shape != "chain" and rng.random() < cfg.p_conversation:
            title, thread.title_noun = self.talk.say(thread.topic, "question")
        else:
            title = "Counting thread" if shape == "chain" else self.text.sentence(4, 14).rstrip(".!?")
        submission = {
            "id": sid,
            "name": f"t3_{sid}",
            "title": title,
            "selftext": self.text.body() if rng.random() < 0.3 else "",
            "subreddit": subreddit,
            "author": rng.choice(["[deleted]", f"user{rng.randrange(10**6)}"]) if rng.random() < 0.05 else f"user{rng.randrange(10**6)}",
            "over_18": rng.random() < cfg.p_nsfw_submission,
            "num_comments": planned,
            "score": rng.randint(1, 5000),
            "created_utc": self.created(ts),
            "is_self": True,
        }
        if rng.random() < 0.1:
            del submission["selftext"]
        if rng.random() < 0.3:
            submission["retrieved_on"] = ts + 86400 * 30
        return thread, submission

    def body(self, thread: _Thread, parent_role: str = "noise", parent_noun: str | None = None) -> tuple[str, str, str, str | None]:
        """Returns (author, body, its part in the conversation, its topic noun) with the configured quirks."""
        cfg, rng = self.cfg, self.rng
        author = f"user{rng.randrange(2 * 10**5)}"
        if thread.shape == "chain":
            return author, str(thread.count_from + thread.written + 1), "noise", None
        r = rng.random()
        if r < cfg.p_deleted_body:
            return "[deleted]", "[deleted]", "noise", None
        r -= cfg.p_deleted_body
        if r < cfg.p_removed_body:
            return "[deleted]", "[removed]", "noise", None
        r -= cfg.p_removed_body
        if r < cfg.p_bot:
            bot = rng.choice(_BOTS)
            return bot, f"I am a bot. {self.text.sentence()} [Info](https://www.reddit.com/r/{bot}/wiki)", "noise", None
        if thread.language:
            body = self.foreign(thread.language, rng.randint(1, 3))
            if rng.random() < cfg.p_emoji:
                body += " " + rng.choice(_EMOJI)
            return ("[deleted]" if rng.random() < cfg.p_deleted_author else author), body, "noise", None
        # A conversation mostly goes on once started; noise and top-level comments start one now and then.
        goes_on = parent_role in ("question", "answer", "follow_up")
        role = _NEXT_ROLE[parent_role] if rng.random() < (0.9 if goes_on else cfg.p_conversation) else "noise"
        body, noun = (self.text.body(), None) if role == "noise" else self.talk.say(thread.topic, role, parent_noun)
        if rng.random() < cfg.p_url:
            body += rng.choice([" http://imgur.com/a/", " https://en.wikipedia.org/wiki/", " www.example.com/"]) + _base36(rng.randrange(10**8))
        if rng.random() < cfg.p_markup:
            body = rng.choice([f"**{body}**", f"[{body}](http://example.com)", f"{body} ^(edit: typo)", f"*{body}*"])
        if rng.random() < cfg.p_quote:
            body = rng.choice(["&gt; ", "> "]) + self.text.sentence() + "\n\n" + body
        if rng.random() < cfg.p_shouting:
            body = "WHAT " + body.upper()
        if rng.random() < cfg.p_non_english:
            body = rng.choice(_NON_ENGLISH)
        if rng.random() < cfg.p_emoji:
            body += " " + rng.choice(_EMOJI)
        if cfg.p_pii and rng.random() < cfg.p_pii:  # no draw when off: the same months as before
            words = body.split(" ")
            lead = rng.choice(["reach me at", "mine is", "try", "it was", "use", "contact", "write to", "at", "call",
                               "from", "ask", "via", "see", "on", "or", "and"])
            words.insert(rng.randrange(len(words) + 1), f"{lead} {self.pii_value()}")
            body = " ".join(words)
        if cfg.p_mention and rng.random() < cfg.p_mention:
            body += f" Thanks u/user{rng.randrange(2 * 10**5)} for the tip."
        if rng.random() < cfg.p_deleted_author:
            author = "[deleted]"
        return author, body, role, noun

    def foreign(self, language: str, sentences: int) -> str:
        return " ".join(self.rng.sample(FOREIGN_PHRASES[language], sentences))

    def pii_value(self) -> str:
        """One planted e-mail address, phone number or IP address, in one of the forms people write."""
        rng = self.rng
        kind = rng.randrange(6)
        a, b, c = rng.randrange(200, 999), rng.randrange(200, 999), rng.randrange(1000, 9999)
        if kind == 0:
            value = f"{rng.choice(['john', 'maria', 'k.lee', 'sam_t'])}{rng.randrange(100)}@{rng.choice(['gmail.com', 'yahoo.co.uk', 'mail.example.org'])}"
        elif kind == 1:
            value = rng.choice([f"({a}) {b}-{c}", f"{a}-{b}-{c}", f"{a}.{b}.{c}", f"+1 {a} {b} {c}"])
        elif kind == 2:
            value = f"+{rng.choice([44, 49, 33, 91])} {rng.randrange(10, 99)} {rng.randrange(1000, 9999)} {rng.randrange(1000, 9999)}"
        elif kind in (3, 4):
            value = ".".join(str(rng.randrange(1, 255)) for _ in range(4))
        else:
            value = ":".join(f"{rng.randrange(0x10000):x}" for _ in range(8))
        self.planted.append(value)
        return value

    def comment(self, thread: _Thread, done: int) -> dict:
        cfg, rng = self.cfg, self.rng
        cid = _base36(self.next_comment)
        self.next_comment += 1
        parent_role, parent_noun = "noise", None
        if thread.shape == "chain":
            parent = f"t1_{thread.ids[-1]}" if thread.ids else f"t3_{thread.link_id}"
        elif not thread.ids or rng.random() < (0.02 if thread.shape == "mega" else 0.25):
            parent = f"t3_{thread.link_id}"
            parent_role, parent_noun = "root", thread.title_noun
        else:
            # Mostly answer recent comments, which grows chains as real threads do.
            k = len(thread.ids)
            index = k - 1 - min(k - 1, int(rng.expovariate(1 / 3.0)))
            if rng.random() < 0.15:
                index = rng.randrange(k)
            parent = f"t1_{thread.ids[index]}"
            parent_role, parent_noun = thread.roles[index], thread.nouns[index]
        if thread.shape != "chain" and rng.random() < cfg.p_orphan:
            parent = f"t1_{_base36(36**7 + rng.randrange(10**9))}"  # never written
            parent_role = "noise"
            self.stats.orphans += 1
        if self.plants and done >= self.plants[0][0] and thread.shape == "normal" and not thread.language:
            _, cluster, body, similarity = self.plants.pop(0)  # a planted copy, as an ordinary reply
            author, role, noun = f"user{rng.randrange(2 * 10**5)}", "noise", None
            self.stats.copypasta[cluster].append({"id": cid, "text": body, "jaccard": similarity})
        else:
            author, body, role, noun = self.body(thread, parent_role, parent_noun)
        ts = self.timestamp(done)
        record = {
            "author": author,
            "body": body,
            "created_utc": self.created(ts),
            "id": cid,
            "link_id": f"t3_{thread.link_id}",
            "parent_id": parent,
            "score": rng.randint(-5, 60) if rng.random() < 0.9 else rng.randint(-100, 5000),
            "subreddit": thread.subreddit,
            "edited": False if rng.random() < 0.9 else ts + rng.randint(60, 86400),
            "controversiality": 0,
            "gilded": 0,
        }
        if rng.random() < cfg.p_missing_score:
            del record["score"]
        if rng.random() < 0.5:
            record["retrieved_on"] = ts + 86400 * 30
        else:
            record["retrieved_utc"] = ts + 86400 * 30
            record["_meta"] = {"retrieval_method": "synthetic"}
        thread.ids.append(cid)
        thread.roles.append(role)
        thread.nouns.append(noun)
        thread.written += 1
        return record

    def thread_plan(self) -> list[tuple[str, int]]:
        """Sizes of the special threads, started at spread-out points of the month."""
        cfg = self.cfg
        plan = [("mega", cfg.megathread_comments)] * cfg.megathreads
        plan += [("chain", cfg.deep_chain_depth)] * cfg.deep_chains
        if sum(n for _, n in plan) > cfg.comments:
            raise ValueError(
                f"megathreads and deep chains need {sum(n for _, n in plan)} comments, "
                f"more than comments={cfg.comments}"
            )
        return plan

    def normal_size(self) -> int:
        # Pareto with shape 1.2, as thread sizes on Reddit: the median thread has a few comments,
        # a few have thousands. Scale so the untruncated mean is mean_thread_comments.
        alpha = 1.2
        scale = self.cfg.mean_thread_comments * (alpha - 1) / alpha
        return max(1, min(5000, int(self.rng.paretovariate(alpha) * scale)))

    def encode(self, record: dict) -> bytes:
        line = orjson.dumps(record)
        rng, cfg = self.rng, self.cfg
        r = rng.random()
        if r < cfg.p_malformed_line:
            self.stats.malformed_lines += 1
            return line[: max(1, len(line) // 2)] + b"\n"
        if r < cfg.p_malformed_line + cfg.p_invalid_utf8_line:
            self.stats.invalid_utf8_lines += 1
            return line.replace(b'"body":"', b'"body":"\xff\xfe', 1) + b"\n"
        return line + b"\n"

    def run(self, write_comment, write_submission) -> SynthStats:
        cfg, rng = self.cfg, self.rng
        specials = self.thread_plan()
        # Start special threads at evenly spread points so they interleave with ordinary ones.
        starts = sorted(
            (int(cfg.comments * (i + 0.5) / (len(specials) + 1) * 0.5), shape, n)
            for i, (shape, n) in enumerate(specials)
        )
        special_budget = sum(n for _, n in specials)
        ordinary_budget = cfg.comments - special_budget
        active: list[_Thread] = []
        done = 0
        while done < cfg.comments:
            while starts and starts[0][0] <= done:
                _, shape, n = starts.pop(0)
                thread, sub = self.new_thread(shape, n, done)
                thread.count_from = rng.randrange(10**6) if shape == "chain" else 0
                active.append(thread)
                if sub is not None:
                    write_submission(sub)
            while ordinary_budget > 0 and sum(t.shape == "normal" for t in active) < cfg.active_threads:
                n = min(self.normal_size(), ordinary_budget)
                ordinary_budget -= n
                thread, sub = self.new_thread("normal", n, done)
                active.append(thread)
                if sub is not None:
                    write_submission(sub)
            if not active:  # only special threads left, not started yet
                _, shape, n = starts.pop(0)
                starts.insert(0, (done, shape, n))
                continue
            thread = rng.choice(active)
            write_comment(self.comment(thread, done))
            done += 1
            if thread.written >= thread.planned:
                active.remove(thread)
        self.stats.comments = done
        return self.stats


def write_month(out_dir: str, cfg: SynthConfig, progress: bool = False) -> SynthStats:
    """Writes ``RC_<month>.zst`` (and ``RS_<month>.zst``) into ``out_dir``; returns what it wrote.

    Files appear atomically (written under a temporary name, then renamed).
    """
    os.makedirs(out_dir, exist_ok=True)
    if cfg.shape not in ("2015", "2024"):
        raise ValueError(f"shape must be 2015 or 2024, not {cfg.shape!r}")
    gen = _Generator(cfg)
    today = _Today(cfg, gen.stats) if cfg.shape == "2024" else None
    rc_path = os.path.join(out_dir, f"RC_{cfg.month}.zst")
    rs_path = os.path.join(out_dir, f"RS_{cfg.month}.zst")
    tmp_rc, tmp_rs = rc_path + ".tmp", rs_path + ".tmp"
    started = time.time()
    with open(tmp_rc, "wb") as rc_file, open(tmp_rs, "wb") as rs_file:
        rc = dump_compressor(cfg.zstd_level, cfg.zstd_window_log).stream_writer(rc_file, closefd=False)
        rs = dump_compressor(cfg.zstd_level, cfg.zstd_window_log).stream_writer(rs_file, closefd=False)
        buffer: list[bytes] = []
        written = [0]

        def write_comment(record: dict) -> None:
            buffer.append(gen.encode(today.comment(record) if today else record))
            written[0] += 1
            if len(buffer) >= 4096:
                rc.write(b"".join(buffer))
                buffer.clear()
                if progress and written[0] % (1 << 18) < 4096:
                    done = written[0]
                    rate = done / max(1e-9, time.time() - started)
                    print(f"[synth] {done:,}/{cfg.comments:,} comments ({rate:,.0f}/s)", file=sys.stderr)

        def write_submission(record: dict) -> None:
            gen.stats.submissions += 1
            rs.write(orjson.dumps(today.submission(record) if today else record) + b"\n")

        stats = gen.run(write_comment, write_submission)
        rc.write(b"".join(buffer))
        rc.close()
        rs.close()
    os.replace(tmp_rc, rc_path)
    stats.paths.append(rc_path)
    if cfg.write_submissions:
        os.replace(tmp_rs, rs_path)
        stats.paths.append(rs_path)
    else:
        os.remove(tmp_rs)
        stats.submissions = 0
    return stats


@tool
def main(argv: list[str] | None = None) -> int:
    from reddit_pretrain.hydra_job import prog

    parser = argparse.ArgumentParser(prog=prog("python -m reddit_pretrain_app.synth"), description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder (RC_<month>.zst and RS_<month>.zst are written there)")
    defaults = SynthConfig()
    for name, value in asdict(defaults).items():
        flag = "--" + name.replace("_", "-")
        kind = "true/false" if isinstance(value, bool) else type(value).__name__
        if isinstance(value, bool):
            parser.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes"), default=value, help=kind)
        else:
            parser.add_argument(flag, type=type(value), default=value, help=kind)
    args = vars(parser.parse_args(argv))
    out = args.pop("out")
    stats = write_month(out, SynthConfig(**args), progress=True)
    print(json.dumps(asdict(stats), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
