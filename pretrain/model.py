"""The GPT-2 the trainer runs: transformers' GPT2LMHeadModel, with a training forward that
computes logits only where there is a target.

DialoGPT puts no loss on a session's first turn, and padded sessions have no loss on padding, so
a share of the positions in every batch (about a third on Reddit sessions) has no target. The
language-model head (``n_embd x vocab`` per position, about 30% of GPT-2 124M's FLOPs) and the
cross-entropy over the vocabulary are computed only on the positions that have a target; the
loss and its gradients are the same as computing every logit and masking afterwards.

The parameters, their names and ``generate`` are GPT2LMHeadModel's, so checkpoints, the
Hugging Face export and ``from_pretrained`` are unchanged.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from transformers import GPT2LMHeadModel

from reddit_pretrain.layout import EOS_TOKEN, EXPORT_MARKER, IGNORE_INDEX as IGNORE
from reddit_pretrain.shards import tokenizer_folder, tokenizer_problem


class GPT2ForDialogue(GPT2LMHeadModel):
    """GPT2LMHeadModel; ``forward(input_ids, attention_mask, targets=...)`` returns the summed
    token cross-entropy over the positions whose target is not -100, and their count."""

    def forward(self, *args, targets: torch.Tensor | None = None, **kwargs):
        if targets is None:  # generation, evaluation by callers that want logits: the parent's forward
            return super().forward(*args, **kwargs)
        hidden = self.transformer(input_ids=kwargs.get("input_ids", args[0] if args else None),
                                  attention_mask=kwargs.get("attention_mask"), position_ids=kwargs.get("position_ids"),
                                  use_cache=False).last_hidden_state
        hidden = hidden.reshape(-1, hidden.size(-1))
        targets = targets.reshape(-1)
        keep = targets != IGNORE
        count = keep.sum()
        if int(count) != targets.numel():
            rows = keep.nonzero().squeeze(1)
            hidden, targets = hidden.index_select(0, rows), targets.index_select(0, rows)
        logits = self.lm_head(hidden)
        return F.cross_entropy(logits.float(), targets, reduction="sum"), count


def block_causal(segments: torch.Tensor, model) -> tuple[torch.Tensor, torch.Tensor]:
    """(4D attention mask, position ids) of rows of packed sessions: ``segments`` [batch, seq] numbers
    each position's session (0: padding). A position attends to the positions of its own session up
    to itself, and its position id counts from its session's first token, so each session is seen as
    if it were alone. The mask is boolean for SDPA (True: attend) and additive for eager attention;
    transformers uses a 4D mask as given."""
    batch, length = segments.shape
    same = segments[:, :, None] == segments[:, None, :]
    allowed = same & torch.ones(length, length, dtype=torch.bool, device=segments.device).tril()
    index = torch.arange(length, device=segments.device).expand(batch, length)
    starts = torch.ones_like(segments, dtype=torch.bool)
    starts[:, 1:] = segments[:, 1:] != segments[:, :-1]
    positions = index - torch.where(starts, index, torch.zeros_like(index)).cummax(dim=1).values
    if getattr(model.config, "_attn_implementation", "sdpa") == "eager":
        dtype = next(model.parameters()).dtype
        return torch.zeros(allowed.shape, dtype=dtype, device=segments.device).masked_fill(
            ~allowed, torch.finfo(dtype).min)[:, None], positions
    return allowed[:, None], positions


def batch_loss(engine, batch, device):
    """(summed token cross-entropy, target count) of a ``pretrain.data.Batch`` through ``engine``
    (a DeepSpeed engine around ``GPT2ForDialogue``). Rows of several sessions (``packed_sessions``)
    get a block-diagonal causal mask and positions that restart at each session (``block_causal``)."""
    ids = torch.from_numpy(batch.input_ids).to(device)
    targets = torch.from_numpy(batch.targets).to(device)
    attention = torch.from_numpy(batch.attention_mask).to(device) if batch.attention_mask is not None else None
    if attention is not None and int(attention.max()) > 1:
        mask, positions = block_causal(attention, getattr(engine, "module", engine))
        return engine(input_ids=ids, attention_mask=mask, position_ids=positions, targets=targets)
    return engine(input_ids=ids, attention_mask=attention, targets=targets)


def real_tokens(batch) -> int:
    """Input positions of a batch that are tokens, not padding (what throughput and MFU count)."""
    if batch.attention_mask is None:
        return int(batch.input_ids.size)
    return int((batch.attention_mask > 0).sum())


def load_tokenizer(manifest: dict, shards_folder: str | None = None):
    """The Hugging Face tokenizer of a shard set (``reddit_pretrain.shards.tokenizer_folder`` finds
    it and checks its files), or None when it is not on disk; ShardError when it is not the shards' one."""
    folder = tokenizer_folder(manifest, shards_folder)  # its files checked against the manifest's digests
    if folder is None:
        return None
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if "tokenizer_config.json" in (manifest["tokenizer"].get("files") or {}):
        return AutoTokenizer.from_pretrained(folder)
    # A manifest from before every file was recorded vouches for tokenizer.json alone: load only that.
    eos = manifest["tokenizer"].get("eos_token", EOS_TOKEN)
    return PreTrainedTokenizerFast(tokenizer_file=os.path.join(folder, "tokenizer.json"), eos_token=eos, bos_token=eos)


def exported_tokenizer_problem(model_dir: str) -> str | None:
    """Why the tokenizer in an exported folder is not the one the export wrote beside the model (a
    file changed, added or missing since, with both digests), or None; folders without the record
    (other exports, older ones) are not checked."""
    import json

    try:
        with open(os.path.join(model_dir, EXPORT_MARKER)) as f:
            files = json.load(f).get("tokenizer_files")
    except (OSError, ValueError, AttributeError):
        return None
    if not files or not os.path.exists(os.path.join(model_dir, "tokenizer.json")):
        return None
    why = tokenizer_problem(model_dir, {"files": files})
    return None if why is None else (f"{model_dir}: its tokenizer is not the one exported with the model ({why}): "
                                     "export the model again")


def gpt2_config(m, manifest: dict):
    """The GPT2Config of a ``ModelConfig`` on shards with ``manifest`` (vocabulary and EOS from the
    shards; dropout as configured): the one place our model settings become transformers' config.
    A pretrained model's is its own."""
    from transformers import GPT2Config

    if m.init == "pretrained" and m.pretrained:
        return GPT2Config.from_pretrained(m.pretrained)
    return GPT2Config(vocab_size=manifest["vocab_size"], n_positions=m.n_positions, n_embd=m.n_embd, n_layer=m.n_layer,
                      n_head=m.n_head, resid_pdrop=m.dropout, embd_pdrop=m.dropout, attn_pdrop=m.dropout,
                      bos_token_id=manifest["eos_id"], eos_token_id=manifest["eos_id"])
