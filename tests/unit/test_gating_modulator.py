"""The modulator: m in [0, 1] -> Tidal's sampling parameters, exactly (endpoints, the midpoint with its
round-half-to-even top-k, a general point), clamped outside [0, 1], NaN refused."""

from __future__ import annotations

import math

import pytest

from lyceum_ml.gating.modulator import NEUTRAL_MODULATION, clamp, modulate


def params_of(m: float) -> tuple[float, int, float, float]:
    p = modulate(m)
    return p.temperature, p.top_k, p.top_p, p.repetition_penalty


@pytest.mark.parametrize(
    ("m", "expected"),
    [
        (0.0, (0.3, 5, 0.7, 1.2)),
        (1.0, (2.0, 100, 1.0, 4.2)),
        (0.5, (1.15, 52, 0.85, 2.7)),  # top-k round(52.5) = 52: ties to even
        (0.25, (0.725, 29, 0.775, 1.95)),  # round(28.75) = 29
        (0.1, (0.47, 14, 0.73, 1.5)),  # round(14.5) = 14: ties to even
    ],
)
def test_modulate_gives_tidals_parameters(m: float, expected: tuple[float, int, float, float]) -> None:
    temperature, top_k, top_p, penalty = params_of(m)
    assert temperature == pytest.approx(expected[0], abs=1e-12)
    assert top_k == expected[1] and isinstance(top_k, int)
    assert top_p == pytest.approx(expected[2], abs=1e-12)
    assert penalty == pytest.approx(expected[3], abs=1e-12)
    modulate(m).validate()  # every modulation is a valid set of sampling parameters


def test_modulate_leaves_the_other_parameters_neutral() -> None:
    p = modulate(0.7)
    assert p.presence_penalty == 0 and p.frequency_penalty == 0


@pytest.mark.parametrize(
    ("m", "clamped"), [(-0.5, 0.0), (-1e9, 0.0), (1.2, 1.0), (math.inf, 1.0), (0.3, 0.3)]
)
def test_modulations_outside_the_unit_interval_are_clamped(m: float, clamped: float) -> None:
    assert clamp(m) == clamped
    assert params_of(m) == params_of(clamped)


def test_nan_is_refused() -> None:
    with pytest.raises(ValueError, match="NaN"):
        clamp(math.nan)
    with pytest.raises(ValueError, match="NaN"):
        modulate(math.nan)


def test_the_neutral_modulation_is_the_midpoint() -> None:
    assert NEUTRAL_MODULATION == 0.5
