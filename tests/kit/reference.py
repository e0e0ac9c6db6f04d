"""The whole extract stage in plain Python, one comment and one session at a time: the reference.

Slow and obvious on purpose: tests run it on generated and hand-written threads and compare every
session (ids, turns, chain end, drop reason, split) and the report's counts with the extract job
(``extraction.sessions.reddit_threads`` inside Spark). Only the corpus rules differ in form: the job counts
trigrams as 64-bit hashes, this counts the strings.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

from extraction.sessions.privacy import KINDS as PII_KINDS, Privacy, pseudonym, scrub_text
from extraction.sessions.chains import ALL_SESSION_REASONS, ChainsConfig, SplitConfig, hash_split
from extraction.sessions.dialogpt import comment_words
from extraction.sessions.features import ABSENT_TEXTS
from extraction.sessions.filters import TURN_RULES, FiltersConfig, LoadedRules
from extraction.sessions.rules import trigrams, unescape_html, words

_COLUMNS = ("link_id", "parent_id", "parent_kind", "subreddit", "author", "body", "score", "created_utc")


def _sort_key(row: dict, columns) -> tuple:
    return tuple((0, None) if row.get(c) is None else (1, row[c].encode() if isinstance(row[c], str) else row[c]) for c in columns)


def dedupe(rows: list[dict], columns=_COLUMNS) -> list[dict]:
    """One row per id, the smallest by the other columns (nulls first)."""
    best: dict[str, dict] = {}
    for row in rows:
        current = best.get(row["id"])
        if current is None or _sort_key(row, columns) < _sort_key(current, columns):
            best[row["id"]] = row
    return list(best.values())


def _parent(by_id: dict, c: dict) -> dict | None:
    parent = by_id.get(c["parent_id"]) if c["parent_kind"] == "comment" else None
    return parent if parent is not None and parent["link_id"] == c["link_id"] else None


def cycle_ids(comments: list[dict]) -> set[str]:
    """Ids of the comments on a cycle of parent links (within the thread): following parents from
    such a comment comes back to it."""
    by_id = {c["id"]: c for c in comments}
    out = set()
    for c in comments:
        seen, node = set(), _parent(by_id, c)
        while node is not None and node["id"] not in seen and node["id"] != c["id"]:
            seen.add(node["id"])
            node = _parent(by_id, node)
        if node is not None and node["id"] == c["id"]:
            out.add(c["id"])
    return out


def chain_walk(comments: list[dict], cut: dict, cfg: ChainsConfig, cycles: set[str] | None = None) -> list[tuple[str, list[str], str]]:
    """(session id, turn ids first to last, chain end) of every session end, parents within the
    thread; a comment on a cycle of parent links (``cycles``, else ``cycle_ids``) has its parent
    link cut (``parent_cycle``)."""
    by_id = {c["id"]: c for c in comments}
    cycles = cycle_ids(comments) if cycles is None else cycles
    valid = [c for c in comments if cut[c["id"]] is None]
    parents_of_valid = {(c["parent_id"], c["link_id"]) for c in valid if c["parent_kind"] == "comment" and c["id"] not in cycles}
    ends = [c for c in valid if cfg.mode == "replies" or (c["id"], c["link_id"]) not in parents_of_valid]
    long = {c["id"]: bool(cfg.max_turn_words) and comment_words(c["body"] or "") > cfg.max_turn_words for c in valid}
    if cfg.mode == "longest":  # per chain head, its deepest leaf (the earliest of the deepest)
        best: dict[str, tuple[int, str]] = {}
        for end in ends:
            if long[end["id"]]:
                continue
            node, depth = end, 0
            while node["parent_kind"] == "comment" and node["id"] not in cycles:
                parent = _parent(by_id, node)
                if parent is None or cut[parent["id"]] is not None or long[parent["id"]]:
                    break
                node, depth = parent, depth + 1
            when = (end["created_utc"] or 0, len(end["id"]), end["id"])
            if node["id"] not in best or (-depth, when) < (-best[node["id"]][0], best[node["id"]][1]):
                best[node["id"]] = (depth, when)
        chosen = {when[2] for _, when in best.values()}
        ends = [c for c in ends if c["id"] in chosen]
    out = []
    for end in ends:
        if long[end["id"]]:
            out.append((end["id"], [], "long_turn"))
            continue
        chain, node = [end["id"]], end
        while True:
            if node["parent_kind"] == "submission":
                chain_end = "root"
                break
            if node["parent_kind"] != "comment":
                chain_end = "missing_parent"
                break
            if len(chain) >= cfg.max_turns:
                chain_end = "truncated"
                break
            if node["id"] in cycles:
                chain_end = "parent_cycle"
                break
            parent = _parent(by_id, node)
            if parent is None:
                chain_end = "missing_parent"
                break
            if cut[parent["id"]] is not None:
                chain_end = f"cut_{cut[parent['id']]}"
                break
            if long[parent["id"]]:
                chain_end = "long_turn"
                break
            chain.insert(0, parent["id"])
            node = parent
        out.append((end["id"], chain, chain_end))
    return out


def _private(row: dict, fields: tuple[str, ...], privacy: Privacy, pii: dict) -> dict:
    """``row`` with each text field scrubbed (``extraction.sessions.privacy``): the stored form under its
    name, what the rules read under ``_read_<name>``."""
    out = dict(row)
    for name in fields:
        stored, read, found = scrub_text(row.get(name), privacy) if privacy.active else (row.get(name), row.get(name), {})
        out[name], out[f"_read_{name}"] = stored, read
        for k, v in found.items():
            pii[k] += v
    return out


def reference_extract(comments: list[dict], submissions: list[dict] | None, chains: ChainsConfig,
                      filters: FiltersConfig, split: SplitConfig, privacy: Privacy | None = None) -> tuple[dict[str, dict], dict]:
    """Every candidate session by id (turn_ids, turns, chain_end, has_title, over_18, drop_reason,
    split) and the comment accounting of the report."""
    privacy = privacy or Privacy(False, False, "")
    pii = dict.fromkeys(PII_KINDS, 0)
    rules = LoadedRules.load(filters)
    ingested = len(comments)
    comments = dedupe(comments)
    if filters.unescape_html:
        comments = [{**c, "body": unescape_html(c["body"])} for c in comments]
    comments = [_private(c, ("body",), privacy, pii) for c in comments]
    cut = {c["id"]: rules.turn_reason(c["_read_body"], c["author"], c) for c in comments}
    if privacy.pseudonymize_authors:
        comments = [{**c, "author": pseudonym(c["author"], privacy.salt)} for c in comments]
    by_id = {c["id"]: c for c in comments}
    subs = {s["id"]: s for s in dedupe(submissions, [c for c in ("title", "selftext", "over_18", "num_comments", "author", "score", "created_utc")])} \
        if submissions is not None else None
    if subs is not None and filters.unescape_html:
        subs = {k: {**s, "title": unescape_html(s["title"]), "selftext": unescape_html(s.get("selftext"))} for k, s in subs.items()}
    if subs is not None:
        subs = {k: _private(s, ("title", "selftext"), privacy, pii) for k, s in subs.items()}
        if privacy.pseudonymize_authors:
            subs = {k: {**s, "author": pseudonym(s["author"], privacy.salt)} for k, s in subs.items()}
    sessions: dict[str, dict] = {}
    names = [r.name for r in rules.on("session")]
    from_language = set(names[names.index("language"):]) if "language" in names else set()
    cycles = cycle_ids(comments)
    for session_id, ids, chain_end in chain_walk(comments, cut, chains, cycles):
        end = by_id[session_id]
        turns = [{"id": i, "text": by_id[i]["body"], "read": by_id[i]["_read_body"], "author": by_id[i]["author"],
                  "score": by_id[i]["score"], "created_utc": by_id[i]["created_utc"]} for i in ids]
        sub = subs.get(end["link_id"]) if subs is not None else None
        has_title = False
        if sub is not None and chains.include_title and chain_end == "root" and sub["title"] is not None \
                and len(turns) < chains.max_turns:
            text, read = sub["title"], sub["_read_title"]
            if chains.include_selftext and (sub.get("selftext") or "").strip() not in ("", *ABSENT_TEXTS):
                text, read = text + "\n\n" + sub["selftext"], read + "\n\n" + sub["_read_selftext"]
            turns.insert(0, {"id": "t3_" + end["link_id"], "text": text, "read": read, "author": sub["author"],
                             "score": sub["score"], "created_utc": sub["created_utc"]})
            has_title = True
        over_18 = sub["over_18"] if sub is not None else None
        thread_comments = None if subs is None else -1 if sub is None or sub.get("num_comments") is None else sub["num_comments"]
        reason = None
        if len(turns) < chains.min_turns:
            reason = "min_turns"
        elif chain_end == "truncated" and chains.long_chains == "drop":
            reason = "max_turns"
        else:
            reason = rules.session_reason([t["read"] or "" for t in turns], end["subreddit"], over_18,
                                          turns[-1]["score"], has_title, thread_comments, end)
        # the language rule judges the sessions that reach it (the session rules from it on drop or keep them)
        language, confidence = rules.session_language([t["read"] or "" for t in (turns[1:] if has_title else turns)]) \
            if filters.language and (reason is None or reason in from_language) else (None, None)
        # the classifier judges the sessions that reach it: those it keeps or drops
        classifier_score = rules.classifier.score(turns[-1]["read"] or "") \
            if filters.classifier and reason in (None, "classifier") else None
        sessions[session_id] = {"link_id": end["link_id"], "subreddit": end["subreddit"], "language": language,
                                "language_confidence": confidence, "classifier_score": classifier_score,
                                "turn_ids": [t["id"] for t in turns], "turns": [t["text"] for t in turns],
                                "authors": [t["author"] for t in turns], "scores": [t["score"] for t in turns],
                                "created_utc": [t["created_utc"] for t in turns], "num_turns": len(turns),
                                "has_title": has_title, "over_18": over_18, "chain_end": chain_end, "drop_reason": reason,
                                "_read_response": turns[-1]["read"] if turns else None}

    judged = [sid for sid in sorted(sessions) if sessions[sid]["drop_reason"] is None]  # what the corpus rules see
    for s in sessions.values():
        s["duplicate_of"] = None
    if filters.bland:
        counts = Counter(g for c in comments if c["_read_body"] for g in trigrams(c["_read_body"]))
        for s in sessions.values():
            grams = trigrams(s["_read_response"] or "") if s["drop_reason"] is None else []
            if grams:
                if sum(counts[g] > filters.bland_min_count for g in grams) / len(grams) >= filters.bland_fraction:
                    s["drop_reason"] = "bland"
    for reason, key, on in (("duplicate_session", lambda s: tuple(s["turns"]), filters.duplicate_session),
                            ("duplicate_response", lambda s: s["turns"][-1], filters.duplicate_response)):
        if not on:
            continue
        keeper: dict = {}
        for sid in sorted(sessions, key=lambda sid: earliest(sessions, sid)):
            s = sessions[sid]
            if s["drop_reason"] is None:
                if key(s) in keeper:
                    s["drop_reason"], s["duplicate_of"] = reason, keeper[key(s)]
                else:
                    keeper[key(s)] = sid
    if filters.near_duplicate:
        _near_duplicates(sessions, judged, filters, lambda s: s["_read_response"], "near_duplicate_response")
    if filters.near_duplicate_session:
        _near_duplicates(sessions, judged, filters, lambda s: "\n".join(s["turns"]), "near_duplicate_session")

    starts: dict[str, int] = {}
    for c in comments:
        if c["created_utc"] is not None:
            starts[c["link_id"]] = min(starts.get(c["link_id"], c["created_utc"]), c["created_utc"])
    for s in sessions.values():
        s["split"] = _split(s["link_id"], starts.get(s["link_id"]), split)

    # Where every comment went.
    used = {i for s in sessions.values() if s["drop_reason"] is None for i in s["turn_ids"] if i in by_id}
    rank = {r: i for i, r in enumerate(ALL_SESSION_REASONS)}
    best: dict[str, int] = {}
    for s in sessions.values():
        if s["drop_reason"] is not None:
            for i in s["turn_ids"]:
                if i in by_id and i not in used:
                    best[i] = min(best.get(i, len(rank)), rank[s["drop_reason"]])
    valid = sum(1 for c in comments if cut[c["id"]] is None)
    in_rejected = Counter(ALL_SESSION_REASONS[r] for r in best.values())
    accounting = {
        "comments": ingested, "duplicate_ids": ingested - len(comments), "used_in_sessions": len(used),
        "cut_by_turn_rule": {r: sum(1 for v in cut.values() if v == r) for r in TURN_RULES},
        "only_in_rejected_sessions": dict(in_rejected),
        "not_in_any_session": valid - len(used) - sum(in_rejected.values()),
        "parent_cycles": len(cycles),
    }
    for session in sessions.values():
        del session["_read_response"]
    accounting["pii_masked"] = pii
    return sessions, accounting


def similar_pairs(sets: dict[str, set], threshold: float) -> list[tuple[str, str]]:
    """Every pair (a < b) of sets with Jaccard at least ``threshold``, exactly, by prefix filtering: with
    each set's elements ordered rarest first, two sets that alike share one of the first
    ``len - ceil(threshold * len) + 1`` elements of each, so only pairs sharing a prefix element are compared."""
    import math

    from extraction.sessions.neardup import jaccard

    frequency = Counter(g for grams in sets.values() for g in grams)
    index: dict[int, list[str]] = {}
    out = set()
    for sid in sorted(sets):
        grams = sorted(sets[sid], key=lambda g: (frequency[g], g))
        prefix = grams[: len(grams) - math.ceil(threshold * len(grams)) + 1] if threshold > 0 else grams
        for g in prefix:
            for other in index.get(g, ()):
                if (other, sid) not in out and jaccard(sets[other], sets[sid]) >= threshold:
                    out.add((other, sid))
            index.setdefault(g, []).append(sid)
    return sorted(out)


def earliest(sessions: dict[str, dict], sid: str) -> tuple:
    """The order in which the corpus rules keep copies, the earliest first: the last turn's time,
    then the id read as a base-36 number (a shorter id first)."""
    return (sessions[sid]["created_utc"][-1] or 0, len(sid), sid)


def _near_duplicates(sessions: dict[str, dict], judged: list[str], filters: FiltersConfig, text, reason: str) -> None:
    """A near-duplicate rule over every pair (no LSH): the ``text`` of two sessions (the response, or
    the turns joined) with shingle Jaccard at least the threshold are linked, clusters are the linked
    components, and every member but the earliest (``earliest``) is dropped if no earlier rule dropped
    it, naming that one."""
    from extraction.sessions.neardup import shingle_set

    sets = {sid: shingle_set(text(sessions[sid]), filters.near_duplicate_shingle) for sid in judged}
    sets = {sid: g for sid, g in sets.items() if g}
    parent = {sid: sid for sid in sets}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in similar_pairs(sets, filters.near_duplicate_threshold):
        ra, rb = find(a), find(b)
        if ra != rb:
            first, later = sorted((ra, rb), key=lambda sid: earliest(sessions, sid))
            parent[later] = first
    for sid in sets:
        root = find(sid)
        if root != sid and sessions[sid]["drop_reason"] is None:
            sessions[sid]["drop_reason"], sessions[sid]["duplicate_of"] = reason, root


def _split(link_id: str, start: int | None, cfg: SplitConfig) -> str:
    if cfg.method == "hash":
        return hash_split(link_id, cfg)
    if start is None:
        return "train"
    day = dt.datetime.fromtimestamp(start, dt.timezone.utc).date()
    if day >= dt.date.fromisoformat(cfg.test_from):
        return "test"
    return "valid" if day >= dt.date.fromisoformat(cfg.valid_from) else "train"


__all__ = ["chain_walk", "dedupe", "reference_extract", "words"]
