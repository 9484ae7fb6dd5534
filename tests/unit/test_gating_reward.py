"""The per-step reward's components as Tidal defines them: P_rep's piecewise constants and repeat bonus,
R_ppl's log scale and cap, R_div's and R_samp's Gaussian bumps, R_coh's sign, `step_reward` on hand-built
logits (entropies computed here independently) and the weighted total with the Experiment-3 defaults."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from lyceum_ml import sampling
from lyceum_ml.gating.modulator import modulate
from lyceum_ml.gating.reward import (
    COMPONENTS,
    RewardWeights,
    StepReward,
    p_rep,
    r_coh,
    r_div,
    r_ppl,
    r_samp,
    step_reward,
    step_rewards,
)
from lyceum_ml.sampling import SamplingParams

# --- P_rep --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "penalty"),
    [(0, 0.0), (1, 0.25), (2, 0.5), (3, 0.75), (4, 0.8), (5, 0.85), (7, 0.95), (8, 1.0), (9, 1.0)],
)
def test_p_rep_steps_with_the_count_in_the_last_ten(count: int, penalty: float) -> None:
    token, other = 5, 9
    context = [token] * count + [other] * (10 - count)  # the previous token is not `token`
    assert p_rep(token, context) == pytest.approx(penalty, abs=1e-12)


def test_p_rep_counts_only_the_last_ten() -> None:
    assert p_rep(5, [5] * 20 + [9] * 10) == 0.0
    assert p_rep(5, [5] * 20 + [9] * 9) == 0.25


@pytest.mark.parametrize(
    ("context", "penalty"),
    [
        ([9, 5], 0.55),  # c = 1: 0.25 + 0.3
        ([5, 9, 5], 0.8),  # c = 2: 0.5 + 0.3
        ([5, 5, 9, 5], 1.0),  # c = 3: 0.75 + 0.3, capped
        ([5, 5, 5, 9, 5], 1.0),  # c = 4: 0.8 + 0.3, capped
    ],
)
def test_repeating_the_previous_token_adds_0_3_capped_at_1(context: list[int], penalty: float) -> None:
    assert p_rep(5, context) == pytest.approx(penalty, abs=1e-12)


def test_p_rep_of_an_empty_context_is_zero() -> None:
    assert p_rep(5, []) == 0.0


# --- R_ppl, R_div, R_samp --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "reward"),
    [(1.0, 0.0), (0.1, -0.5), (0.01, -1.0), (1e-3, -1.0), (1e-30, -1.0), (math.exp(-1), -1 / math.log(100))],
)
def test_r_ppl_is_minus_log_perplexity_over_log_100_capped(p: float, reward: float) -> None:
    assert r_ppl(math.log(p)) == pytest.approx(reward, abs=1e-12)


def test_r_ppl_of_a_zero_probability_is_capped() -> None:
    assert r_ppl(-math.inf) == -1.0


def test_r_div_peaks_at_entropy_5_with_width_2_5() -> None:
    assert r_div(5.0) == 1.0
    assert r_div(7.5) == pytest.approx(math.exp(-0.5), abs=1e-12)
    assert r_div(2.5) == pytest.approx(math.exp(-0.5), abs=1e-12)
    assert r_div(0.0) == pytest.approx(math.exp(-2), abs=1e-12)


def test_r_samp_peaks_at_entropy_2_5_with_width_1_25() -> None:
    assert r_samp(2.5) == 1.0
    assert r_samp(3.75) == pytest.approx(math.exp(-0.5), abs=1e-12)
    assert r_samp(1.25) == pytest.approx(math.exp(-0.5), abs=1e-12)
    assert r_samp(5.0) == pytest.approx(math.exp(-2), abs=1e-12)


# --- R_coh ------------------------------------------------------------------------------------------


def test_r_coh_rewards_a_bigram_seen_often_and_penalises_an_unseen_one() -> None:
    context = [1, 2, 1, 2, 1, 2, 1]
    # P(2 | 1) = (3 + 1) / (3 + 3), P(2) = (3 + 1) / (7 + 3)
    assert r_coh(2, context) == pytest.approx(math.tanh(math.log(4 / 6) - math.log(4 / 10)), abs=1e-12)
    assert r_coh(2, context) > 0
    # (1, 1) never seen though 1 is common: P(1 | 1) = 1 / 6, P(1) = 5 / 10
    assert r_coh(1, context) == pytest.approx(math.tanh(math.log(1 / 6) - math.log(5 / 10)), abs=1e-12)
    assert r_coh(1, context) < 0


def test_r_coh_of_an_empty_context_is_zero() -> None:
    assert r_coh(3, []) == 0.0


# --- step_reward and the total -----------------------------------------------------------------------------


def entropy_of(logits: torch.Tensor) -> float:
    p = torch.softmax(logits.double(), dim=0)
    p = p[p > 0]
    return float(-(p * p.log()).sum())


def test_step_reward_on_uniform_logits() -> None:
    V = 100
    r = step_reward(torch.zeros(V), SamplingParams(temperature=0.7, top_k=5), [3, 4], [4], token=7)
    # every token tied: temperature, penalty (of 0) and top-k (ties kept) leave it uniform
    assert r.ppl == pytest.approx(-1.0, abs=1e-12)  # p = 1/100
    assert r.div == pytest.approx(r_div(math.log(V)), abs=1e-9)
    assert r.samp == pytest.approx(r_samp(math.log(V)), abs=1e-9)
    assert r.rep == 0.0
    assert r.coh == pytest.approx(r_coh(7, [3, 4]), abs=1e-12)


def test_step_reward_shapes_the_logits_like_the_sampler() -> None:
    V = 50
    logits = torch.linspace(3.0, -3.0, V)  # distinct values: top-k cuts exactly
    params = SamplingParams(temperature=0.5, top_k=4, top_p=0.3, repetition_penalty=2.0)
    context, token = [0, 49, 10], 1
    shaped = logits.clone().double()
    shaped[0] /= 2.0  # positive logit in the context: divided by the penalty
    shaped[10] /= 2.0
    shaped[49] *= 2.0  # negative: multiplied
    shaped /= 0.5
    h = entropy_of(shaped)
    h_s = entropy_of(shaped.topk(4).values)  # top-p is ignored: the reward's entropies use top-p 1
    r = step_reward(logits, params, context, [10], token)
    assert r.div == pytest.approx(r_div(h), abs=1e-9)
    assert r.samp == pytest.approx(r_samp(h_s), abs=1e-9)
    # R_ppl is of the raw softmax, not the shaped one
    assert r.ppl == pytest.approx(r_ppl(float(torch.log_softmax(logits.double(), 0)[token])), abs=1e-12)
    assert r.rep == 0.0  # token 1 is not in the context


def test_step_reward_penalises_a_repeat() -> None:
    r = step_reward(torch.zeros(20), SamplingParams(), [3, 3, 3, 4, 3], [3], token=3)
    assert r.rep == 1.0  # c = 4: 0.8 + 0.3, capped


def test_default_weights_are_tidals_experiment_3() -> None:
    w = RewardWeights()
    assert (w.ppl, w.div, w.rep, w.coh, w.samp) == (0.4375, 0.1875, 0.1875, 0.0, 0.1875)
    assert COMPONENTS == ("ppl", "div", "rep", "coh", "samp")


def test_total_weights_each_component_and_subtracts_the_repetition_penalty() -> None:
    s = StepReward(ppl=-0.5, div=0.8, rep=0.25, coh=0.6, samp=0.4)
    expected = 0.4375 * -0.5 + 0.1875 * 0.8 - 0.1875 * 0.25 + 0.0 * 0.6 + 0.1875 * 0.4
    assert s.total(RewardWeights()) == pytest.approx(expected, abs=1e-12)
    assert s.total(RewardWeights(ppl=0, div=0, rep=0, coh=1.0, samp=0)) == pytest.approx(0.6)
    assert s.total(RewardWeights(ppl=0, div=0, rep=2.0, coh=0, samp=0)) == pytest.approx(-0.5)


def _shaped_entropy(
    logits: torch.Tensor, params: SamplingParams, context: list[int], gen: list[int]
) -> float:
    """The reference: sampling.shape's distribution (what the engine samples from), its entropy in nats."""
    p = sampling.shape(logits, params, context, gen)
    p = p[p > 0]
    return float(-(p * p.log()).sum())


def test_a_batch_of_rewards_equals_each_row_shaped_alone() -> None:
    """step_rewards shapes B rows in one tensor; each row must match sampling.shape on that row alone (the
    penalties over its own context, its own temperature and top-k), whatever its batch mates are."""
    g = torch.Generator().manual_seed(3)
    V = 50
    logits = torch.randn(4, V, generator=g) * 3
    params = [modulate(0.0), modulate(0.37), SamplingParams(presence_penalty=0.5, top_k=7), SamplingParams()]
    contexts = [[1, 2, 2, 3], [4, 4, 4, 9, 1], [5, 6, 7], []]
    generated = [[2, 3], [9, 1], [6, 7], []]
    tokens = [2, 4, 6, 0]
    batch = step_rewards(logits, params, contexts, generated, tokens)
    for i in range(4):
        h = _shaped_entropy(
            logits[i], dataclasses.replace(params[i], top_k=0, top_p=1.0), contexts[i], generated[i]
        )
        h_s = _shaped_entropy(logits[i], dataclasses.replace(params[i], top_p=1.0), contexts[i], generated[i])
        logp = float(torch.log_softmax(logits[i].double(), -1)[tokens[i]])
        assert batch[i].div == pytest.approx(r_div(h), abs=1e-9)
        assert batch[i].samp == pytest.approx(r_samp(h_s), abs=1e-9)
        assert batch[i].ppl == pytest.approx(r_ppl(logp), abs=1e-12)
        assert batch[i].rep == p_rep(tokens[i], contexts[i])
        alone = step_reward(logits[i], params[i], contexts[i], generated[i], tokens[i])
        assert dataclasses.astuple(batch[i]) == pytest.approx(dataclasses.astuple(alone), abs=1e-9)
