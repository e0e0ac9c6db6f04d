"""DialoGPT's evaluation of an exported model, on the test split of an extract or a dataset folder.

    reddit-pretrain evaluate out/model out/extract [--contexts 200] [--out out/model-evaluation]
    reddit-pretrain evaluate out/model out/dataset --untrained      # the same model, new weights

What it measures:
- **Perplexity** on the test sessions (the first ``--max-sessions``), over reply tokens only: each
  session is tokenized as the shards are (turns closed by EOS, no loss on the first turn,
  ``reddit_pretrain.documents``), its newest ``n_positions`` tokens kept.
- On ``--contexts`` contexts of the test split (a session's turns but its last; the contexts are
  taken in a seeded order), the model's reply, **greedy** and **sampled** (top-p 0.9), with the
  model's saved generation config (``no_repeat_ngram_size``), each scored as DialoGPT's tables
  (its DSTC-7 setup) score them:
  - **BLEU-2, BLEU-4** (sacrebleu, corpus level, 0-100) against every reply the data has for that
    context: sessions that share a context (sibling replies) are its several references;
  - **Entropy-4**: the entropy (natural log) of the 4-gram distribution over all replies;
  - **Distinct-1, Distinct-2**: distinct n-grams over all n-grams of all replies;
  - **length**: mean words per reply.
  Words for entropy, distinct and length: lower case, runs of letters and digits, and each other
  non-space character.
- **Human**: the same metrics for the references themselves. Entropy, distinct and length over each
  context's first reference; BLEU of that reference against the context's other references, over
  the contexts that have two or more (so on fewer contexts, and fewer references, than the models'
  BLEU: DialoGPT's human row is computed so too).

It writes ``evaluation.json`` and ``evaluation.png`` (one panel a metric) into ``--out`` and prints
the table.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import re
import sys
from collections import Counter, defaultdict

from reddit_pretrain import layout, storage
from reddit_pretrain.errors import UserError
from reddit_pretrain.hydra_job import tool
from reddit_pretrain.layout import IGNORE_INDEX

METRICS = ("bleu2", "bleu4", "entropy4", "distinct1", "distinct2", "length")
HEADERS = {"bleu2": "BLEU-2", "bleu4": "BLEU-4", "entropy4": "Entropy-4", "distinct1": "Distinct-1",
           "distinct2": "Distinct-2", "length": "length"}
MAX_HISTORY = 4
"""Turns of a context the model sees, as the chat does."""
_WORD = re.compile(r"\w+|[^\w\s]")


class EvaluateError(UserError, RuntimeError):
    """A model or data folder that cannot be evaluated (one line)."""


# ---------------------------------------------------------------------------------------------
# The metrics (plain Python; sacrebleu for BLEU)


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def entropy_and_distinct(texts: list[str]) -> dict:
    """Entropy-n (n = 1..4, natural log) and Distinct-n (n = 1, 2) over all of ``texts`` together."""
    counts = [Counter() for _ in range(4)]
    for text in texts:
        w = words(text)
        for n in range(1, 5):
            counts[n - 1].update(tuple(w[i:i + n]) for i in range(len(w) - n + 1))
    out = {}
    for n in range(1, 5):
        total = sum(counts[n - 1].values())
        out[f"entropy{n}"] = -sum(c / total * math.log(c / total) for c in counts[n - 1].values()) if total else 0.0
        if n <= 2:
            out[f"distinct{n}"] = len(counts[n - 1]) / total if total else 0.0
    return out


def bleu(hypotheses: list[str], references: list[list[str]], order: int) -> float:
    """Corpus BLEU-``order`` (0-100) of ``hypotheses`` against each one's list of references (any
    number each, at least one)."""
    from sacrebleu.metrics import BLEU

    if not hypotheses:
        return float("nan")
    width = max(len(r) for r in references)
    streams = [[refs[i] if i < len(refs) else None for refs in references] for i in range(width)]
    return BLEU(max_ngram_order=order).corpus_score(hypotheses, streams).score


def score(hypotheses: list[str], references: list[list[str]]) -> dict:
    """Every metric of METRICS for ``hypotheses`` (BLEU against ``references``)."""
    stats = entropy_and_distinct(hypotheses)
    return {"bleu2": bleu(hypotheses, references, 2), "bleu4": bleu(hypotheses, references, 4),
            "entropy4": stats["entropy4"], "distinct1": stats["distinct1"], "distinct2": stats["distinct2"],
            "length": sum(len(words(h)) for h in hypotheses) / len(hypotheses) if hypotheses else 0.0}


def human(references: list[list[str]]) -> dict:
    """The metrics of the references themselves (the module's docstring says how)."""
    row = score([refs[0] for refs in references], [refs for refs in references])
    several = [refs for refs in references if len(refs) >= 2]
    row["bleu2"] = bleu([r[0] for r in several], [r[1:] for r in several], 2)
    row["bleu4"] = bleu([r[0] for r in several], [r[1:] for r in several], 4)
    return row


# ---------------------------------------------------------------------------------------------
# The data


def test_sessions(source: str) -> list[dict]:
    """The test split's sessions (``turn_ids``, ``turns``) of an extract folder or a dataset folder
    (``extraction.sessions.export_dataset``), in their order."""
    import pyarrow.parquet as pq

    if storage.exists(storage.join(source, layout.EXTRACT_DONE)):
        pattern, columns = storage.join(source, layout.SESSIONS, layout.split_folder(layout.TEST), "*.parquet"), ["turn_ids", "turns"]
    elif storage.exists(storage.join(source, "reddit_pretrain_dataset.json")) or storage.exists(storage.join(source, "data")):
        pattern, columns = storage.join(source, "data", "test-*.parquet"), ["turn_ids", "messages"]
    else:
        raise EvaluateError(f"{source} is neither a finished extract (reddit-pretrain extract) nor a dataset folder "
                            "(reddit-pretrain export-dataset)")
    try:
        files = storage.expand_inputs([pattern])
    except FileNotFoundError:
        raise EvaluateError(f"{source} has no test split ({pattern} matches nothing)") from None
    rows = []
    for file in files:
        fs, path = storage.filesystem(file)
        with fs.open(path, "rb") as f:
            rows += pq.read_table(f, columns=columns).to_pylist()
    for row in rows:
        if "messages" in row:
            row["turns"] = [m["content"] for m in row.pop("messages")]
    if not rows:
        raise EvaluateError(f"{source}: the test split is empty")
    return rows


def contexts(sessions: list[dict], n: int, seed: int = 0) -> list[tuple[list[str], list[str]]]:
    """Up to ``n`` (context turns, reference replies): sessions of two or more turns grouped by their
    context (the turn ids but the last); the groups in an order seeded by ``seed``."""
    groups: dict[tuple, list] = defaultdict(list)
    texts: dict[tuple, list[str]] = {}
    for s in sessions:
        if len(s["turns"]) >= 2:
            key = tuple(s["turn_ids"][:-1])
            groups[key].append(s["turns"][-1])
            texts[key] = s["turns"][:-1]
    order = sorted(groups, key=lambda k: hashlib.sha256(f"{seed}:{'/'.join(k)}".encode()).digest())
    return [(texts[k], groups[k]) for k in order[:n]]


# ---------------------------------------------------------------------------------------------
# The model


def load(model_dir: str, untrained: bool = False, seed: int = 0):
    """(model, tokenizer) of an exported folder; ``untrained``: its config with new weights."""
    import torch
    from transformers import AutoTokenizer, GPT2LMHeadModel

    from pretrain.model import exported_tokenizer_problem

    if not os.path.exists(os.path.join(model_dir, "config.json")):
        raise EvaluateError(f"{model_dir} is not a model folder (no config.json): give a folder made by reddit-pretrain export")
    why = exported_tokenizer_problem(model_dir)
    if why:
        raise EvaluateError(why)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = GPT2LMHeadModel.from_pretrained(model_dir)
    if len(tokenizer) > model.config.vocab_size:
        raise EvaluateError(f"{model_dir}: its tokenizer has {len(tokenizer):,} tokens, more than the model's vocabulary "
                            f"of {model.config.vocab_size:,}: they were not trained together (export the model again)")
    if untrained:
        torch.manual_seed(seed)
        fresh = GPT2LMHeadModel(model.config)
        fresh.generation_config = model.generation_config
        model = fresh
    return model.eval(), tokenizer


def perplexity(model, tokenizer, sessions: list[dict], batch_size: int = 16) -> dict:
    """Perplexity over reply tokens (no loss on the first turn, as in training)."""
    import numpy as np
    import torch

    from reddit_pretrain.documents import encode_session

    eos, window = tokenizer.eos_token_id, model.config.n_positions
    docs = []
    for s in sessions:
        tokens, mask = encode_session([tokenizer.encode(t) for t in s["turns"]], eos)
        docs.append((tokens[-window:], mask[-window:]))
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(docs), batch_size):
            chunk = docs[start:start + batch_size]
            width = max(len(t) for t, _ in chunk)
            ids = np.full((len(chunk), width), eos, dtype=np.int64)
            labels = np.full((len(chunk), width), IGNORE_INDEX, dtype=np.int64)
            attention = np.zeros((len(chunk), width), dtype=np.int64)
            for i, (t, m) in enumerate(chunk):
                ids[i, :len(t)], attention[i, :len(t)] = t, 1
                labels[i, :len(t)] = np.where(m == 1, t, IGNORE_INDEX)
            logits = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(attention)).logits
            targets = torch.from_numpy(labels[:, 1:])
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                                                     targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum")
            total += loss.item()
            count += int((targets != IGNORE_INDEX).sum())
    loss = total / max(count, 1)
    return {"loss": loss, "perplexity": math.exp(min(loss, 50)), "tokens": count, "sessions": len(docs)}


def generate(model, tokenizer, prompts: list[list[str]], sample: bool, seed: int = 0, max_new_tokens: int = 30,
             batch_size: int = 16) -> list[str]:
    """The model's reply to each context (its last MAX_HISTORY turns, EOS-joined), batched with left
    padding; greedy or sampled (top-p 0.9), with the model's generation config for the rest."""
    import torch

    eos = tokenizer.eos_token_id
    room = model.config.n_positions - max_new_tokens
    encoded = []
    for turns in prompts:
        ids = []
        for turn in turns[-MAX_HISTORY:]:
            ids += tokenizer.encode(turn) + [eos]
        encoded.append(ids[-room:])
    torch.manual_seed(seed)
    replies = []
    with torch.no_grad():
        for start in range(0, len(encoded), batch_size):
            chunk = encoded[start:start + batch_size]
            width = max(len(ids) for ids in chunk)
            ids = torch.tensor([[eos] * (width - len(c)) + c for c in chunk])
            attention = torch.tensor([[0] * (width - len(c)) + [1] * len(c) for c in chunk])
            out = model.generate(ids, attention_mask=attention, max_new_tokens=max_new_tokens, do_sample=sample,
                                 top_p=0.9 if sample else None, top_k=0 if sample else None,
                                 eos_token_id=eos, pad_token_id=eos)
            replies += [tokenizer.decode(row[width:], skip_special_tokens=True).strip() for row in out]
    return replies


# ---------------------------------------------------------------------------------------------
# The whole evaluation


def evaluate(model_dir: str, source: str, n_contexts: int = 200, max_sessions: int = 2000, seed: int = 0,
             untrained: bool = False, max_new_tokens: int = 30) -> list[tuple[str, dict]]:
    """``[("trained", result)]``, and ``("untrained", result)`` after it with ``untrained``: the
    test split, its contexts and the human row are read and scored once for both."""
    from pretrain.console import quiet_libraries

    quiet_libraries()
    sessions = test_sessions(source)
    chosen = contexts(sessions, n_contexts, seed)
    if not chosen:
        raise EvaluateError(f"{source}: no test session has two turns or more (a context and a reply)")
    prompts, references = [c for c, _ in chosen], [r for _, r in chosen]
    humans = human(references)
    results = []
    for name in ("trained", "untrained") if untrained else ("trained",):
        model, tokenizer = load(model_dir, name == "untrained", seed)
        greedy = generate(model, tokenizer, prompts, False, seed, max_new_tokens)
        sampled = generate(model, tokenizer, prompts, True, seed, max_new_tokens)
        rows = {"greedy": score(greedy, references), "sampled": score(sampled, references), "human": humans}
        results.append((name, {
            "model": model_dir, "untrained": name == "untrained", "source": source, "seed": seed,
            "test": perplexity(model, tokenizer, sessions[:max_sessions]),
            "contexts": len(chosen), "multi_reference_contexts": sum(len(r) >= 2 for r in references),
            "references": sum(len(r) for r in references), "rows": rows,
            "examples": [{"context": p[-MAX_HISTORY:], "greedy": g, "sampled": s, "references": r[:3]}
                         for p, g, s, r in zip(prompts[:5], greedy, sampled, references)]}))
    return results


def format_table(results: list[tuple[str, dict]]) -> str:
    """The metrics table of one or more evaluations (``(name, evaluate's result)``), as DialoGPT's."""
    head = f"{'':<20}" + "".join(f"{HEADERS[m]:>11}" for m in METRICS) + f"{'perplexity':>12}"
    lines = [head]
    for name, result in results:
        for row in ("greedy", "sampled"):
            values = result["rows"][row]
            lines.append(f"{name + ' ' + row:<20}" + "".join(_cell(m, values[m]) for m in METRICS)
                         + f"{result['test']['perplexity']:>12.2f}")
    values = results[0][1]["rows"]["human"]
    lines.append(f"{'human':<20}" + "".join(_cell(m, values[m]) for m in METRICS) + f"{'':>12}")
    r = results[0][1]
    lines.append(f"({r['contexts']} test contexts, {r['multi_reference_contexts']} with several references, "
                 f"{r['references']} references; perplexity over {r['test']['tokens']:,} reply tokens of "
                 f"{r['test']['sessions']:,} test sessions; BLEU 0-100)")
    return "\n".join(lines)


def _cell(metric: str, value: float) -> str:
    if value != value:  # NaN: no context with several references
        return f"{'-':>11}"
    return f"{value:>11.2f}" if metric in ("bleu2", "bleu4", "entropy4", "length") else f"{value:>11.3f}"


OUTPUTS = ("evaluation.json", "evaluation.png")


def _written_here(path: str) -> bool:
    """Whether ``path`` is an evaluation.json this command wrote: a name per evaluated model, each
    with the model, its test figures and its metric rows."""
    try:
        saved = storage.read_json(path)
    except (OSError, ValueError):
        return False
    return isinstance(saved, dict) and bool(saved) and all(
        isinstance(r, dict) and {"model", "test", "rows"} <= set(r) for r in saved.values())


def check_out(out: str, overwrite: bool = False) -> None:
    """Refuses (EvaluateError, one line) an ``--out`` whose evaluation.json or evaluation.png this
    command did not write (a user's own results), unless ``overwrite``. Other files there are left alone."""
    if overwrite:
        return
    ours = _written_here(storage.join(out, OUTPUTS[0]))
    theirs = [name for name in OUTPUTS if storage.exists(storage.join(out, name)) and not ours]
    if theirs:
        raise EvaluateError(f"{out} holds {' and '.join(theirs)} that reddit-pretrain evaluate did not write: choose "
                            "another --out, or pass --overwrite to replace them")


def write(results: list[tuple[str, dict]], out: str) -> None:
    """``evaluation.json`` and ``evaluation.png`` (a panel a metric) in the folder ``out``."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    storage.write_json_atomic(storage.join(out, "evaluation.json"), {name: r for name, r in results})
    bars = [(f"{name} {row}", r["rows"][row]) for name, r in results for row in ("greedy", "sampled")]
    bars.append(("human", results[0][1]["rows"]["human"]))
    fig, axes = plt.subplots(1, len(METRICS), figsize=(2.3 * len(METRICS), 3.2))
    for ax, metric in zip(axes, METRICS):
        values = [0.0 if v[metric] != v[metric] else v[metric] for _, v in bars]
        ax.bar(range(len(bars)), values, color=[f"C{i}" for i in range(len(bars))])
        ax.set_title(HEADERS[metric], fontsize=9)
        ax.set_xticks(range(len(bars)), [name for name, _ in bars], rotation=60, ha="right", fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    storage.write_bytes_atomic(storage.join(out, "evaluation.png"), buf.getvalue())


@tool
def main(argv: list[str] | None = None) -> int:
    from reddit_pretrain.hydra_job import prog

    parser = argparse.ArgumentParser(prog=prog("python -m pretrain.evaluate"), formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="an exported model folder (reddit-pretrain export)")
    parser.add_argument("data", help="an extract folder or a dataset folder: its test split is used")
    parser.add_argument("--contexts", type=int, default=200, help="test contexts to generate replies for")
    parser.add_argument("--max-sessions", type=int, default=2000, help="test sessions for the perplexity")
    parser.add_argument("--max-new-tokens", type=int, default=30, help="longest generated reply, in tokens")
    parser.add_argument("--seed", type=int, default=0, help="the contexts' order, the sampling and --untrained's weights")
    parser.add_argument("--untrained", action="store_true", help="also the same model with new weights, for comparison")
    parser.add_argument("--out", help="folder for evaluation.json and evaluation.png (default: <model>-evaluation); "
                                      "an earlier evaluation there is replaced, files of the same names it did not write are refused")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace evaluation.json and evaluation.png in --out even when evaluate did not write them")
    args = parser.parse_args(argv)
    if args.contexts < 1 or args.max_sessions < 1 or args.max_new_tokens < 1:
        print("error: --contexts, --max-sessions and --max-new-tokens must be >= 1", file=sys.stderr)
        return 2
    out = args.out or args.model.rstrip("/") + "-evaluation"
    check_out(out, args.overwrite)  # before the work, not after it
    results = evaluate(args.model, args.data, args.contexts, args.max_sessions, args.seed, args.untrained,
                       args.max_new_tokens)
    write(results, out)
    print(format_table(results))
    print(f"[evaluate] {out}/evaluation.json, {out}/evaluation.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
