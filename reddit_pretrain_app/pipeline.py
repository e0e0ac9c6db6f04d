"""The whole pipeline in one command: dumps -> Parquet -> sessions -> shards -> GPT-2 -> HF model.

    python -m reddit_pretrain_app.pipeline                                   # the README demo (generated month)
    python -m reddit_pretrain_app.pipeline 'input=[/data/RC_2015-0*.zst,/data/RS_2015-0*.zst]' out=/scratch/run \\
        tokenizer.name=gpt2 model=gpt2-124m deepspeed=zero2 train.trainer.max_steps=50000 nproc=8

Stages (each skips itself when its output is complete for the same inputs and settings):
generate a month (only when ``input`` is empty) -> ingest -> extract -> tokenizer (trained on
the train split unless ``tokenizer.name`` names one) -> tokenize -> train with DeepSpeed on
``nproc`` processes through torchrun -> export to Hugging Face format -> sample replies.

The config is made of the stages' own configs (``ingest``, ``extract``, ``tokenize``, ``train``:
every stage setting, one definition each) plus what joins them. The folders between stages come
from ``out`` and Spark from ``spark``: setting a stage's own ``input``/``output``/``spark`` (or
the trainer's ``data.shards``/``trainer.out_dir``) is an error, not silently ignored. Groups are
picked as in the stages' own commands: ``preset=`` for extract's rules, ``model=``, ``data=``,
``optimizer=``, ``scheduler=``, ``deepspeed=``, ``trainer=`` for training (conf/pipeline.yaml
picks the demo options). The training config goes to the trainer whole and typed, as
``<out>/train_config.yaml``.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field, make_dataclass
from operator import attrgetter

from extraction.spark import SparkConfig
from extraction.tokenize.train_tokenizer import DEFAULT_VOCAB_SIZE
from pretrain.config import TrainConfig
from reddit_pretrain import layout
from reddit_pretrain.errors import SettingError, UserError
from reddit_pretrain_app import registry
from reddit_pretrain_app.synth import SynthConfig

GROUP_ALIASES = {"preset": "preset@extract", **{g: f"{g}@train.{g}" for g in
                                                 ("model", "data", "optimizer", "scheduler", "deepspeed", "trainer")}}
"""The pipeline's groups sit inside its stages' configs; on its command line they keep the names
the stage commands give them (``model=gpt2-124m`` is ``model@train.model=gpt2-124m``)."""


class PipelineConfigError(SettingError):
    """A pipeline setting that would be ignored or cannot work (raised before any stage runs)."""


class StageFailed(UserError, RuntimeError):
    """A stage that runs in a process of its own (training) ended with an error; its output says why."""


@dataclass
class TokenizerSetup:
    name: str | None = None
    """A tokenizer name or folder for the tokenize job; null trains a byte-level BPE of
    ``vocab_size`` on the train split (``extraction.tokenize.train_tokenizer``)."""
    vocab_size: int = DEFAULT_VOCAB_SIZE
    """What the trained tokenizer aims for (``extraction.tokenize.train_tokenizer.DEFAULT_VOCAB_SIZE``)."""


@dataclass
class PipelineSettings:
    """What joins the stages; ``PipelineConfig`` adds each data stage's own config (``registry``)."""

    input: list[str] = field(default_factory=list)
    """RC/RS dumps (paths or globs). Empty: generate a month as ``demo`` describes."""
    out: str = "out/demo"
    """Every stage's folder is under it: dumps/ ingest/ extract/ tokenizer/ shards/ train/ model/."""
    demo: SynthConfig = field(default_factory=SynthConfig)
    """The generated month when ``input`` is empty (reddit_pretrain_app.synth)."""
    spark: SparkConfig = field(default_factory=SparkConfig)
    """One Spark for every stage."""
    tokenizer: TokenizerSetup = field(default_factory=TokenizerSetup)
    train: TrainConfig = field(default_factory=TrainConfig)
    nproc: int = 2
    """Training processes (GPUs, or CPU processes with DS_ACCELERATOR=cpu) for torchrun on this machine."""
    stop_after: str = "evaluate"
    """The last stage to run: a data stage (ingest, extract, tokenize), train, export or evaluate (every
    stage). On real dumps, ``stop_after=tokenize`` runs the data stages on one Spark session (one start-up)."""

    def validate(self) -> None:
        """The settings the pipeline itself decides must be left alone in the stage configs."""
        defaults = type(self)()
        for key, source in derived().items():
            if attrgetter(key)(self) != attrgetter(key)(defaults):
                raise PipelineConfigError(f"{key} is set by the pipeline (from {source}); set {source} instead")
        if self.nproc < 1:
            raise PipelineConfigError("nproc must be at least 1")
        if self.stop_after not in STAGES:
            raise PipelineConfigError(f"stop_after must be one of {', '.join(STAGES)}, not {self.stop_after!r}")
        self.train.validate()


def _pipeline_config() -> type:
    """``PipelineSettings`` with a field per data stage of the registry (``ingest: IngestConfig``, ...),
    named as its command, typed by its config class."""
    stages = [(c.name, c.load(c.config)) for c in registry.data_stages()]
    cls = make_dataclass("PipelineConfig", [(name, kind, field(default_factory=kind)) for name, kind in stages],
                         bases=(PipelineSettings,))
    cls.__module__ = __name__
    cls.__doc__ = "The pipeline's config: what joins the stages, and each data stage's own config."
    cls.__field_docs__ = {name: f"The {name} job's config (conf/{name}.yaml)." for name, _ in stages}
    return cls


PipelineConfig = _pipeline_config()

STAGES = registry.stage_names()
"""The pipeline's stages in order (``stop_after`` names the last one to run)."""

_GIVEN = {"dumps": "input=", "out": "out=", "spark": "spark.*", "tokenizer": "tokenizer.name="}


def derived() -> dict[str, str]:
    """The stage settings the pipeline sets itself -> the pipeline setting each comes from."""
    keys = {f"{c.name}.{name}": _GIVEN.get(source, "out=") for c in registry.data_stages()
            for name, source in c.stage.sets.items()}
    return {**keys, "train.data.shards": "out=", "train.trainer.out_dir": "out="}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_pipeline(cfg) -> dict:
    """Runs the stages in order (``registry``), each on the folder of the one before it, up to
    ``stop_after``; returns a summary."""
    import dataclasses

    from reddit_pretrain import storage
    from reddit_pretrain_app.synth import write_month

    cfg.validate()
    storage.check_writable(cfg.out)  # before anything is generated or Spark starts
    started = time.time()
    say = lambda msg: print(f"[pipeline] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    folders = ["dumps", *(c.stage.folder for c in registry.data_stages()), "tokenizer", "train", "model", "evaluation"]
    paths = {name: os.path.join(cfg.out, name) for name in dict.fromkeys(folders)}
    inputs = list(cfg.input)
    if not inputs:
        month = cfg.demo.month
        if not os.path.exists(os.path.join(paths["dumps"], f"RC_{month}.zst")):
            say(f"generating a Pushshift month of {cfg.demo.comments:,} comments")
            write_month(paths["dumps"], cfg.demo)
        inputs = [os.path.join(paths["dumps"], f"R[CS]_{month}.zst")]
    given = {"dumps": lambda: inputs, "spark": lambda: cfg.spark, "tokenizer": lambda: _tokenizer(cfg, paths, say),
             **{c.name: (lambda c=c: paths[c.stage.folder]) for c in registry.data_stages()}}
    reports = {}
    # Each job starts Spark when its input needs it (small ones run in this process); they share it.
    for stage in registry.data_stages():
        values = {name: paths[stage.stage.folder] if source == "out" else given[source]()
                  for name, source in stage.stage.sets.items()}
        say(stage.stage.says or stage.name)
        reports[stage.name] = stage.load(stage.run)(dataclasses.replace(getattr(cfg, stage.name), **values))
        if cfg.stop_after == stage.name:
            break
    if len(reports) == len(registry.data_stages()):  # the data is ready: Spark's memory goes back before training
        from pyspark.sql import SparkSession

        if SparkSession.getActiveSession() is not None:
            SparkSession.getActiveSession().stop()
    if cfg.stop_after in reports:
        return _stopped(cfg, paths, started)
    extract, manifest = reports["extract"], reports["tokenize"]
    tokenizer = given["tokenizer"]()

    say(f"train on {cfg.nproc} processes")
    train_cfg = dataclasses.replace(cfg.train, data=dataclasses.replace(cfg.train.data, shards=paths["shards"]),
                                    trainer=dataclasses.replace(cfg.train.trainer, out_dir=paths["train"],
                                                                # the pipeline's own folder: a second run trains anew
                                                                overwrite=cfg.train.trainer.overwrite or cfg.train.model.init != "resume"))
    config_file = write_train_config(train_cfg, os.path.join(cfg.out, "train_config.yaml"))
    env = dict(os.environ)
    try:
        import torch

        if not torch.cuda.is_available():
            env.setdefault("DS_ACCELERATOR", "cpu")
            env.setdefault("OMP_NUM_THREADS", "1")
    except ImportError:
        pass
    config_args = [f"--config-dir={os.path.dirname(os.path.abspath(config_file))}", "--config-name=train_config"]
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={cfg.nproc}",
               f"--master_port={_free_port()}", "-m", "pretrain.train", *config_args]
    say(shlex.join(command))
    if subprocess.run(command, env=env).returncode != 0:
        raise StageFailed(f"training stopped with an error (above); its config: {config_file}; run it alone with "
                          f"reddit-pretrain train {shlex.join(config_args)}")

    if cfg.stop_after == "train":
        return _stopped(cfg, paths, started)
    from pretrain.export import export

    export(os.path.join(paths["train"], "checkpoints"), paths["model"])
    if cfg.stop_after == "export":
        return _stopped(cfg, paths, started)
    import json

    with open(os.path.join(paths["train"], "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    valid = [r for r in records if r["kind"] == "valid"][-1]
    samples = [r for r in records if r["kind"] == "samples"][-1]["samples"]
    topical = on_topic(paths["model"]) if not cfg.input else None
    from pretrain.evaluate import evaluate, format_table, write

    say("evaluating the model and the same model untrained on the test split (DialoGPT's metrics)")
    evaluations = evaluate(paths["model"], paths["extract"], n_contexts=100, max_sessions=500, untrained=True)
    write(evaluations, paths["evaluation"])
    summary = {
        "on_topic": topical,
        "seconds": round(time.time() - started, 1),
        "sessions_kept": extract["sessions"]["kept"],
        "train_tokens": manifest["splits"]["train"]["tokens"],
        "valid_loss": valid["valid_loss"],
        "valid_perplexity": valid["valid_perplexity"],
        "samples": samples,
        "evaluation": {name: {"perplexity": r["test"]["perplexity"], **r["rows"]["greedy"]} for name, r in evaluations},
        "paths": paths,
    }
    print(f"""
Pipeline finished in {summary['seconds']:.0f} s
  dumps             {paths['dumps'] if not cfg.input else ', '.join(cfg.input)}
  ingest (Parquet)  {paths['ingest']}/comments, submissions, rejects; {layout.INGEST_REPORT}
  sessions          {paths['extract']}/sessions (train/valid/test), rejects; {extract['sessions']['kept']:,} kept
  report picture    {paths['extract']}/{layout.EXTRACT_REPORT_PNG}  (page: {layout.EXTRACT_REPORT_HTML})
  tokenizer         {tokenizer}
  token shards      {paths['shards']} ({summary['train_tokens']:,} train tokens; reddit-pretrain inspect {paths['shards']})
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
    print(f"  DialoGPT's metrics on the test split ({paths['evaluation']}/evaluation.json, evaluation.png):")
    print("    " + format_table(evaluations).replace("\n", "\n    "))
    print(f"\nChat with it:  .venv/bin/reddit-pretrain chat {shlex.quote(paths['model'])}")
    return summary


def _tokenizer(cfg, paths: dict, say) -> str:
    """``tokenizer.name``, or the folder of a byte-level BPE trained on the train split (once)."""
    from extraction.tokenize.train_tokenizer import train_tokenizer

    if cfg.tokenizer.name is not None:
        return cfg.tokenizer.name
    tokenizer = paths["tokenizer"]
    if not os.path.exists(os.path.join(tokenizer, "tokenizer.json")):
        say(f"training a byte-level BPE tokenizer ({cfg.tokenizer.vocab_size} tokens) on the train split")
        train_tokenizer(os.path.join(paths["extract"], layout.SESSIONS), tokenizer, cfg.tokenizer.vocab_size)
    return tokenizer


def _stopped(cfg, paths: dict, started: float) -> dict:
    """The summary of a run that ``stop_after`` ended early."""
    done = STAGES[:STAGES.index(cfg.stop_after) + 1]
    seconds = round(time.time() - started, 1)
    folders = {**{c.name: c.stage.folder for c in registry.data_stages()}, "export": "model"}
    print(f"Pipeline stopped after {cfg.stop_after} (stop_after) in {seconds:.0f} s: "
          + ", ".join(f"{stage} {paths[folders.get(stage, stage)]}" for stage in done))
    return {"stopped_after": cfg.stop_after, "seconds": seconds, "paths": paths}


def write_train_config(cfg: TrainConfig, path: str) -> str:
    """The whole training config as a primary Hydra config of its own (the trainer composes it with
    its typed schema: ``python -m pretrain.train --config-dir <folder> --config-name train_config``)."""
    from omegaconf import OmegaConf

    from reddit_pretrain import storage

    body = OmegaConf.to_yaml(OmegaConf.structured(cfg))
    text = ("# Written by the pipeline: the training config it ran, whole and typed.\n"
            "defaults:\n  - train_schema\n  - _self_\n  - override hydra/job_logging: stdout\n\n"
            + body + "\nhydra:\n  run:\n    dir: .\n  output_subdir: null\n")
    storage.write_bytes_atomic(path, text.encode())
    return path


def on_topic(model_dir: str) -> dict:
    """How often the exported model answers a question about one of the generated month's topics
    (``reddit_pretrain_app.synth.TOPICS``) with a word of that topic, against the same model untrained."""
    import torch
    from transformers import AutoTokenizer, GPT2LMHeadModel

    from reddit_pretrain_app.synth_text import TOPICS
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
    from reddit_pretrain.hydra_job import run_hydra

    run_hydra("pipeline", PipelineConfig, run_pipeline, "'input=[/data/RC_2015-01.zst,/data/RS_2015-01.zst]' out=run",
              hint=spark.log_hint, aliases=GROUP_ALIASES)


if __name__ == "__main__":
    main()
