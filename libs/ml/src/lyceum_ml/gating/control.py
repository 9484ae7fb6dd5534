"""The engine controller of gated generation, in each mode:

- `none`: no modulation, the request's own sampling parameters and gate (the ablation's neutral arm);
- `fixed`: the same m every step;
- `random`: m ~ U(0, 1) each step, from the controller's own seeded generator;
- `learned`: m from a gating policy on the row's observation (its mean or mode; sampled in training).

m gives the step's sampling parameters (`modulator`) and, with `gate_signal`, the gate signal from the chosen
token on (the prompt's is the request's `gate`: `prompt_gate(...)`). Each decision's `GatingStep` rides on the
row's TokenEvent: the trajectory. One learned controller serves every row that names its policy, so the
policy runs once per engine step for all of them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from lyceum_ml.engine.control import Control, ControlView
from lyceum_ml.gating.modulator import NEUTRAL_MODULATION, clamp, modulate
from lyceum_ml.gating.observation import observations
from lyceum_ml.gating.policy import GatingPolicy

Mode = Literal["none", "fixed", "random", "learned"]
MODES: tuple[Mode, ...] = ("none", "fixed", "random", "learned")

# told of every chosen token: (views, controls, tokens), e.g. to score and record transitions
OnChosen = Callable[[Sequence[ControlView], Sequence[Control], Sequence[int]], None]


@dataclass(frozen=True)
class GatingStep:
    """What a gated step decided and saw: the modulation (None in mode none) and, for the learned policy or
    when observing, the observation, the action's log-prob and the critic's value."""

    modulation: float | None
    obs: Tensor | None = None
    logprob: float | None = None
    value: float | None = None


def prompt_gate(mode: Mode, modulation: float | None, gate_signal: bool) -> float | None:
    """The gate signal a gated row's prompt is fed with: the fixed m, else the neutral 0.5 (None when m does
    not reach the gates: mode none, or no gate signal)."""
    if mode == "none" or not gate_signal:
        return None
    return modulation if mode == "fixed" and modulation is not None else NEUTRAL_MODULATION


def previous_modulation(view: ControlView) -> float:
    info = view.previous.info if view.previous is not None else None
    if isinstance(info, GatingStep) and info.modulation is not None:
        return info.modulation
    return NEUTRAL_MODULATION


def observe(views: Sequence[ControlView]) -> Tensor:
    """(B, 64) observations of the views (their hidden states are required)."""
    if any(v.hidden is None for v in views):
        raise ValueError("the observation needs the rows' hidden states")
    return observations(
        [v.context_ids for v in views],
        torch.stack([v.logits for v in views]),
        torch.stack([v.hidden for v in views]),  # type: ignore[misc]
        [v.step for v in views],
        [v.request.max_new_tokens for v in views],
        [previous_modulation(v) for v in views],
    )


class GatingController:
    """An engine `Controller` for one gating mode (see the module's doc)."""

    def __init__(
        self,
        mode: Mode,
        *,
        modulation: float = NEUTRAL_MODULATION,
        seed: int = 0,
        policy: GatingPolicy | None = None,
        sample: bool = False,
        gate_signal: bool = True,
        observe_all: bool = False,
        on_chosen: OnChosen | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"gating mode must be one of {', '.join(MODES)}; got {mode!r}")
        if (mode == "learned") != (policy is not None):
            raise ValueError("a learned gating needs a policy, and only it")
        self.mode, self.modulation, self.policy = mode, clamp(modulation), policy
        self.sample, self.gate_signal, self.on_chosen = sample, gate_signal and mode != "none", on_chosen
        self.observing = mode == "learned" or observe_all
        self.needs_hidden = self.observing
        self.generator = torch.Generator().manual_seed(seed)

    def prompt_gate(self) -> float | None:
        """The gate signal of a row's prompt (`prompt_gate`)."""
        return prompt_gate(self.mode, self.modulation, self.gate_signal)

    def decide(self, views: Sequence[ControlView]) -> list[Control]:
        B = len(views)
        obs = observe(views) if self.observing else None
        logprobs = values = None
        if self.mode == "none":
            return [
                Control(v.request.params, v.request.gate, GatingStep(None, _row(obs, i)))
                for i, v in enumerate(views)
            ]
        if self.mode == "fixed":
            m = torch.full((B,), self.modulation, dtype=torch.float64)  # reported exactly as given
        elif self.mode == "random":
            m = torch.rand(B, generator=self.generator, dtype=torch.float64)
        else:
            assert self.policy is not None and obs is not None
            m, logprobs, values = self.policy.act(obs, deterministic=not self.sample)
        controls = []
        for i, mi in enumerate(m.tolist()):
            step = GatingStep(
                mi,
                _row(obs, i),
                None if logprobs is None else float(logprobs[i]),
                None if values is None else float(values[i]),
            )
            controls.append(Control(modulate(mi), mi if self.gate_signal else None, step))
        return controls

    def chosen(
        self, views: Sequence[ControlView], controls: Sequence[Control], tokens: Sequence[int]
    ) -> None:
        if self.on_chosen is not None:
            self.on_chosen(views, controls, tokens)


def _row(obs: Tensor | None, i: int) -> Tensor | None:
    return None if obs is None else obs[i]
