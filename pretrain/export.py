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


def _resolve(checkpoint: str) -> tuple[str, str]:
    """(checkpoint root, tag) for a root folder (uses `latest`) or a step folder."""
    from pretrain.checkpoints import PREFIX, find_resumable, problem

    checkpoint = checkpoint.rstrip("/")
    if not os.path.isdir(checkpoint):
        raise FileNotFoundError(f"{checkpoint} does not exist (a run's checkpoints/ folder or one of its step_* folders)")
    if not os.path.basename(checkpoint).startswith(PREFIX):  # a checkpoints/ folder: its newest complete one
        folder, skipped = find_resumable(checkpoint)
        for path, why in skipped:
            print(f"[export] skipping checkpoint {path}: {why}", file=sys.stderr)
        if folder is None:
            raise FileNotFoundError(f"{checkpoint} holds no complete checkpoint")
        checkpoint = folder
    why = problem(checkpoint)
    if why is None and not os.path.exists(os.path.join(checkpoint, "trainer_state.json")):
        why = "no trainer_state.json"
    if why:
        raise FileNotFoundError(f"{checkpoint} is not a complete checkpoint ({why})")
    return os.path.split(checkpoint)


def export(checkpoint: str, out_dir: str) -> str:
    import torch
    from omegaconf import OmegaConf
    from transformers import GPT2Config, GPT2LMHeadModel

    from pretrain.console import quiet_libraries

    quiet_libraries()
    root, tag = _resolve(checkpoint)
    folder = os.path.join(root, tag)
    cfg = OmegaConf.load(os.path.join(folder, "config.yaml"))
    with open(os.path.join(folder, "shard_manifest.json")) as f:
        manifest = json.load(f)
    zero_files = [f for f in os.listdir(folder) if "optim_states" in f and f.startswith(("zero_", "bf16_zero_"))]
    if cfg.deepspeed.zero_stage >= 1 and zero_files:
        if not torch.cuda.is_available():
            os.environ.setdefault("DS_ACCELERATOR", "cpu")  # no "Setting accelerator to CPU" warning
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        from pretrain.console import captured_output

        with captured_output():  # zero_to_fp32 prints a line per step and its own progress bars
            state = get_fp32_state_dict_from_zero_checkpoint(root, tag=tag)
    else:
        files = [f for f in os.listdir(folder) if f.endswith("model_states.pt")]
        state = torch.load(os.path.join(folder, sorted(files)[0]), map_location="cpu", weights_only=False)["module"]
    state = {k.removeprefix("module."): v.float() for k, v in state.items()}
    if cfg.model.init == "pretrained" and cfg.model.pretrained:
        config = GPT2Config.from_pretrained(cfg.model.pretrained)
    else:
        m = cfg.model
        config = GPT2Config(vocab_size=manifest["vocab_size"], n_positions=m.n_positions, n_embd=m.n_embd,
                            n_layer=m.n_layer, n_head=m.n_head, bos_token_id=manifest["eos_id"],
                            eos_token_id=manifest["eos_id"],
                            resid_pdrop=m.dropout, embd_pdrop=m.dropout, attn_pdrop=m.dropout)  # what it trained with
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
