"""The ``reddit-pretrain`` command: one entry point for every job, as ``huggingface-cli`` or
``accelerate`` are.

    reddit-pretrain <command> [arguments]     e.g. reddit-pretrain ingest 'inputs=[RC_2015-01.zst]' output=ingest
    reddit-pretrain <command> --help          what the command does, its settings and their defaults

Each command is the module's own entry point (``python -m <module>`` runs the same code): the
Hydra jobs take ``key=value`` overrides, the tools take flags. Training on several processes goes
through a launcher: ``torchrun --nproc_per_node 8 -m pretrain.train ...``.
"""

from __future__ import annotations

import difflib
import importlib
import sys

COMMANDS: dict[str, tuple[str, list[str], str]] = {
    "pipeline": ("reddit_pretrain.pipeline", [], "every stage in one command: dumps -> Parquet -> sessions -> shards -> model"),
    "synth": ("reddit_pretrain.synth", [], "write a generated Pushshift month (RC_/RS_YYYY-MM.zst) to try the stages on"),
    "ingest": ("extraction.ingest.job", [], "Pushshift dumps -> Parquet tables of comments, submissions and rejects"),
    "extract": ("extraction.sessions.job", [], "ingested comments -> dialogue sessions: chains, rules, splits, report"),
    "train-tokenizer": ("extraction.tokenize.train_tokenizer", [], "a byte-level BPE tokenizer trained on the train split"),
    "tokenize": ("extraction.tokenize.job", [], "sessions -> memory-mappable token shards with a manifest"),
    "export-dataset": ("extraction.sessions.export_dataset", [], "sessions -> a Hugging Face dataset folder (chat messages, a dataset card)"),
    "inspect": ("pretrain.shard_tools", ["inspect"], "counts, lengths and decoded documents of a shard set"),
    "export-megatron": ("pretrain.shard_tools", ["export-megatron"], "a split as a Megatron-LM / GPT-NeoX .bin/.idx"),
    "fetch-shards": ("pretrain.shard_tools", ["fetch"], "copy a shard set from s3:// (or any URL) to a local folder, sha256-checked"),
    "train": ("pretrain.train", [], "DeepSpeed ZeRO training of GPT-2 on token shards (one process; torchrun for more)"),
    "export": ("pretrain.export", [], "a checkpoint -> a Hugging Face model folder"),
    "evaluate": ("pretrain.evaluate", [], "DialoGPT's metrics of an exported model on the test split (BLEU, entropy, distinct)"),
    "chat": ("pretrain.chat", [], "talk to an exported model in the terminal"),
}
PROG = "reddit-pretrain"

_HYDRA_JOBS = {"reddit_pretrain.pipeline", "extraction.ingest.job", "extraction.sessions.job", "extraction.tokenize.job", "pretrain.train"}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"usage: {PROG} <command> [arguments]   ({PROG} <command> --help for its settings)", "", "commands:"]
    lines += [f"  {name:<{width}}  {about}" for name, (_, _, about) in COMMANDS.items()]
    lines += ["", "The stages in order: synth (or your dumps) -> ingest -> extract -> train-tokenizer (or GPT-2's) -> tokenize",
              "-> train -> export -> chat; pipeline runs them all. README.md walks through a real month."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from reddit_pretrain import cli

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        close = difflib.get_close_matches(name, COMMANDS, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        print(f"error: {PROG} has no command {name!r}{hint} (commands: {', '.join(COMMANDS)})", file=sys.stderr)
        return 2
    module_name, prefix, _ = COMMANDS[name]
    cli.PROG = PROG if prefix else f"{PROG} {name}"  # a tool with sub-commands names them itself
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:  # a side installed without its extra: reddit_pretrain.require's one line
        print(f"error: {err}", file=sys.stderr)
        return 2
    if module_name in _HYDRA_JOBS:  # Hydra reads sys.argv
        sys.argv = [cli.PROG, *rest]
        module.main()
        return 0
    with cli.remote_errors_in_one_line():
        return module.main([*prefix, *rest]) or 0


if __name__ == "__main__":
    sys.exit(main())
