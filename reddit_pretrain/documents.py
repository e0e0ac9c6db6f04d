"""How a dialogue session becomes a document of the shard format (DialoGPT's form).

A document is ``turn_1 EOS turn_2 EOS ... turn_n EOS``; its loss mask is 0 on the first turn and
its EOS (DialoGPT puts no loss on the first turn) and 1 on every later turn. A session longer than
the limit keeps its last turns (``keep_last``) or is skipped (``drop``). numpy only: the tokenize
job's Spark tasks call ``pack_documents`` on whole Arrow batches.
"""

from __future__ import annotations

import itertools

import numpy as np


def encode_session(turn_ids: list[list[int]], eos_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Tokens of one document (turns joined and closed by EOS) and its loss mask (0 on turn 1)."""
    lengths = [len(t) + 1 for t in turn_ids]
    tokens = np.empty(sum(lengths), dtype=np.int64)
    mask = np.ones(sum(lengths), dtype=np.uint8)
    position = 0
    for i, ids in enumerate(turn_ids):
        tokens[position : position + len(ids)] = ids
        tokens[position + len(ids)] = eos_id
        if i == 0:
            mask[: len(ids) + 1] = 0
        position += len(ids) + 1
    return tokens, mask


def fit_turns(turn_ids: list[list[int]], max_tokens: int, rule: str, min_turns: int) -> list[list[int]] | None:
    """Applies the too-long rule to a tokenised session; None when it must be skipped.

    ``keep_last``: drop turns from the start until the document (with its EOS tokens) fits and
    keep it if at least ``min_turns`` turns remain. ``drop``: skip any session that does not fit.
    """
    total = sum(len(t) + 1 for t in turn_ids)
    if total <= max_tokens:
        return turn_ids
    if rule == "drop":
        return None
    start = 0
    while start < len(turn_ids) and total > max_tokens:
        total -= len(turn_ids[start]) + 1
        start += 1
    kept = turn_ids[start:]
    return kept if len(kept) >= min_turns else None


def pack_documents(turn_ids: list, turns_per_session: np.ndarray, eos_id: int, max_tokens: int, rule: str,
                   min_turns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``fit_turns`` and ``encode_session`` over many sessions at once (numpy, no per-session loop).

    ``turn_ids`` holds the token ids of every turn, session after session; ``turns_per_session``
    says how many turns each session has (at least one). Returns the flat tokens and loss mask of
    the documents kept, each kept document's length, and which sessions were kept.
    """
    counts = np.asarray(turns_per_session, dtype=np.int64)
    n = len(counts)
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.astype(np.uint8), empty, np.zeros(0, dtype=bool)
    if counts.min() < 1:
        raise ValueError("every session needs at least one turn")
    lengths = np.fromiter(map(len, turn_ids), dtype=np.int64, count=len(turn_ids)) + 1  # each turn + its EOS
    session = np.repeat(np.arange(n), counts)
    first = np.cumsum(counts) - counts
    cumulative = np.cumsum(lengths)
    session_end = cumulative[first + counts - 1]
    total = session_end - cumulative[first] + lengths[first]
    fits = total <= max_tokens
    if rule == "drop":
        kept = fits
        keep_turn = kept[session]
    else:  # keep_last: the turns whose suffix (to the session's end) fits
        keep_turn = (session_end[session] - cumulative + lengths) <= max_tokens
        kept = fits | (np.bincount(session, weights=keep_turn, minlength=n) >= min_turns)
        keep_turn &= kept[session]
    previous = np.concatenate([[False], keep_turn[:-1]])
    previous[first] = False
    first_kept = keep_turn & ~previous
    kept_lengths = lengths[keep_turn]
    size = int(kept_lengths.sum())
    ids = np.fromiter(itertools.chain.from_iterable(itertools.compress(turn_ids, keep_turn)), dtype=np.int64,
                      count=size - len(kept_lengths))
    tokens = np.full(size, eos_id, dtype=np.int64)
    is_text = np.ones(size, dtype=bool)
    is_text[np.cumsum(kept_lengths) - 1] = False
    tokens[is_text] = ids
    mask = np.repeat((~first_kept[keep_turn]).astype(np.uint8), kept_lengths)
    doc_lengths = np.bincount(session[keep_turn], weights=kept_lengths, minlength=n)[kept].astype(np.int64)
    return tokens, mask, doc_lengths, kept
