"""Gated generation as the samplers' callers see it (see `Gating` in sampler.proto): what a request asks for,
the decision each token was chosen under, and how the request was served; with their proto conversions."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from lyceum_api.sampler.v1 import sampler_pb2 as pb


class GatingMode(enum.StrEnum):
    NONE = "none"
    FIXED = "fixed"
    RANDOM = "random"
    LEARNED = "learned"


_MODE_PB = {
    GatingMode.NONE: pb.GATING_MODE_NONE,
    GatingMode.FIXED: pb.GATING_MODE_FIXED,
    GatingMode.RANDOM: pb.GATING_MODE_RANDOM,
    GatingMode.LEARNED: pb.GATING_MODE_LEARNED,
}
_MODE = {v: k for k, v in _MODE_PB.items()} | {pb.GATING_MODE_UNSPECIFIED: GatingMode.NONE}


@dataclass(frozen=True, slots=True)
class Gating:
    """A request's gating: `modulation` for fixed, `policy` (`name@alias`) for learned, `seed` for random."""

    mode: GatingMode
    modulation: float | None = None
    policy: str | None = None
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class GatingStep:
    """The decision a token was chosen under: m, the sampling parameters it gave, the gate signal fed with
    the token (None: it reached no gates)."""

    modulation: float
    temperature: float
    top_k: int
    top_p: float
    repetition_penalty: float
    gate_signal: float | None = None


@dataclass(frozen=True, slots=True)
class GatingReport:
    """How a gated request (or session) was served: the policy version for learned, whether m reached the
    model's gates, and whether the policy was trained on another LM (`lm_mismatch`, with `policy_lm`)."""

    mode: GatingMode
    gate_signal: bool
    policy: str | None = None
    policy_lm: str | None = None
    lm_mismatch: bool = False
    modulation: float | None = None
    seed: int | None = None


def to_pb(gating: Gating | None) -> pb.Gating | None:
    if gating is None:
        return None
    return pb.Gating(
        mode=_MODE_PB[gating.mode], modulation=gating.modulation, policy=gating.policy or "", seed=gating.seed
    )


def step_of(msg: object, field: str) -> GatingStep | None:
    """A `GatingStep` field of a message; None when unset."""
    if not msg.HasField(field):  # type: ignore[attr-defined]
        return None
    step: pb.GatingStep = getattr(msg, field)
    p = step.params
    gate = step.gate_signal if step.HasField("gate_signal") else None
    return GatingStep(step.modulation, p.temperature, p.top_k, p.top_p, p.repetition_penalty, gate)


def report_of(msg: object, field: str = "gating") -> GatingReport | None:
    """A `GatingReport` field of a message; None when unset."""
    if not msg.HasField(field):  # type: ignore[attr-defined]
        return None
    r: pb.GatingReport = getattr(msg, field)
    mode = _MODE.get(r.mode, GatingMode.NONE)
    return GatingReport(
        mode=mode,
        gate_signal=r.gate_signal,
        policy=r.policy or None,
        policy_lm=r.policy_lm or None,
        lm_mismatch=r.lm_mismatch,
        modulation=r.modulation if r.HasField("modulation") else None,
        seed=r.seed if mode is GatingMode.RANDOM else None,
    )
