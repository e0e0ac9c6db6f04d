"""Every command and every stage of the pipeline, declared once. The ``reddit-pretrain`` command
(``reddit_pretrain_app.command``), the pipeline (``reddit_pretrain_app.pipeline``: a loop over the
stages here, ``stop_after`` a place in it), ``jobs/spark_driver.py`` and the configuration
reference (``jobs/config_reference.py``) all read this list and nothing else.

A new Hydra job is its module (a ``main()`` that calls ``reddit_pretrain.hydra_job.run_hydra``, a
config dataclass, a run function taking that config), its ``conf/<name>.yaml``, and one entry
here; with a ``Stage`` it also joins the pipeline, after the stages above it.

Modules are named as strings: nothing here is imported until a command runs (the data side needs
Spark, the training side torch).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Stage:
    """How a Hydra job joins the pipeline: the folder it writes under the pipeline's ``out``, and
    the settings of its config that the pipeline fills in (a user setting them is an error)."""

    folder: str
    """Its output folder under ``out=`` (and its name in ``stop_after``)."""
    sets: dict[str, str] = field(default_factory=dict)
    """Its config field -> what the pipeline puts there: ``dumps`` (the input dumps, or the
    generated month's), ``out`` (its own folder), ``spark`` (the pipeline's Spark settings),
    ``tokenizer`` (the tokenizer's name or the folder of the one trained on the train split), or
    the name of a stage above it (that stage's folder)."""
    says: str = ""
    """Its progress line in the pipeline's log."""


@dataclass(frozen=True)
class Command:
    name: str
    """What follows ``reddit-pretrain``."""
    module: str
    """Its module: ``python -m <module>`` runs the same code."""
    about: str
    """One line for ``reddit-pretrain --help``."""
    config: str | None = None
    """A Hydra job: its config dataclass in ``module``; its YAML is ``conf/<name>.yaml`` and it takes
    ``key=value`` overrides. None: a tool with flags of its own (argparse)."""
    run: str | None = None
    """A Hydra job's run function in ``module`` (the config in, the job's report out)."""
    argv: tuple[str, ...] = ()
    """Words put before the user's (a tool whose sub-command the command picks)."""
    spark: bool = False
    """spark-submit may drive it (``jobs/spark_driver.py``)."""
    stage: Stage | None = None
    """It is a stage of the pipeline, in this list's order."""

    @property
    def hydra(self) -> bool:
        return self.config is not None

    def load(self, attribute: str):
        """``attribute`` of the command's module (imported now)."""
        return getattr(importlib.import_module(self.module), attribute)


COMMANDS: list[Command] = [
    Command("pipeline", "reddit_pretrain_app.pipeline", "every stage in one command: dumps -> Parquet -> sessions -> shards -> model",
            config="PipelineConfig", run="run_pipeline"),
    Command("synth", "reddit_pretrain_app.synth", "write a generated Pushshift month (RC_/RS_YYYY-MM.zst) to try the stages on"),
    Command("ingest", "extraction.ingest.job", "Pushshift dumps -> Parquet tables of comments, submissions and rejects",
            config="IngestConfig", run="run_ingest", spark=True,
            stage=Stage("ingest", {"inputs": "dumps", "output": "out", "spark": "spark"}, "ingest")),
    Command("extract", "extraction.sessions.job", "ingested comments -> dialogue sessions: chains, rules, splits, report",
            config="ExtractConfig", run="run_extract", spark=True,
            stage=Stage("extract", {"input": "ingest", "output": "out", "spark": "spark"}, "chains, filters, splits")),
    Command("train-tokenizer", "extraction.tokenize.train_tokenizer", "a byte-level BPE tokenizer trained on the train split"),
    Command("tokenize", "extraction.tokenize.job", "sessions -> memory-mappable token shards with a manifest",
            config="TokenizeConfig", run="run_tokenize", spark=True,
            stage=Stage("shards", {"input": "extract", "output": "out", "tokenizer": "tokenizer", "spark": "spark"},
                        "tokenize")),
    Command("export-dataset", "extraction.sessions.export_dataset", "sessions -> a Hugging Face dataset folder (chat messages, a dataset card)"),
    Command("inspect", "pretrain.shard_tools", "counts, lengths and decoded documents of a shard set", argv=("inspect",)),
    Command("export-megatron", "pretrain.shard_tools", "a split as a Megatron-LM / GPT-NeoX .bin/.idx", argv=("export-megatron",)),
    Command("fetch-shards", "pretrain.shard_tools", "copy a shard set from s3:// (or any URL) to a local folder, sha256-checked",
            argv=("fetch",)),
    Command("train", "pretrain.train", "DeepSpeed ZeRO training of GPT-2 on token shards (one process; torchrun for more)",
            config="TrainConfig", run="train"),
    Command("export", "pretrain.export", "a checkpoint -> a Hugging Face model folder"),
    Command("evaluate", "pretrain.evaluate", "DialoGPT's metrics of an exported model on the test split (BLEU, entropy, distinct)"),
    Command("chat", "pretrain.chat", "talk to an exported model in the terminal"),
]

MODEL_STAGES = ("train", "export", "evaluate")
"""The pipeline's stages after the data stages: training on ``nproc`` processes through torchrun,
the export to Hugging Face format, and the evaluation (``reddit_pretrain_app.pipeline`` runs them)."""


def command(name: str) -> Command:
    return next(c for c in COMMANDS if c.name == name)


def names() -> list[str]:
    return [c.name for c in COMMANDS]


def data_stages() -> list[Command]:
    """The Hydra jobs that are stages of the pipeline, in order."""
    return [c for c in COMMANDS if c.stage is not None]


def stage_names() -> tuple[str, ...]:
    """Every stage of the pipeline in order (``stop_after`` takes one of these)."""
    return (*(c.name for c in data_stages()), *MODEL_STAGES)


def spark_jobs() -> dict[str, str]:
    """The jobs spark-submit may drive: name -> module."""
    return {c.name: c.module for c in COMMANDS if c.spark}


def hydra_jobs() -> list[Command]:
    return [c for c in COMMANDS if c.hydra]
