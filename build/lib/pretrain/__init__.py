"""DeepSpeed ZeRO pretraining of GPT-2 models on reddit-pretrain token shards."""
