"""Export a checkpoint (any ZeRO stage) to Hugging Face format, and chat with an exported model.

    reddit-pretrain export out/train/checkpoints out/model            # the newest complete checkpoint
    reddit-pretrain export out/train/checkpoints/step_0000100 out/model
    reddit-pretrain chat out/model

The fp32 weights are consolidated from DeepSpeed's files (``zero_to_fp32`` for ZeRO 1-3, the
module state for ZeRO 0), loaded into GPT2LMHeadModel, and saved with ``save_pretrained`` next
to the tokenizer the shards were made with. ``from_pretrained`` and ``generate`` work on it.
"""

from __future__ import annotations

import json
import shlex
import os
import sys

from reddit_pretrain import storage
from reddit_pretrain.errors import UserError
from reddit_pretrain.hydra_job import tool
from reddit_pretrain.layout import EXPORT_MARKER


MARKER = EXPORT_MARKER
"""Written into every export: the checkpoint it came from. A folder holding it is an export, which a
later export may replace; any other non-empty folder is refused unless ``overwrite``."""


class ExportError(UserError, RuntimeError):
    """A checkpoint that cannot become a model (diverged weights, another model's shapes)."""


def export(checkpoint: str, out_dir: str, overwrite: bool = False) -> str:
    """Writes the Hugging Face model of ``checkpoint`` (a step folder, or a run's checkpoints/ folder:
    its newest complete one) to ``out_dir``; returns the checkpoint folder it took."""
    from pretrain.checkpoints import check_before_unpickling, resolve_checkpoint

    say = lambda msg: print(f"[export] {msg}", file=sys.stderr)  # noqa: E731
    folder = resolve_checkpoint(checkpoint, say=say)
    parent = os.path.dirname(folder.rstrip("/"))
    run = os.path.dirname(parent) if os.path.basename(parent) == "checkpoints" else folder  # <out_dir>/checkpoints/step_*
    storage.check_replaceable(out_dir, "the export", owned=set(), marker=MARKER, overwrite=overwrite, reads=run)
    storage.check_writable(out_dir)  # a read-only destination: one line now, before the weights are gathered
    note = check_before_unpickling(folder)  # zero_to_fp32 unpickles: sha256 and the restricted unpickler first
    if note:
        say(f"note: {note}")
    with storage.building(out_dir) as tmp:  # a killed export's leftover is removed first; a full or read-only disk is one line
        _write(folder, tmp)
    return folder


def _write(folder: str, tmp: str) -> None:
    from transformers import GPT2LMHeadModel

    from pretrain.checkpoints import fp32_state_dict, read_checkpoint
    from pretrain.console import quiet_libraries
    from pretrain.model import gpt2_config

    quiet_libraries()
    cfg, manifest = read_checkpoint(folder)
    state = fp32_state_dict(folder, cfg.deepspeed.zero_stage)
    import torch

    broken = [name for name, tensor in state.items() if not bool(torch.isfinite(tensor).all())]
    if broken:
        raise ExportError(f"checkpoint {folder}: {len(broken)} weight tensor(s) hold NaN or infinite values ({broken[0]}"
                           f"{', ...' if len(broken) > 1 else ''}): the run had diverged; export an earlier step_* folder")
    config = gpt2_config(cfg.model, manifest)  # the dropout it trained with
    config.pad_token_id = manifest["eos_id"]  # EOS as pad, as DialoGPT's users expect
    model = GPT2LMHeadModel(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != "lm_head.weight" and not k.endswith(".attn.bias") and not k.endswith("masked_bias")]
    if missing or unexpected:
        raise ExportError(f"checkpoint and model disagree: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.tie_weights()
    from transformers import GenerationConfig

    from pretrain.chat import DECODING

    # The chat's decoding, so that generate() and pipeline("text-generation") answer as the chat does.
    # No length in it: a saved max_new_tokens or max_length would warn against (or override) the
    # length a caller passes, as DialoGPT's model-card loop does (max_length=1000).
    decoding = {k: v for k, v in DECODING.items() if k != "max_new_tokens"}
    model.generation_config = GenerationConfig(**decoding, bos_token_id=manifest["eos_id"], eos_token_id=manifest["eos_id"],
                                               pad_token_id=manifest["eos_id"])
    model.save_pretrained(tmp)
    from pretrain.model import load_tokenizer

    tokenizer = load_tokenizer(manifest)
    if tokenizer is not None:
        tokenizer.model_max_length = config.n_positions  # longer inputs do not fit the position table
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"  # batched generation continues every row from its last token
        tokenizer.init_kwargs["padding_side"] = "left"  # saved, so from_pretrained pads on the left too
        tokenizer.chat_template = CHAT_TEMPLATE
        tokenizer.save_pretrained(tmp)
    from reddit_pretrain.shards import tokenizer_digests

    with open(os.path.join(tmp, MARKER), "w") as f:  # the tokenizer's files as written, checked by evaluate and chat
        json.dump({"checkpoint": folder, "step": _step(folder), "tokenizer": manifest["tokenizer"],
                   "tokenizer_files": tokenizer_digests(tmp), "eos_id": manifest["eos_id"]}, f, indent=2)
    with open(os.path.join(tmp, "README.md"), "w") as f:
        f.write(model_card(folder, cfg, manifest, config))


CHAT_TEMPLATE = ("{% for message in messages %}{% if message['role'] != 'system' %}{{ message['content'] }}{{ eos_token }}"
                 "{% endif %}{% endfor %}")
"""DialoGPT's format: every turn followed by EOS, whoever speaks (a system message has no place in
it); the reply is what the model writes after the last EOS, so no generation prompt is added."""


_MODE_WORDS = {"packed": "windows across sessions of", "padded": "one session a row, padded to",
               "packed_sessions": "whole sessions packed into rows (each attending only to itself, positions "
                                  "restarting at each session) of"}


def model_card(folder: str, cfg, manifest: dict, config) -> str:
    """The exported model's README.md: the Hub's YAML header, what it was trained on and how, its
    losses, and how to use it."""
    try:
        with open(os.path.join(folder, "trainer_state.json")) as f:
            state = json.load(f)
    except (OSError, ValueError):
        state = {}
    metrics = state.get("metrics", {})
    splits = manifest.get("splits", {})
    filters = (manifest.get("extraction_config") or {}).get("filters", {})
    rules = manifest.get("rules_on") or []
    lines = [
        "---", "library_name: transformers", "pipeline_tag: text-generation",
        "tags: [gpt2, conversational, dialogpt, reddit, reddit-pretrain]", "---", "",
        f"# GPT-2 ({config.n_layer} layers, {config.n_embd} wide, {config.n_head} heads) trained on Reddit conversations", "",
        f"Trained with reddit-pretrain ({manifest.get('code_version', 'unknown version')}), "
        "DialoGPT style: each session's turns joined by the EOS token, no loss on the first turn.", "",
        "## Training", "",
        f"- steps: {state.get('step', '?')}, samples: {state.get('samples_consumed', '?'):,}" if isinstance(state.get("samples_consumed"), int)
        else f"- steps: {state.get('step', '?')}",
        f"- init: {cfg.model.init}; data mode {cfg.data.mode}, {_MODE_WORDS.get(cfg.data.mode, 'samples of')} "
        f"{cfg.data.seq_len} tokens; "
        f"optimizer AdamW, lr {cfg.optimizer.lr}, {cfg.scheduler.name} schedule; DeepSpeed ZeRO-{cfg.deepspeed.zero_stage}",
        f"- last train loss: {metrics['loss']:.4f}" if "loss" in metrics else "- last train loss: not recorded",
        (f"- validation loss: {metrics['valid_loss']:.4f} (perplexity {metrics['valid_perplexity']:.2f}, reply tokens only)"
         if "valid_loss" in metrics else "- validation: not run at the last step"),
        f"- checkpoint: `{folder}`", "",
        "## Data", "",
        f"- dumps: {', '.join(os.path.basename(p) for p in manifest.get('source_dumps', [])) or 'not recorded'}",
        "- tokens per split: " + (", ".join(f"{k} {v.get('tokens', 0):,}" for k, v in splits.items()) or "not recorded"),
        f"- tokenizer: {manifest['tokenizer'].get('name')} ({manifest['vocab_size']:,} tokens, EOS id {manifest['eos_id']})",
        "- rules on: " + (", ".join(rules) or f"not recorded (the filters: {json.dumps(filters)})" if filters else "not recorded"), "",
        "Reddit content is subject to Reddit's terms; authors are stored in the sessions as the extraction "
        "config says. Check the data before you publish a model trained on it.", "",
        "## Use", "",
        "```python",
        "from transformers import pipeline",
        'chat = pipeline("text-generation", model="<this folder>")',
        'print(chat([{"role": "user", "content": "Any good books?"}], max_new_tokens=40)[0]["generated_text"][-1])',
        "```", "",
        "or in a terminal: `reddit-pretrain chat <this folder>`.", "",
    ]
    return "\n".join(lines)


def _step(folder: str) -> int | None:
    try:
        with open(os.path.join(folder, "trainer_state.json")) as f:
            return json.load(f)["step"]
    except (OSError, ValueError, KeyError):
        return None


@tool
def main(argv: list[str] | None = None) -> int:
    import argparse

    from reddit_pretrain.hydra_job import prog

    parser = argparse.ArgumentParser(
        prog=prog("python -m pretrain.export"), formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Export a checkpoint (any ZeRO stage) to a Hugging Face folder: GPT2LMHeadModel weights, the "
                    "tokenizer of its shards (left padding, a chat template), generation_config.json and a model card. "
                    "from_pretrained, generate and pipeline('text-generation') work on it.")
    parser.add_argument("checkpoint", help="a run's checkpoints/ folder (its newest complete checkpoint) or one step_* folder")
    parser.add_argument("out", help="folder to write; an earlier export there is replaced, any other content refused")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace OUT even when it holds files the export did not write (never the run it reads)")
    args = parser.parse_args(argv)
    folder = export(args.checkpoint, args.out, args.overwrite)
    step = _step(folder)
    print(f"exported step {step} ({folder}) to {args.out}; chat: reddit-pretrain chat {shlex.quote(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
