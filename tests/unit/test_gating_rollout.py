"""Batched episodes through the engine (`run_episodes`): per-step reward components for every mode, the
learned policy's transitions aligned with its steps, seeded reproducibility, more episodes than rows, and
EOS ending an episode early."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import torch

from lyceum_ml.causal_lm import CausalLM, Feed
from lyceum_ml.engine import Engine
from lyceum_ml.gating.policy import GatingPolicy
from lyceum_ml.gating.reward import RewardWeights
from lyceum_ml.gating.rollout import Episode, run_episodes

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/fixtures/lm_models.py

PROMPTS = [[5, 9, 14, 20], [33, 34, 35], [40, 41, 42, 43, 44, 45], [7, 7]]
LENGTH = 6


class EosAfter:
    """A CausalLM whose EOS becomes all but certain once a row's cache holds `n` tokens."""

    def __init__(self, lm: CausalLM, n: int) -> None:
        self.lm, self.n = lm, n

    def __getattr__(self, name: str) -> Any:
        return getattr(self.lm, name)

    def forward_rows(self, feeds: Sequence[Feed]) -> list[torch.Tensor]:
        out = self.lm.forward_rows(feeds)
        for f, logits in zip(feeds, out, strict=True):
            if self.lm.cache_len(f.cache) >= self.n:
                logits[self.lm.eos_id] = 1e4
        return out


def seeded_policy() -> GatingPolicy:
    torch.manual_seed(0)
    return GatingPolicy().eval()


def check_components(ep: Episode) -> None:
    assert len(ep.components) == len(ep.tokens) == len(ep.modulations)
    for c in ep.components:
        assert (
            -1 <= c.ppl <= 0 and 0 < c.div <= 1 and 0 < c.samp <= 1 and 0 <= c.rep <= 1 and -1 <= c.coh <= 1
        )


def test_learned_sampled_episodes_record_aligned_transitions(tiny_lyceum_lm: CausalLM) -> None:
    torch.manual_seed(1)
    episodes = run_episodes(
        Engine(tiny_lyceum_lm), PROMPTS, "learned", length=LENGTH, seed=2, policy=seeded_policy(), sample=True
    )
    assert [e.prompt_ids for e in episodes] == [tuple(p) for p in PROMPTS]
    for ep in episodes:
        assert ep.finish == "length" and len(ep) == LENGTH
        check_components(ep)
        assert len(ep.obs) == len(ep.actions) == len(ep.logprobs) == len(ep.values) == LENGTH
        assert ep.actions == ep.modulations
        assert all(o.shape == (64,) for o in ep.obs)
        assert all(lp == lp and v == v for lp, v in zip(ep.logprobs, ep.values, strict=True))  # no NaN
        w = RewardWeights()
        assert ep.rewards(w) == [c.total(w) for c in ep.components]
        assert ep.mean("div") == pytest.approx(sum(c.div for c in ep.components) / LENGTH)


@pytest.mark.parametrize("mode", ["fixed", "random", "none"])
def test_other_modes_score_every_step_without_transitions(tiny_lyceum_lm: CausalLM, mode: str) -> None:
    engine = Engine(tiny_lyceum_lm)
    episodes = run_episodes(engine, PROMPTS, mode, length=LENGTH, seed=3, modulation=0.25)  # type: ignore[arg-type]
    for ep in episodes:
        check_components(ep)
        assert ep.obs == [] and ep.actions == [] and ep.logprobs == [] and ep.values == []
        if mode == "fixed":
            assert ep.modulations == [0.25] * LENGTH
        elif mode == "none":
            assert ep.modulations == [None] * LENGTH
        else:
            assert all(0 <= m <= 1 for m in ep.modulations)  # type: ignore[operator]


def summary(episodes: list[Episode]) -> list[tuple]:
    return [(tuple(e.tokens), tuple(e.modulations), tuple(e.components)) for e in episodes]


def test_episodes_are_reproducible_with_a_seed(tiny_lyceum_lm: CausalLM) -> None:
    def run(seed: int) -> list[tuple]:
        return summary(run_episodes(Engine(tiny_lyceum_lm), PROMPTS, "random", length=LENGTH, seed=seed))

    assert run(4) == run(4)
    assert run(4) != run(5)


def test_more_episodes_than_rows_wait_their_turn(tiny_lyceum_lm: CausalLM) -> None:
    torch.manual_seed(1)
    few = run_episodes(Engine(tiny_lyceum_lm, max_rows=2), PROMPTS, "fixed", length=LENGTH, seed=6)
    torch.manual_seed(1)
    many = run_episodes(Engine(tiny_lyceum_lm), PROMPTS, "fixed", length=LENGTH, seed=6)
    assert [len(e) for e in few] == [LENGTH] * len(PROMPTS)
    assert [e.tokens for e in few] == [e.tokens for e in many]  # a row's sampling is its own


def test_eos_ends_an_episode_early_and_its_step_counts(tiny_lyceum_lm: CausalLM) -> None:
    lm: Any = EosAfter(tiny_lyceum_lm, n=len(PROMPTS[0]) + 3)
    torch.manual_seed(1)
    [ep] = run_episodes(
        Engine(lm),
        [PROMPTS[0]],
        "learned",
        length=LENGTH,
        seed=0,
        policy=seeded_policy(),
        sample=True,
    )
    assert ep.finish == "eos"
    assert len(ep) == 4 and ep.tokens[-1] == tiny_lyceum_lm.eos_id  # three tokens, then EOS
    check_components(ep)
    assert len(ep.obs) == len(ep.actions) == len(ep.logprobs) == len(ep.values) == 4


def test_a_gate_signal_on_an_ungated_model_is_refused(tiny_hf_gpt2: CausalLM) -> None:
    with pytest.raises(ValueError, match="no gates"):
        run_episodes(Engine(tiny_hf_gpt2), [[464, 3797]], "fixed", length=2, seed=0, gate_signal=True)
    [ep] = run_episodes(Engine(tiny_hf_gpt2), [[464, 3797]], "fixed", length=2, seed=0, gate_signal=False)
    assert len(ep) == 2 and ep.modulations == [0.5, 0.5]
