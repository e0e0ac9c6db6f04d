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


def export(checkpoint: str, out_dir: str) -> str:
    from transformers import GPT2LMHeadModel

    from pretrain.checkpoints import fp32_state_dict, read_checkpoint, resolve_checkpoint
    from pretrain.console import quiet_libraries
    from pretrain.model import gpt2_config

    quiet_libraries()
    folder = resolve_checkpoint(checkpoint, say=lambda msg: print(f"[export] {msg}", file=sys.stderr))
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
    tmp = out_dir.rstrip("/") + ".tmp"
    model.save_pretrained(tmp)
    from pretrain.model import load_tokenizer

    tokenizer = load_tokenizer(manifest)
    if tokenizer is not None:
        tokenizer.model_max_length = config.n_positions  # longer inputs do not fit the position table
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"  # batched generation continues every row from its last token
        tokenizer.save_pretrained(tmp)
    with open(os.path.join(tmp, "reddit_pretrain.json"), "w") as f:
        json.dump({"checkpoint": folder, "tokenizer": manifest["tokenizer"], "eos_id": manifest["eos_id"]}, f, indent=2)
    storage.replace_dir(tmp, out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Export a checkpoint to Hugging Face format.")
    parser.add_argument("checkpoint", help="checkpoints folder (its latest) or one step_* folder")
    parser.add_argument("out")
    args = parser.parse_args(argv)
    try:
        print(f"exported to {export(args.checkpoint, args.out)}; chat: python -m pretrain.chat {args.out}")
    except (FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
