"""The PPO trainer on the tiny gated LM with tiny settings: an iteration's documented figures, resume equals
uninterrupted training (policy, optimizer, homeostasis, history), the export, and the ablation: all four arms,
reproducible with its seeds, the fixed arm at its m."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from lyceum_ml.causal_lm import CausalLM
from lyceum_ml.gating import train
from lyceum_ml.gating.policy import load_policy
from lyceum_ml.gating.train import ARMS, GatingTrainer, prompts_from_texts

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/fixtures/lm_models.py

PROMPTS = [
    [5, 9, 14, 20],
    [33, 34, 35, 36],
    [40, 41, 42, 43],
    [7, 7, 8, 9],
    [100, 3, 9, 11],
    [60, 61, 62, 63],
]
HELD_OUT = [[11, 90, 12, 13], [2, 4, 6, 8]]
DOCUMENTED = {
    "reward",
    "reward_ppl",
    "reward_div",
    "reward_rep",
    "reward_coh",
    "reward_samp",
    "policy_loss",
    "value_loss",
    "entropy",
    "entropy_coef",
    "modulation",
    "explained_variance",
    "diversity_weight",
    "lambda",
    "lr",
    "loss",
    "throughput",
}
WALL_CLOCK = {"throughput"}


def trainer(lm: CausalLM, **kw: Any) -> GatingTrainer:
    settings: dict[str, Any] = {"iterations": 3, "envs": 4, "episode_length": 6, "seed": 1} | kw
    return GatingTrainer(lm, PROMPTS, **settings)


def same(a: Any, b: Any) -> bool:
    """Equality of nested figures, NaN equal to NaN."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def without_wall_clock(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in h.items() if k not in WALL_CLOCK} for h in history]


def test_an_iteration_reports_the_documented_figures(tiny_lyceum_lm: CausalLM) -> None:
    t = trainer(tiny_lyceum_lm)
    figures = t.run(1)
    assert DOCUMENTED <= figures.keys()
    for key, value in figures.items():
        assert isinstance(value, float), key
        assert math.isfinite(value) or key == "explained_variance", key
    assert -1 <= figures["reward_ppl"] <= 0 and 0 <= figures["modulation"] <= 1
    assert figures["lr"] == pytest.approx(3e-4)  # the first iteration: no decay yet
    assert figures["loss"] == pytest.approx(figures["policy_loss"] + 0.5 * figures["value_loss"])
    assert t.step == 1 and t.evaluate() == figures and t.history == [figures]


def test_the_learning_rate_decays_linearly_to_a_tenth(tiny_lyceum_lm: CausalLM) -> None:
    t = trainer(tiny_lyceum_lm)
    t.run(3)
    assert [h["lr"] for h in t.history] == pytest.approx([3e-4, 3e-4 * 0.55, 3e-5])
    assert t.run(1) == {} and t.step == 3  # done: no more iterations


def test_resume_equals_uninterrupted_training(tiny_lyceum_lm: CausalLM, tmp_path: Path) -> None:
    straight = trainer(tiny_lyceum_lm)
    straight.run(3)
    first = trainer(tiny_lyceum_lm)
    first.run(1)
    first.save(tmp_path / "ckpt")
    resumed = trainer(tiny_lyceum_lm)
    resumed.load(tmp_path / "ckpt")
    assert resumed.step == 1
    resumed.run(2)
    assert resumed.step == straight.step == 3
    a, b = straight.policy.state_dict(), resumed.policy.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    sa, sb = straight.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    for i in sa:
        for k in sa[i]:
            assert torch.equal(torch.as_tensor(sa[i][k]), torch.as_tensor(sb[i][k])), (i, k)
    assert vars(straight.homeostasis) == vars(resumed.homeostasis)
    assert same(without_wall_clock(straight.history), without_wall_clock(resumed.history))
    # and training did change the policy
    fresh = trainer(tiny_lyceum_lm).policy.state_dict()
    assert any(not torch.equal(fresh[n], a[n]) for n in a)


def test_export_writes_a_loadable_policy_with_its_metadata(tiny_lyceum_lm: CausalLM, tmp_path: Path) -> None:
    t = trainer(tiny_lyceum_lm, metadata={"lm": "acme/tiny@2"})
    t.run(1)
    metadata = t.export(tmp_path / "policy")
    policy, stored = load_policy(tmp_path / "policy")
    assert stored == metadata
    assert metadata["lm"] == "acme/tiny@2" and metadata["gate_signal"] is True and metadata["iterations"] == 1
    assert metadata["episode_length"] == 6
    obs = torch.randn(5, 64, generator=torch.Generator().manual_seed(0))
    for got, want in zip(policy(obs), t.policy(obs), strict=True):
        assert torch.equal(got, want)


def test_the_trainer_refuses_a_gate_signal_on_an_ungated_lm(tiny_hf_gpt2: CausalLM) -> None:
    with pytest.raises(ValueError, match="no gates"):
        GatingTrainer(tiny_hf_gpt2, [[464, 3797]], gate_signal=True)
    with pytest.raises(ValueError, match="prompts"):
        GatingTrainer(tiny_hf_gpt2, [], gate_signal=False)


def test_an_ungated_lm_trains_through_sampling_only(tiny_hf_gpt2: CausalLM) -> None:
    t = GatingTrainer(
        tiny_hf_gpt2, [[464, 3797, 318]], iterations=1, envs=2, episode_length=3, gate_signal=False
    )
    figures = t.run(1)
    assert figures["episode_steps"] == 6.0 and math.isfinite(figures["reward"])


def test_prompts_from_texts_keeps_texts_long_enough(tiny_lyceum_lm: CausalLM) -> None:
    texts = ["Once upon a time there was a little dog.", "Hi", "The cat sat on the mat and looked around."]
    prompts = prompts_from_texts(tiny_lyceum_lm, texts, 4)
    assert len(prompts) == 2 and all(len(p) == 4 for p in prompts)
    assert prompts[0] == tiny_lyceum_lm.encode(texts[0])[:4]


# --- the ablation ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tiny_lyceum_lm: CausalLM) -> GatingTrainer:
    t = trainer(tiny_lyceum_lm)
    t.run(1)
    return t


def test_the_ablation_has_every_arm_and_its_summary(trained: GatingTrainer) -> None:
    result = trained.ablation(HELD_OUT, episodes=3, seeds=[0, 1], modulation=0.25)
    assert ARMS == ("random", "fixed", "neutral", "learned")
    assert set(result["arms"]) == set(ARMS)
    assert (result["episodes"], result["seeds"], result["episode_length"]) == (3, [0, 1], 6)
    assert result["fixed_modulation"] == 0.25
    for arm in ARMS:
        summary = result["arms"][arm]
        for figure in ("reward", "diversity", "ppl"):
            assert set(summary[figure]) == {"mean", "std"}
            assert math.isfinite(summary[figure]["mean"]) and summary[figure]["std"] >= 0
        assert [s["seed"] for s in summary["per_seed"]] == [0, 1]
        assert summary["reward"]["mean"] == pytest.approx(sum(s["reward"] for s in summary["per_seed"]) / 2)
    fixed, learned = result["arms"]["fixed"]["reward"]["mean"], result["arms"]["learned"]["reward"]["mean"]
    assert result["learned_vs_fixed"] == pytest.approx((learned - fixed) / abs(fixed))


def test_the_ablation_is_reproducible_with_its_seeds(trained: GatingTrainer) -> None:
    a = trained.ablation(HELD_OUT, episodes=3, seeds=[0, 1])
    b = trained.ablation(HELD_OUT, episodes=3, seeds=[0, 1])
    assert same(a, b)
    c = trained.ablation(HELD_OUT, episodes=3, seeds=[2, 3])
    assert not same(a["arms"], c["arms"])
    for arm in ("random", "fixed", "neutral", "learned"):  # every arm samples with the seed
        assert a["arms"][arm]["reward"] != c["arms"][arm]["reward"], arm


def test_the_ablation_arms_run_their_modes(trained: GatingTrainer, monkeypatch: pytest.MonkeyPatch) -> None:
    runs: list[tuple[str, list]] = []
    real = train.run_episodes

    def spy(engine: Any, prompts: Any, mode: str, **kw: Any) -> list:
        episodes = real(engine, prompts, mode, **kw)  # type: ignore[arg-type]
        runs.append((mode, episodes))
        return episodes

    monkeypatch.setattr(train, "run_episodes", spy)
    trained.ablation(HELD_OUT, episodes=3, seeds=[0], modulation=0.25)
    assert [mode for mode, _ in runs] == ["random", "fixed", "none", "learned"]
    by_mode = dict(runs)
    assert all(len(e) == 6 for episodes in by_mode.values() for e in episodes)
    assert all(e.modulations == [0.25] * 6 for e in by_mode["fixed"])
    assert all(e.modulations == [None] * 6 for e in by_mode["none"])
    learned = [e.modulations for e in by_mode["learned"]]
    torch.manual_seed(123)  # the learned arm is the policy's deterministic action: no draws
    prompts = [HELD_OUT[i % len(HELD_OUT)] for i in range(3)]
    again = real(trained.engine, prompts, "learned", length=6, seed=0, policy=trained.policy)
    assert learned == [e.modulations for e in again]
