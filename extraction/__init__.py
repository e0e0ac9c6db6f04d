"""Spark extraction of dialogue sessions from Pushshift Reddit dumps: ingest, extract (chains,
rules, splits, report), tokenizer training and the tokenize job. Imports ``reddit_pretrain``'s
shared base, never ``pretrain``.

Kept free of heavy imports: Spark executors import this package and must not pull in torch.
"""

from reddit_pretrain import require as _require

_require("extraction", "data", ("zstandard", "msgspec", "orjson"))
