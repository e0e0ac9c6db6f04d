"""Export a checkpoint (any ZeRO stage) to Hugging Face format, and chat with an exported model.

    python -m pretrain.export out/train/checkpoints out/model            # the latest checkpoint
    python -m pretrain.export out/train/checkpoints/step_0000100 out/model
    python -m pretrain.chat out/model

The fp32 weights are consolidated from DeepSpeed's files (``zero_to_fp32`` for ZeRO 1-3, the
module state for ZeRO 0), loaded into GPT2LMHeadModel, and saved with ``save_pretrained`` next
to the tokenizer the shards were made with. ``from_pretrained`` and ``generate`` work on it.
"""

from __future__ import annotations

import json
import os
import sys

from reddit_pretrain import storage


MARKER = "reddit_pretrain.json"
"""Written into every export: the checkpoint it came from. A folder holding it is an export, which a
later export may replace; any other non-empty folder is refused unless ``overwrite``."""


def export(checkpoint: str, out_dir: str, overwrite: bool = False) -> str:
    """Writes the Hugging Face model of ``checkpoint`` (a step folder, or a run's checkpoints/ folder:
    its newest complete one) to ``out_dir``; returns the checkpoint folder it took."""
    from pretrain.checkpoints import check_before_unpickling, resolve_checkpoint

    say = lambda msg: print(f"[export] {msg}", file=sys.stderr)  # noqa: E731
    folder = resolve_checkpoint(checkpoint, say=say)
    parent = os.path.dirname(folder.rstrip("/"))
    run = os.path.dirname(parent) if os.path.basename(parent) == "checkpoints" else folder  # <out_dir>/checkpoints/step_*
    storage.check_replaceable(out_dir, "the export", owned=set(), marker=MARKER, overwrite=overwrite, reads=run)
    note = check_before_unpickling(folder)  # zero_to_fp32 unpickles: sha256 and the restricted unpickler first
    if note:
        say(f"note: {note}")
    tmp = storage.staging_name(out_dir)
    try:
        _write(folder, tmp)
        storage.replace_dir(tmp, out_dir)
    except BaseException as exc:
        storage.remove(tmp)
        full = storage.no_space_error(exc, out_dir) if isinstance(exc, Exception) else None
        if full is not None:
            raise full from None
        raise
    return folder


def _write(folder: str, tmp: str) -> None:
    from transformers import GPT2LMHeadModel

    from pretrain.checkpoints import fp32_state_dict, read_checkpoint
    from pretrain.console import quiet_libraries
    from pretrain.model import gpt2_config

    quiet_libraries()
    cfg, manifest = read_checkpoint(folder)
    state = fp32_state_dict(folder, cfg.deepspeed.zero_stage)
    config = gpt2_config(cfg.model, manifest)  # the dropout it trained with
    config.pad_token_id = manifest["eos_id"]  # EOS as pad, as DialoGPT's users expect
    model = GPT2LMHeadModel(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != "lm_head.weight" and not k.endswith(".attn.bias") and not k.endswith("masked_bias")]
    if missing or unexpected:
        raise RuntimeError(f"checkpoint and model disagree: missing {missing[:5]}, unexpected {unexpected[:5]}")
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
        tokenizer.save_pretrained(tmp)
    with open(os.path.join(tmp, MARKER), "w") as f:
        json.dump({"checkpoint": folder, "step": _step(folder), "tokenizer": manifest["tokenizer"],
                   "eos_id": manifest["eos_id"]}, f, indent=2)


def _step(folder: str) -> int | None:
    try:
        with open(os.path.join(folder, "trainer_state.json")) as f:
            return json.load(f)["step"]
    except (OSError, ValueError, KeyError):
        return None


def main(argv: list[str] | None = None) -> int:
    import argparse

    from pretrain.config import ConfigError
    from reddit_pretrain.storage import OutputNotWritable

    parser = argparse.ArgumentParser(description="Export a checkpoint to Hugging Face format.")
    parser.add_argument("checkpoint", help="checkpoints folder (its latest) or one step_* folder")
    parser.add_argument("out", help="folder to write; an earlier export there is replaced, any other content refused")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace OUT even when it holds files the export did not write (never the run it reads)")
    args = parser.parse_args(argv)
    try:
        folder = export(args.checkpoint, args.out, args.overwrite)
        step = _step(folder)
        print(f"exported step {step} ({folder}) to {args.out}; chat: python -m pretrain.chat {args.out}")
    except (FileNotFoundError, RuntimeError, ConfigError, OutputNotWritable) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
