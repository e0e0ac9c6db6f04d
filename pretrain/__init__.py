"""DeepSpeed ZeRO pretraining of GPT-2 models on reddit-pretrain token shards, export to Hugging
Face format and a terminal chat. Imports ``reddit_pretrain``'s shared base, never ``extraction``."""

from reddit_pretrain import require as _require

_require("pretrain", "train", ("torch", "transformers", "deepspeed"))
