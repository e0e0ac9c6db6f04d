"""Batches from token shards: deterministic order from a seed, disjoint per rank, resumable.

The order is a permutation of all samples (packed windows or sessions) drawn from
``seed + epoch``. A run consumes samples in that order, ``global_batch_size`` per optimizer step;
within a step, micro batch ``m`` of rank ``r`` takes the slice
``[(m * world + r) * micro, ... + micro)``, so ranks read disjoint samples and the position to
save in a checkpoint is one number: samples consumed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reddit_pretrain.layout import IGNORE_INDEX
from reddit_pretrain.shards import ShardError, ShardSet


def padded_session(shards: ShardSet, index: int, max_tokens: int, pad_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One session right-padded to ``max_tokens`` (longer ones keep their last tokens).

    Returns input ids, attention mask and loss mask (0 on padding and on the first turn).
    """
    doc = np.asarray(shards.document(index), dtype=np.int64)[-max_tokens:]
    loss = np.asarray(shards.loss_mask(index), dtype=np.int64)[-max_tokens:] if shards.has_mask else np.ones_like(doc)
    ids = np.full(max_tokens, pad_id, dtype=np.int64)
    attention = np.zeros(max_tokens, dtype=np.int64)
    loss_mask = np.zeros(max_tokens, dtype=np.int64)
    ids[: len(doc)], attention[: len(doc)], loss_mask[: len(doc)] = doc, 1, loss
    return ids, attention, loss_mask


@dataclass
class Batch:
    input_ids: np.ndarray  # [micro, seq_len]
    targets: np.ndarray  # [micro, seq_len], IGNORE_INDEX where there is no loss
    attention_mask: np.ndarray | None


class SampleSource:
    """Samples of one split: packed windows or padded sessions."""

    def __init__(self, shards: ShardSet, mode: str, seq_len: int, use_loss_mask: bool):
        self.shards = shards
        self.mode = mode
        self.seq_len = seq_len
        self.use_loss_mask = use_loss_mask and shards.has_mask
        if mode == "packed":
            self.stream = shards.stream()
            self.num_samples = self.stream.num_windows(seq_len)
        else:
            self.num_samples = len(shards)
        if self.num_samples == 0:
            raise ShardError(f"no samples of seq_len {seq_len} in {shards.folder} ({mode}: {shards.num_tokens:,} tokens in "
                             f"{len(shards):,} sessions of this split); use a smaller data.seq_len or more data")

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(input ids, targets, attention mask or None), each of length seq_len."""
        if self.mode == "packed":
            tokens, mask = self.stream.window(index, self.seq_len)
            targets = tokens[1:].copy()
            if self.use_loss_mask:
                targets[mask[1:] == 0] = IGNORE_INDEX
            return tokens[:-1], targets, None
        ids, attention, loss = padded_session(self.shards, index, self.seq_len + 1, self.shards.eos_id)
        targets = ids[1:].copy()
        keep = attention[1:] == 1
        if self.use_loss_mask:
            keep &= loss[1:] == 1
        targets[~keep] = IGNORE_INDEX
        return ids[:-1], targets, attention[:-1]


class OrderedSampler:
    """The global sample order: epoch-wise permutations from ``seed``."""

    def __init__(self, num_samples: int, seed: int):
        self.num_samples = num_samples
        self.seed = seed
        self._epoch = -1
        self._perm = None

    def index(self, consumed: int) -> int:
        epoch, position = divmod(consumed, self.num_samples)
        if epoch != self._epoch:
            self._perm = np.random.default_rng(self.seed + epoch).permutation(self.num_samples)
            self._epoch = epoch
        return int(self._perm[position])


def micro_batch(source: SampleSource, sampler: OrderedSampler, consumed_at_step: int, micro_step: int,
                rank: int, world_size: int, micro: int) -> Batch:
    """The micro batch of ``rank`` for accumulation step ``micro_step`` of the step starting at
    ``consumed_at_step`` samples."""
    first = consumed_at_step + (micro_step * world_size + rank) * micro
    samples = [source.sample(sampler.index(first + i)) for i in range(micro)]
    ids = np.stack([s[0] for s in samples]).astype(np.int64)
    targets = np.stack([s[1] for s in samples]).astype(np.int64)
    attention = None if samples[0][2] is None else np.stack([s[2] for s in samples]).astype(np.int64)
    return Batch(ids, targets, attention)


def eval_batches(source: SampleSource, rank: int, world_size: int, micro: int, batches: int):
    """The first ``batches * world_size * micro`` samples in file order, split over ranks."""
    total = min(source.num_samples, batches * world_size * micro)
    indices = list(range(rank, total, world_size))
    for start in range(0, len(indices), micro):
        chunk = [source.sample(i) for i in indices[start : start + micro]]
        yield Batch(np.stack([c[0] for c in chunk]).astype(np.int64), np.stack([c[1] for c in chunk]).astype(np.int64),
                    None if chunk[0][2] is None else np.stack([c[2] for c in chunk]).astype(np.int64))
