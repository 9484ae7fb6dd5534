"""The modulator: one modulation m in [0, 1] (conservative -> exploratory) -> sampling parameters, exactly as
Tidal defines them; in Lyceum m is also the gated LM's gate signal (configurable off).

    temperature        = 0.3 + 1.7 m          (0.3 .. 2.0)
    top-k              = round(5 + 95 m)      (5 .. 100; Python's round: ties to even)
    top-p              = 0.7 + 0.3 m          (0.7 .. 1.0)
    repetition penalty = 1.2 (1 + 2.5 m)      (1.2 .. 4.2; sign-aware: positive logits / p, negative * p)
"""

from __future__ import annotations

import math

from lyceum_ml.sampling import SamplingParams

NEUTRAL_MODULATION = 0.5  # the previous modulation before the first step, and the prompt's gate signal


def clamp(m: float) -> float:
    """m clamped to [0, 1]; NaN is refused."""
    if math.isnan(m):
        raise ValueError("modulation is NaN")
    return min(1.0, max(0.0, m))


def modulate(m: float) -> SamplingParams:
    """The sampling parameters of modulation m (clamped to [0, 1])."""
    m = clamp(m)
    return SamplingParams(
        temperature=0.3 + 1.7 * m,
        top_k=round(5 + 95 * m),
        top_p=0.7 + 0.3 * m,
        repetition_penalty=1.2 * (1 + 2.5 * m),
    )
