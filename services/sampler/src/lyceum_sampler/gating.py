"""Gated generation in the sampler: a request's `gating` checked (every rule here, once), its policy resolved
in the caller's tenant and pinned (`Gating`, also kept in sessions), and turned into the engine's controller
(`lyceum_ml.gating.control`): fixed and random per request, learned shared per policy version (`policies`).

Decisions made here:
- gating replaces the request's sampling parameters and gate signal: giving either with it is an error (not
  silently overridden), and it needs sampling (greedy would ignore most of what m sets; beam search has no
  per-row controller);
- the modulation reaches the gates only of a gated model (and, for a learned policy, only if it was trained
  with them); elsewhere it shapes sampling only, and the report says `gate_signal: false`;
- a policy served on another LM than the one it was trained on (metadata `lm`) is allowed and flagged
  (`lm_mismatch`): the observation is defined for any LM, its quality there is the caller's call.

A session decides each step afresh (a distribution, then the append, must agree): fixed is constant, random
draws step n from its own seed (seed, n), learned observes the session's context as the engine does."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, fields
from typing import Literal

from torch import Tensor

from lyceum_core.errors import InvalidArgument
from lyceum_ml.causal_lm import CausalLM
from lyceum_ml.engine import Request
from lyceum_ml.engine.control import Control, ControlView
from lyceum_ml.gating.control import MODES, GatingController, GatingStep, prompt_gate
from lyceum_ml.gating.modulator import modulate
from lyceum_ml.sampling import SamplingParams
from lyceum_sampler.policies import PolicyPool, PolicyVersion

Mode = Literal["none", "fixed", "random", "learned"]


@dataclass(frozen=True)
class GatingSpec:
    """What a request asks for."""

    mode: str = "none"
    modulation: float | None = None
    policy: str = ""
    seed: int | None = None


@dataclass(frozen=True)
class Gating:
    """A request's gating, resolved and pinned (a session's is stored with it, as JSON)."""

    mode: Mode
    gate_signal: bool  # whether m reaches the model's gates
    modulation: float | None = None  # fixed
    seed: int = 0  # random
    policy: str = ""  # learned: the version key
    policy_uri: str = ""
    policy_lm: str = ""
    horizon: int = 0  # learned: the policy's episode length (a session's max_steps in the observation)
    lm_mismatch: bool = False

    @property
    def gated(self) -> bool:
        """Whether a controller decides the steps (mode none: the plain request)."""
        return self.mode != "none"

    @property
    def version(self) -> PolicyVersion:
        """The pinned policy version (what loads it)."""
        return PolicyVersion(self.policy, self.policy_uri, self.policy_lm, self.horizon)

    def prompt_gate(self) -> float | None:
        """The gate signal the prompt is fed with (the controller's rule)."""
        return prompt_gate(self.mode, self.modulation, self.gate_signal)

    def step_gate(self, modulation: float | None) -> float | None:
        """The gate signal a token chosen under `modulation` is fed with."""
        return modulation if self.gated and self.gate_signal else None


def check(spec: GatingSpec, *, params: SamplingParams, gate: float | None, strategy: str = "sample") -> None:
    """Every rule of a gating request, each failure naming its field."""
    if spec.mode not in MODES:
        raise InvalidArgument(f"gating.mode must be one of {', '.join(MODES)}", field="gating.mode")
    fixed, learned, random = spec.mode == "fixed", spec.mode == "learned", spec.mode == "random"
    if fixed and spec.modulation is None:
        raise InvalidArgument("gating.modulation is required with mode fixed", field="gating.modulation")
    if spec.modulation is not None:
        if not fixed:
            raise InvalidArgument("gating.modulation applies to mode fixed only", field="gating.modulation")
        if not (math.isfinite(spec.modulation) and 0 <= spec.modulation <= 1):
            raise InvalidArgument("gating.modulation must be in [0, 1]", field="gating.modulation")
    if learned and not spec.policy:
        raise InvalidArgument("gating.policy is required with mode learned", field="gating.policy")
    if spec.policy and not learned:
        raise InvalidArgument("gating.policy applies to mode learned only", field="gating.policy")
    if spec.seed is not None and not random:
        raise InvalidArgument("gating.seed applies to mode random only", field="gating.seed")
    if spec.mode == "none":
        return
    if gate is not None:
        raise InvalidArgument("gating sets the gate signal; omit gate_signal", field="gate_signal")
    if strategy != "sample":
        raise InvalidArgument(f"gating needs strategy sample, not {strategy}", field="strategy")
    check_no_params(params)


def check_no_params(params: SamplingParams) -> None:
    """Gating sets the sampling parameters: a request under it gives none (each named if given)."""
    default = SamplingParams()
    for name in (f.name for f in fields(SamplingParams)):
        if getattr(params, name) != getattr(default, name):
            raise InvalidArgument(f"gating sets the sampling parameters; omit {name}", field=f"params.{name}")


def resolve(
    spec: GatingSpec, tenant: str, lm: CausalLM, model_key: str, policies: PolicyPool, seed: int
) -> Gating:
    """The pinned gating of a checked spec for a request served by `lm` (`model_key`); `seed` is the random
    mode's when the spec has none."""
    mode: Mode = spec.mode  # type: ignore[assignment]
    if mode == "learned":
        version = policies.resolve(tenant, spec.policy)
        return Gating(
            mode,
            gate_signal=lm.gated and version.gate_signal,
            policy=version.key,
            policy_uri=version.uri,
            policy_lm=version.lm,
            horizon=version.horizon,
            lm_mismatch=bool(version.lm) and version.lm != model_key,
        )
    return Gating(
        mode,
        gate_signal=lm.gated and mode != "none",
        modulation=spec.modulation,
        seed=(spec.seed if spec.seed is not None else seed) if mode == "random" else 0,
    )


def controller(gating: Gating, policies: PolicyPool, seed: int | None = None) -> GatingController | None:
    """The engine controller of a gated request (None for mode none): learned ones are shared per policy."""
    if gating.mode == "learned":
        return policies.controller(gating.version, gating.gate_signal)
    if gating.mode == "fixed":
        assert gating.modulation is not None
        return GatingController("fixed", modulation=gating.modulation, gate_signal=gating.gate_signal)
    if gating.mode == "random":
        seed = gating.seed if seed is None else seed
        return GatingController("random", seed=seed, gate_signal=gating.gate_signal)
    return None


def step_seed(seed: int, step: int) -> int:
    """A session's random modulation of step n: a function of (seed, n) only, so it replays."""
    digest = hashlib.blake2b(f"gating:{seed}:{step}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def decide_step(
    gating: Gating,
    policies: PolicyPool,
    context: tuple[tuple[int, ...], tuple[int, ...]],
    logits: Tensor,
    hidden: Tensor | None,
    previous: float | None,
) -> Control:
    """A session's decision for its next token: `context` is (prompt ids, generated ids), `previous` the
    modulation the last generated token was chosen under (None before the first)."""
    prompt_ids, generated = context
    seed = step_seed(gating.seed, len(generated)) if gating.mode == "random" else None
    control = controller(gating, policies, seed)
    assert control is not None
    request = Request(prompt_ids, max(gating.horizon, 1))
    before = None if previous is None else Control(SamplingParams(), None, GatingStep(previous))
    view = ControlView(0, request, logits, hidden, generated, before)
    return control.decide([view])[0]


@dataclass(frozen=True)
class Decision:
    """A gated step as reported: its modulation, the sampling parameters it gave and the gate signal the
    chosen token was fed with (None: it reached no gates)."""

    modulation: float
    params: SamplingParams
    gate: float | None = None


def decision(control: Control | None) -> Decision | None:
    """The report of a controller's decision (None for an ungated step)."""
    info = control.info if control is not None else None
    if control is None or not isinstance(info, GatingStep) or info.modulation is None:
        return None
    return Decision(info.modulation, control.params, control.gate)


def replayed(gating: Gating, modulation: float | None) -> Decision | None:
    """The decision a session's stored token was chosen under, from its modulation."""
    if modulation is None or not gating.gated:
        return None
    return Decision(modulation, modulate(modulation), gating.step_gate(modulation))
