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

from reddit_pretrain_app.registry import COMMANDS, command, names

PROG = "reddit-pretrain"


def usage() -> str:
    width = max(map(len, names()))
    lines = [f"usage: {PROG} <command> [arguments]   ({PROG} <command> --help for its settings)", "", "commands:"]
    lines += [f"  {c.name:<{width}}  {c.about}" for c in COMMANDS]
    lines += ["", "The stages in order: synth (or your dumps) -> ingest -> extract -> train-tokenizer (or GPT-2's) -> tokenize",
              "-> train -> export -> chat; pipeline runs them all. README.md walks through a real month."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from reddit_pretrain import hydra_job
    from reddit_pretrain.errors import in_one_line
    from reddit_pretrain.storage import remote_error

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = args[0], args[1:]
    if name not in names():
        close = difflib.get_close_matches(name, names(), n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        print(f"error: {PROG} has no command {name!r}{hint} (commands: {', '.join(names())})", file=sys.stderr)
        return 2
    entry = command(name)
    hydra_job.PROG = PROG if entry.argv else f"{PROG} {name}"  # a tool with sub-commands names them itself
    try:
        module = importlib.import_module(entry.module)
    except ImportError as err:  # a side installed without its extra: reddit_pretrain.require's one line
        print(f"error: {err}", file=sys.stderr)
        return 2
    if entry.hydra:  # Hydra reads sys.argv
        sys.argv = [hydra_job.PROG, *rest]
        module.main()
        return 0
    with in_one_line(explain=remote_error):
        return module.main([*entry.argv, *rest]) or 0


if __name__ == "__main__":
    sys.exit(main())
