"""Talk to an exported model in the terminal; the history is joined by EOS, as DialoGPT does.

    reddit-pretrain chat out/model [--max-history 4] [--sample]

Type a line and press enter. Commands: /help, /reset (clears the history), exit or quit (also
/exit, /quit, Ctrl-D or Ctrl-C) to leave; an empty line is ignored. A conversation longer than the
model's window keeps its newest tokens, and says so once.
"""

from __future__ import annotations

import argparse
import sys

from reddit_pretrain.hydra_job import tool

DECODING = {"max_new_tokens": 40, "do_sample": False, "no_repeat_ngram_size": 3}
"""The chat's decoding; the export saves it as the model's generation_config.json."""
HELP = "commands: /help, /reset (clear the history), exit or quit (or Ctrl-D) to leave; an empty line is ignored"


def reply(model, tokenizer, history: list[str], max_new_tokens: int = 40, sample: bool = False,
          max_history: int = 4, on_cut=None) -> str:
    """The model's reply to the last turn of ``history`` (its last ``max_history`` turns, EOS-joined).
    A context longer than the window minus the reply keeps its newest tokens; ``on_cut(tokens, kept)``
    hears when that happens."""
    import torch

    eos = tokenizer.eos_token_id
    ids = []
    for turn in history[-max_history:]:
        ids += tokenizer.encode(turn) + [eos]
    room = model.config.n_positions - max_new_tokens
    if len(ids) > room and on_cut is not None:
        on_cut(len(ids), room)
    ids = ids[-room:]
    inputs = torch.tensor([ids])
    with torch.no_grad():
        out = model.generate(inputs, attention_mask=torch.ones_like(inputs), max_new_tokens=max_new_tokens,
                             do_sample=sample, top_p=0.9 if sample else None,
                             no_repeat_ngram_size=DECODING["no_repeat_ngram_size"], eos_token_id=eos, pad_token_id=eos)
    return tokenizer.decode(out[0, inputs.shape[1]:], skip_special_tokens=True).strip()


@tool
def main(argv: list[str] | None = None) -> int:
    from transformers import AutoTokenizer, GPT2LMHeadModel

    from reddit_pretrain.hydra_job import prog

    parser = argparse.ArgumentParser(prog=prog("python -m pretrain.chat"), formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                     description=__doc__.split("\n\n")[0] + " " + HELP + ".")
    parser.add_argument("model", help="an exported model folder (reddit-pretrain export)")
    parser.add_argument("--max-history", type=int, default=4, help="turns of the conversation the model sees")
    parser.add_argument("--max-new-tokens", type=int, default=DECODING["max_new_tokens"], help="longest reply, in tokens")
    parser.add_argument("--sample", action="store_true", help="nucleus sampling (top-p 0.9) instead of greedy decoding")
    args = parser.parse_args(argv)
    import os

    if not os.path.isdir(args.model):
        print(f"error: {args.model} does not exist (a folder made by reddit-pretrain export)", file=sys.stderr)
        return 2
    if not os.path.exists(os.path.join(args.model, "config.json")):
        print(f"error: {args.model} is not an exported model (no config.json; make one with reddit-pretrain export)",
              file=sys.stderr)
        return 2
    from pretrain.console import quiet_libraries

    quiet_libraries()
    print(f"loading {args.model} ...", file=sys.stderr, flush=True)
    model = GPT2LMHeadModel.from_pretrained(args.model).eval()
    from pretrain.model import exported_tokenizer_problem

    why = exported_tokenizer_problem(args.model)
    if why:
        print(f"error: {why}", file=sys.stderr)
        return 2
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    window = model.config.n_positions
    if not 1 <= args.max_new_tokens < window:
        print(f"error: --max-new-tokens must be between 1 and {window - 1} (the model has {window} positions, and the "
              f"prompt needs at least one), not {args.max_new_tokens}", file=sys.stderr)
        return 2
    if args.max_history < 1:
        print(f"error: --max-history must be at least 1, not {args.max_history}", file=sys.stderr)
        return 2
    # Bytes that are not UTF-8 (a pasted file, another terminal encoding) become U+FFFD, not an error.
    if hasattr(sys.stdin, "reconfigure"):
        sys.stdin.reconfigure(errors="replace")
    history: list[str] = []
    interactive = sys.stdin.isatty()
    told = []

    def note_cut(tokens: int, kept: int) -> None:
        if not told:
            told.append(True)
            print(f"(the conversation is {tokens} tokens; the model sees its last {kept}, its window less the reply: "
                  "older turns are left out from now on; /reset starts afresh)", file=sys.stderr, flush=True)

    print(f"ready. Type a message; {HELP}.", file=sys.stderr, flush=True)
    while True:
        try:
            line = input("you> " if interactive else "")
        except (EOFError, KeyboardInterrupt):
            print(file=sys.stderr)
            break
        line = line.strip()
        if not line:
            continue
        if line.lower() in ("exit", "quit", "/exit", "/quit"):
            break
        if line == "/help":
            print(HELP, flush=True)
            continue
        if line == "/reset":
            history.clear()
            print("(history cleared)", flush=True)
            continue
        if line.startswith("/"):
            print(f"unknown command {line}; {HELP}", flush=True)
            continue
        history.append(line)
        try:
            answer = reply(model, tokenizer, history, args.max_new_tokens, args.sample, args.max_history, on_cut=note_cut)
        except KeyboardInterrupt:  # Ctrl-C while it thinks: leave quietly too
            print(file=sys.stderr)
            break
        history.append(answer)
        print(f"bot> {answer}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
