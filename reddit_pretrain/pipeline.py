"""The whole pipeline in one command: dumps -> Parquet -> sessions -> shards -> GPT-2 -> HF model.

    python -m reddit_pretrain.pipeline                                   # the README demo (generated month)
    python -m reddit_pretrain.pipeline 'input=[/data/RC_2015-0*.zst,/data/RS_2015-0*.zst]' out=/scratch/run \\
        tokenizer=gpt2 train.nproc=8 'train.overrides=[model=gpt2-124m,deepspeed=zero2,trainer.max_steps=50000]'

Stages (each skips itself when its output is complete for the same inputs and settings):
generate a month (only when ``input`` is empty) -> ingest -> extract -> tokenizer (trained on
the train split unless ``tokenizer`` names one) -> tokenize -> train with DeepSpeed on
``train.nproc`` processes through torchrun -> export to Hugging Face format -> sample replies.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

from extraction.chains import ChainsConfig, SplitConfig
from extraction.filters import FiltersConfig
from extraction.spark import SparkConfig


@dataclass
class PipelineTrainConfig:
    nproc: int = 2
    """Processes (GPUs, or CPU processes with DS_ACCELERATOR=cpu) for torchrun on this machine."""
    overrides: list[str] = field(default_factory=lambda: ["experiment=demo"])
    """Hydra overrides for pretrain.train (conf/train.yaml); data.shards and trainer.out_dir are set here."""


@dataclass
class PipelineConfig:
    input: list[str] = field(default_factory=list)
    """RC/RS dumps (paths or globs). Empty: generate a month of ``demo_comments`` comments."""
    out: str = "out/demo"
    demo_comments: int = 200_000
    tokenizer: str | None = None
    """A tokenizer name or folder; null trains a byte-level BPE of ``tokenizer_vocab_size`` on the train split."""
    tokenizer_vocab_size: int = 4000
    max_session_tokens: int = 256
    chains: ChainsConfig = field(default_factory=ChainsConfig)
    filters: FiltersConfig = field(default_factory=lambda: FiltersConfig(bland_min_count=50))
    split: SplitConfig = field(default_factory=lambda: SplitConfig(valid_fraction=0.02, test_fraction=0.02))
    train: PipelineTrainConfig = field(default_factory=PipelineTrainConfig)
    spark: SparkConfig = field(default_factory=SparkConfig)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_pipeline(cfg: PipelineConfig) -> dict:
    from extraction.extract import ExtractConfig, run_extract
    from extraction.ingest import IngestConfig, run_ingest
    from extraction.spark import build_spark
    from extraction.synth import SynthConfig, write_month
    from extraction.tokenize import TokenizeConfig, run_tokenize
    from extraction.train_tokenizer import train_tokenizer

    from reddit_pretrain import storage

    storage.check_writable(cfg.out)  # before anything is generated or Spark starts
    started = time.time()
    say = lambda msg: print(f"[pipeline] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    paths = {name: os.path.join(cfg.out, name) for name in ("dumps", "ingest", "extract", "tokenizer", "shards", "train", "model")}
    inputs = list(cfg.input)
    if not inputs:
        if not os.path.exists(os.path.join(paths["dumps"], "RC_2015-01.zst")):
            say(f"generating a Pushshift month of {cfg.demo_comments:,} comments")
            write_month(paths["dumps"], SynthConfig(month="2015-01", comments=cfg.demo_comments, megathreads=1,
                                                    megathread_comments=max(1, cfg.demo_comments // 10),
                                                    deep_chains=1, deep_chain_depth=max(10, cfg.demo_comments // 100),
                                                    p_conversation=0.9))
        inputs = [os.path.join(paths["dumps"], "R[CS]_2015-01.zst")]
    spark = build_spark(cfg.spark)
    say("ingest")
    run_ingest(IngestConfig(inputs=inputs, output=paths["ingest"], spark=cfg.spark), spark)
    say("chains, filters, splits")
    extract = run_extract(ExtractConfig(input=paths["ingest"], output=paths["extract"], chains=cfg.chains,
                                        filters=cfg.filters, split=cfg.split, spark=cfg.spark), spark)
    tokenizer = cfg.tokenizer
    if tokenizer is None:
        tokenizer = paths["tokenizer"]
        if not os.path.exists(os.path.join(tokenizer, "tokenizer.json")):
            say(f"training a byte-level BPE tokenizer ({cfg.tokenizer_vocab_size} tokens) on the train split")
            train_tokenizer(os.path.join(paths["extract"], "sessions"), tokenizer, cfg.tokenizer_vocab_size)
    say("tokenize")
    manifest = run_tokenize(TokenizeConfig(input=paths["extract"], output=paths["shards"], tokenizer=tokenizer,
                                           max_session_tokens=cfg.max_session_tokens, spark=cfg.spark), spark)
    spark.stop()

    say(f"train on {cfg.train.nproc} processes")
    env = dict(os.environ)
    try:
        import torch

        if not torch.cuda.is_available():
            env.setdefault("DS_ACCELERATOR", "cpu")
            env.setdefault("OMP_NUM_THREADS", "1")
    except ImportError:
        pass
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={cfg.train.nproc}",
               f"--master_port={_free_port()}", "-m", "pretrain.train", *cfg.train.overrides,
               f"data.shards={paths['shards']}", f"trainer.out_dir={paths['train']}"]
    say(" ".join(command))
    subprocess.run(command, env=env, check=True)

    from pretrain.export import export

    export(os.path.join(paths["train"], "checkpoints"), paths["model"])
    import json

    with open(os.path.join(paths["train"], "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    valid = [r for r in records if r["kind"] == "valid"][-1]
    samples = [r for r in records if r["kind"] == "samples"][-1]["samples"]
    topical = on_topic(paths["model"]) if not cfg.input else None
    summary = {
        "on_topic": topical,
        "seconds": round(time.time() - started, 1),
        "sessions_kept": extract["sessions"]["kept"],
        "train_tokens": manifest["splits"]["train"]["tokens"],
        "valid_loss": valid["valid_loss"],
        "valid_perplexity": valid["valid_perplexity"],
        "samples": samples,
        "paths": paths,
    }
    print(f"""
Pipeline finished in {summary['seconds']:.0f} s
  dumps             {paths['dumps'] if not cfg.input else ', '.join(cfg.input)}
  ingest (Parquet)  {paths['ingest']}/comments, submissions, rejects; ingest_report.json
  sessions          {paths['extract']}/sessions (train/valid/test), rejects; {extract['sessions']['kept']:,} kept
  report picture    {paths['extract']}/extract_report.png  (page: extract_report.html)
  tokenizer         {tokenizer}
  token shards      {paths['shards']} ({summary['train_tokens']:,} train tokens; python -m pretrain.shard_tools inspect {paths['shards']})
  checkpoints       {paths['train']}/checkpoints; curves {paths['train']}/curves.png; metrics.jsonl; tensorboard/
  validation        loss {summary['valid_loss']:.3f}, perplexity {summary['valid_perplexity']:.1f}
  exported model    {paths['model']} (transformers: GPT2LMHeadModel.from_pretrained)
  sample replies""")
    for s in samples:
        print(f"    {s['prompt']!r} -> {s['reply']!r}")
    if topical:
        print(f"  replies on the question's topic ({len(topical['pairs'])} questions about the generated topics): "
              f"trained {topical['trained']:.0%}, the same model untrained {topical['untrained']:.0%}")
        for prompt, answer in topical["pairs"][:6]:
            print(f"    {prompt!r} -> {answer!r}")
    print(f"\nChat with it:  .venv/bin/python -m pretrain.chat {paths['model']}")
    return summary


def on_topic(model_dir: str) -> dict:
    """How often the exported model answers a question about one of the generated month's topics
    (``extraction.synth.TOPICS``) with a word of that topic, against the same model untrained."""
    import torch
    from transformers import AutoTokenizer, GPT2LMHeadModel

    from extraction.synth import TOPICS
    from pretrain.chat import reply

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    trained = GPT2LMHeadModel.from_pretrained(model_dir).eval()
    torch.manual_seed(0)
    untrained = GPT2LMHeadModel(trained.config).eval()
    questions = [(topic, q.format(n=nouns[0])) for topic, (nouns, _) in sorted(TOPICS.items())
                 for q in ("What do you think of the new {n}?", "Any good {n}s?")]

    def rate(model) -> tuple[float, list]:
        pairs, hits = [], 0
        for topic, question in questions:
            answer = reply(model, tokenizer, [question], max_new_tokens=16)
            words = {w.strip(".,!?").lower() for w in answer.split()}
            hits += bool(words & {n for n in TOPICS[topic][0]} | words & {n + "s" for n in TOPICS[topic][0]})
            pairs.append((question, answer))
        return hits / len(questions), pairs

    trained_rate, pairs = rate(trained)
    return {"trained": trained_rate, "untrained": rate(untrained)[0], "pairs": pairs}


def main() -> None:
    from extraction import spark
    from reddit_pretrain.cli import run_hydra
    from reddit_pretrain.storage import OutputNotWritable

    run_hydra("pipeline", PipelineConfig, run_pipeline, (OutputNotWritable, spark.SparkStartError), hint=spark.log_hint)

if __name__ == "__main__":
    main()
