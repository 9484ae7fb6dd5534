"""Next-token distributions: shaping (each parameter's effect, validation), the threshold split and its Other
bucket, seeded sampling from that bucket (frequencies by a chi-square test), ranks and categories."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch
from scipy.stats import chisquare

from lyceum_ml.sampling import (
    EmptyOther,
    SamplingParams,
    category,
    rank_of,
    sample_other,
    shape,
    spin,
    split,
)

V = 1000


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/fixtures/lm_models.py


def logits(n: int = V, seed: int = 0, scale: float = 3.0) -> torch.Tensor:
    return torch.randn(n, generator=torch.Generator().manual_seed(seed)) * scale


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(),
        SamplingParams(temperature=0.3, top_k=50),
        SamplingParams(top_p=0.5, repetition_penalty=1.5),
        SamplingParams(temperature=2.0, top_k=5, top_p=0.9, repetition_penalty=1.2),
    ],
)
def test_shape_gives_a_distribution(params: SamplingParams) -> None:
    x = logits()
    before = x.clone()
    probs = shape(x, params, previous_ids=[1, 2, 3, 2])
    assert probs.shape == (V,) and probs.dtype == torch.float64
    assert probs.min() >= 0 and abs(float(probs.sum()) - 1) < 1e-6
    assert torch.equal(x, before)  # the input is not modified
    x64 = x.double()
    shape(x64, params, previous_ids=[1, 2])
    assert torch.equal(x64, before.double())


def test_default_params_are_a_plain_softmax() -> None:
    x = logits()
    torch.testing.assert_close(shape(x, SamplingParams()), torch.softmax(x.double(), 0))


def test_top_k_keeps_the_k_most_likely() -> None:
    x = logits()
    probs = shape(x, SamplingParams(top_k=7))
    kept = torch.nonzero(probs).flatten()
    assert set(kept.tolist()) == set(torch.topk(x, 7).indices.tolist())
    torch.testing.assert_close(probs[kept], torch.softmax(x[kept].double(), 0))  # renormalised
    assert torch.count_nonzero(shape(x, SamplingParams(top_k=V + 5))) == V  # k beyond V: off


@pytest.mark.parametrize("top_p", [0.05, 0.5, 0.9, 0.999])
def test_top_p_keeps_the_smallest_nucleus(top_p: float) -> None:
    x = logits(seed=1)
    full = torch.softmax(x.double(), 0)
    ordered = torch.argsort(full, descending=True)
    mass = torch.cumsum(full[ordered], 0)
    n = int((mass < top_p).sum()) + 1  # the fewest tokens reaching top_p
    probs = shape(x, SamplingParams(top_p=top_p))
    assert set(torch.nonzero(probs).flatten().tolist()) == set(ordered[:n].tolist())
    torch.testing.assert_close(probs[ordered[:n]], full[ordered[:n]] / full[ordered[:n]].sum())


def test_top_p_applies_after_top_k() -> None:
    x = torch.tensor([3.0, 2.0, 1.0, 0.0, -1.0])
    after_k = torch.softmax(x[:3].double(), 0)  # (0.665, 0.245, 0.090)
    probs = shape(x, SamplingParams(top_k=3, top_p=float(after_k[0] + 0.01)))
    assert torch.nonzero(probs).flatten().tolist() == [0, 1]


def test_temperature_sharpens_and_flattens() -> None:
    x = logits()

    def entropy(p: torch.Tensor) -> float:
        return float(-(p[p > 0] * p[p > 0].log()).sum())

    cold, plain, hot = (shape(x, SamplingParams(temperature=t)) for t in (0.5, 1.0, 2.0))
    assert cold.max() > plain.max() > hot.max()
    assert entropy(cold) < entropy(plain) < entropy(hot)
    torch.testing.assert_close(cold, torch.softmax(x.double() / 0.5, 0))
    assert torch.argmax(cold) == torch.argmax(hot) == torch.argmax(x)


def test_repetition_penalty_lowers_repeated_tokens_ctrl_style() -> None:
    x = torch.tensor([2.0, -1.0, 0.5, 1.0, -2.0])
    probs = shape(x, SamplingParams(repetition_penalty=2.0), previous_ids=[0, 1, 0])
    expected = torch.softmax(torch.tensor([1.0, -2.0, 0.5, 1.0, -2.0], dtype=torch.float64), 0)
    torch.testing.assert_close(probs, expected)  # positive logits divided, negative multiplied
    plain = shape(x, SamplingParams())
    assert probs[0] < plain[0] and probs[1] < plain[1]
    assert probs[2] > plain[2]  # unrepeated tokens gain the freed mass
    torch.testing.assert_close(shape(x, SamplingParams(repetition_penalty=2.0)), plain)  # nothing repeated


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", 0.0),
        ("temperature", -1.0),
        ("temperature", math.inf),
        ("temperature", math.nan),
        ("top_k", -1),
        ("top_p", 0.0),
        ("top_p", 1.5),
        ("repetition_penalty", 0.9),
        ("repetition_penalty", math.nan),
    ],
)
def test_invalid_params_raise_naming_the_field(field: str, value: float) -> None:
    params = SamplingParams(**{field: value})
    with pytest.raises(ValueError, match=field):
        params.validate()
    with pytest.raises(ValueError, match=field):
        shape(logits(10), params)


PROBS = torch.tensor([0.05, 0.4, 0.0, 0.2, 0.2, 0.1, 0.03, 0.02], dtype=torch.float64)


def test_split_at_a_threshold() -> None:
    s = split(PROBS, threshold=0.1, other_top_k=2)
    assert s.above == [(1, 0.4), (3, 0.2), (4, 0.2), (5, 0.1)]  # p >= threshold; ties by id
    assert s.other_total == pytest.approx(0.1) and s.other_count == 3  # the zero is in neither
    assert s.other_top == [(0, 0.05), (6, 0.03)]
    assert split(PROBS, 0.1, other_top_k=10).other_top == [(0, 0.05), (6, 0.03), (7, 0.02)]
    assert split(PROBS, 0.1, other_top_k=0).other_top == []
    everything = split(PROBS, 0.0)
    assert len(everything.above) == 7 and everything.other_count == 0 and everything.other_total == 0
    nothing = split(PROBS, 1.0)
    assert nothing.above == [] and nothing.other_count == 7
    assert nothing.other_total == pytest.approx(1.0)


@pytest.mark.parametrize("threshold", [0.0, 1e-4, 0.001, 0.01, 0.05, 0.5, 1.0])
def test_split_totals_one(threshold: float) -> None:
    probs = shape(logits(50257, scale=4.0), SamplingParams(top_p=0.95))
    s = split(probs, threshold, other_top_k=10)
    assert abs(sum(p for _, p in s.above) + s.other_total - 1) < 1e-5
    assert all(p >= threshold for _, p in s.above) and all(p < threshold for _, p in s.other_top)
    assert s.other_count == int(((probs < threshold) & (probs > 0)).sum())
    assert [p for _, p in s.above] == sorted((p for _, p in s.above), reverse=True)
    assert len(s.other_top) == min(10, s.other_count)


def test_split_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="threshold"):
        split(PROBS, 1.5)
    with pytest.raises(ValueError, match="other_top_k"):
        split(PROBS, 0.1, other_top_k=-1)


def test_sample_other_is_seeded_and_stays_below_the_threshold() -> None:
    probs = shape(logits(), SamplingParams())
    threshold = 0.01
    draws = [sample_other(probs, threshold, torch.Generator().manual_seed(5)) for _ in range(3)]
    assert draws[0] == draws[1] == draws[2]
    g = torch.Generator().manual_seed(6)
    many = [sample_other(probs, threshold, g) for _ in range(2000)]
    assert all(p < threshold and p == float(probs[t]) for t, p in many)
    assert len({t for t, _ in many}) > 100


def test_sample_other_frequencies_follow_the_renormalised_bucket() -> None:
    x = torch.tensor([3.0, 2.5, 2.0, 1.0, 0.5, 0.2, 0.0, -0.3, -0.7, -1.0, -1.5, -2.0])
    probs = shape(x, SamplingParams())
    threshold = float(probs[2])  # tokens 0, 1 and 2 are above
    g = torch.Generator().manual_seed(1234)
    counts = Counter(sample_other(probs, threshold, g)[0] for _ in range(20_000))
    assert set(counts) <= set(range(3, 12))
    other = probs[3:] / probs[3:].sum()
    observed = [counts[i] for i in range(3, 12)]
    result = chisquare(observed, (other * 20_000).tolist())
    assert result.pvalue > 0.001


def test_spin_is_seeded_and_its_frequencies_follow_the_whole_distribution() -> None:
    x = torch.tensor([3.0, 2.5, 2.0, 1.0, 0.5, 0.2, 0.0, -0.3, -0.7, -1.0, -1.5, -2.0])
    probs = shape(x, SamplingParams(top_k=8))  # the last four have probability 0: never drawn
    assert spin(probs, torch.Generator().manual_seed(3)) == spin(probs, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(99)
    draws = [spin(probs, g) for _ in range(20_000)]
    assert all(p == float(probs[t]) for t, p in draws[:50])
    counts = Counter(t for t, _ in draws)
    assert set(counts) <= set(range(8))
    result = chisquare([counts[i] for i in range(8)], (probs[:8] / probs[:8].sum() * 20_000).tolist())
    assert result.pvalue > 0.001


def test_sample_other_raises_when_the_bucket_is_empty() -> None:
    g = torch.Generator().manual_seed(0)
    with pytest.raises(EmptyOther):
        sample_other(PROBS, 0.0, g)
    with pytest.raises(ValueError, match="below threshold"):  # EmptyOther is a ValueError
        sample_other(shape(logits(), SamplingParams(top_k=3)), 0.001, g)  # the top 3 hold all the mass


def test_rank_of_counts_more_likely_tokens_ties_by_id() -> None:
    assert [rank_of(PROBS, i) for i in range(8)] == [4, 0, 7, 1, 2, 3, 5, 6]
    probs = shape(logits(), SamplingParams())
    order = torch.argsort(probs, descending=True).tolist()
    assert [rank_of(probs, t) for t in order[:20]] == list(range(20))


def test_category() -> None:
    assert category(PROBS, 5, threshold=0.1) == "above"  # exactly at the threshold
    assert category(PROBS, 0, threshold=0.1) == "other"
    assert category(PROBS, 2, threshold=0.0) == "other"  # zero probability is never shown
