import orjson
import pytest

from extraction.ingest.records import COMMENT_SCHEMA, SUBMISSION_SCHEMA

from extraction.ingest.columns import parse_block

COMMENT = {
    "id": "c13",
    "parent_id": "t1_c12",
    "link_id": "t3_17863",
    "subreddit": "reddit.com",
    "author": "frjo",
    "body": "A look at Vietnam.",
    "score": 2,
    "created_utc": 1134365188,
    "edited": False,
}


def line(obj) -> bytes:
    return orjson.dumps(obj)


def rows(kind, lines):
    result = parse_block(kind, "RC_2005-12.zst", 1, lines)
    return result.rows.to_pylist(), result.rejects


def test_comment_is_normalised():
    (row,), rejects = rows("RC", [line(COMMENT)])
    assert rejects == []
    assert row == {
        "id": "c13",
        "link_id": "17863",
        "parent_id": "c12",
        "parent_kind": "comment",
        "subreddit": "reddit.com",
        "author": "frjo",
        "body": "A look at Vietnam.",
        "score": 2,
        "created_utc": 1134365188,
        **dict.fromkeys(("distinguished", "stickied", "edited", "controversiality", "author_flair_text",
                         "collapsed_reason_code", "subreddit_type", "retrieved_on", "deletion")),
        "month": "2005-12",
    }


@pytest.mark.parametrize(
    "change, field, expected",
    [
        ({"created_utc": "1134365188"}, "created_utc", 1134365188),
        ({"created_utc": "1134365188.0"}, "created_utc", 1134365188),
        ({"score": None}, "score", None),
        ({"score": "7"}, "score", 7),
        ({"id": "t1_c13"}, "id", "c13"),
        ({"parent_id": "t3_17863"}, "parent_kind", "submission"),
        ({"author": None}, "author", None),
        ({"body": "日本語 😂"}, "body", "日本語 😂"),
    ],
)
def test_drifting_fields(change, field, expected):
    (row,), rejects = rows("RC", [line({**COMMENT, **change})])
    assert rejects == [] and row[field] == expected


def test_missing_optional_fields_and_link_from_top_level_parent():
    record = {k: v for k, v in COMMENT.items() if k not in ("score", "link_id", "subreddit")}
    record["parent_id"] = "t3_abc"
    (row,), _ = rows("RC", [line(record)])
    assert row["score"] is None and row["link_id"] == "abc" and row["subreddit"] is None


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"", "empty_line"),
        (b'{"id": "c1", "body": "cut', "malformed_json"),
        (b'{"id":"c1","body":"\xff\xfe bad"}', "invalid_utf8"),
        (b"[1, 2]", "not_an_object"),
        (line({k: v for k, v in COMMENT.items() if k != "body"}), "missing_field"),
        (line({k: v for k, v in COMMENT.items() if k != "created_utc"}), "missing_field"),
        (line({**COMMENT, "created_utc": "yesterday"}), "bad_value"),
        (line({**COMMENT, "created_utc": -5}), "bad_value"),
        (line({**COMMENT, "created_utc": 10**17}), "bad_value"),
        (line({**COMMENT, "parent_id": "c12"}), "bad_value"),
        (line({**COMMENT, "body": 12}), "bad_value"),
    ],
)
def test_bad_lines_are_rejected_with_reason_and_line_number(raw, reason):
    good = line(COMMENT)
    result = parse_block("RC", "RC_2005-12.zst", 41, [good, raw, good])
    assert result.rows.num_rows == 2
    (reject,) = result.rejects
    source, line_number, got_reason, _detail, kept, length = reject
    assert (source, line_number, got_reason, kept, length) == ("RC_2005-12.zst", 42, reason, raw, len(raw))


def test_submission_row():
    record = {"id": "17863", "title": "Hi", "subreddit": "pics", "over_18": True, "num_comments": 3,
              "score": 5, "created_utc": "1134365188", "author": "x"}
    (row,), rejects = rows("RS", [line(record)])
    assert rejects == []
    assert row["over_18"] is True and row["selftext"] is None and row["created_utc"] == 1134365188
    _, rejects = rows("RS", [line({k: v for k, v in record.items() if k != "title"})])
    assert rejects[0][2] == "missing_field"


def test_schemas_of_empty_blocks():
    assert parse_block("RC", "x", 1, []).rows.schema == COMMENT_SCHEMA
    assert parse_block("RS", "x", 1, [b"nope"]).rows.schema == SUBMISSION_SCHEMA


def test_vectorised_path_agrees_with_per_line_reference(tmp_path):
    """Both parsers give the same rows and rejects on a dump full of quirks and damaged lines."""
    from extraction.ingest.dumps import iter_line_blocks
    from extraction.ingest.records import parse_block_per_line
    from reddit_pretrain_app.synth import SynthConfig, write_month

    write_month(str(tmp_path), SynthConfig(comments=6000, seed=5, p_malformed_line=0.01, p_invalid_utf8_line=0.01,
                                           p_orphan=0.05, p_missing_score=0.2))
    extra = [b"", b"  ", b"[1]", line({**COMMENT, "parent_id": "c1"}), line({**COMMENT, "id": 5}),
             line({k: v for k, v in COMMENT.items() if k != "link_id"}), line({**COMMENT, "score": "12"}),
             line({**COMMENT, "created_utc": "1134365188.0"}), b'{"id":"x"} trailing',
             line({**COMMENT, "created_utc": 10**15}), b'{"id":"a"},{"id":"b"}', line({**COMMENT, "body": None}),
             # invalid UTF-8 only in a field the project does not keep: a row for both parsers; in a kept one: a reject
             line({**COMMENT, "id": "utf8ok"})[:-1] + b',"permalink":"/r/x/\xff\xfe"}', line(COMMENT)[:-1] + b',"edited":"\xc3"}',
             line({**COMMENT, "id": "utf8bad", "body": "BODY"}).replace(b"BODY", b"bad \xff byte"),
             line({k: v for k, v in COMMENT.items() if k != "created_utc"})[:-1] + b',"x":"\xff"}']
    for kind in ("RC", "RS"):
        lines = [ln for b in iter_line_blocks(str(tmp_path / f"{kind}_2015-01.zst")) for ln in b.lines]
        lines = lines[:3000] + extra + lines[3000:]
        fast = parse_block(kind, "f", 1, lines)
        slow = parse_block_per_line(kind, "f", 1, lines)
        key = lambda r: tuple(str(v) for v in r.values())  # noqa: E731
        assert sorted(fast.rows.to_pylist(), key=key) == sorted(slow.rows.to_pylist(), key=key)
        assert fast.rejects == slow.rejects
        assert fast.rows.num_rows + len(fast.rejects) == len(lines)
        if kind == "RC":
            ids = {r["id"] for r in slow.rows.to_pylist()}
            assert "utf8ok" in ids and "utf8bad" not in ids


@pytest.mark.parametrize("field, value", [("score", "1e400"), ("score", "inf"), ("score", "-inf"), ("score", "nan"),
                                          ("score", 99999999999999999999999), ("score", 1e30), ("score", 2**63),
                                          ("created_utc", "1e400"), ("created_utc", 1e300)])
def test_numbers_outside_int64_are_bad_values_on_both_parsers(field, value):
    from extraction.ingest.records import parse_block_per_line

    import json

    good = line(COMMENT)
    bad = json.dumps({**COMMENT, "id": "c14", field: value}).encode()  # json writes ints of any size, as dumps hold them
    for parse in (parse_block, parse_block_per_line):
        result = parse("RC", "RC_2005-12.zst", 1, [good, bad])
        assert result.rows.num_rows == 1 and len(result.rejects) == 1, (parse.__name__, result.rejects)
        assert result.rejects[0][1] == 2 and result.rejects[0][2] in ("bad_value", "malformed_json")
    submission = {"id": "s1", "title": "t", "created_utc": 1134365188, "num_comments": 1e30, "score": 1}
    for parse in (parse_block, parse_block_per_line):
        result = parse("RS", "RS_2005-12.zst", 1, [line(submission)])
        assert result.rows.num_rows == 0 and result.rejects[0][2] == "bad_value"


def test_a_parent_or_id_naming_nothing_is_a_bad_value():
    from extraction.ingest.records import parse_block_per_line

    lines = [line({**COMMENT, "parent_id": "t1_"}), line({**COMMENT, "parent_id": "t3_"}), line({**COMMENT, "id": "t1_"}),
             line({**COMMENT, "id": ""}), line(COMMENT)]
    for parse in (parse_block, parse_block_per_line):
        result = parse("RC", "RC_2005-12.zst", 1, lines)
        assert result.rows.num_rows == 1 and [r[2] for r in result.rejects] == ["bad_value"] * 4, result.rejects


def test_prefixes_and_ids_in_any_case_name_one_comment():
    """Base-36 ids: ``T1_C4``, ``t1_C4`` and ``c4`` are one comment, on both parsers, for the id, the
    parent and the link alike, so a child written with capitals keeps its parent (and a capital
    prefix on a parent is no bad value)."""
    from extraction.ingest.records import parse_block_per_line

    lines = [line({**COMMENT, "id": "T1_Ab9", "parent_id": "T3_17863", "link_id": "T3_17863"}),
             line({**COMMENT, "id": "c5", "parent_id": "t1_AB9", "link_id": "t3_17863"}),
             line({**COMMENT, "id": "C6", "parent_id": "T1_C5", "link_id": None}),
             line({**COMMENT, "id": "t3_x", "parent_id": "T9_c5"})]  # another kind's prefix: still no parent kind
    for parse in (parse_block, parse_block_per_line):
        result = parse("RC", "RC_2005-12.zst", 1, lines)
        got = {r["id"]: (r["parent_id"], r["parent_kind"], r["link_id"]) for r in result.rows.to_pylist()}
        assert got["ab9"] == ("17863", "submission", "17863"), (parse.__name__, got)
        assert got["c5"] == ("ab9", "comment", "17863") and "c6" not in got  # a comment parent needs its link
        assert [r[2] for r in result.rejects] == ["missing_field", "bad_value"], result.rejects
    submission = {"id": "T3_17863", "title": "t", "created_utc": 1134365188}
    for parse in (parse_block, parse_block_per_line):
        assert parse("RS", "RS_2005-12.zst", 1, [line(submission)]).rows.to_pylist()[0]["id"] == "17863"


def _both(kind, lines, **kw):
    from extraction.ingest.records import parse_block_per_line

    fast, slow = parse_block(kind, "f", 1, lines, **kw), parse_block_per_line(kind, "f", 1, lines, **kw)
    key = lambda r: r["id"]  # noqa: E731  (the fast path may order rows otherwise)
    assert sorted(fast.rows.to_pylist(), key=key) == sorted(slow.rows.to_pylist(), key=key)
    assert fast.rejects == slow.rejects
    return {r["id"]: r for r in slow.rows.to_pylist()}, slow.rejects


def test_text_deleted_after_the_crawl_is_withheld_on_both_parsers():
    """Today's dumps (``_meta``, from 2023-11): an item deleted or removed after the crawl keeps its row,
    not its text or author; the kind of deletion is kept; a rejected line with those marks keeps no bytes."""
    base = {**COMMENT, "created_utc": 1700000000}
    cases = {
        "d1": ({"was_deleted_later": True}, "deleted", "[deleted]"),
        "d2": ({"was_deleted_later": True, "removal_type": "removed"}, "removed", "[removed]"),
        "d3": ({"was_initially_deleted": True, "removal_type": "removed by reddit"}, "removed by reddit", "[removed]"),
        "d4": ({"was_deleted_later": False, "was_initially_deleted": False, "is_edited": True}, None, None),
        "d5": ({"was_deleted_later": "true"}, "deleted", "[deleted]"),  # an odd type: still withheld
    }
    lines = [line({**base, "id": cid, "body": f"secret text of {cid}", "author": "someone", "_meta": meta})
             for cid, (meta, _, _) in cases.items()]
    lines.append(line({**base, "id": "bad", "created_utc": None, "body": "secret in a bad line",
                       "_meta": {"was_deleted_later": True}}))
    got, rejects = _both("RC", lines)
    for cid, (_, deletion, shown) in cases.items():
        row = got[cid]
        assert row["deletion"] == deletion
        assert (row["body"], row["author"]) == ((shown, shown) if shown else (f"secret text of {cid}", "someone"))
        assert row["parent_id"] == "c12"  # replies keep their parent
    (reject,) = rejects
    assert reject[4] == b"" and b"secret" not in reject[4] and "withheld" in reject[3]
    kept, _ = _both("RC", lines[:3], keep_deleted_text=True)  # research use: the text stays, still marked
    assert kept["d2"]["body"] == "secret text of d2" and kept["d2"]["deletion"] == "removed"
    subs, _ = _both("RS", [line({"id": "s1", "title": "secret title", "selftext": "secret self", "author": "op",
                                 "created_utc": 1700000000, "_meta": {"was_deleted_later": True, "removal_type": "removed"}}),
                           line({"id": "s2", "title": "a link", "selftext": None, "created_utc": 1700000000,
                                 "_meta": {"was_deleted_later": True}})])
    assert (subs["s1"]["title"], subs["s1"]["selftext"], subs["s1"]["author"]) == ("[removed]",) * 3
    assert (subs["s2"]["title"], subs["s2"]["selftext"], subs["s2"]["deletion"]) == ("[deleted]", None, "deleted")


def test_todays_marks_are_kept_with_one_type_each():
    """``distinguished``, ``stickied``, ``edited``, ``controversiality``, ``author_flair_text``,
    ``collapsed_reason_code``, ``subreddit_type``, ``retrieved_on`` (or 2021's ``retrieved_utc``): typed
    alike on both parsers; an odd value is null, never a reject."""
    marks = {"distinguished": "moderator", "stickied": True, "edited": 1700000100.5, "controversiality": 1,
             "author_flair_text": "flair", "collapsed_reason_code": "POTENTIALLY_TOXIC", "subreddit_type": "public",
             "retrieved_on": 1700001000}
    lines = [line({**COMMENT, "id": "m1", **marks}),
             line({**COMMENT, "id": "m2", "retrieved_utc": "1700002000", "edited": True}),
             line({**COMMENT, "id": "m3", "stickied": "yes", "edited": "never", "controversiality": [1],
                   "distinguished": 7, "retrieved_on": {"x": 1}})]
    got, rejects = _both("RC", lines)
    assert rejects == []
    assert {k: got["m1"][k] for k in marks} == {**marks, "edited": 1700000100}
    assert (got["m2"]["retrieved_on"], got["m2"]["edited"]) == (1700002000, 0)  # true: an edit of unknown time
    assert all(got["m3"][k] is None for k in marks)
