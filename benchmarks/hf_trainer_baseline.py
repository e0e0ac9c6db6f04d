"""The baseline of bench_train.py: Hugging Face Trainer with the same DeepSpeed config, model and
data as pretrain.train. Run under torchrun; writes {"tokens_per_s": ...} to --result."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shards", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup-steps", type=int, default=10)
    parser.add_argument("--result", required=True)
    args = parser.parse_args()

    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments

    from pretrain.config import BatchSizes, TrainConfig, deepspeed_config
    from pretrain.data import SampleSource
    from reddit_pretrain.shards import ShardSet

    cfg = TrainConfig()  # the dataclass defaults: what pretrain.train runs with model=tiny optimizer=adamw trainer=ci deepspeed=zero2
    cfg.trainer.micro_batch_size_per_gpu, cfg.trainer.gradient_accumulation_steps = 4, 2
    cfg.data.seq_len = 128
    world = int(os.environ.get("WORLD_SIZE", 1))
    ds = deepspeed_config(cfg, BatchSizes.derive(cfg.trainer, world), "fp32")
    shards = ShardSet(args.shards, "train")
    source = SampleSource(shards, "packed", cfg.data.seq_len, True)

    class Windows(torch.utils.data.Dataset):
        def __len__(self):
            return source.num_samples

        def __getitem__(self, i):
            ids, targets, _ = source.sample(i)
            # HF shifts labels inside the model: labels are the inputs, masked where we mask targets.
            labels = ids.copy()
            labels[1:][targets[:-1] == -100] = -100
            return {"input_ids": torch.from_numpy(ids), "labels": torch.from_numpy(labels)}

    m = cfg.model
    model = GPT2LMHeadModel(GPT2Config(vocab_size=shards.vocab_size, n_positions=m.n_positions, n_embd=m.n_embd,
                                       n_layer=m.n_layer, n_head=m.n_head, resid_pdrop=0, embd_pdrop=0, attn_pdrop=0))
    marks = {}

    class Clock(TrainerCallback):
        def on_step_end(self, _args, state, control, **kw):
            if state.global_step in (args.warmup_steps, args.steps):
                marks[state.global_step] = time.perf_counter()

    training = TrainingArguments(
        output_dir=args.out, per_device_train_batch_size=4, gradient_accumulation_steps=2, max_steps=args.steps,
        learning_rate=cfg.optimizer.lr, weight_decay=cfg.optimizer.weight_decay, warmup_steps=cfg.scheduler.warmup_steps,
        lr_scheduler_type="cosine", max_grad_norm=cfg.deepspeed.gradient_clipping, logging_steps=10**6,
        save_strategy="no", report_to=[], deepspeed=ds, use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0, seed=cfg.trainer.seed, disable_tqdm=True,
    )
    Trainer(model=model, args=training, train_dataset=Windows(), callbacks=[Clock()]).train()
    if int(os.environ.get("RANK", 0)) == 0:
        steps = args.steps - args.warmup_steps
        tokens = steps * ds["train_batch_size"] * cfg.data.seq_len
        Path(args.result).write_text(json.dumps({"tokens_per_s": tokens / (marks[args.steps] - marks[args.warmup_steps])}))


if __name__ == "__main__":
    main()
