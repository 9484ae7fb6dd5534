"""The Beta actor-critic: its log-probs and entropies equal the closed form and torch.distributions (actions
clamped to [eps, 1 - eps]), concentrations in (1, 15], the deterministic action (mean or mode), and the
checkpoint round trip."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch.distributions import Beta

from lyceum_ml.gating.policy import KIND, GatingPolicy, PolicyConfig, load_policy, save_policy


def seeded_policy(seed: int = 0, **cfg: object) -> GatingPolicy:
    torch.manual_seed(seed)
    return GatingPolicy(PolicyConfig(**cfg)).eval()  # type: ignore[arg-type]


def observations(n: int, seed: int = 1, scale: float = 3.0) -> torch.Tensor:
    return torch.randn(n, 64, generator=torch.Generator().manual_seed(seed)) * scale


def spread_actor(policy: GatingPolicy, seed: int = 2) -> None:
    """Larger actor outputs than a fresh policy's (its output layer starts at gain 0.01), so alpha and beta
    cover (1, 15] rather than sitting at ~1.7."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        policy.actor[-1].weight.normal_(0, 1.0, generator=g)


def beta_log_density(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    x, a, b = x.double(), a.double(), b.double()
    log_beta = torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)
    return (a - 1) * torch.log(x) + (b - 1) * torch.log1p(-x) - log_beta


def test_evaluate_matches_the_closed_form_beta_density_and_torch_entropy() -> None:
    policy = seeded_policy()
    spread_actor(policy)
    obs = observations(64)
    actions = torch.rand(64, generator=torch.Generator().manual_seed(3))
    actions[:4] = torch.tensor([0.0, 1.0, 0.0005, 0.9999])  # evaluated at the clamp
    logp, entropy, value = policy.evaluate(obs, actions)
    alpha, beta, value2 = policy(obs)
    clamped = actions.clamp(0.001, 0.999)
    assert torch.allclose(logp.double(), beta_log_density(clamped, alpha, beta), atol=1e-4)
    assert torch.allclose(entropy, Beta(alpha, beta).entropy(), atol=1e-6)
    assert torch.allclose(value, value2)
    assert logp.requires_grad  # evaluate is for the update
    assert torch.allclose(logp[0], policy.evaluate(obs[:1], torch.tensor([0.001]))[0][0])
    assert torch.allclose(logp[1], policy.evaluate(obs[1:2], torch.tensor([0.999]))[0][0])


def test_entropy_matches_the_closed_form() -> None:
    policy = seeded_policy()
    spread_actor(policy)
    obs = observations(16)
    _, entropy, _ = policy.evaluate(obs, torch.full((16,), 0.5))
    a, b = (t.double() for t in policy(obs)[:2])
    log_beta = torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)
    closed = (
        log_beta
        - (a - 1) * torch.digamma(a)
        - (b - 1) * torch.digamma(b)
        + (a + b - 2) * torch.digamma(a + b)
    )
    assert torch.allclose(entropy.double(), closed, atol=1e-5)


def test_concentrations_lie_in_1_to_15() -> None:
    policy = seeded_policy()
    spread_actor(policy)
    alpha, beta, _ = policy(observations(256, scale=10.0))
    both = torch.cat([alpha, beta])
    assert bool((both > 1).all()) and bool((both <= 15).all())
    with torch.no_grad():
        policy.actor[-1].bias.fill_(100.0)
    alpha, beta, _ = policy(observations(8))
    assert torch.equal(alpha, torch.full_like(alpha, 15.0)) and torch.equal(beta, torch.full_like(beta, 15.0))


def test_a_fresh_policy_is_centred_on_the_neutral_modulation() -> None:
    alpha, beta, _ = seeded_policy()(observations(8))
    assert torch.allclose(alpha, torch.full_like(alpha, 1 + math.log(2)), atol=0.05)  # softplus(~0) + 1
    assert torch.allclose(alpha, beta, atol=0.05)


@pytest.mark.parametrize("action", ["mean", "mode"])
def test_the_deterministic_action_is_the_mean_or_the_mode(action: str) -> None:
    policy = seeded_policy(action=action)
    spread_actor(policy)
    obs = observations(32)
    m, logp, value = policy.act(obs, deterministic=True)
    a, b, v = policy(obs)
    expected = a / (a + b) if action == "mean" else (a - 1) / (a + b - 2)
    assert torch.allclose(m, expected.clamp(0.001, 0.999), atol=1e-6)
    assert torch.allclose(logp, Beta(a, b).log_prob(m), atol=1e-5)
    assert torch.allclose(value, v)
    again, _, _ = policy.act(obs, deterministic=True)
    assert torch.equal(m, again)


def test_sampled_actions_follow_the_global_seed_and_stay_in_the_clamp() -> None:
    policy = seeded_policy()
    spread_actor(policy)
    obs = observations(256)
    torch.manual_seed(11)
    m1, logp1, _ = policy.act(obs)
    torch.manual_seed(11)
    m2, logp2, _ = policy.act(obs)
    assert torch.equal(m1, m2) and torch.equal(logp1, logp2)
    assert bool((m1 >= 0.001).all()) and bool((m1 <= 0.999).all())
    assert float(m1.std()) > 0.05  # actually sampled, not the mean
    assert torch.allclose(logp1, policy.evaluate(obs, m1)[0].detach(), atol=1e-5)


def test_the_mode_action_is_defined_when_the_actor_saturates_low() -> None:
    """softplus of a very negative output is 0 in float32: alpha = beta = 1 exactly (the uniform Beta), whose
    mode (a - 1) / (a + b - 2) is 0 / 0. A deterministic action must still be a modulation in [0, 1]."""
    policy = seeded_policy(action="mode")
    with torch.no_grad():
        policy.actor[-1].bias.fill_(-30.0)
    m, logp, _ = policy.act(observations(4), deterministic=True)
    assert bool(torch.isfinite(m).all()) and bool(((m >= 0) & (m <= 1)).all())
    assert bool(torch.isfinite(logp).all())


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="action"):
        PolicyConfig(action="median")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        PolicyConfig(action_eps=0.0)
    with pytest.raises(ValueError):
        PolicyConfig(max_concentration=1.0)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    policy = seeded_policy(5, action="mode")
    spread_actor(policy)
    save_policy(tmp_path / "p", policy, {"lm": "acme/tiny@3", "note": [1, 2]})
    loaded, metadata = load_policy(tmp_path / "p")
    assert metadata == {"lm": "acme/tiny@3", "note": [1, 2]}
    assert loaded.cfg == policy.cfg and not loaded.training
    doc = json.loads((tmp_path / "p" / "config.json").read_text())
    assert doc["kind"] == KIND == "gating_policy"
    obs = observations(16)
    for got, want in zip(loaded(obs), policy(obs), strict=True):
        assert torch.equal(got, want)
    assert torch.equal(loaded.act(obs, True)[0], policy.act(obs, True)[0])
    for (name, a), (_, b) in zip(loaded.state_dict().items(), policy.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_loading_a_directory_that_is_not_a_policy_raises(tmp_path: Path, tiny_lyceum_lm_dir: Path) -> None:
    with pytest.raises(ValueError, match="not a gating policy"):
        load_policy(tiny_lyceum_lm_dir)
    (tmp_path / "config.json").write_text(json.dumps({"config": {}}))
    with pytest.raises(ValueError, match="not a gating policy"):
        load_policy(tmp_path)
