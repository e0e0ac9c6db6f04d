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


def test_paths_in_a_manifest_stay_inside_the_shard_set(tmp_path):
    """shards_dir or a shard's path leading out (absolute, ``..`` in the middle, a symbolic link in
    shards/ to a file elsewhere) is refused in one line by every reader, before anything is opened,
    and fetch-shards leaves its destination as it was."""
    from pretrain.shard_tools import fetch
    from reddit_pretrain.shards import shard_files

    folder = build(tmp_path)
    good = json.loads((folder / "manifest.json").read_text())
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for entry in good["shards"]:
        for info in entry["files"].values():
            (outside / info["path"]).write_bytes((folder / "shards" / info["path"]).read_bytes())
    rigged = [{**good, "shards_dir": str(outside)}, {**good, "shards_dir": "shards/../../elsewhere"},
              {**good, "shards": [{**good["shards"][0], "files": {**good["shards"][0]["files"], "index": {
                  **good["shards"][0]["files"]["index"], "path": "sub/../../../elsewhere/" + good["shards"][0]["files"]["index"]["path"]}}}]}]
    for manifest in rigged:
        (folder / "manifest.json").write_text(json.dumps(manifest))
        for read in (lambda: ShardSet(str(folder)), lambda: shard_files(str(folder), manifest)):
            with pytest.raises(ShardError, match="not a path inside the shard set"):
                read()
        dest = tmp_path / "copy"
        with pytest.raises(ShardError, match="not a path inside the shard set"):
            fetch(str(folder), str(dest))
        assert not dest.exists() and not [p for p in os.listdir(tmp_path) if p.startswith(".copy.tmp-")]
    (folder / "manifest.json").write_text(json.dumps(good))
    victim = folder / "shards" / good["shards"][0]["files"]["tokens"]["path"]
    victim.unlink()
    victim.symlink_to(outside / victim.name)  # same bytes, same sha256: only where it leads is wrong
    with pytest.raises(ShardError, match="leads out of the shard set"):
        ShardSet(str(folder), verify_checksums=True)


def _tokenizer(folder, words):
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(words * 20, vocab_size=300, min_frequency=1, special_tokens=["<|endoftext|>"], show_progress=False)
    folder.mkdir(exist_ok=True)
    bpe.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|endoftext|>", "bos_token": "<|endoftext|>",
                                                              "tokenizer_class": "GPT2Tokenizer", "model_max_length": 1024}))
    return folder


def test_the_tokenizer_is_checked_file_by_file_where_shards_meet_it(tmp_path):
    """Each file a loader reads is recorded with its sha256; a tokenizer folder whose config was
    edited, that gained a file, or was retrained, is refused naming the file and both digests."""
    from extraction.tokenize.train_tokenizer import resolve_tokenizer
    from pretrain.model import load_tokenizer
    from reddit_pretrain.shards import tokenizer_folder

    tok = _tokenizer(tmp_path / "tok", ["hello there", "general kenobi", "a b c"])
    _, info = resolve_tokenizer(str(tok))
    assert set(info["files"]) == {"tokenizer.json", "tokenizer_config.json"}
    manifest = {"tokenizer": info, "eos_id": 0}
    assert load_tokenizer(manifest).eos_token == "<|endoftext|>"
    config = (tok / "tokenizer_config.json").read_text()
    (tok / "tokenizer_config.json").write_text(config.replace('"model_max_length": 1024', '"model_max_length": 7'))
    with pytest.raises(ShardError, match=r"tokenizer_config.json has sha256 [0-9a-f]{64}, the manifest records "
                                         + info["files"]["tokenizer_config.json"]):
        load_tokenizer(manifest)
    (tok / "tokenizer_config.json").write_text(config)
    (tok / "special_tokens_map.json").write_text(json.dumps({"eos_token": "hello"}))
    with pytest.raises(ShardError, match="special_tokens_map.json .sha256 [0-9a-f]{64}. was not there"):
        tokenizer_folder(manifest)
    (tok / "special_tokens_map.json").unlink()
    # A copy beside the shards (shards/tokenizer) is taken when the manifest's folder was retrained.
    import shutil

    shutil.copytree(tok, tmp_path / "set" / "tokenizer")
    _tokenizer(tok, ["something else entirely", "other words"])
    assert tokenizer_folder(manifest, str(tmp_path / "set")) == str(tmp_path / "set" / "tokenizer")
    with pytest.raises(ShardError, match="tokenizer.json has sha256"):
        tokenizer_folder(manifest)
    # A manifest from before every file was recorded: tokenizer.json's digest, and only that file is read.
    (tmp_path / "set" / "tokenizer" / "tokenizer_config.json").write_text(config.replace("<|endoftext|>", "hello"))
    old = {"tokenizer": {k: v for k, v in info.items() if k != "files"}, "eos_id": 0}
    assert load_tokenizer(old, str(tmp_path / "set")).eos_token == "<|endoftext|>"


def test_inspect_refuses_shards_whose_tokenizer_changed_in_one_line(tmp_path):
    import subprocess
    import sys

    from extraction.tokenize.train_tokenizer import resolve_tokenizer

    folder = build(tmp_path)
    tok = _tokenizer(tmp_path / "tok", ["hello there", "general kenobi"])
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["tokenizer"] = resolve_tokenizer(str(tok))[1]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    inspect = [sys.executable, "-m", "pretrain.shard_tools", "inspect", str(folder)]
    assert subprocess.run(inspect, capture_output=True, text=True).returncode == 0
    _tokenizer(tok, ["retrained on", "other sessions"])
    result = subprocess.run(inspect, capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.startswith("error: the tokenizer is not the one the shards were made")
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
