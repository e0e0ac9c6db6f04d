"""The trainer-side tools over a shard set: padded sessions, inspect, the Megatron/NeoX export."""

import os

import pytest

from pretrain.data import padded_session
from pretrain.shard_tools import export_megatron, inspect, read_megatron
from reddit_pretrain.shards import ShardSet
from tests.reddit_pretrain.test_shards import SESSIONS, build


def test_padded_session(tmp_path):
    shards = ShardSet(str(build(tmp_path)), "train")
    ids, attention, loss = padded_session(shards, 1, 8, pad_id=99)
    assert ids.tolist() == [10, 0, 11, 12, 0, 13, 0, 99]
    assert attention.tolist() == [1] * 7 + [0]
    assert loss.tolist() == [0, 0, 1, 1, 1, 1, 1, 0]


def test_megatron_export_round_trip(tmp_path):
    shards = ShardSet(str(build(tmp_path)), "train")
    prefix = tmp_path / "not" / "yet" / "neox"  # the folder is created
    written = export_megatron(shards, str(prefix))
    assert written == [f"{prefix}{suffix}" for suffix in (".bin", ".idx", "_label.bin", "_label.idx")]
    sequences = read_megatron(str(prefix))
    assert [s.tolist() for s in sequences] == [shards.document(i).tolist() for i in range(len(shards))]
    idx = (prefix.parent / "neox.idx").read_bytes()
    assert idx[:9] == b"MMIDIDX\x00\x00" and idx[17] == 8  # version 1, then dtype code 8 = uint16
    # The loss mask as GPT-NeoX label data: the token where there is a loss, -100 on the first turn;
    # NeoX's batch code takes label >= 0 as its loss mask and labels[1:] as targets.
    labels = read_megatron(str(prefix) + "_label")
    assert (prefix.parent / "neox_label.idx").read_bytes()[17] == 4  # int32
    for i, label in enumerate(labels):
        tokens, mask = shards.document(i), shards.loss_mask(i)
        first = len(SESSIONS[i][0]) + 1  # turn 1 and its EOS
        assert (label[:first] == -100).all() and (label[first:] == tokens[first:]).all()
        assert ((label >= 0) == (mask == 1)).all()
    assert export_megatron(shards, str(tmp_path / "plain"), labels=False) == [f"{tmp_path}/plain.bin", f"{tmp_path}/plain.idx"]


def test_megatron_export_command(tmp_path, capsys):
    from pretrain.shard_tools import main

    with pytest.raises(SystemExit):
        main(["export-megatron", "--help"])
    assert "default: train" in capsys.readouterr().out
    assert main(["export-megatron", str(build(tmp_path)), str(tmp_path / "out" / "neox")]) == 0
    assert sorted(os.listdir(tmp_path / "out")) == ["neox.bin", "neox.idx", "neox_label.bin", "neox_label.idx"]


def test_inspect(tmp_path):
    text = inspect(str(build(tmp_path)), show=2)
    assert "[train]" in text and "4 documents" in text and "doc 1" in text


def test_megatron_export_replaces_only_an_earlier_export(tmp_path):
    from pretrain.shard_tools import main

    shards = str(build(tmp_path))
    (tmp_path / "dir.bin").mkdir()  # a folder where the .bin would go: one line, not IsADirectoryError
    assert main(["export-megatron", shards, str(tmp_path / "dir")]) == 2
    (tmp_path / "user.bin").write_text("someone's data")
    assert main(["export-megatron", shards, str(tmp_path / "user")]) == 2
    assert (tmp_path / "user.bin").read_text() == "someone's data"
    assert main(["export-megatron", shards, str(tmp_path / "user"), "--overwrite"]) == 0
    assert main(["export-megatron", shards, str(tmp_path / "user")]) == 0  # now an earlier export: replaced
    assert len(read_megatron(str(tmp_path / "user"))) == 4


def test_megatron_export_errors_are_one_line(tmp_path, capsys):
    from pretrain.shard_tools import main

    shards = str(build(tmp_path))
    (tmp_path / "dir.bin").mkdir()
    main(["export-megatron", shards, str(tmp_path / "dir")])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "is a folder" in err[0]
