"""PPO's arithmetic: GAE on a hand-computed episode, explained variance, the homeostases (entropy coefficient,
diversity weight, the Lagrangian's lambda) and the training reward of each diversity mode; one clipped update
moves the policy toward positive advantages."""

from __future__ import annotations

import math

import pytest
import torch

from lyceum_ml.gating.policy import GatingPolicy
from lyceum_ml.gating.ppo import Homeostasis, PPOSettings, explained_variance, gae, ppo_update


def test_gae_on_a_hand_computed_three_step_episode() -> None:
    rewards, values, gamma, lam = [1.0, 0.0, 2.0], [0.5, 0.2, 0.1], 0.9, 0.8
    # deltas: r_t + gamma V_{t+1} - V_t, no bootstrap after the last step
    d2 = 2.0 - 0.1  # 1.9
    d1 = 0.0 + 0.9 * 0.1 - 0.2  # -0.11
    d0 = 1.0 + 0.9 * 0.2 - 0.5  # 0.68
    a2 = d2
    a1 = d1 + 0.9 * 0.8 * a2  # 1.258
    a0 = d0 + 0.9 * 0.8 * a1  # 1.58576
    adv, ret = gae(rewards, values, gamma, lam)
    assert adv.tolist() == pytest.approx([1.58576, 1.258, 1.9], abs=1e-6)
    assert adv.tolist() == pytest.approx([a0, a1, a2], abs=1e-6)
    assert ret.tolist() == pytest.approx([1.58576 + 0.5, 1.258 + 0.2, 1.9 + 0.1], abs=1e-6)
    assert adv.dtype == ret.dtype == torch.float32


def test_gae_with_lambda_1_and_gamma_1_is_the_return_to_go_minus_the_value() -> None:
    adv, ret = gae([1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 0.0, 2.0], 1.0, 1.0)
    assert ret.tolist() == pytest.approx([10.0, 9.0, 7.0, 4.0])
    assert adv.tolist() == pytest.approx([10.0, 8.0, 7.0, 2.0])


def test_gae_with_lambda_0_is_the_one_step_td_error() -> None:
    adv, _ = gae([1.0, 1.0], [0.5, 0.25], 0.5, 0.0)
    assert adv.tolist() == pytest.approx([1.0 + 0.5 * 0.25 - 0.5, 1.0 - 0.25])


def test_explained_variance() -> None:
    returns = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert explained_variance(returns.clone(), returns) == pytest.approx(1.0)
    assert explained_variance(torch.zeros(4), returns) == pytest.approx(0.0)
    assert explained_variance(torch.full((4,), 2.5), returns) == pytest.approx(0.0)  # the mean: no skill
    # residuals [1, 0, 0, -1]: variance 0.5 of the returns' 1.25
    assert explained_variance(torch.tensor([0.0, 2.0, 3.0, 5.0]), returns) == pytest.approx(1 - 0.5 / 1.25)
    assert math.isnan(explained_variance(torch.zeros(3), torch.ones(3)))


# --- homeostasis ------------------------------------------------------------------------------------------

S = PPOSettings()
W0 = 0.1875  # the configured diversity weight: the homeostasis's floor


def test_entropy_coefficient_rises_below_the_target_and_falls_above() -> None:
    h = Homeostasis(entropy_coef=0.01, diversity_weight=W0)
    h.update(entropy=-1.35, diversity=S.diversity_target, base_div_weight=W0, settings=S)  # 1 below -0.35
    assert h.entropy_coef == pytest.approx(0.01 * math.exp(0.1))
    h = Homeostasis(entropy_coef=0.01, diversity_weight=W0)
    h.update(entropy=0.65, diversity=S.diversity_target, base_div_weight=W0, settings=S)
    assert h.entropy_coef == pytest.approx(0.01 * math.exp(-0.1))
    h = Homeostasis(entropy_coef=0.01, diversity_weight=W0)
    h.update(entropy=S.entropy_target, diversity=S.diversity_target, base_div_weight=W0, settings=S)
    assert h.entropy_coef == pytest.approx(0.01)


def test_entropy_coefficient_is_clamped() -> None:
    h = Homeostasis(entropy_coef=0.099, diversity_weight=W0)
    h.update(entropy=-50.0, diversity=0.55, base_div_weight=W0, settings=S)
    assert h.entropy_coef == S.entropy_coef_max
    h = Homeostasis(entropy_coef=0.00011, diversity_weight=W0)
    h.update(entropy=50.0, diversity=0.55, base_div_weight=W0, settings=S)
    assert h.entropy_coef == S.entropy_coef_min


def test_entropy_homeostasis_can_be_off() -> None:
    h = Homeostasis(entropy_coef=0.01, diversity_weight=W0)
    h.update(
        entropy=-50.0, diversity=0.55, base_div_weight=W0, settings=PPOSettings(entropy_homeostasis=False)
    )
    assert h.entropy_coef == 0.01


def test_diversity_weight_rises_below_the_target_and_relaxes_back_to_the_configured_weight() -> None:
    h = Homeostasis(entropy_coef=0.01, diversity_weight=W0)
    h.update(entropy=S.entropy_target, diversity=0.35, base_div_weight=W0, settings=S)
    assert h.diversity_weight == pytest.approx(W0 + 0.05 * 0.2)
    h.update(entropy=S.entropy_target, diversity=0.45, base_div_weight=W0, settings=S)
    assert h.diversity_weight == pytest.approx(W0 + 0.05 * 0.2 + 0.05 * 0.1)
    h.update(entropy=S.entropy_target, diversity=0.75, base_div_weight=W0, settings=S)  # above: falls
    assert h.diversity_weight == pytest.approx(W0 + 0.05 * 0.2 + 0.05 * 0.1 - 0.05 * 0.2)
    h.update(entropy=S.entropy_target, diversity=1.0, base_div_weight=W0, settings=S)
    assert h.diversity_weight == W0  # never below the configured weight
    for _ in range(200):
        h.update(entropy=S.entropy_target, diversity=0.0, base_div_weight=W0, settings=S)
    assert h.diversity_weight == S.diversity_weight_max
    assert h.lagrange == 0.0  # not the Lagrangian mode


def test_diversity_homeostasis_can_be_off() -> None:
    h = Homeostasis(entropy_coef=0.01, diversity_weight=W0)
    h.update(
        entropy=S.entropy_target, diversity=0.0, base_div_weight=W0, settings=PPOSettings(diversity="none")
    )
    assert (h.diversity_weight, h.lagrange) == (W0, 0.0)


def test_lagrangian_lambda_follows_the_shortfall_and_stays_non_negative() -> None:
    s = PPOSettings(diversity="lagrangian")
    h = Homeostasis(entropy_coef=0.01, diversity_weight=W0)
    h.update(entropy=s.entropy_target, diversity=0.95, base_div_weight=W0, settings=s)  # above: stays 0
    assert h.lagrange == 0.0
    h.update(entropy=s.entropy_target, diversity=0.35, base_div_weight=W0, settings=s)
    assert h.lagrange == pytest.approx(0.5 * 0.2)
    for _ in range(5):
        h.update(entropy=s.entropy_target, diversity=1.0, base_div_weight=W0, settings=s)
        assert h.lagrange >= 0.0
    assert h.lagrange == 0.0
    for _ in range(200):
        h.update(entropy=s.entropy_target, diversity=0.0, base_div_weight=W0, settings=s)
    assert h.lagrange == s.lagrange_max
    assert h.diversity_weight == W0  # the homeostatic weight is not used


def test_training_reward_in_each_diversity_mode() -> None:
    h = Homeostasis(entropy_coef=0.01, diversity_weight=0.4, lagrange=2.0)
    total, div, base = 0.3, 0.5, 0.1875
    assert h.training_reward(total, div, base, PPOSettings(diversity="none")) == total
    assert h.training_reward(total, div, base, PPOSettings(diversity="homeostasis")) == pytest.approx(
        total + (0.4 - 0.1875) * 0.5
    )
    assert h.training_reward(total, div, base, PPOSettings(diversity="lagrangian")) == pytest.approx(
        total + 2.0 * 0.5
    )


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="diversity"):
        PPOSettings(diversity="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        PPOSettings(epochs=0)
    with pytest.raises(ValueError):
        PPOSettings(minibatch=0)


def test_tidals_ppo_defaults() -> None:
    s = PPOSettings()
    assert (s.gamma, s.lam, s.clip, s.value_coef, s.epochs, s.minibatch) == (0.99, 0.95, 0.2, 0.5, 4, 32)
    assert (s.max_grad_norm, s.lr, s.lr_final_ratio) == (0.5, 3e-4, 0.1)
    assert (s.entropy_target, s.diversity_target) == (-0.35, 0.55)


# --- the update -------------------------------------------------------------------------------------------


def test_ppo_update_raises_the_probability_of_positively_advantaged_actions() -> None:
    torch.manual_seed(0)
    policy = GatingPolicy().eval()
    obs = torch.randn(64, 64, generator=torch.Generator().manual_seed(1))
    actions = torch.where(torch.arange(64) % 2 == 0, 0.8, 0.2)
    advantages = torch.where(actions > 0.5, 1.0, -1.0)  # high m good, low m bad
    with torch.no_grad():
        logprobs, _, values = policy.evaluate(obs, actions)
    batch = {
        "obs": obs,
        "actions": actions,
        "logprobs": logprobs,
        "advantages": advantages,
        "returns": values,
    }
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-2)
    stats = ppo_update(policy, optimizer, batch, PPOSettings(), 0.0, torch.Generator().manual_seed(2))
    assert set(stats) == {"policy_loss", "value_loss", "entropy", "approx_kl", "clip_frac"}
    assert all(math.isfinite(v) for v in stats.values())
    assert not policy.training
    mean_after, _, _ = policy.act(obs, deterministic=True)
    assert float(mean_after.mean()) > 0.52  # was ~0.5
