"""Stage 3, tokenize: sessions -> memory-mappable token shards with an index and a manifest.

* ``train_tokenizer``: a byte-level BPE trained on the train split (when no tokenizer is named).
* ``job``: the tokenize job (``reddit-pretrain tokenize``); the shard format itself is
  ``reddit_pretrain.shards``, shared with training.
"""
