"""The 64-D observation, slot by slot, on hand-made contexts, logits and hidden states (the equality of
training's and serving's observation through the engine is in test_gating_engine.py)."""

from __future__ import annotations

import math

import pytest
import torch

from lyceum_ml.engine import Request
from lyceum_ml.engine.control import Control, ControlView
from lyceum_ml.gating.control import GatingStep, observe, previous_modulation
from lyceum_ml.gating.modulator import modulate
from lyceum_ml.gating.observation import OBS_DIM, entropy, hidden_stats, observations, token_stats


def test_token_stats_on_a_short_context() -> None:
    s = token_stats([1, 2, 1, 2, 3])
    # repetition 1 - 3/5; bigrams 12 21 12 23: 3 distinct of 4; trigrams 121 212 123: 3 of 3;
    # last 10 = all 5: 3 distinct, the most common (1 or 2) twice; n / 100
    assert s == pytest.approx([0.4, 0.0, 0.75, 1.0, 0.6, 0.4, 0.05, 0.0, 0.0, 0.0])


def test_token_stats_window_is_the_last_ten_and_the_length_term_caps_at_1() -> None:
    context = [7] * 140 + [1, 2, 3, 4, 5, 6, 7, 7, 7, 8]
    s = token_stats(context)
    assert s[0] == pytest.approx(1 - 8 / 150)
    assert s[4] == pytest.approx(8 / 10)  # distinct among the last ten
    assert s[5] == pytest.approx(3 / 10)  # 7 three times among them
    assert s[6] == 1.0


def test_token_stats_of_a_repeated_token() -> None:
    s = token_stats([4] * 12)
    assert s[0] == pytest.approx(1 - 1 / 12)
    assert s[2] == pytest.approx(1 / 11) and s[3] == pytest.approx(1 / 10)
    assert s[4] == pytest.approx(0.1) and s[5] == 1.0


@pytest.mark.parametrize(
    ("context", "bigram", "trigram"),
    [([7], 1.0, 1.0), ([7, 7], 1.0, 1.0), ([7, 8, 7], 1.0, 1.0), ([7, 7, 7], 0.5, 1.0), ([], 1.0, 1.0)],
)
def test_distinct_ngram_ratios_are_1_when_too_short(
    context: list[int], bigram: float, trigram: float
) -> None:
    s = token_stats(context)
    assert (s[2], s[3]) == (bigram, trigram)


def test_token_stats_of_an_empty_context() -> None:
    assert token_stats([]) == [0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]


def test_entropy_of_logits() -> None:
    assert float(entropy(torch.zeros(100))) == pytest.approx(math.log(100))
    masked = torch.tensor([0.0, 0.0, -math.inf, -math.inf])
    assert float(entropy(masked)) == pytest.approx(math.log(2))
    assert float(entropy(torch.tensor([0.0, -1e4]))) == pytest.approx(0.0, abs=1e-9)


def test_hidden_stats_are_chunk_means_then_chunk_stds() -> None:
    hidden = torch.arange(48.0).view(1, 48)  # chunks (0, 1), (2, 3), ...
    stats = hidden_stats(hidden)
    assert stats.shape == (1, 48)
    assert torch.allclose(stats[0, :24], torch.arange(24.0) * 2 + 0.5)
    assert torch.allclose(stats[0, 24:], torch.full((24,), 0.5))  # population std


def test_hidden_stats_of_a_size_not_divisible_by_24() -> None:
    hidden = torch.randn(3, 50, generator=torch.Generator().manual_seed(0))
    stats = hidden_stats(hidden)
    chunks = torch.tensor_split(hidden, 24, dim=-1)  # 2 chunks of 3, 22 of 2: all 50 values used
    assert sum(c.shape[-1] for c in chunks) == 50
    assert torch.allclose(stats[:, 0], chunks[0].mean(-1)) and torch.allclose(
        stats[:, 23], chunks[23].mean(-1)
    )
    assert torch.allclose(stats[:, 24], chunks[0].std(-1, correction=0))
    with pytest.raises(ValueError, match="24"):
        hidden_stats(torch.zeros(1, 23))


def test_observations_lay_out_the_64_slots() -> None:
    V, d = 100, 48
    logits = torch.zeros(2, V)
    logits[1, :4] = 30.0  # ~uniform over 4
    hidden = torch.arange(2 * d, dtype=torch.float32).view(2, d)
    obs = observations([[1, 2, 1, 2, 3], [9]], logits, hidden, [3, 0], [10, 50], [0.25, 0.5])
    assert obs.shape == (2, OBS_DIM) and obs.dtype == torch.float32
    stats0 = torch.tensor(token_stats([1, 2, 1, 2, 3]))
    assert torch.allclose(obs[0, [0, 2, 3, 4, 5, 6]], stats0[[0, 2, 3, 4, 5, 6]])
    assert float(obs[0, 1]) == pytest.approx(math.log(100) / 10, abs=1e-6)
    assert float(obs[1, 1]) == pytest.approx(math.log(4) / 10, abs=1e-4)
    assert torch.equal(obs[:, 7:10], torch.zeros(2, 3))
    assert torch.allclose(obs[:, 10:58], hidden_stats(hidden))
    assert obs[0, 58:].tolist() == pytest.approx([0.3, 1.0, 0.25, 0.0, 0.0, 0.0])
    assert obs[1, 58:].tolist() == pytest.approx([0.0, 1.0, 0.5, 0.0, 0.0, 0.0])


def view(context: list[int], generated: int, previous: Control | None, hidden: bool = True) -> ControlView:
    prompt = context[: len(context) - generated]
    request = Request(tuple(prompt), 20)
    g = torch.Generator().manual_seed(len(context))
    return ControlView(
        7,
        request,
        torch.randn(30, generator=g),
        torch.randn(32, generator=g) if hidden else None,
        tuple(context[len(prompt) :]),
        previous,
    )


def test_observe_reads_the_views() -> None:
    prev = Control(modulate(0.8), 0.8, GatingStep(0.8))
    views = [view([1, 2, 3, 4], 2, prev), view([5, 6], 0, None)]
    obs = observe(views)
    expected = observations(
        [(1, 2, 3, 4), (5, 6)],
        torch.stack([v.logits for v in views]),
        torch.stack([v.hidden for v in views]),  # type: ignore[misc]
        [2, 0],
        [20, 20],
        [0.8, 0.5],
    )
    assert torch.equal(obs, expected)
    assert float(obs[0, 58]) == pytest.approx(2 / 20) and float(obs[0, 60]) == pytest.approx(0.8)
    with pytest.raises(ValueError, match="hidden"):
        observe([view([1, 2], 0, None, hidden=False)])


def test_the_previous_modulation_is_neutral_without_a_gated_previous_step() -> None:
    assert previous_modulation(view([1, 2], 0, None)) == 0.5
    assert previous_modulation(view([1, 2], 1, Control(modulate(0.1), None, GatingStep(None)))) == 0.5
    assert previous_modulation(view([1, 2], 1, Control(modulate(0.1), None, "other"))) == 0.5
    assert previous_modulation(view([1, 2], 1, Control(modulate(0.1), None, GatingStep(0.1)))) == 0.1
