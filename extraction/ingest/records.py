"""Normalising raw Pushshift records into the ingest tables' stable schema.

Plain Python and pyarrow, no Spark. One raw NDJSON line becomes a row of the comments or
submissions table, or a reject with a reason; the ingest job wraps ``parse_block`` for Spark.

Schema (documented in README, "Ingest tables"):

comments
    id (string, base36 without ``t1_``), link_id (string, without ``t3_``), parent_id (string,
    without prefix; the three in lower case, prefixes read in either case), parent_kind (``"comment"`` or ``"submission"``), subreddit (string),
    author (string, null when missing), body (string), score (int64, null when missing),
    created_utc (int64 seconds), then the marks today's dumps carry (each null where a dump has
    none): distinguished (string: ``moderator``, ``admin``...), stickied (bool), edited (int64: the
    edit's time; 0 for an edit of unknown time; null when not edited), controversiality (int64),
    author_flair_text, collapsed_reason_code (Reddit's own ``POTENTIALLY_TOXIC`` and others),
    subreddit_type (strings), retrieved_on (int64: ``retrieved_on``, or ``retrieved_utc`` in
    2021-02..06), deletion (string: why the text is withheld, below), month (``YYYY-MM`` of
    created_utc, the partition column)
submissions
    id, subreddit, author, title, selftext (null when missing), over_18 (bool, null when
    missing), num_comments (int64), score (int64), created_utc (int64), distinguished, stickied,
    edited, author_flair_text, subreddit_type, retrieved_on, deletion, month

Text deleted after the crawl is never stored: an item whose ``_meta`` (Arctic Shift's dumps from
2023-11) says ``was_deleted_later`` or ``was_initially_deleted``, or names a ``removal_type``,
keeps its row (replies keep their parent) with its body and author (a submission's title,
self text and author) replaced by ``[deleted]``, or ``[removed]`` for a removal, and ``deletion``
says which (the ``removal_type``: ``deleted``, ``removed``, ``removed by reddit``; ``deleted`` when
none is named). ``keep_deleted_text`` keeps the text (research use); ``deletion`` still marks it. A
rejected line that carries those marks keeps no raw bytes.
rejects
    source_file, line_number (1-based), reason, detail, raw (the line's first bytes, binary),
    raw_length (bytes)
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Callable


import orjson
import pyarrow as pa

COMMENT_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("link_id", pa.string()),
        ("parent_id", pa.string()),
        ("parent_kind", pa.string()),
        ("subreddit", pa.string()),
        ("author", pa.string()),
        ("body", pa.string()),
        ("score", pa.int64()),
        ("created_utc", pa.int64()),
        ("distinguished", pa.string()),
        ("stickied", pa.bool_()),
        ("edited", pa.int64()),
        ("controversiality", pa.int64()),
        ("author_flair_text", pa.string()),
        ("collapsed_reason_code", pa.string()),
        ("subreddit_type", pa.string()),
        ("retrieved_on", pa.int64()),
        ("deletion", pa.string()),
        ("month", pa.string()),
    ]
)

SUBMISSION_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("subreddit", pa.string()),
        ("author", pa.string()),
        ("title", pa.string()),
        ("selftext", pa.string()),
        ("over_18", pa.bool_()),
        ("num_comments", pa.int64()),
        ("score", pa.int64()),
        ("created_utc", pa.int64()),
        ("distinguished", pa.string()),
        ("stickied", pa.bool_()),
        ("edited", pa.int64()),
        ("author_flair_text", pa.string()),
        ("subreddit_type", pa.string()),
        ("retrieved_on", pa.int64()),
        ("deletion", pa.string()),
        ("month", pa.string()),
    ]
)

REJECT_SCHEMA = pa.schema(
    [
        ("source_file", pa.string()),
        ("line_number", pa.int64()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("raw", pa.binary()),
        ("raw_length", pa.int64()),
    ]
)

REJECT_RAW_BYTES = 4096
"""How much of a rejected line is kept in the rejects table."""

# Reasons a line is set aside. Every read line is a row or exactly one of these.
EMPTY_LINE = "empty_line"
INVALID_UTF8 = "invalid_utf8"
MALFORMED_JSON = "malformed_json"
NOT_AN_OBJECT = "not_an_object"
MISSING_FIELD = "missing_field"
BAD_VALUE = "bad_value"
REJECT_REASONS = (EMPTY_LINE, INVALID_UTF8, MALFORMED_JSON, NOT_AN_OBJECT, MISSING_FIELD, BAD_VALUE)


class RecordError(ValueError):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


_UNSET = object()

MAX_CREATED_UTC = 4_102_444_800
"""2100-01-01: a created_utc outside [0, this) is a bad value, not a date."""


def _month(created_utc: int) -> str:
    if not 0 <= created_utc < MAX_CREATED_UTC:
        raise RecordError(BAD_VALUE, f"created_utc={created_utc} out of range")
    tm = time.gmtime(created_utc)
    return f"{tm.tm_year:04d}-{tm.tm_mon:02d}"


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
"""The columns are int64: a number outside (``1e30``, ``"1e400"``, ``"inf"``) is a bad value."""


def _as_int(value):
    """An int64 read from an int, a float or a string of either (created_utc is a string in some
    years); _UNSET for anything else, or a number outside int64 (both parsers use this)."""
    if value is None:
        return None
    if type(value) is int:
        number = value
    else:
        try:
            number = int(value)
        except (ValueError, OverflowError):  # "1.5e9", or inf / nan
            try:
                number = int(float(value))
            except (ValueError, OverflowError):
                return _UNSET
    return number if INT64_MIN <= number <= INT64_MAX else _UNSET


def _int(record: dict, name: str, required: bool) -> int | None:
    value = record.get(name)
    if value is None:
        if required:
            raise RecordError(MISSING_FIELD, name)
        return None
    number = _as_int(value) if type(value) in (int, str, float) else _UNSET
    if number is _UNSET:
        raise RecordError(BAD_VALUE, f"{name}={value!r:.60}")
    return number


def _str(record: dict, name: str, required: bool) -> str | None:
    value = record.get(name)
    if isinstance(value, str):
        return value
    if value is None and not required:
        return None
    if value is None:
        raise RecordError(MISSING_FIELD, name)
    raise RecordError(BAD_VALUE, f"{name}={value!r:.60}")


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _ident(value: str | None) -> str | None:
    """An id, a parent_id or a link_id as every table stores it: Reddit's ids are base 36, so
    ``T1_C4``, ``t1_C4`` and ``t1_c4`` name one comment; ASCII letters are lower-cased (prefix and
    id alike, as ``pc.ascii_lower`` does on the fast path)."""
    return None if value is None else value.translate(_ASCII_LOWER)


def _strip_prefix(value: str, prefix: str) -> str:
    return value[3:] if value.startswith(prefix) else value


MARKS = {"RC": ("distinguished", "stickied", "edited", "controversiality", "author_flair_text", "collapsed_reason_code",
                "subreddit_type", "retrieved_on"),
         "RS": ("distinguished", "stickied", "edited", "author_flair_text", "subreddit_type", "retrieved_on")}
"""The optional marks kept per kind, in schema order (before ``deletion``). A mark of an odd type
is null, never a reject: they describe a row, they do not make it."""
_MARK_STRINGS = frozenset({"distinguished", "author_flair_text", "collapsed_reason_code", "subreddit_type"})
DELETED, REMOVED = "[deleted]", "[removed]"


def _mark(record: dict, name: str):
    """One optional mark read as both parsers read it (``_mark_columns`` is the fast path's form)."""
    if name == "retrieved_on":
        value = record.get("retrieved_on")
        return _lenient_int(value if value is not None else record.get("retrieved_utc"))
    value = record.get(name)
    if name in _MARK_STRINGS:
        return value if isinstance(value, str) else None
    if name == "stickied":
        return value if isinstance(value, bool) else None
    if name == "edited":
        return _edited(value)
    return _lenient_int(value)  # controversiality


def _lenient_int(value) -> int | None:
    if isinstance(value, bool):
        return None
    number = _as_int(value) if type(value) in (int, str, float) else None
    return None if number is _UNSET else number


def _edited(value) -> int | None:
    """``edited``: false (not edited) is null, true (an edit of unknown time) is 0, a time is its seconds."""
    if value is True:
        return 0
    if value is False:
        return None
    return _lenient_int(value)


def deletion_of(meta) -> str | None:
    """Why an item's text is withheld, from its ``_meta`` (a dict or the fast path's struct): the
    ``removal_type`` when one is named, ``deleted`` when the item was deleted after the crawl or at
    it; None for an item its author and Reddit left alone (or without ``_meta``)."""
    if meta is None:
        return None
    get = meta.get if isinstance(meta, dict) else lambda name: getattr(meta, name, None)
    removal = get("removal_type")
    if isinstance(removal, str) and removal:
        return removal
    if _truthy(get("was_deleted_later")) or _truthy(get("was_initially_deleted")):
        return "deleted"
    return None


def _truthy(value) -> bool:
    return value is True or value == 1 and not isinstance(value, float) or (isinstance(value, str) and value.lower() == "true")


def withheld(deletion: str | None) -> str:
    """The text an item withheld for ``deletion`` shows: ``[removed]`` for a removal, else ``[deleted]``."""
    return REMOVED if deletion and deletion.startswith("removed") else DELETED


def comment_row(record: dict, keep_deleted_text: bool = False) -> tuple:
    """A raw comment dict as a tuple in COMMENT_SCHEMA order; raises RecordError."""
    cid = _strip_prefix(_ident(_str(record, "id", True)), "t1_")
    if not cid:
        raise RecordError(BAD_VALUE, f"id={record['id']!r:.60}")
    parent = _ident(_str(record, "parent_id", True))
    if len(parent) <= 3:  # "t1_" names no comment
        raise RecordError(BAD_VALUE, f"parent_id={parent!r:.60}")
    if parent.startswith("t1_"):
        parent_kind = "comment"
    elif parent.startswith("t3_"):
        parent_kind = "submission"
    else:
        raise RecordError(BAD_VALUE, f"parent_id={parent!r:.60}")
    link = _ident(_str(record, "link_id", False))
    if link is None:
        if parent_kind != "submission":
            raise RecordError(MISSING_FIELD, "link_id")
        link = parent
    created = _int(record, "created_utc", True)
    author, body = _str(record, "author", False), _str(record, "body", True)
    meta = record.get("_meta")
    deletion = deletion_of(meta if isinstance(meta, dict) else None)
    if deletion and not keep_deleted_text:
        author = body = withheld(deletion)
    return (
        cid,
        _strip_prefix(link, "t3_"),
        parent[3:],
        parent_kind,
        _str(record, "subreddit", False),
        author,
        body,
        _int(record, "score", False),
        created,
        *(_mark(record, name) for name in MARKS["RC"]),
        deletion,
        _month(created),
    )


def submission_row(record: dict, keep_deleted_text: bool = False) -> tuple:
    """A raw submission dict as a tuple in SUBMISSION_SCHEMA order; raises RecordError."""
    created = _int(record, "created_utc", True)
    over_18 = record.get("over_18")
    if over_18 is not None and not isinstance(over_18, bool):
        raise RecordError(BAD_VALUE, f"over_18={over_18!r:.60}")
    sid = _strip_prefix(_ident(_str(record, "id", True)), "t3_")
    if not sid:
        raise RecordError(BAD_VALUE, f"id={record['id']!r:.60}")
    author, title, selftext = _str(record, "author", False), _str(record, "title", True), _str(record, "selftext", False)
    meta = record.get("_meta")
    deletion = deletion_of(meta if isinstance(meta, dict) else None)
    if deletion and not keep_deleted_text:
        author = title = withheld(deletion)
        selftext = None if selftext is None else withheld(deletion)
    return (
        sid,
        _str(record, "subreddit", False),
        author,
        title,
        selftext,
        over_18,
        _int(record, "num_comments", False),
        _int(record, "score", False),
        created,
        *(_mark(record, name) for name in MARKS["RS"]),
        deletion,
        _month(created),
    )


ROW_BUILDERS: dict[str, tuple[Callable[[dict], tuple], pa.Schema]] = {
    "RC": (comment_row, COMMENT_SCHEMA),
    "RS": (submission_row, SUBMISSION_SCHEMA),
}


@dataclass
class BlockResult:
    rows: pa.RecordBatch
    rejects: list[tuple] = field(default_factory=list)  # REJECT_SCHEMA order


_DELETION_MARK = re.compile(rb'"(?:was_deleted_later|was_initially_deleted)"\s*:\s*(?:true|1\b|"true")|"removal_type"\s*:\s*"')


def _reject(source: str, line_number: int, reason: str, detail: str, raw: bytes) -> tuple:
    if _DELETION_MARK.search(raw):  # text deleted after the crawl: not even in the rejects
        return (source, line_number, reason, detail + " (raw bytes withheld: the item was deleted or removed)", b"", len(raw))
    return (source, line_number, reason, detail, raw[:REJECT_RAW_BYTES], len(raw))


def parse_block_per_line(kind: str, source: str, first_line_number: int, lines: list[bytes],
                         keep_deleted_text: bool = False) -> BlockResult:
    """Reference parser: orjson and the row builders, one line at a time.

    Gives every line its exact outcome; ``parse_block`` uses it for the lines (or blocks) that
    the vectorised path cannot take. ``len(lines) == rows + rejects`` always holds.
    """
    build, schema = ROW_BUILDERS[kind]
    rows = []
    rejects = []
    loads = orjson.loads
    for offset, line in enumerate(lines):
        try:
            record = loads(line)
            if type(record) is not dict:
                raise RecordError(NOT_AN_OBJECT, type(record).__name__)
            rows.append(build(record, keep_deleted_text))
        except RecordError as err:
            rejects.append(_reject(source, first_line_number + offset, err.reason, err.detail, line))
        except orjson.JSONDecodeError as err:
            reason, detail = _classify_undecodable(line, err)
            if reason == INVALID_UTF8:
                row = _row_despite_invalid_utf8(build, line, keep_deleted_text)
                if row is not None:
                    rows.append(row)
                    continue
            rejects.append(_reject(source, first_line_number + offset, reason, detail, line))
    columns = list(zip(*rows)) if rows else [[] for _ in schema]
    batch = pa.RecordBatch.from_arrays(
        [pa.array(col, type=f.type) for col, f in zip(columns, schema)], schema=schema
    )
    return BlockResult(batch, rejects)


def _row_despite_invalid_utf8(build, line: bytes, keep_deleted_text: bool = False) -> tuple | None:
    """The row of a line whose invalid UTF-8 lies only in fields the project does not keep (as the
    fast path, which never decodes those fields, keeps it); None when a kept field holds it too."""
    import json

    try:
        record = json.loads(line.decode("utf-8", "surrogateescape"))
    except ValueError:
        return None
    if type(record) is not dict:
        return None
    try:
        row = build(record, keep_deleted_text)
    except RecordError:  # the line is bad anyway: its invalid UTF-8 is the first thing wrong with it
        return None
    for value in row:
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return None
    return row


def _classify_undecodable(line: bytes, err: Exception) -> tuple[str, str]:
    if not line.strip():
        return EMPTY_LINE, ""
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as uerr:
        return INVALID_UTF8, str(uerr)[:200]
    return MALFORMED_JSON, str(err)[:200]


def rejects_batch(rejects: list[tuple]) -> pa.RecordBatch:
    columns = list(zip(*rejects)) if rejects else [[] for _ in REJECT_SCHEMA]
    return pa.RecordBatch.from_arrays(
        [pa.array(col, type=f.type) for col, f in zip(columns, REJECT_SCHEMA)], schema=REJECT_SCHEMA
    )


