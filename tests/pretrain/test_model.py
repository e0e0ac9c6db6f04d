"""The trainer's model: logits only where there is a target, same loss and gradients as masking."""

import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel

from pretrain.model import GPT2ForDialogue


def _pair():
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=97, n_positions=32, n_embd=32, n_layer=2, n_head=2, resid_pdrop=0, embd_pdrop=0,
                        attn_pdrop=0)
    ours = GPT2ForDialogue(config)
    reference = GPT2LMHeadModel(config)
    reference.load_state_dict(ours.state_dict())
    return ours, reference


def test_loss_and_gradients_match_full_logits_then_mask():
    ours, reference = _pair()
    ids = torch.randint(0, 97, (3, 16))
    targets = torch.randint(0, 97, (3, 16))
    targets[0, :7] = -100  # a first turn
    targets[2, 10:] = -100  # padding
    attention = torch.ones_like(ids)
    attention[2, 11:] = 0
    loss, count = ours(input_ids=ids, attention_mask=attention, targets=targets)
    logits = reference(input_ids=ids, attention_mask=attention).logits
    expected = F.cross_entropy(logits.view(-1, 97), targets.view(-1), ignore_index=-100, reduction="sum")
    assert int(count) == int((targets != -100).sum())
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
    loss.backward()
    expected.backward()
    grads = dict(reference.named_parameters())
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, grads[name].grad, rtol=1e-4, atol=1e-6)


def test_no_targets_and_all_targets():
    ours, _ = _pair()
    ids = torch.randint(0, 97, (2, 8))
    loss, count = ours(input_ids=ids, targets=torch.full((2, 8), -100))
    assert int(count) == 0 and loss.item() == 0.0
    loss, count = ours(input_ids=ids, targets=ids)
    assert int(count) == 16 and loss.item() > 0


def test_without_targets_it_is_gpt2lmheadmodel():
    ours, reference = _pair()
    ids = torch.randint(0, 97, (1, 5))
    torch.testing.assert_close(ours(input_ids=ids).logits, reference(input_ids=ids).logits)
    out = ours.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=3, do_sample=False)
    assert out.shape == (1, 8)
    assert set(ours.state_dict()) == set(reference.state_dict())


def test_mfu_counts_the_head_only_for_targets():
    from pretrain.metrics import flops_per_token, model_flops_utilisation

    model = GPT2LMHeadModel(GPT2Config(n_layer=12, n_head=12, n_embd=768, n_positions=1024, vocab_size=50257))
    n = sum(p.numel() for p in model.parameters())
    palm = 6 * n + 12 * 12 * 12 * 64 * 1024  # 6N + 12 L H Q T
    flops = flops_per_token(model, 1024)
    assert flops[0] + flops[1] == palm and flops[1] == 6 * 768 * 50257
    # Every token a target: PaLM's MFU. A third without: the head's share of those is not counted.
    assert abs(model_flops_utilisation(flops, 10**6, 10**6, 2.0, 4, 1e15) - palm * 10**6 / 2.0 / 4e15) < 1e-12
    assert model_flops_utilisation(flops, 3000, 2000, 1.0, 1, 1e15) == (3000 * flops[0] + 2000 * flops[1]) / 1e15


def test_a_lone_cpu_process_uses_the_cpus_it_is_given(tmp_path, monkeypatch):
    """A container's CPU quota caps the threads (a 2-CPU quota on a big host would otherwise start a
    thread per host core: the 30x slower single-process run); OMP_NUM_THREADS, when set, wins."""
    import os

    import torch

    from pretrain.launch import available_cpus, set_cpu_threads

    mask = len(os.sched_getaffinity(0))
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs: 2 threads at most
    assert available_cpus(str(tmp_path)) == min(mask, 2)
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert available_cpus(str(tmp_path)) == mask
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
        assert set_cpu_threads() == available_cpus() == torch.get_num_threads()
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        torch.set_num_threads(1)
        assert set_cpu_threads() == 1
    finally:
        torch.set_num_threads(before)
