"""Talk to an exported model in the terminal; the history is joined by EOS, as DialoGPT does.

    python -m pretrain.chat out/model [--max-history 4] [--sample]

Type a line and press enter; an empty line or Ctrl-D ends; /reset clears the history.
"""

from __future__ import annotations

import argparse
import sys


def reply(model, tokenizer, history: list[str], max_new_tokens: int = 40, sample: bool = False,
          max_history: int = 4) -> str:
    import torch

    eos = tokenizer.eos_token_id
    ids = []
    for turn in history[-max_history:]:
        ids += tokenizer.encode(turn) + [eos]
    ids = ids[-(model.config.n_positions - max_new_tokens):]
    inputs = torch.tensor([ids])
    with torch.no_grad():
        out = model.generate(inputs, attention_mask=torch.ones_like(inputs), max_new_tokens=max_new_tokens,
                             do_sample=sample, top_p=0.9 if sample else None, no_repeat_ngram_size=3,
                             eos_token_id=eos, pad_token_id=eos)
    return tokenizer.decode(out[0, inputs.shape[1]:], skip_special_tokens=True).strip()


def main(argv: list[str] | None = None) -> int:
    from transformers import AutoTokenizer, GPT2LMHeadModel

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--max-history", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--sample", action="store_true", help="nucleus sampling instead of greedy decoding")
    args = parser.parse_args(argv)
    import os

    if not os.path.isdir(args.model):
        print(f"error: {args.model} does not exist (a folder made by python -m pretrain.export)", file=sys.stderr)
        return 2
    if not os.path.exists(os.path.join(args.model, "config.json")):
        print(f"error: {args.model} is not an exported model (no config.json; make one with python -m pretrain.export)",
              file=sys.stderr)
        return 2
    model = GPT2LMHeadModel.from_pretrained(args.model).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    history: list[str] = []
    interactive = sys.stdin.isatty()
    while True:
        try:
            line = input("you> " if interactive else "")
        except EOFError:
            break
        line = line.strip()
        if not line:
            break
        if line == "/reset":
            history.clear()
            continue
        history.append(line)
        answer = reply(model, tokenizer, history, args.max_new_tokens, args.sample, args.max_history)
        history.append(answer)
        print(f"bot> {answer}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
