"""Episodes of gated generation, many at once: B rows of one engine (each with its KV cache) advance together
through batched decoding steps, driven here (no engine thread). Every chosen token is scored by the reward
and, for the policy, recorded as a transition (observation, action, its log-prob, the critic's value).

An episode is one prompt continued for up to `length` tokens; EOS ends it early (its step still counts)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from lyceum_ml.engine import Engine, Finish, Request
from lyceum_ml.engine.control import Control, ControlView
from lyceum_ml.gating.control import GatingController, GatingStep, Mode
from lyceum_ml.gating.policy import GatingPolicy
from lyceum_ml.gating.reward import RewardWeights, StepReward, step_rewards
from lyceum_ml.sampling import SamplingParams


@dataclass
class Episode:
    prompt_ids: tuple[int, ...]
    tokens: list[int] = field(default_factory=list)  # chosen tokens, a final EOS included
    modulations: list[float | None] = field(default_factory=list)
    components: list[StepReward] = field(default_factory=list)
    obs: list[Tensor] = field(default_factory=list)  # the policy's transitions (observing controllers)
    actions: list[float] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    finish: str = ""

    def rewards(self, weights: RewardWeights) -> list[float]:
        return [c.total(weights) for c in self.components]

    def mean(self, component: str) -> float:
        return sum(getattr(c, component) for c in self.components) / max(len(self.components), 1)

    def __len__(self) -> int:
        return len(self.tokens)


class _Recorder:
    """The controller's `on_chosen`: scores each chosen token into its row's episode."""

    def __init__(self) -> None:
        self.episodes: dict[int, Episode] = {}  # by engine row id

    def __call__(
        self, views: Sequence[ControlView], controls: Sequence[Control], tokens: Sequence[int]
    ) -> None:
        rewards = step_rewards(
            torch.stack([v.logits for v in views]),
            [c.params for c in controls],
            [v.context_ids for v in views],
            [v.generated_ids for v in views],
            tokens,
        )
        for view, control, token, reward in zip(views, controls, tokens, rewards, strict=True):
            ep = self.episodes[view.row_id]
            step: GatingStep = control.info
            ep.tokens.append(token)
            ep.modulations.append(step.modulation)
            ep.components.append(reward)
            if step.logprob is not None and step.obs is not None and step.value is not None:
                ep.obs.append(step.obs)
                ep.actions.append(float(step.modulation))  # type: ignore[arg-type]
                ep.logprobs.append(step.logprob)
                ep.values.append(step.value)


def run_episodes(
    engine: Engine,
    prompts: Sequence[Sequence[int]],
    mode: Mode,
    *,
    length: int,
    seed: int,
    policy: GatingPolicy | None = None,
    sample: bool = False,
    modulation: float = 0.5,
    gate_signal: bool = True,
    params: SamplingParams | None = None,
) -> list[Episode]:
    """One episode per prompt, all through `engine` (not started: stepped here; at most `engine.max_rows` run
    at once, the rest wait their turn). Row i samples with seed `seed * 100_003 + i`; a random controller
    draws from `seed`. `params` are the neutral mode's sampling parameters (default: plain sampling)."""
    recorder = _Recorder()
    controller = GatingController(
        mode,
        modulation=modulation,
        seed=seed,
        policy=policy,
        sample=sample,
        gate_signal=gate_signal,
        on_chosen=recorder,
    )
    streams = []
    for i, prompt in enumerate(prompts):
        request = Request(
            tuple(prompt),
            length,
            params or SamplingParams(),
            seed=seed * 100_003 + i,
            gate=controller.prompt_gate(),
            control=controller,
        )
        stream = engine.submit(request)
        recorder.episodes[stream.row_id] = Episode(tuple(prompt))
        streams.append(stream)
    pending = set(range(len(streams)))
    while pending:
        if not engine.step():
            raise RuntimeError(f"the engine stalled with {len(pending)} episodes unfinished")
        for i in list(pending):
            for event in streams[i].poll():
                if isinstance(event, Finish):
                    if event.error is not None:
                        raise event.error
                    recorder.episodes[streams[i].row_id].finish = event.reason
                    pending.discard(i)
    return [recorder.episodes[s.row_id] for s in streams]
