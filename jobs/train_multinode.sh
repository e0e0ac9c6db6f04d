#!/usr/bin/env bash
# Multi-node training with the DeepSpeed launcher and a hostfile (passwordless ssh between nodes,
# the same checkout, virtual environment and shards path on every node).
#
#   cat hosts        # one line per node: "<hostname> slots=<gpus>"
#   node1 slots=8
#   node2 slots=8
#   jobs/train_multinode.sh hosts model=gpt2-124m data.shards=/shared/shards trainer.out_dir=/shared/run
#
# Extra launcher options go in DS_ARGS (e.g. DS_ARGS="--master_addr node1 --master_port 29600").
# Without DeepSpeed's ssh launch, run torchrun on each node instead:
#   torchrun --nnodes N --node_rank R --nproc_per_node 8 --master_addr node1 --master_port 29600 -m pretrain.train ...
set -euo pipefail
cd "$(dirname "$0")/.."
HOSTFILE="${1:?usage: jobs/train_multinode.sh HOSTFILE [hydra overrides...]}"
shift
PYTHON="${PYTHON:-$(pwd)/.venv/bin/python}"
# shellcheck disable=SC2086
exec "$(dirname "$PYTHON")/deepspeed" --hostfile "$HOSTFILE" ${DS_ARGS:-} --module pretrain.train "$@"
