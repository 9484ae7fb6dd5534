"""The gated TransformerLM: gate semantics (no signal = the plain LM exactly; a fresh gate is the identity; a
trained gate changes the output), causality, and KV-cached decoding equal to the full forward pass."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from lyceum_ml.lm import DynamicGate, LMConfig, TransformerLM

CFG = LMConfig(vocab_size=97, d_model=32, n_layer=2, n_head=4, n_kv_head=2, max_seq_len=48, gate_hidden=8)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/fixtures/lm_models.py


def model(cfg: LMConfig = CFG, seed: int = 0) -> TransformerLM:
    torch.manual_seed(seed)
    return TransformerLM(cfg).eval()


def tokens(batch: int = 2, n: int = 20, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, CFG.vocab_size, (batch, n), generator=torch.Generator().manual_seed(seed))


def train_gates(m: TransformerLM, std: float = 0.5) -> None:
    """Stands in for gate training: non-zero output layers make the scale depend on the signal."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for module in m.modules():
            if isinstance(module, DynamicGate):
                module.out.weight.copy_(torch.randn(module.out.weight.shape, generator=g) * std)
                module.out.bias.copy_(torch.randn(module.out.bias.shape, generator=g) * std)


def test_no_gate_signal_is_exactly_the_ungated_model() -> None:
    gated = model()
    train_gates(gated)
    plain = TransformerLM(replace(CFG, gate_hidden=0)).eval()
    plain.load_state_dict({k: v for k, v in gated.state_dict().items() if "gate" not in k})  # strict
    assert not any("gate" in k for k in plain.state_dict())
    idx = tokens()
    with torch.no_grad():
        assert torch.equal(gated(idx), plain(idx))
        assert torch.equal(gated(idx, gate=None), plain(idx))


def test_fresh_gate_is_the_identity() -> None:
    m = model()
    idx = tokens()
    with torch.no_grad():
        ref = m(idx)
        for gate in (0.0, 0.7, torch.tensor([-3.0, 5.0]), torch.randn(2, 20)):
            torch.testing.assert_close(m(idx, gate=gate), ref, rtol=0, atol=1e-6)
        scale = m.blocks[0].attn_gate(torch.randn(2, 20, 1))
    assert torch.equal(scale, torch.ones(2, 20, CFG.d_model))


def test_trained_gate_changes_outputs_and_follows_the_signal() -> None:
    m = model()
    train_gates(m)
    idx = tokens()
    with torch.no_grad():
        ungated, low, high = m(idx), m(idx, gate=-1.0), m(idx, gate=1.0)
        assert (low - ungated).abs().max() > 1e-2
        assert (high - low).abs().max() > 1e-2
        # a per-sequence signal equals the same value repeated per token; rows are independent
        per_seq = m(idx, gate=torch.tensor([-1.0, 1.0]))
        per_tok = m(idx, gate=torch.tensor([-1.0, 1.0])[:, None].expand(2, 20))
        torch.testing.assert_close(per_seq, per_tok, rtol=0, atol=1e-6)
        torch.testing.assert_close(per_seq[0], low[0], rtol=0, atol=1e-6)
        torch.testing.assert_close(per_seq[1], high[1], rtol=0, atol=1e-6)
        scale = m.blocks[1].mlp_gate(torch.linspace(-2, 2, 50).view(1, 50, 1))
    assert 0 < scale.min() < 1 < scale.max() < 2  # the documented range (0, 2): damps and amplifies


def test_gate_signal_validation() -> None:
    idx = tokens()
    with pytest.raises(ValueError, match="gate"):
        model()(idx, gate=torch.zeros(3))
    with pytest.raises(ValueError, match="no gates"):
        model(replace(CFG, gate_hidden=0))(idx, gate=1.0)


def test_attention_is_causal_and_loss_ignores_minus_one() -> None:
    m = model()
    idx = tokens()
    changed = idx.clone()
    changed[:, 12:] = (changed[:, 12:] + 1) % CFG.vocab_size
    with torch.no_grad():
        torch.testing.assert_close(m(idx)[:, :12], m(changed)[:, :12], rtol=0, atol=1e-6)
        targets = idx.roll(-1, dims=1)
        masked = targets.clone()
        masked[:, 10:] = -1
        logits, loss = m(idx, targets=masked)
        expected = torch.nn.functional.cross_entropy(logits[:, :10].flatten(0, 1), targets[:, :10].flatten())
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize("tied", [True, False])
def test_cached_decode_equals_full_forward(tied: bool) -> None:
    m = model(replace(CFG, tie_embeddings=tied))
    train_gates(m)
    idx = tokens(n=30)
    gate = torch.randn(2, 30, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = m(idx, gate=gate)
    cache = m.new_cache(batch=2, chunk=8)  # small chunks: the cache grows several times on the way
    steps = [m.decode(idx[:, :7], cache, gate=gate[:, :7])]  # prefill
    steps += [m.decode(idx[:, t : t + 1], cache, gate=gate[:, t : t + 1]) for t in range(7, 20)]  # one token
    steps.append(m.decode(idx[:, 20:30], cache, gate=gate[:, 20:30]))  # a chunk after cached tokens (masked)
    cached = torch.cat(steps, dim=1)
    assert cache.length == 30 and cache.capacity == 32
    assert cached.dtype == torch.float32
    assert (cached - full).abs().max() < 1e-5

    cache.length = 19  # rewind and take a different branch: same as the full forward of that branch
    other = idx.clone()
    other[:, 19] = (other[:, 19] + 5) % CFG.vocab_size
    branch = m.decode(other[:, 19:20], cache, gate=gate[:, 19:20])
    with torch.no_grad():
        assert (branch[:, 0] - m(other[:, :20], gate=gate[:, :20])[:, 19]).abs().max() < 1e-5


def test_ungated_decode_with_a_per_sequence_gate_and_context_limit() -> None:
    m = model()
    train_gates(m)
    idx = tokens(batch=3, n=12)
    gate = torch.tensor([0.5, -0.5, 2.0])
    with torch.no_grad():
        full = m(idx, gate=gate)
    cache = m.new_cache(batch=3)
    cached = torch.cat([m.decode(idx[:, t : t + 1], cache, gate=gate) for t in range(12)], dim=1)
    assert (cached - full).abs().max() < 1e-5
    with pytest.raises(ValueError, match="max_seq_len"):
        m.decode(tokens(batch=3, n=CFG.max_seq_len), cache)
    with pytest.raises(ValueError, match="max_seq_len"):
        m(tokens(n=CFG.max_seq_len + 1))


def test_config_round_trip_and_validation() -> None:
    assert LMConfig.from_dict({**CFG.to_dict(), "unknown": 1}) == CFG
    with pytest.raises(ValueError):
        LMConfig(vocab_size=10, d_model=32, n_head=4, n_kv_head=3)
