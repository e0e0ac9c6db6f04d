"""Batches from token shards: deterministic order from a seed, disjoint per rank, resumable.

The order is a permutation of all samples (packed windows or sessions) drawn from
``seed + epoch``. A run consumes samples in that order, ``global_batch_size`` per optimizer step;
within a step, micro batch ``m`` of rank ``r`` takes the slice
``[(m * world + r) * micro, ... + micro)``, so ranks read disjoint samples and the position to
save in a checkpoint is one number: samples consumed.

A mixture of shard sets (``data.sources``, ``Mixture``) keeps that: position ``k`` of the run is
given a source at random from the seed, in proportion to the weights (``MixtureSampler``), and takes
that source's next sample in the source's own order (its epochs repeat when it is used up). Every
position's source follows from the seed and the position alone, so a resume continues each source
where it was; one shard set is the mixture of one source, in the order above.
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
    """None (packed windows: every position is a token), else per position the session it belongs
    to, from 1, and 0 on padding: 1/0 in padded mode (Hugging Face's attention mask), 1..k in a row of
    ``packed_sessions`` (``pretrain.model.batch_loss`` makes it a block-diagonal causal mask)."""


def pack_sessions(lengths: np.ndarray, room: int) -> np.ndarray:
    """Where each row starts: sessions taking ``lengths`` positions each, in order, go greedily into
    rows of ``room`` positions (a session that does not fit in what is left of a row starts the
    next one). Returns the index of each row's first session, and the number of sessions last."""
    starts, used = [0], 0
    for i, n in enumerate(lengths.tolist()):
        if used + n > room and used:
            starts.append(i)
            used = 0
        used += n
    starts.append(len(lengths))
    return np.asarray(starts, dtype=np.int64)


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
        elif mode == "packed_sessions":
            # each session takes (its last seq_len + 1 tokens) - 1 positions: inputs and shifted targets
            ends = np.concatenate([np.asarray(s.boundaries, dtype=np.int64)[1:] - np.asarray(s.boundaries, dtype=np.int64)[:-1]
                                   for s in shards.shards])
            self.takes = np.minimum(ends, seq_len + 1) - 1
            self.rows = pack_sessions(self.takes, seq_len)
            self.num_samples = len(self.rows) - 1 if len(shards) else 0
        else:
            self.num_samples = len(shards)
        if self.num_samples == 0:
            raise ShardError(f"no samples of seq_len {seq_len} in {shards.folder} ({mode}: {shards.num_tokens:,} tokens in "
                             f"{len(shards):,} sessions of this split); use a smaller data.seq_len or more data")

    def tokens(self, index: int) -> int:
        """Input tokens of sample ``index`` that are not padding."""
        if self.mode == "packed":
            return self.seq_len
        if self.mode == "packed_sessions":
            return int(self.takes[self.rows[index] : self.rows[index + 1]].sum())
        return min(len(self.shards.document(index)), self.seq_len)

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(input ids, targets, attention mask or None), each of length seq_len."""
        if self.mode == "packed":
            tokens, mask = self.stream.window(index, self.seq_len)
            targets = tokens[1:].copy()
            if self.use_loss_mask:
                targets[mask[1:] == 0] = IGNORE_INDEX
            return tokens[:-1], targets, None
        if self.mode == "packed_sessions":
            return self._packed_row(index)
        ids, attention, loss = padded_session(self.shards, index, self.seq_len + 1, self.shards.eos_id)
        targets = ids[1:].copy()
        keep = attention[1:] == 1
        if self.use_loss_mask:
            keep &= loss[1:] == 1
        targets[~keep] = IGNORE_INDEX
        return ids[:-1], targets, attention[:-1]

    def _packed_row(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row ``index`` of ``packed_sessions``: its sessions one after the other, each its own inputs
        and shifted targets (exactly the sample ``padded`` mode makes of it alone), the session
        number of each position from 1, the rest padding (0, no target)."""
        ids = np.full(self.seq_len, self.shards.eos_id, dtype=np.int64)
        targets = np.full(self.seq_len, IGNORE_INDEX, dtype=np.int64)
        segments = np.zeros(self.seq_len, dtype=np.int64)
        at = 0
        for number, doc_index in enumerate(range(self.rows[index], self.rows[index + 1]), 1):
            take = int(self.takes[doc_index])
            if take <= 0:
                continue
            doc = np.asarray(self.shards.document(doc_index), dtype=np.int64)[-(take + 1):]
            target = doc[1:].copy()
            if self.use_loss_mask:
                target[np.asarray(self.shards.loss_mask(doc_index))[-(take + 1):][1:] == 0] = IGNORE_INDEX
            ids[at : at + take], targets[at : at + take], segments[at : at + take] = doc[:-1], target, number
            at += take
        return ids, targets, segments


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


class MixtureSampler:
    """Which source, and which of its samples, each position of the run takes.

    Positions come in blocks of ``BLOCK``: block ``b`` gives each source a count drawn from the
    multinomial of the weights (seeded by the seed and the block's chunk), in an order shuffled from
    the seed and ``b``, so the share of each source is its weight up to the multinomial's spread and
    no fixed interleave shows. A source's ``n``-th position takes ``OrderedSampler(size, seed of the
    source).index(n)``. One source: exactly ``OrderedSampler(size, seed)``."""

    BLOCK = 4096
    CHUNK = 1024
    """Blocks whose counts are drawn together (from one generator seeded by the seed and the chunk)."""

    def __init__(self, sizes: list[int], weights: list[float], seed: int):
        total = float(sum(weights))
        self.weights = np.asarray(weights, dtype=np.float64) / total
        self.seed = seed
        self.samplers = [OrderedSampler(n, seed + 1_000_003 * s) for s, n in enumerate(sizes)]
        self._before = np.zeros((1, len(sizes)), dtype=np.int64)  # counts of every block before block b, per source
        self._block = (-1, None, None)

    def _counts_before(self, block: int) -> np.ndarray:
        while len(self._before) <= block:
            chunk = (len(self._before) - 1) // self.CHUNK
            rng = np.random.default_rng([self.seed, 0x6D69, chunk])
            counts = rng.multinomial(self.BLOCK, self.weights, size=self.CHUNK)
            done = (len(self._before) - 1) - chunk * self.CHUNK  # blocks of this chunk already counted
            self._before = np.concatenate([self._before, self._before[-1] + np.cumsum(counts[done:], axis=0)])
        return self._before[block]

    def _order(self, block: int) -> tuple[np.ndarray, np.ndarray]:
        """(source of each position of the block, its ordinal among the block's positions of that source)."""
        if self._block[0] != block:
            counts = self._counts_before(block + 1) - self._counts_before(block)
            sources = np.random.default_rng([self.seed, 0x6F72, block]).permutation(
                np.repeat(np.arange(len(counts)), counts))
            ordinal = np.zeros(len(sources), dtype=np.int64)
            for s in range(len(counts)):
                where = np.flatnonzero(sources == s)
                ordinal[where] = np.arange(len(where))
            self._block = (block, sources, ordinal)
        return self._block[1], self._block[2]

    def index(self, position: int) -> tuple[int, int]:
        """(source, sample of that source) of run position ``position`` (samples consumed before it)."""
        if len(self.samplers) == 1:
            return 0, self.samplers[0].index(position)
        block, offset = divmod(position, self.BLOCK)
        sources, ordinal = self._order(block)
        s = int(sources[offset])
        return s, self.samplers[s].index(int(self._counts_before(block)[s] + ordinal[offset]))

    def counts(self, positions: int) -> np.ndarray:
        """Samples each source gives to the first ``positions`` positions of the run."""
        if len(self.samplers) == 1:
            return np.array([positions], dtype=np.int64)
        block, offset = divmod(positions, self.BLOCK)
        sources, _ = self._order(block)
        return self._counts_before(block) + np.bincount(sources[:offset], minlength=len(self.samplers))


class Mixture:
    """Samples of one split from one or more shard sets with weights (``data.sources``): position
    ``k`` of the run is ``sources[s].sample(i)`` for ``(s, i) = sampler.index(k)``."""

    def __init__(self, sources: list[SampleSource], names: list[str], weights: list[float], seed: int):
        self.sources, self.names = sources, names
        self.sampler = MixtureSampler([s.num_samples for s in sources], weights, seed)
        self.num_samples = sum(s.num_samples for s in sources)
        """Samples of every source once (the positions ``eval_batches`` reads, in file order)."""

    def __len__(self) -> int:
        return len(self.sources)

    def sample(self, position: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The sample at run position ``position``."""
        s, i = self.sampler.index(position)
        return self.sources[s].sample(i)

    def in_order(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Sample ``index`` of the sources one after the other, in file order (for evaluation)."""
        for source in self.sources:
            if index < source.num_samples:
                return source.sample(index)
            index -= source.num_samples
        raise IndexError(index)

    def tokens_by_source(self, first: int, count: int) -> np.ndarray:
        """Input tokens that are not padding, per source, of run positions ``[first, first + count)``."""
        out = np.zeros(len(self.sources), dtype=np.int64)
        for position in range(first, first + count):
            s, i = self.sampler.index(position)
            out[s] += self.sources[s].tokens(i)
        return out

    def plan(self, samples: int) -> list[dict]:
        """Per source: the samples, epochs and (for packed windows) tokens the first ``samples``
        positions take from it."""
        counts = self.sampler.counts(samples)
        return [{"source": name, "weight": float(w), "samples": int(n), "share": n / max(1, samples),
                 "epochs": n / src.num_samples, "size": src.num_samples}
                for name, w, n, src in zip(self.names, self.sampler.weights, counts, self.sources)]


def micro_batch(mixture: Mixture, consumed_at_step: int, micro_step: int, rank: int, world_size: int,
                micro: int) -> Batch:
    """The micro batch of ``rank`` for accumulation step ``micro_step`` of the step starting at
    ``consumed_at_step`` samples."""
    first = consumed_at_step + (micro_step * world_size + rank) * micro
    samples = [mixture.sample(first + i) for i in range(micro)]
    ids = np.stack([s[0] for s in samples]).astype(np.int64)
    targets = np.stack([s[1] for s in samples]).astype(np.int64)
    attention = None if samples[0][2] is None else np.stack([s[2] for s in samples]).astype(np.int64)
    return Batch(ids, targets, attention)


def eval_batches(source: Mixture, rank: int, world_size: int, micro: int, batches: int):
    """The first ``batches * world_size * micro`` samples in file order (the sources one after the
    other), split over ranks."""
    total = min(source.num_samples, batches * world_size * micro)
    indices = list(range(rank, total, world_size))
    for start in range(0, len(indices), micro):
        chunk = [source.in_order(i) for i in indices[start : start + micro]]
        yield Batch(np.stack([c[0] for c in chunk]).astype(np.int64), np.stack([c[1] for c in chunk]).astype(np.int64),
                    None if chunk[0][2] is None else np.stack([c[2] for c in chunk]).astype(np.int64))


def source_names(paths: list[str]) -> list[str]:
    """A short name per shard set: its folder's name, or its whole path where two names collide."""
    import os

    names = [os.path.basename(os.path.normpath(p)) or p for p in paths]
    return [n if names.count(n) == 1 else p for n, p in zip(names, paths)]


def _tokenizer_identity(manifest: dict):
    t = manifest.get("tokenizer", {})
    return (t.get("files") or t.get("sha256"), manifest.get("vocab_size"), manifest.get("eos_id"))


def open_mixture(data, split: str, seed: int) -> tuple[Mixture, list[dict]]:
    """The ``Mixture`` of ``split`` over ``data.mixture()`` (a ``DataConfig``), and each shard set's
    manifest. Shard sets of another tokenizer than the first's are refused (ShardError, one line
    naming both)."""
    paths, weights = zip(*data.mixture())
    manifests, sources = [], []
    for path in paths:
        shards = ShardSet(path, split)
        manifests.append(shards.manifest)
        sources.append(SampleSource(shards, data.mode, data.seq_len, data.use_loss_mask))
    first = manifests[0]
    for path, manifest in zip(paths[1:], manifests[1:]):
        if _tokenizer_identity(manifest) != _tokenizer_identity(first):
            a, b = first["tokenizer"], manifest["tokenizer"]
            raise ShardError(f"data.sources: {paths[0]} was made with the tokenizer {a.get('name')} (sha256 {a.get('sha256')}, "
                             f"vocab {first.get('vocab_size')}) and {path} with {b.get('name')} (sha256 {b.get('sha256')}, "
                             f"vocab {manifest.get('vocab_size')}): the shard sets of a mixture share one tokenizer; "
                             f"tokenize {path}'s sessions with {a.get('name')}")
    return Mixture(sources, source_names(list(paths)), list(weights), seed), manifests
