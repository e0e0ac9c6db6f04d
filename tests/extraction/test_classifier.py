"""The classifier rule with classifiers the tests train themselves: a tiny Hugging Face BERT (its own
word-level tokenizer) and a fastText model, both taught that a reply about sauce is bad."""

import json
import re

import numpy as np
import pyarrow as pa
import pytest

from extraction.sessions.chains import ChainsConfig, SplitConfig
from extraction.sessions.classifier import Classifier, ClassifierError
from extraction.sessions.filters import FiltersConfig

BAD = re.compile(r"\bsauce\b", re.I)


@pytest.fixture(scope="module")
def month(tmp_path_factory):
    """A generated month's comments as a table, and its distinct bodies."""
    import zstandard

    from extraction.ingest.columns import parse_block
    from reddit_pretrain_app.synth import SynthConfig, write_month

    root = tmp_path_factory.mktemp("month")
    write_month(str(root), SynthConfig(comments=3000, seed=23))
    with open(root / "RC_2015-01.zst", "rb") as f:
        lines = zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(f).read().splitlines()
    comments = pa.Table.from_batches([parse_block("RC", "RC_2015-01.zst", 1, lines).rows]).drop_columns(["month"])
    bodies = sorted({b for b in comments.column("body").to_pylist() if b and b not in ("[deleted]", "[removed]")})
    return comments, bodies


def train_hf(folder, texts: list[str]) -> str:
    """A 1-layer BERT with a word-level tokenizer, trained to tell replies about sauce (label ``bad``)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    torch.manual_seed(0)
    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3}
    for word in sorted({w for t in texts for w in re.findall(r"\w+|[^\w\s]", t.lower())}):
        vocab.setdefault(word, len(vocab))
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    from tokenizers import normalizers, processors

    core.normalizer = normalizers.Lowercase()
    core.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                        sep_token="[SEP]", model_max_length=64)
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64, num_labels=2, id2label={0: "good", 1: "bad"},
                        label2id={"good": 0, "bad": 1})
    model = BertForSequenceClassification(config)
    labels = torch.tensor([int(bool(BAD.search(t))) for t in texts])
    classes = [np.flatnonzero(labels.numpy() == c) for c in (0, 1)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    model.train()
    for _ in range(150):  # balanced batches: the bad replies are few
        rows = np.concatenate([rng.choice(c, 16) for c in classes])
        batch = tokenizer([texts[i] for i in rows], padding=True, truncation=True, max_length=64, return_tensors="pt")
        loss = model(**batch, labels=labels[rows]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def train_fasttext(path, texts: list[str]) -> str:
    import fasttext

    data = path.with_suffix(".txt")
    data.write_text("".join(f"__label__{'bad' if BAD.search(t) else 'good'} {' '.join(t.split())}\n" for t in texts))
    fasttext.train_supervised(str(data), epoch=25, lr=0.5, dim=8, thread=1, seed=1, verbose=0).save_model(str(path))
    return str(path)


@pytest.fixture(scope="module")
def hf_model(month, tmp_path_factory):
    return train_hf(tmp_path_factory.mktemp("hf") / "model", month[1])


@pytest.fixture(scope="module")
def fasttext_model(month, tmp_path_factory):
    return train_fasttext(tmp_path_factory.mktemp("ft") / "model.bin", month[1])


@pytest.mark.parametrize("kind", ["hf", "fasttext"])
def test_scores_in_batches_equal_the_reference_and_separate_the_classes(request, month, kind):
    path = request.getfixturevalue("hf_model" if kind == "hf" else "fasttext_model")
    good = Classifier(path, "good", batch_size=7)
    texts = month[1][:300] + ["", None, "x " * 500]
    batched = good.scores(texts)
    single = np.array([good.score(t) for t in texts])
    assert np.allclose(batched, single, atol=1e-5)
    bad = np.array([bool(BAD.search(t or "")) for t in texts])
    assert 0 < bad.sum() < len(texts)
    assert batched[bad].max() < 0.2 and batched[~bad].min() > 0.8  # it learned the task
    assert np.allclose(Classifier(path, "bad").scores(texts), 1 - batched, atol=1e-4)  # (fastText adds 1e-5 to each)


def test_labels_paths_and_settings_are_checked_with_one_line(hf_model, fasttext_model, tmp_path):
    assert Classifier(hf_model).labels == ["good", "bad"]
    assert Classifier(hf_model).scored_label == "bad"  # a binary model's default: its second label
    with pytest.raises(ClassifierError, match="not a label of .*: good, bad"):
        Classifier(hf_model, "toxic").labels
    with pytest.raises(ClassifierError, match="name the one scored in filters.classifier_label"):
        Classifier(fasttext_model).labels  # fastText has no positive-class convention
    with pytest.raises(ClassifierError, match="does not exist"):
        Classifier(str(tmp_path / "nothing"))
    with pytest.raises(ClassifierError, match="without config.json"):
        Classifier(str(tmp_path))
    (tmp_path / "junk.bin").write_bytes(b"not a model")
    with pytest.raises(ClassifierError, match="no fastText model"):
        Classifier(str(tmp_path / "junk.bin"), "good").labels
    with pytest.raises(ValueError, match="needs filters.classifier_path"):
        FiltersConfig(classifier=True).validate()
    with pytest.raises(ValueError, match="classifier_min_score must be <= 1"):
        FiltersConfig(classifier=True, classifier_path=hf_model, classifier_min_score=2.0).validate()
    assert not FiltersConfig().classifier and not FiltersConfig(rules=["url"]).classifier  # off unless asked for


@pytest.mark.parametrize("kind", ["hf", "fasttext"])
def test_the_rule_drops_what_the_reference_drops_and_stores_the_score(request, month, kind):
    from tests.kit.reference import reference_extract
    from tests.kit.local import run_local

    path = request.getfixturevalue("hf_model" if kind == "hf" else "fasttext_model")
    comments, _ = month
    chains, split = ChainsConfig(), SplitConfig()
    filters = FiltersConfig(bland=False, classifier=True, classifier_path=path, classifier_label="good",
                            classifier_batch_size=5)
    sessions, _, _ = run_local(comments, None, chains, filters, split, 3)
    got = {r["session_id"]: r for r in sessions.to_pylist()}
    ref, _ = reference_extract(comments.to_pylist(), None, chains, filters, split)
    assert {k: r["drop_reason"] for k, r in got.items()} == {k: r["drop_reason"] for k, r in ref.items()}
    for sid, r in got.items():
        expected = ref[sid]["classifier_score"]
        assert (r["classifier_score"] is None) == (expected is None), sid
        if expected is not None:
            assert abs(r["classifier_score"] - expected) < 1e-5
    dropped = [r for r in got.values() if r["drop_reason"] == "classifier"]
    kept = [r for r in got.values() if r["drop_reason"] is None]
    assert len(dropped) > 10 and kept
    assert all(BAD.search(r["turns"][-1]) for r in dropped)
    assert all(r["classifier_score"] >= 0.5 and not BAD.search(r["turns"][-1]) for r in kept)
    # a session an earlier rule dropped was never judged (the corpus rules come after it)
    from extraction.sessions.filters import CORPUS_RULES

    earlier = [r for r in got.values() if r["drop_reason"] not in (None, "classifier", *CORPUS_RULES)]
    assert earlier and all(r["classifier_score"] is None for r in earlier)


@pytest.mark.slow
def test_the_classifier_runs_inside_the_spark_tasks(spark, hf_model, tmp_path):
    from extraction.sessions.job import ExtractConfig, ExtractError, run_extract
    from extraction.ingest.job import IngestConfig, run_ingest
    from reddit_pretrain_app.synth import SynthConfig, write_month

    write_month(str(tmp_path / "dumps"), SynthConfig(comments=3000, seed=23))
    run_ingest(IngestConfig(inputs=[str(tmp_path / "dumps" / "*.zst")], output=str(tmp_path / "ingest")), spark)
    filters = FiltersConfig(bland=False, classifier=True, classifier_path=hf_model, classifier_label="good")
    cfg = ExtractConfig(input=str(tmp_path / "ingest"), output=str(tmp_path / "out"), filters=filters)
    report = run_extract(cfg, spark)
    sessions = spark.read.parquet(str(tmp_path / "out" / "sessions")).toPandas()
    rejects = spark.read.parquet(str(tmp_path / "out" / "rejects")).toPandas()
    judged = rejects[rejects.drop_reason == "classifier"]
    assert len(judged) == {r["rule"]: r["out"] for r in report["rules"]}["classifier"] > 10
    assert (judged.classifier_score < 0.5).all() and (sessions.classifier_score >= 0.5).all()
    assert not sessions.turns.map(lambda t: bool(BAD.search(t[-1]))).any()
    html = (tmp_path / "out" / "extract_report.html").read_text()
    assert "classifier" in html and re.search(r"classifier score 0\.[0-4]", html)  # the examples say what decided them
    with pytest.raises(ExtractError, match="not a label of"):  # one line on the driver, before Spark runs a task
        run_extract(ExtractConfig(input=cfg.input, output=str(tmp_path / "out2"),
                                  filters=FiltersConfig(classifier=True, classifier_path=hf_model, classifier_label="toxic")),
                    spark)
    assert json.loads((tmp_path / "out" / "extract_report.json").read_text())["config"]["filters"]["classifier"] is True
