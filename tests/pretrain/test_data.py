"""Samples and batches from token shards (numpy only): windows, padded sessions, targets, the
order every rank agrees on, resumability from one number."""

import numpy as np

from pretrain.data import IGNORE_INDEX, OrderedSampler, SampleSource, eval_batches, micro_batch
from reddit_pretrain.shards import ShardSet
from tests.reddit_pretrain.test_shards import SESSIONS, build

EOS = 0


def test_packed_samples_shift_targets_and_mask_the_first_turn(tmp_path):
    shards = ShardSet(str(build(tmp_path)), "train")
    source = SampleSource(shards, "packed", 4, use_loss_mask=True)
    stream = np.concatenate([shards.document(i) for i in range(len(shards))]).astype(np.int64)
    mask = np.concatenate([shards.loss_mask(i) for i in range(len(shards))])
    assert source.num_samples == (len(stream) - 1) // 4
    for k in range(source.num_samples):
        ids, targets, attention = source.sample(k)
        window = stream[k * 4 : k * 4 + 5]
        assert attention is None and ids.tolist() == window[:-1].tolist()
        expected = np.where(mask[k * 4 + 1 : k * 4 + 5] == 1, window[1:], IGNORE_INDEX)
        assert targets.tolist() == expected.tolist()
    unmasked = SampleSource(shards, "packed", 4, use_loss_mask=False)
    assert (unmasked.sample(0)[1] != IGNORE_INDEX).all()


def test_padded_samples_have_no_target_on_padding_or_the_first_turn(tmp_path):
    shards = ShardSet(str(build(tmp_path)), "train")
    source = SampleSource(shards, "padded", 9, use_loss_mask=True)
    assert source.num_samples == len(SESSIONS)
    ids, targets, attention = source.sample(1)  # [[10], [11, 12], [13]]: 10 EOS 11 12 EOS 13 EOS
    assert ids.tolist()[:7] == [10, EOS, 11, 12, EOS, 13, EOS] and attention.tolist() == [1] * 7 + [0] * 2
    assert targets.tolist() == [IGNORE_INDEX, 11, 12, EOS, 13, EOS, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]


def test_ranks_read_disjoint_samples_and_resume_from_the_count(tmp_path):
    shards = ShardSet(str(build(tmp_path)), "train")
    source = SampleSource(shards, "packed", 2, use_loss_mask=False)
    sampler = OrderedSampler(source.num_samples, seed=7)
    seen = []
    for rank in (0, 1):
        for micro_step in (0, 1):
            batch = micro_batch(source, sampler, 0, micro_step, rank, 2, 2)
            seen += [tuple(row) for row in batch.input_ids]
    assert len(seen) == 8
    order = [sampler.index(i) for i in range(source.num_samples)]
    assert sorted(order) == list(range(source.num_samples))  # a permutation
    assert [OrderedSampler(source.num_samples, seed=7).index(i) for i in range(5)] == order[:5]  # resumable
    assert [sampler.index(source.num_samples + i) for i in range(3)] == \
        [int(x) for x in np.random.default_rng(8).permutation(source.num_samples)[:3]]  # next epoch: seed + 1


def test_eval_batches_split_the_first_samples_over_ranks(tmp_path):
    source = SampleSource(ShardSet(str(build(tmp_path)), "train"), "packed", 2, use_loss_mask=False)
    rows = {rank: [tuple(r) for b in eval_batches(source, rank, 2, 2, 2) for r in b.input_ids] for rank in (0, 1)}
    assert rows[0] == [tuple(source.sample(i)[0]) for i in range(0, min(source.num_samples, 8), 2)]
    everything = [tuple(source.sample(i)[0]) for i in range(min(source.num_samples, 8))]
    assert sorted(rows[0] + rows[1]) == sorted(everything)
