"""The sessions as a Hugging Face dataset: loaded with ``datasets``, a chat template applied by a
tokenizer built here, and every id, text and the order checked against ``sessions/``."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from extraction.sessions.export_dataset import DatasetExportError, export_dataset, roles_of

SPLITS = {"train": "train", "valid": "validation", "test": "test"}


def test_roles_by_parity_end_on_the_response():
    assert roles_of(2, None, "parity") == ["user", "assistant"]
    assert roles_of(3, None, "parity") == ["assistant", "user", "assistant"]
    assert roles_of(1, None, "parity") == ["assistant"]


def test_roles_by_author_follow_the_responder():
    assert roles_of(4, ["a", "b", "a", "b"], "author") == ["user", "assistant", "user", "assistant"]
    assert roles_of(3, ["a", "a", "a"], "author") == ["assistant"] * 3
    assert roles_of(3, ["a", "b", "c"], "author") == ["user", "user", "assistant"]
    # [deleted] is nobody: another [deleted] turn is not the responder's
    assert roles_of(3, ["[deleted]", "b", "[deleted]"], "author") == ["user", "user", "assistant"]
    with pytest.raises(DatasetExportError, match="--roles must be one of parity, author"):
        roles_of(2, None, "speaker")


@pytest.fixture(scope="module")
def dataset(extracted, tmp_path_factory):
    out = tmp_path_factory.mktemp("hf") / "dataset"
    sizes = export_dataset(str(extracted / "extract"), str(out), rows_per_file=1_000)
    return out, sizes


def test_load_dataset_gives_the_sessions_in_order_with_typed_features(dataset, extracted):
    from datasets import List, Value, load_dataset

    out, sizes = dataset
    ds = load_dataset(str(out))
    assert set(ds) == {"train", "validation", "test"}
    features = ds["train"].features
    assert features["messages"] == List({"role": Value("string"), "content": Value("string")})
    assert features["scores"] == List(Value("int64")) and features["num_turns"] == Value("int32")
    assert features["session_id"] == Value("string") and features["language_confidence"] == Value("float64")
    assert "turns" not in features
    assert sizes["train"]["files"] >= 2  # rows_per_file split the train split, with the Hub's file names
    assert sorted(p.name for p in (out / "data").iterdir())[0] == f"test-00000-of-{sizes['test']['files']:05d}.parquet"
    for split, hub in SPLITS.items():
        sessions = pq.read_table(extracted / "extract" / "sessions" / f"split={split}").to_pylist()
        rows = ds[hub].to_list()
        assert len(rows) == len(sessions) == sizes[hub]["num_examples"]
        assert [r["session_id"] for r in rows] == [s["session_id"] for s in sessions]
        assert [[m["content"] for m in r["messages"]] for r in rows] == [s["turns"] for s in sessions]
        for row, session in zip(rows, sessions):
            assert row["turn_ids"] == session["turn_ids"] and row["scores"] == session["scores"]
            assert row["subreddit"] == session["subreddit"] and row["language"] == session["language"]
            assert [m["role"] for m in row["messages"]][-1] == "assistant"


def test_a_chat_template_renders_every_turn_in_order(dataset, extracted, tokenizer_dir):
    from datasets import load_dataset
    from transformers import PreTrainedTokenizerFast

    out, _ = dataset
    tok = PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_dir) + "/tokenizer.json", eos_token="<|endoftext|>")
    tok.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{{ eos_token }}{% endfor %}"
                         "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    row = load_dataset(str(out), split="validation")[0]
    session = pq.read_table(extracted / "extract" / "sessions" / "split=valid").to_pylist()[0]
    text = tok.apply_chat_template(row["messages"], tokenize=False)
    roles = ["assistant" if (len(session["turns"]) - 1 - i) % 2 == 0 else "user" for i in range(len(session["turns"]))]
    assert text == "".join(f"<|{r}|>{t}<|endoftext|>" for r, t in zip(roles, session["turns"]))
    ids = tok.apply_chat_template(row["messages"][:-1], add_generation_prompt=True)
    assert tok.decode(ids).endswith("<|assistant|>")


def test_the_card_has_the_hubs_header_and_the_rules(dataset, extracted):
    out, sizes = dataset
    card = (out / "README.md").read_text()
    header = card.split("---\n")[1]
    assert "configs:\n- config_name: default" in header and "path: data/validation-*" in header
    assert f"num_examples: {sizes['train']['num_examples']}" in header and "license: other" in header
    report = json.loads((extracted / "extract" / "extract_report.json").read_text())
    assert report["run"]["code_version"] in card
    assert "| min_turns |" in card and "Reddit's User Agreement" in card and "pseudonym" in card


def test_export_refuses_a_folder_it_did_not_write_and_an_unfinished_extract(extracted, tmp_path):
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    result = subprocess.run([sys.executable, "-m", "extraction.sessions.export_dataset", str(extracted / "extract"), str(other)],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "holds files the dataset export did not write (notes.txt)" in result.stderr
    assert (other / "notes.txt").read_text() == "keep me"
    with pytest.raises(DatasetExportError, match="not a finished extract"):
        export_dataset(str(tmp_path), str(tmp_path / "out"))
    # an earlier export is replaced, with the same bytes
    first = tmp_path / "again"
    export_dataset(str(extracted / "extract"), str(first))
    before = {p.name: p.read_bytes() for p in (first / "data").iterdir()}
    export_dataset(str(extracted / "extract"), str(first))
    assert {p.name: p.read_bytes() for p in (first / "data").iterdir()} == before


def test_an_empty_split_is_left_out_and_the_rest_loads(extracted, tmp_path):
    """A small extract can keep no test session: that split gets no file and no entry in the card
    (datasets cannot load an empty Parquet split), and the others load."""
    import shutil

    from datasets import load_dataset

    extract = tmp_path / "extract"
    shutil.copytree(extracted / "extract", extract)
    shutil.rmtree(extract / "sessions" / "split=test")
    sizes = export_dataset(str(extract), str(tmp_path / "dataset"))
    assert sizes["test"] == {"num_examples": 0, "num_bytes": 0, "files": 0}
    ds = load_dataset(str(tmp_path / "dataset"))
    assert set(ds) == {"train", "validation"} and len(ds["validation"]) == sizes["validation"]["num_examples"]
    assert "split: test" not in (tmp_path / "dataset" / "README.md").read_text()


def test_a_killed_exports_staging_folder_is_removed_by_the_next_export(extracted, tmp_path):
    """An export killed with SIGKILL while its staging folder existed leaves it beside the output; the
    next export (which completes) removes it, and leaves another live export's alone."""
    import os
    import signal

    from reddit_pretrain import storage

    out = tmp_path / "dataset"
    child = subprocess.Popen([sys.executable, "-c", "import os, time; from reddit_pretrain import storage; "
                              f"t = storage.staging_name({str(out)!r}); os.makedirs(os.path.join(t, 'data')); "
                              "print(t, flush=True); time.sleep(600)"], stdout=subprocess.PIPE, text=True)
    killed = child.stdout.readline().strip()
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    live = storage.staging_name(str(out))
    os.makedirs(live)
    assert os.path.isdir(killed)
    export_dataset(str(extracted / "extract"), str(out))
    assert sorted(os.listdir(tmp_path)) == sorted(["dataset", os.path.basename(live)])
