"""A classifier of the user's as a tagger: its score of each response, for the ``classifier`` rule.

``filters.classifier_path`` names either

* a Hugging Face text-classification model folder (``save_pretrained`` of a model with a sequence
  classification head, and its tokenizer): run with torch, in batches, without gradients; the score
  is the softmax probability of ``filters.classifier_label`` (a sigmoid for one-logit and
  multi-label models), or
* a fastText supervised model (a ``.bin`` or ``.ftz`` file, ``fasttext-community``): the
  probability it gives ``__label__<classifier_label>``.

The label defaults to a binary model's second label (``LABEL_1``, the positive class by Hugging
Face's convention) or a one-logit model's only one; otherwise it must be named. The score of each
response is stored on the session (``classifier_score``), and the rule drops a session scored below
``filters.classifier_min_score``: for a quality classifier name the good class, for a toxicity
classifier name the harmless one.

The model is loaded once per Python worker and kept (Spark reuses its workers), on the CPU with
``filters.classifier_threads`` torch threads (a Spark task is one core). The path must be one
every executor can read (a local or shared file system). ``score`` of one text is the plain-Python
reference; ``scores`` the batched form: responses sorted by length, so a batch pads little.
"""

from __future__ import annotations

import os

import numpy as np

from reddit_pretrain.errors import UserError

_LOADED: dict[tuple, "Classifier"] = {}


class ClassifierError(UserError, ValueError):
    """The classifier named cannot be used: one line saying why."""


class Classifier:
    def __init__(self, path: str, label: str = "", batch_size: int = 64, max_length: int = 256, threads: int = 1):
        self.path, self.label, self.batch_size, self.max_length, self.threads = path, label, batch_size, max_length, threads
        if os.path.isdir(path):
            if not os.path.exists(os.path.join(path, "config.json")):
                raise ClassifierError(f"filters.classifier_path {path!r} is a folder without config.json: not a Hugging Face model")
            self.kind = "huggingface"
        elif os.path.isfile(path):
            self.kind = "fasttext"
        else:
            raise ClassifierError(f"filters.classifier_path {path!r} does not exist (a model folder or a fastText .bin, "
                                  "readable on every executor)")
        self._model = None

    @classmethod
    def shared(cls, path: str, label: str = "", batch_size: int = 64, max_length: int = 256, threads: int = 1) -> "Classifier":
        """The classifier of these settings, loaded once per process."""
        key = (os.path.abspath(path), label, batch_size, max_length, threads)
        if key not in _LOADED:
            _LOADED[key] = cls(path, label, batch_size, max_length, threads)
        return _LOADED[key]

    # -- loading -----------------------------------------------------------------------------

    def _load(self):
        if self._model is not None:
            return
        if self.kind == "fasttext":
            try:
                import fasttext
            except ImportError as e:
                raise ClassifierError("a fastText classifier needs fasttext-community (pip install 'reddit-pretrain[tagger]')") from e
            try:
                model = fasttext.load_model(self.path)
            except ValueError as e:
                raise ClassifierError(f"filters.classifier_path {self.path!r} is no fastText model: {e}") from None
            labels = [label.removeprefix("__label__") for label in model.get_labels()]
            self._index = self._label_index(labels, binary_default=False)
            self._labels = labels
            self._model = model
            return
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from transformers.utils import logging as hf_logging

        torch.set_num_threads(self.threads)
        hf_logging.disable_progress_bar()  # once per worker, in every task's log otherwise
        tokenizer = AutoTokenizer.from_pretrained(self.path)
        model = AutoModelForSequenceClassification.from_pretrained(self.path).eval()
        limits = [getattr(model.config, name, None) for name in ("max_position_embeddings", "n_positions")]
        self._max_length = min([self.max_length] + [n for n in limits if isinstance(n, int) and n > 0])
        if tokenizer.pad_token is None:  # GPT-2-like tokenizers: pad with EOS (the attention mask hides it)
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        if model.config.pad_token_id is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        n = model.config.num_labels
        labels = [model.config.id2label.get(i, f"LABEL_{i}") for i in range(n)]
        self._index = self._label_index(labels, binary_default=True)
        self._labels = labels
        self._sigmoid = n == 1 or model.config.problem_type == "multi_label_classification"
        self._tokenizer, self._model = tokenizer, model

    def _label_index(self, labels: list[str], binary_default: bool) -> int:
        if self.label:
            lowered = [label.lower() for label in labels]
            if self.label.lower() in lowered:
                return lowered.index(self.label.lower())
            raise ClassifierError(f"filters.classifier_label {self.label!r} is not a label of {self.path}: {', '.join(labels)}")
        if len(labels) == 1:
            return 0
        if binary_default and len(labels) == 2:
            return 1
        raise ClassifierError(f"{self.path} has the labels {', '.join(labels)}: name the one scored in filters.classifier_label")

    @property
    def labels(self) -> list[str]:
        self._load()
        return list(self._labels)

    @property
    def scored_label(self) -> str:
        """The label whose probability is the score."""
        self._load()
        return self._labels[self._index]

    # -- scoring -----------------------------------------------------------------------------

    def score(self, text: str) -> float:
        """The score of one text: the reference."""
        return float(self._scores([text or ""])[0])

    def scores(self, texts: list) -> np.ndarray:
        """The score of each text (null: the empty text), in batches of ``batch_size``."""
        texts = [t or "" for t in texts]
        out = np.zeros(len(texts), dtype=np.float64)
        order = np.argsort(np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts)), kind="stable")
        for start in range(0, len(texts), self.batch_size):
            rows = order[start:start + self.batch_size]
            out[rows] = self._scores([texts[i] for i in rows])
        return out

    def _scores(self, texts: list[str]) -> np.ndarray:
        self._load()
        if self.kind == "fasttext":
            label = "__label__" + self._labels[self._index]
            found, probs = self._model.predict([" ".join(t.split()) for t in texts], k=-1, threshold=0.0)
            return np.array([float(p[list(names).index(label)]) if label in names else 0.0 for names, p in zip(found, probs)])
        import torch

        texts = [t if t.strip() else " " for t in texts]  # a text of no token gives the model nothing to read
        batch = self._tokenizer(texts, padding=True, truncation=True, max_length=self._max_length, return_tensors="pt")
        with torch.inference_mode():
            logits = self._model(**batch).logits.float()
        probs = torch.sigmoid(logits) if self._sigmoid else torch.softmax(logits, dim=-1)
        return probs[:, self._index].double().numpy()


def from_config(cfg) -> Classifier:
    """The classifier a FiltersConfig names (``filters.classifier_*``)."""
    return Classifier.shared(cfg.classifier_path, cfg.classifier_label, cfg.classifier_batch_size, cfg.classifier_max_length,
                             cfg.classifier_threads)
