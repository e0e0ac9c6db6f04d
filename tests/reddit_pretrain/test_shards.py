"""The shard format and the session -> document policy on their own: numpy only, tiny files in tmp_path."""

import hashlib
import json
import os

import numpy as np
import pytest

from reddit_pretrain.documents import encode_session, fit_turns, pack_documents
from reddit_pretrain.shards import ShardError, ShardSet, ShardWriter, new_manifest, token_dtype, write_manifest

EOS = 0
SESSIONS = [[[5, 6, 7], [8, 9]], [[10], [11, 12], [13]], [[14, 15], [16, 17, 18, 19]], [[20], [21]]]


def build(tmp_path, vocab=100, tokens_per_shard=9, with_mask=True, sessions=SESSIONS):
    folder = tmp_path / "set"
    writer = ShardWriter(str(folder / "shards"), "train-00000", "train", vocab, tokens_per_shard, with_mask)
    for turns in sessions:
        tokens, mask = encode_session(turns, EOS)
        writer.add(tokens, mask)
    entries = writer.close()
    write_manifest(str(folder), new_manifest(tokenizer={"name": "toy", "sha256": "x"}, vocab_size=vocab, eos_id=EOS,
                                             shards=entries))
    return folder


def test_round_trip_documents_turns_and_mask(tmp_path):
    folder = build(tmp_path)
    shards = ShardSet(str(folder), "train", verify_checksums=True)
    assert len(shards.shards) > 1  # rolled at tokens_per_shard
    assert len(shards) == len(SESSIONS)
    for i, turns in enumerate(SESSIONS):
        assert shards.document(i).tolist() == [t for turn in turns for t in turn + [EOS]]
        assert [t.tolist() for t in shards.turns(i)] == turns
        mask = shards.loss_mask(i).tolist()
        first = len(turns[0]) + 1
        assert mask == [0] * first + [1] * (len(mask) - first)  # exactly the non-first turns
    assert shards.num_tokens == sum(len(t) + 1 for s in SESSIONS for t in s)


def test_packed_windows_cross_shard_boundaries(tmp_path):
    shards = ShardSet(str(build(tmp_path)), "train")
    stream = shards.stream()
    flat = np.concatenate([shards.document(i) for i in range(len(shards))])
    seq = 4
    assert stream.num_windows(seq) == (len(flat) - 1) // seq
    for k in range(stream.num_windows(seq)):
        tokens, mask = stream.window(k, seq)
        assert tokens.tolist() == flat[k * seq : k * seq + seq + 1].tolist() and len(mask) == seq + 1


def test_uint32_when_the_vocabulary_needs_it(tmp_path):
    assert token_dtype(50257) == np.dtype("<u2") and token_dtype(65536) == np.dtype("<u2")
    assert token_dtype(65537) == np.dtype("<u4")
    big = [[[70000, 5], [65536]]]
    shards = ShardSet(str(build(tmp_path, vocab=80000, sessions=big)))
    assert shards.dtype == np.dtype("<u4") and shards.document(0).tolist() == [70000, 5, EOS, 65536, EOS]


def test_bad_input_is_refused(tmp_path):
    writer = ShardWriter(str(tmp_path / "w"), "x", "train", 100, 1000)
    with pytest.raises(ValueError, match="empty"):
        writer.add(np.array([], dtype=np.int64), np.array([], dtype=np.uint8))
    with pytest.raises(ValueError, match="out of range"):
        writer.add(np.array([5, 100]), np.array([0, 1], dtype=np.uint8))


def test_corruption_and_mismatches_are_caught(tmp_path):
    folder = build(tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    tokens = folder / "shards" / manifest["shards"][0]["files"]["tokens"]["path"]
    data = bytearray(tokens.read_bytes())
    data[0] ^= 0xFF
    tokens.write_bytes(bytes(data))
    ShardSet(str(folder))  # sizes still match: only the checksum can tell
    with pytest.raises(ShardError, match="sha256"):
        ShardSet(str(folder), verify_checksums=True)
    tokens.write_bytes(bytes(data[:-2]))
    with pytest.raises(ShardError, match="bytes"):
        ShardSet(str(folder))
    os.remove(tokens)
    with pytest.raises(ShardError, match="missing shard file"):
        ShardSet(str(folder))
    manifest["dtype"] = "uint32"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match="dtype"):
        ShardSet(str(folder))
    with pytest.raises(ShardError, match="no manifest.json"):
        ShardSet(str(tmp_path / "nowhere"))


def test_too_long_rule():
    turns = [[1] * 5, [2] * 5, [3] * 5]  # 18 tokens with EOS
    assert fit_turns(turns, 18, "keep_last", 2) == turns
    assert fit_turns(turns, 12, "keep_last", 2) == turns[1:]
    assert fit_turns(turns, 7, "keep_last", 2) is None  # one turn left, fewer than min_turns
    assert fit_turns(turns, 12, "drop", 2) is None


@pytest.mark.parametrize("rule", ["keep_last", "drop"])
def test_batched_packing_matches_the_per_session_rules(rule):
    rng = np.random.default_rng(7)
    sessions = [[rng.integers(1, 50, rng.integers(0, 12)).tolist() for _ in range(rng.integers(1, 6))] for _ in range(400)]
    turn_ids = [t for s in sessions for t in s]
    tokens, mask, doc_lengths, kept = pack_documents(turn_ids, [len(s) for s in sessions], EOS, 20, rule, 2)
    expected_tokens, expected_mask, expected_kept = [], [], []
    for turns in sessions:
        fitted = fit_turns(turns, 20, rule, 2)
        expected_kept.append(fitted is not None)
        if fitted is not None:
            t, m = encode_session(fitted, EOS)
            expected_tokens.append(t)
            expected_mask.append(m)
    assert kept.tolist() == expected_kept and 0 < sum(expected_kept) < len(sessions)
    assert doc_lengths.tolist() == [len(t) for t in expected_tokens]
    assert tokens.tolist() == np.concatenate(expected_tokens).tolist()
    assert mask.tolist() == np.concatenate(expected_mask).tolist()


def test_batched_writes_give_the_same_shards_as_one_document_at_a_time(tmp_path):
    rng = np.random.default_rng(3)
    docs = [rng.integers(0, 100, rng.integers(1, 30)) for _ in range(300)]
    masks = [rng.integers(0, 2, len(d)).astype(np.uint8) for d in docs]
    one = ShardWriter(str(tmp_path / "one"), "t", "train", 100, 200)
    for d, m in zip(docs, masks):
        one.add(d, m)
    batched = ShardWriter(str(tmp_path / "batched"), "t", "train", 100, 200)
    for start in range(0, len(docs), 37):  # batches that straddle shard boundaries
        batched.add_batch(np.concatenate(docs[start : start + 37]), np.concatenate(masks[start : start + 37]),
                          np.array([len(d) for d in docs[start : start + 37]]))
    entries = one.close()
    assert batched.close() == entries and len(entries) > 5
    for entry in entries:
        for info in entry["files"].values():
            data = (tmp_path / "one" / info["path"]).read_bytes()
            assert data == (tmp_path / "batched" / info["path"]).read_bytes()
            assert len(data) == info["bytes"] and hashlib.sha256(data).hexdigest() == info["sha256"]
