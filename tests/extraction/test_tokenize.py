"""Tokenizer training and the tokenize job (Spark) producing shards from a generated dump."""

import json
import os

import pytest

from extraction.tokenize.job import TokenizeConfig, TokenizeError, plan_tasks, run_tokenize
from extraction.tokenize.train_tokenizer import TokenizerNotFound, resolve_tokenizer
from reddit_pretrain.shards import ShardSet


def test_trained_tokenizer_loads_with_transformers(tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    assert tok.eos_token == "<|endoftext|>" and len(tok) == 600
    text = "Thanks for the answer, it helped a lot! 😂 — déjà vu"
    assert tok.decode(tok(text)["input_ids"]) == text  # byte level: lossless


def test_hub_name_without_hub_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import time
    with pytest.raises(TokenizerNotFound, match="Point tokenizer= at a local copy"):
        resolve_tokenizer("gpt2")


@pytest.mark.slow
def test_tokenize_job_writes_reusable_deterministic_shards(spark, extracted, tokenizer_dir, tmp_path):
    cfg = TokenizeConfig(input=str(extracted / "extract"), output=str(tmp_path / "a"), tokenizer=tokenizer_dir,
                         max_session_tokens=4096, tokens_per_shard=20_000, sessions_per_task=1500)
    manifest = run_tokenize(cfg, spark)
    assert manifest["vocab_size"] == 600 and manifest["dtype"] == "uint16"
    assert manifest["tokenizer"]["sha256"] and manifest["source_dumps"] and manifest["extraction_config"]
    assert manifest["code_version"].startswith("0.1.0")
    sessions = spark.read.parquet(str(extracted / "extract" / "sessions"))

    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(f"{tokenizer_dir}/tokenizer.json")
    for split in ("train", "valid", "test"):
        expected = sorted(tuple(r.turns) for r in sessions.filter(f"split = '{split}'").select("turns").collect())
        shards = ShardSet(str(tmp_path / "a"), split, verify_checksums=True)
        assert manifest["splits"][split]["written"] == len(shards) == len(expected)
        decoded = sorted(tuple(tok.decode(t.tolist()) for t in shards.turns(i)) for i in range(len(shards)))
        assert decoded == expected  # document i is exactly the turns of a session, joined by EOS
        for i in range(min(len(shards), 50)):
            doc, mask = shards.document(i), shards.loss_mask(i)
            first_eos = int((doc == manifest["eos_id"]).argmax())
            assert not mask[: first_eos + 1].any() and mask[first_eos + 1 :].all()
    assert len(ShardSet(str(tmp_path / "a"), "train").shards) > 1

    # Same input and config: byte-identical shards and manifest entries.
    again = run_tokenize(TokenizeConfig(**{**cfg.__dict__, "output": str(tmp_path / "b")}), spark)
    assert again["shards"] == manifest["shards"]
    for entry in manifest["shards"]:
        for info in entry["files"].values():
            assert (tmp_path / "a" / "shards" / info["path"]).read_bytes() == (tmp_path / "b" / "shards" / info["path"]).read_bytes()
    assert json.loads((tmp_path / "a" / "manifest.json").read_text())["shards"] == manifest["shards"]

    # A small input without a session runs in this process (no Spark): the same shards, byte for byte.
    from extraction.spark import SparkConfig

    alone = run_tokenize(TokenizeConfig(**{**cfg.__dict__, "output": str(tmp_path / "c"), "spark": SparkConfig(master="local[2]")}))
    assert alone["shards"] == manifest["shards"]
    for entry in manifest["shards"]:
        for info in entry["files"].values():
            assert (tmp_path / "c" / "shards" / info["path"]).read_bytes() == (tmp_path / "a" / "shards" / info["path"]).read_bytes()


@pytest.mark.slow
def test_too_long_sessions_are_counted(spark, extracted, tokenizer_dir, tmp_path):
    keep = run_tokenize(TokenizeConfig(input=str(extracted / "extract"), output=str(tmp_path / "k"), tokenizer=tokenizer_dir,
                                       max_session_tokens=40, splits=["valid"]), spark)
    drop = run_tokenize(TokenizeConfig(input=str(extracted / "extract"), output=str(tmp_path / "d"), tokenizer=tokenizer_dir,
                                       max_session_tokens=40, too_long="drop", splits=["valid"]), spark)
    k, d = keep["splits"]["valid"], drop["splits"]["valid"]
    assert k["sessions"] == d["sessions"] and d["too_long"] > k["too_long"] and k["written"] > d["written"]
    assert max(len(ShardSet(str(tmp_path / "k"), "valid").document(i)) for i in range(k["written"])) <= 40


@pytest.mark.slow
def test_tasks_are_runs_of_row_groups_across_files(spark, extracted, tokenizer_dir, tmp_path):
    """Several files with small row groups: many tasks, the documents in file order, and the same
    documents as one task over everything."""
    import pyarrow.parquet as pq
    from tokenizers import Tokenizer

    expected = {}
    for split in ("train", "valid", "test"):
        table = pq.read_table(extracted / "extract" / "sessions" / f"split={split}")
        (tmp_path / "in" / "sessions" / f"split={split}").mkdir(parents=True)
        third = -(-len(table) // 3)
        for k in range(3):
            pq.write_table(table.slice(k * third, third), tmp_path / "in" / "sessions" / f"split={split}" / f"part-{k:05d}.parquet",
                           row_group_size=100)
        expected[split] = [tuple(t) for t in table.column("turns").to_pylist()]
    for name in ("_EXTRACT_DONE.json", "extract_report.json"):  # the same sessions, so the same marker and counts
        (tmp_path / "in" / name).write_bytes((extracted / "extract" / name).read_bytes())

    tasks, rows = plan_tasks(str(tmp_path / "in" / "sessions"), ["train", "valid"], 400)
    assert rows == {"train": len(expected["train"]), "valid": len(expected["valid"])}
    train = [t for t in tasks if t["split"] == "train"]
    assert [t["index"] for t in train] == list(range(len(train))) and len(train) >= 4
    assert all(t["rows"] <= 400 for t in train) and sum(t["rows"] for t in train) == rows["train"]
    assert any(len(t["pieces"]) > 1 for t in train)  # a task that spans two files

    tok = Tokenizer.from_file(f"{tokenizer_dir}/tokenizer.json")
    common = dict(input=str(tmp_path / "in"), tokenizer=tokenizer_dir, max_session_tokens=100_000, tokens_per_shard=30_000)
    many = run_tokenize(TokenizeConfig(output=str(tmp_path / "many"), sessions_per_task=400, **common), spark)
    one = run_tokenize(TokenizeConfig(output=str(tmp_path / "one"), sessions_per_task=10**9, **common), spark)
    assert len({s["name"].rsplit("-", 1)[0] for s in many["shards"] if s["split"] == "train"}) == len(train)
    for split in ("train", "valid", "test"):
        shards_many, shards_one = ShardSet(str(tmp_path / "many"), split), ShardSet(str(tmp_path / "one"), split)
        assert len(shards_many) == len(shards_one) == len(expected[split])
        for i in range(len(shards_many)):
            assert shards_many.document(i).tolist() == shards_one.document(i).tolist()
            assert tuple(tok.decode(t.tolist()) for t in shards_many.turns(i)) == expected[split][i]


def test_clear_errors(tmp_path, tokenizer_dir):
    with pytest.raises(TokenizeError, match="run the extract job first"):
        run_tokenize(TokenizeConfig(input=str(tmp_path / "none"), output=str(tmp_path / "o"), tokenizer=tokenizer_dir))
    # shards may go to object storage (tests/reddit_pretrain/test_object_storage.py); the trainer reads a local copy
    with pytest.raises(TokenizeError, match="too_long must be"):
        TokenizeConfig(input=str(tmp_path / "none"), output="s3://bucket/shards", too_long="cut").validate()


@pytest.mark.parametrize("splits", [[], ["train", "dev"], ["train", "train"]])
def test_no_split_or_an_unknown_one_is_refused(extracted, tokenizer_dir, tmp_path, splits):
    with pytest.raises(TokenizeError, match="splits must name one or more of train, valid, test"):
        run_tokenize(TokenizeConfig(input=str(extracted / "extract"), output=str(tmp_path / "o"), tokenizer=tokenizer_dir,
                                    splits=splits))
    assert not (tmp_path / "o").exists()


def test_a_full_disk_is_one_line_and_gives_its_space_back(extracted, tokenizer_dir, small_disk):
    import os

    from reddit_pretrain.storage import OutputNotWritable
    from tests.conftest import used_bytes

    disk = small_disk(96 << 10)
    with pytest.raises(OutputNotWritable, match=rf"no space left on {disk} \(tmpfs\) writing {disk}/shards/"):
        run_tokenize(TokenizeConfig(input=str(extracted / "extract"), output=str(disk / "shards"), tokenizer=tokenizer_dir))
    assert os.listdir(disk / "shards") == [] and used_bytes(disk) < 16 << 10


def test_a_folder_holding_other_files_is_not_replaced(extracted, tokenizer_dir, tmp_path):
    out = tmp_path / "mine"
    (out / "shards").mkdir(parents=True)
    (out / "thesis.tex").write_text("years of work")
    with pytest.raises(Exception, match=r"holds files tokenize did not write \(thesis.tex\)"):
        run_tokenize(TokenizeConfig(input=str(extracted / "extract"), output=str(out), tokenizer=tokenizer_dir))
    assert (out / "thesis.tex").read_text() == "years of work" and (out / "shards").is_dir()


def test_train_tokenizer_replaces_only_a_tokenizer_folder(extracted, tmp_path):
    from extraction.tokenize.train_tokenizer import main

    sessions = str(extracted / "extract" / "sessions")
    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    assert main(["--sessions", sessions, "--out", str(user), "--vocab-size", "300"]) == 2
    assert sorted(os.listdir(user)) == ["notes.txt"]
    assert main(["--sessions", sessions, "--out", str(tmp_path / "tok"), "--vocab-size", "300"]) == 0
    assert main(["--sessions", sessions, "--out", str(tmp_path / "tok"), "--vocab-size", "300"]) == 0  # its own: replaced
    assert sorted(os.listdir(tmp_path / "tok")) == ["tokenizer.json", "tokenizer_config.json"]
    assert main(["--sessions", sessions, "--out", str(user), "--vocab-size", "300", "--overwrite"]) == 0
    assert not (user / "notes.txt").exists() and not [p for p in os.listdir(tmp_path) if ".tmp" in p]


def test_a_hub_that_cannot_be_reached_fails_at_once(extracted, tmp_path):
    """tokenizer=gpt2 with no hub: one line naming the hub and the fix, no retries (they took 23 s)."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf"))  # nothing listens on port 9
    result = subprocess.run([sys.executable, "-m", "extraction.tokenize.job", f"input={extracted / 'extract'}",
                             f"output={tmp_path / 'out'}", "tokenizer=gpt2"], capture_output=True, text=True, env=env)
    assert result.returncode == 2 and "Retrying" not in result.stderr and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()
    assert len(last) == 1 and "the model hub (127.0.0.1:9) cannot be reached" in last[0] and "train-tokenizer" in last[0]


def test_the_printed_follow_up_command_is_quoted_for_the_shell(extracted, tokenizer_dir, tmp_path, capsys):
    import shlex
    import subprocess
    import sys

    out = tmp_path / "my shards; (v2)"
    run_tokenize(TokenizeConfig(input=str(extracted / "extract"), output=str(out), tokenizer=tokenizer_dir))
    command = capsys.readouterr().err.strip().splitlines()[-1].split("inspect with: ", 1)[1]
    assert shlex.split(command) == ["reddit-pretrain", "inspect", str(out)]
    helped = subprocess.run([sys.executable, "-m", "reddit_pretrain_app.command", "fetch-shards", "--help"],
                            capture_output=True, text=True)
    assert helped.stdout.startswith("usage: reddit-pretrain fetch-shards "), helped.stdout[:200]
