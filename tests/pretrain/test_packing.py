"""Sessions packed into rows that cannot see each other (``data.mode=packed_sessions``): the rows,
the block-diagonal causal mask with positions restarting at each session, and a model trained so
exported, evaluated and chatted with."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from pretrain.data import Batch, SampleSource, pack_sessions
from reddit_pretrain.layout import IGNORE_INDEX
from reddit_pretrain.shards import ShardSet
from tests.reddit_pretrain.test_shards import build

SESSIONS = [[[5, 6, 7], [8, 9]], [[10], [11, 12], [13]], [[14, 15], [16, 17, 18, 19]], [[20], [21]],
            [[22, 23, 24, 25, 26, 27], [28, 29, 30, 31, 32, 33, 34]], [[35], [36]]]


def model_of(vocab: int, impl: str = "sdpa"):
    from transformers import GPT2Config

    from pretrain.model import GPT2ForDialogue

    torch.manual_seed(0)
    model = GPT2ForDialogue(GPT2Config(vocab_size=vocab, n_positions=32, n_embd=32, n_layer=2, n_head=2, resid_pdrop=0.0,
                                       embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0))
    model.config._attn_implementation = impl
    return model.eval()


def test_sessions_are_packed_whole_in_order_and_the_rest_is_padding(tmp_path):
    assert pack_sessions(np.array([3, 4, 2, 6, 1]), 8).tolist() == [0, 2, 4, 5]  # [3+4] [2+6] [1], then the end
    shards = ShardSet(str(build(tmp_path, sessions=SESSIONS)), "train")
    source = SampleSource(shards, "packed_sessions", 12, use_loss_mask=True)
    padded = SampleSource(shards, "padded", 12, use_loss_mask=True)
    rows = [source.sample(k) for k in range(source.num_samples)]
    assert source.num_samples < len(SESSIONS)
    seen = []
    for k, (ids, targets, segments) in enumerate(rows):
        sessions = list(range(source.rows[k], source.rows[k + 1]))
        seen += sessions
        at = 0
        for number, d in enumerate(sessions, 1):  # each session as padded mode makes it alone, in order
            p_ids, p_targets, p_attention = padded.sample(d)
            # every input position of it that has a next token (its last EOS has none: no position here)
            n = min(len(shards.document(d)), 12 + 1) - 1
            assert n == source.takes[d] and p_targets[n:].tolist() == [IGNORE_INDEX] * (len(p_targets) - n)
            assert ids[at : at + n].tolist() == p_ids[:n].tolist() and targets[at : at + n].tolist() == p_targets[:n].tolist()
            assert (segments[at : at + n] == number).all()
            at += n
        assert (segments[at:] == 0).all() and (targets[at:] == IGNORE_INDEX).all()
        assert source.tokens(k) == at
    assert seen == list(range(len(SESSIONS)))
    # the session longer than a row keeps its last tokens, as in padded mode
    long = SampleSource(shards, "packed_sessions", 8, use_loss_mask=True)
    assert max(long.tokens(k) for k in range(long.num_samples)) == 8


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_a_packed_row_scores_as_its_sessions_one_by_one_and_they_cannot_see_each_other(tmp_path, impl):
    from pretrain.model import batch_loss, block_causal

    shards = ShardSet(str(build(tmp_path, sessions=SESSIONS)), "train")
    source = SampleSource(shards, "packed_sessions", 16, use_loss_mask=True)
    padded = SampleSource(shards, "padded", 16, use_loss_mask=True)
    model = model_of(shards.vocab_size, impl)
    rows = [k for k in range(source.num_samples) if source.rows[k + 1] - source.rows[k] >= 2]
    assert rows
    with torch.no_grad():
        for k in rows:
            ids, targets, segments = source.sample(k)
            loss, count = batch_loss(model, Batch(ids[None], targets[None], segments[None]), "cpu")
            alone = [batch_loss(model, Batch(*(a[None] for a in padded.sample(d))), "cpu")
                     for d in range(source.rows[k], source.rows[k + 1])]
            torch.testing.assert_close(loss, sum(a[0] for a in alone), rtol=1e-5, atol=1e-5)
            assert int(count) == sum(int(a[1]) for a in alone)
        # another second session: the first session's logits do not move
        ids, targets, segments = source.sample(rows[0])
        mask, positions = block_causal(torch.from_numpy(segments[None]), model)
        first = segments == 1
        changed = ids.copy()
        changed[segments == 2] = (changed[segments == 2] + 3) % shards.vocab_size
        logits = [model(input_ids=torch.from_numpy(x[None]), attention_mask=mask, position_ids=positions).logits[0]
                  for x in (ids, changed)]
        assert torch.equal(logits[0][torch.from_numpy(first)], logits[1][torch.from_numpy(first)])
        assert not torch.equal(logits[0][torch.from_numpy(segments == 2)], logits[1][torch.from_numpy(segments == 2)])
        assert positions[0][segments == 2][0] == 0  # positions restart at each session


@pytest.mark.slow
def test_a_model_trained_on_packed_sessions_exports_evaluates_and_chats(shards_dir, extracted, tmp_path):
    from tests.pretrain.test_train import base, check, run

    out = tmp_path / "run"
    result = run([sys.executable, "-m", "pretrain.train",
                  *base(shards_dir, out, "data=packed_sessions", "data.seq_len=64", "deepspeed=zero0", "trainer.max_steps=4",
                        "trainer.checkpoint_interval=4", "trainer.eval_interval=4", "trainer.sample_max_new_tokens=2",
                        "trainer.tensorboard=false")])
    check(result)
    check(run([sys.executable, "-m", "pretrain.export", str(out / "checkpoints"), str(tmp_path / "model")]))
    card = (tmp_path / "model" / "README.md").read_text()
    assert "data mode packed_sessions, whole sessions packed into rows (each attending only to itself" in card
    check(run([sys.executable, "-m", "pretrain.evaluate", str(tmp_path / "model"), str(extracted / "extract"),
               "--contexts", "4", "--max-sessions", "8", "--out", str(tmp_path / "eval")]))
    import subprocess

    from tests.pretrain.test_train import REPO, env

    chat = subprocess.run([sys.executable, "-m", "pretrain.chat", str(tmp_path / "model"), "--max-new-tokens", "3"],
                          input="hello there\n", cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)
    assert chat.returncode == 0 and "bot> " in chat.stdout, chat.stderr[-2000:]
