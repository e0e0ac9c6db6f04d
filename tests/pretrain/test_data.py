"""Samples and batches from token shards (numpy only): windows, padded sessions, targets, the
order every rank agrees on, resumability from one number."""

import numpy as np

from pretrain.data import IGNORE_INDEX, Mixture, OrderedSampler, SampleSource, eval_batches, micro_batch
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
    mixture = Mixture([source], ["train"], [1.0], seed=7)  # one shard set: the mixture of one source
    seen = []
    for rank in (0, 1):
        for micro_step in (0, 1):
            batch = micro_batch(mixture, 0, micro_step, rank, 2, 2)
            seen += [tuple(row) for row in batch.input_ids]
    assert len(seen) == 8
    order = [sampler.index(i) for i in range(source.num_samples)]
    assert sorted(order) == list(range(source.num_samples))  # a permutation
    assert [OrderedSampler(source.num_samples, seed=7).index(i) for i in range(5)] == order[:5]  # resumable
    assert [sampler.index(source.num_samples + i) for i in range(3)] == \
        [int(x) for x in np.random.default_rng(8).permutation(source.num_samples)[:3]]  # next epoch: seed + 1


def test_eval_batches_split_the_first_samples_over_ranks(tmp_path):
    source = SampleSource(ShardSet(str(build(tmp_path)), "train"), "packed", 2, use_loss_mask=False)
    mixture = Mixture([source], ["train"], [1.0], seed=0)
    rows = {rank: [tuple(r) for b in eval_batches(mixture, rank, 2, 2, 2) for r in b.input_ids] for rank in (0, 1)}
    assert rows[0] == [tuple(source.sample(i)[0]) for i in range(0, min(source.num_samples, 8), 2)]
    everything = [tuple(source.sample(i)[0]) for i in range(min(source.num_samples, 8))]
    assert sorted(rows[0] + rows[1]) == sorted(everything)


def test_a_mixture_draws_each_source_in_proportion_and_resumes_from_the_count(tmp_path):
    """Weights 0.7 and 0.3 over 1,000 steps of 16: each source's share within one percentage point,
    not a fixed interleave; the same positions give the same samples in a new sampler (a resume);
    a source smaller than its share is repeated, epoch after epoch."""
    from pretrain.data import MixtureSampler

    sampler = MixtureSampler([5_000, 300], [0.7, 0.3], seed=3)
    positions = 1_000 * 16
    sources = np.array([sampler.index(k)[0] for k in range(positions)])
    share = np.bincount(sources, minlength=2) / positions
    assert abs(share[0] - 0.7) < 0.01 and abs(share[1] - 0.3) < 0.01, share
    assert (sampler.counts(positions) == np.bincount(sources, minlength=2)).all()
    interleave = np.array([0, 0, 1, 0, 0, 1, 0, 1, 0, 1] * (positions // 10))  # 7 of 10, the same pattern every 10
    assert (sources != interleave).mean() > 0.3 and len(set(map(tuple, sources.reshape(-1, 10)[:50]))) > 20
    again = MixtureSampler([5_000, 300], [0.7, 0.3], seed=3)
    tail = [again.index(k) for k in range(positions - 40, positions)]  # a fresh sampler from the count alone
    assert tail == [sampler.index(k) for k in range(positions - 40, positions)]
    small = [i for k in range(positions) for s, i in [sampler.index(k)] if s == 1]
    assert sorted(small[:300]) == list(range(300)) and sorted(small[300:600]) == list(range(300))  # epochs
    other = MixtureSampler([5_000, 300], [0.7, 0.3], seed=4)
    assert [other.index(k) for k in range(50)] != [sampler.index(k) for k in range(50)]  # the seed decides


def test_one_shard_set_is_the_mixture_of_one_source_in_the_old_order(tmp_path):
    from pretrain.data import MixtureSampler

    one = MixtureSampler([37], [1.0], seed=9)
    assert [one.index(k) for k in range(100)] == [(0, OrderedSampler(37, 9).index(k)) for k in range(100)]


def test_a_mixture_of_shard_sets_of_two_tokenizers_is_refused_naming_both(tmp_path):
    import json

    import pytest

    from pretrain.config import DataConfig, SourceConfig
    from pretrain.data import open_mixture
    from reddit_pretrain.shards import ShardError

    a = build(tmp_path / "a")
    b = build(tmp_path / "b")
    manifest = json.loads((b / "manifest.json").read_text())
    manifest["tokenizer"] = {"name": "other", "sha256": "y" * 64}
    (b / "manifest.json").write_text(json.dumps(manifest))
    data = DataConfig(sources=[SourceConfig(str(a), 0.7), SourceConfig(str(b), 0.3)], mode="packed", seq_len=2)
    with pytest.raises(ShardError, match=rf"{a} was made with the tokenizer toy \(sha256 x.*\) and {b} with other "
                                         rf"\(sha256 {'y' * 64}"):
        open_mixture(data, "train", 0)
    mixture, _ = open_mixture(DataConfig(sources=[SourceConfig(str(a), 2)], mode="packed", seq_len=2), "train", 0)
    assert mixture.names == ["set"] and len(mixture) == 1
