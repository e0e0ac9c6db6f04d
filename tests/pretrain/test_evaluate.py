"""DialoGPT's metrics: hand-made cases with values worked out by hand, then the evaluation of a model
trained and exported here, from an extract folder and from its dataset folder."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from pretrain.evaluate import bleu, contexts, entropy_and_distinct, human, score, words
from tests.pretrain.test_train import base, check, env, REPO, run


def test_words_split_punctuation_and_lower_case():
    assert words("Don't SHOUT, ok?") == ["don", "'", "t", "shout", ",", "ok", "?"]


def test_entropy_and_distinct_by_hand():
    # "a b c d e": two 4-grams seen once each -> entropy ln 2; every unigram and bigram distinct
    stats = entropy_and_distinct(["a b c d e"])
    assert stats["entropy4"] == pytest.approx(math.log(2)) and stats["distinct1"] == 1.0 and stats["distinct2"] == 1.0
    # "a a a a": one 4-gram -> entropy 0; 1 distinct unigram of 4, 1 distinct bigram of 3
    stats = entropy_and_distinct(["a a a a"])
    assert stats["entropy4"] == 0.0 and stats["distinct1"] == 0.25 and stats["distinct2"] == pytest.approx(1 / 3)
    # over a set of replies together: unigrams a(2) b(1) -> entropy1 = -(2/3 ln 2/3 + 1/3 ln 1/3)
    stats = entropy_and_distinct(["a", "a b"])
    assert stats["entropy1"] == pytest.approx(-(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3)))
    assert stats["distinct1"] == pytest.approx(2 / 3) and stats["distinct2"] == 1.0


def test_bleu_by_hand_and_with_several_references():
    # unigrams 5/6 match, bigrams 3/5, same length (BP 1): BLEU-2 = sqrt(5/6 * 3/5) = sqrt(1/2)
    assert bleu(["the cat sat on the mat"], [["the cat sat on a mat"]], 2) == pytest.approx(100 * math.sqrt(0.5), abs=1e-6)
    assert bleu(["the cat sat on the mat"], [["the cat sat on the mat"]], 4) == pytest.approx(100.0)
    # a second reference that matches whole raises the score to 100; a context may have any number
    assert bleu(["the cat sat on the mat"], [["the cat sat on a mat", "the cat sat on the mat"]], 2) == pytest.approx(100.0)
    assert bleu(["a b c d", "e f g h"], [["a b c d"], ["x", "e f g h"]], 4) == pytest.approx(100.0)


def test_score_and_the_human_row():
    row = score(["a b", "a c"], [["a b"], ["a c"]])
    assert row["bleu2"] == pytest.approx(100.0) and row["length"] == 2.0 and row["distinct1"] == pytest.approx(3 / 4)
    # human: each context's first reference against its others; contexts with one reference are left out of BLEU
    assert human([["x y z", "x y z"], ["p q"]])["bleu4"] == 0.0  # 3 words: no 4-gram to match
    assert human([["x y z w", "x y z w"], ["p q"]])["bleu4"] == pytest.approx(100.0)
    assert math.isnan(human([["p q"]])["bleu2"])


def test_contexts_group_sibling_replies_as_references():
    sessions = [{"turn_ids": ["a", "b"], "turns": ["hi", "hello"]}, {"turn_ids": ["a", "c"], "turns": ["hi", "hey"]},
                {"turn_ids": ["d", "e", "f"], "turns": ["q", "r", "s"]}, {"turn_ids": ["g"], "turns": ["alone"]}]
    chosen = dict((tuple(c), sorted(r)) for c, r in contexts(sessions, 10))
    assert chosen == {("hi",): ["hello", "hey"], ("q", "r"): ["s"]}
    assert contexts(sessions, 1, seed=3) == contexts(sessions, 1, seed=3) and len(contexts(sessions, 1)) == 1


@pytest.fixture(scope="module")
def model(shards_dir, tmp_path_factory):
    """A tiny model trained 40 steps on the shards, exported."""
    out = tmp_path_factory.mktemp("evaluate")
    check(run([sys.executable, "-m", "pretrain.train",
               *base(shards_dir, out / "train", "trainer.max_steps=40", "trainer.checkpoint_interval=40",
                     "trainer.eval_interval=40", "trainer.tensorboard=false", "optimizer.lr=3e-3")]))
    check(run([sys.executable, "-m", "pretrain.export", str(out / "train" / "checkpoints"), str(out / "model")]))
    return out / "model"


@pytest.mark.slow
def test_evaluate_a_trained_model_from_an_extract_and_from_its_dataset(model, extracted, tmp_path):
    from extraction.sessions.export_dataset import export_dataset

    result = subprocess.run([sys.executable, "-m", "pretrain.evaluate", str(model), str(extracted / "extract"),
                             "--contexts", "40", "--max-sessions", "60", "--untrained", "--out", str(tmp_path / "a")],
                            cwd=REPO, env=env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for label in ("BLEU-2", "BLEU-4", "Entropy-4", "Distinct-1", "Distinct-2", "trained greedy", "untrained sampled", "human"):
        assert label in result.stdout, result.stdout
    saved = json.loads((tmp_path / "a" / "evaluation.json").read_text())
    assert (tmp_path / "a" / "evaluation.png").read_bytes()[:4] == b"\x89PNG"
    trained, untrained = saved["trained"], saved["untrained"]
    from pretrain.evaluate import test_sessions

    sessions = test_sessions(str(extracted / "extract"))
    assert trained["contexts"] == len(contexts(sessions, 40)) and trained["test"]["sessions"] == len(sessions) < 60
    assert trained["multi_reference_contexts"] >= 1
    assert trained["test"]["perplexity"] < untrained["test"]["perplexity"] / 3
    assert trained["rows"]["human"] == untrained["rows"]["human"]
    for row in ("greedy", "sampled", "human"):
        assert set(trained["rows"][row]) == {"bleu2", "bleu4", "entropy4", "distinct1", "distinct2", "length"}
    # the same test split through the dataset folder: the same figures
    dataset = tmp_path / "dataset"
    export_dataset(str(extracted / "extract"), str(dataset))
    again = subprocess.run([sys.executable, "-m", "pretrain.evaluate", str(model), str(dataset), "--contexts", "40",
                            "--max-sessions", "60", "--out", str(tmp_path / "b")],
                           cwd=REPO, env=env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((tmp_path / "b" / "evaluation.json").read_text())["trained"] == {**trained, "source": str(dataset)}


def test_evaluate_says_what_is_wrong_with_its_folders(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pretrain.evaluate", str(tmp_path / "none"), str(tmp_path)],
                            cwd=REPO, env=env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "neither a finished extract" in result.stderr, result.stderr[-2000:]


def test_evaluate_replaces_only_an_evaluation_it_wrote(tmp_path):
    """--out holding a user's own evaluation.png (or evaluation.json) is refused before any work, and
    the file is left as it was; an evaluation.json this command wrote may be replaced; --overwrite
    replaces anything."""
    from pretrain.evaluate import EvaluateError, check_out

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "evaluation.png").write_bytes(b"\x89PNG my own figure")
    (mine / "notes.txt").write_text("kept")
    result = subprocess.run([sys.executable, "-m", "pretrain.evaluate", str(tmp_path / "no-model"), str(tmp_path),
                             "--out", str(mine)], cwd=REPO, env=env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{mine} holds evaluation.png that reddit-pretrain evaluate did not write" in result.stderr
    assert (mine / "evaluation.png").read_bytes() == b"\x89PNG my own figure"
    (mine / "evaluation.json").write_text(json.dumps({"bleu": 12.5}))
    with pytest.raises(EvaluateError, match="holds evaluation.json and evaluation.png"):
        check_out(str(mine))
    check_out(str(mine), overwrite=True)
    (mine / "evaluation.json").write_text(json.dumps({"trained": {"model": "m", "test": {}, "rows": {}}}))
    check_out(str(mine))  # an earlier evaluation: this command's to replace
    check_out(str(tmp_path / "new"))
