"""GatingController's decisions in each mode on hand-built views (no model): parameters, gate signal, the
prompt's gate, the GatingStep it records, seeded randomness, and the argument checks."""

from __future__ import annotations

import pytest
import torch

from lyceum_ml.engine import Request
from lyceum_ml.engine.control import ControlView
from lyceum_ml.gating.control import MODES, GatingController, GatingStep, observe
from lyceum_ml.gating.modulator import modulate
from lyceum_ml.gating.policy import GatingPolicy
from lyceum_ml.sampling import SamplingParams

REQUEST_PARAMS = SamplingParams(temperature=0.6, top_k=7)


def views(n: int = 3, seed: int = 0) -> list[ControlView]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        request = Request((1, 2, 3 + i), 10, REQUEST_PARAMS, gate=0.25)
        out.append(
            ControlView(i + 1, request, torch.randn(50, generator=g), torch.randn(32, generator=g), (), None)
        )
    return out


def policy(seed: int = 0) -> GatingPolicy:
    torch.manual_seed(seed)
    p = GatingPolicy().eval()
    with torch.no_grad():
        p.actor[-1].weight.normal_(0, 1.0, generator=torch.Generator().manual_seed(seed))
    return p


def test_modes() -> None:
    assert MODES == ("none", "fixed", "random", "learned")


def test_fixed_decides_the_same_m_for_every_row() -> None:
    c = GatingController("fixed", modulation=0.8)
    decided = c.decide(views())
    assert len(decided) == 3
    for d in decided:
        assert d.params == modulate(d.info.modulation) and d.gate == d.info.modulation
        assert d.info.modulation == pytest.approx(0.8) and d.info.obs is None and d.info.logprob is None
    assert not c.needs_hidden


def test_a_fixed_modulation_is_reported_exactly() -> None:
    """The trajectory of `fixed` m = 0.3 says 0.3 and T = 0.81, not float32's 0.30000001192092896."""
    [d] = GatingController("fixed", modulation=0.3).decide(views(1))
    assert d.info.modulation == 0.3 and d.gate == 0.3
    assert d.params == modulate(0.3)


def test_fixed_modulation_is_clamped() -> None:
    assert GatingController("fixed", modulation=1.7).decide(views(1))[0].gate == 1.0


def test_without_gate_signal_only_the_sampling_parameters_are_modulated() -> None:
    c = GatingController("fixed", modulation=0.2, gate_signal=False)
    [d] = c.decide(views(1))
    assert d.gate is None and d.params == modulate(d.info.modulation) and c.prompt_gate() is None
    assert d.info.modulation == pytest.approx(0.2)


def test_random_draws_are_seeded_per_controller() -> None:
    def draws(seed: int) -> list[float]:
        c = GatingController("random", seed=seed)
        return [d.info.modulation for _ in range(4) for d in c.decide(views())]

    a, b = draws(7), draws(7)
    assert a == b and len(set(a)) == 12
    assert all(0 <= m <= 1 for m in a)
    assert draws(8) != a
    for d in GatingController("random", seed=1).decide(views()):
        assert d.params == modulate(d.info.modulation) and d.gate == d.info.modulation


def test_none_keeps_the_requests_parameters_and_gate() -> None:
    c = GatingController("none", gate_signal=True)
    for v, d in zip(views(), c.decide(views()), strict=True):
        assert d.params == REQUEST_PARAMS and d.gate == v.request.gate == 0.25
        assert d.info == GatingStep(None)
    assert c.prompt_gate() is None and not c.gate_signal


def test_learned_acts_on_the_observation() -> None:
    p = policy()
    c = GatingController("learned", policy=p)
    vs = views()
    assert c.needs_hidden
    decided = c.decide(vs)
    obs = observe(vs)
    m, logp, value = p.act(obs, deterministic=True)
    for i, d in enumerate(decided):
        step: GatingStep = d.info
        assert torch.equal(step.obs, obs[i])
        assert step.modulation == pytest.approx(float(m[i]))
        assert step.logprob == pytest.approx(float(logp[i]), abs=1e-6)
        assert step.value == pytest.approx(float(value[i]), abs=1e-6)
        assert d.params == modulate(step.modulation) and d.gate == step.modulation
    assert len({d.info.modulation for d in decided}) == 3  # rows differ


def test_learned_sampling_follows_the_global_seed() -> None:
    c = GatingController("learned", policy=policy(), sample=True)
    torch.manual_seed(5)
    a = [d.info.modulation for d in c.decide(views())]
    torch.manual_seed(5)
    b = [d.info.modulation for d in c.decide(views())]
    torch.manual_seed(6)
    other = [d.info.modulation for d in c.decide(views())]
    assert a == b and a != other
    deterministic = [d.info.modulation for d in GatingController("learned", policy=policy()).decide(views())]
    assert a != deterministic


def test_observe_all_records_observations_in_any_mode() -> None:
    for mode in ("none", "fixed", "random"):
        c = GatingController(mode, observe_all=True)  # type: ignore[arg-type]
        assert c.needs_hidden
        vs = views()
        for i, d in enumerate(c.decide(vs)):
            assert torch.equal(d.info.obs, observe(vs)[i])


@pytest.mark.parametrize(
    ("mode", "kwargs", "gate"),
    [
        ("fixed", {"modulation": 0.3}, 0.3),
        ("random", {}, 0.5),
        ("learned", {"policy": None}, 0.5),
        ("none", {}, None),
        ("fixed", {"modulation": 0.3, "gate_signal": False}, None),
    ],
)
def test_the_prompts_gate(mode: str, kwargs: dict, gate: float | None) -> None:
    if mode == "learned":
        kwargs = {"policy": policy()}
    assert GatingController(mode, **kwargs).prompt_gate() == gate  # type: ignore[arg-type]


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="mode"):
        GatingController("sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="policy"):
        GatingController("learned")
    with pytest.raises(ValueError, match="policy"):
        GatingController("fixed", policy=policy())
    with pytest.raises(ValueError, match="NaN"):
        GatingController("fixed", modulation=float("nan"))


def test_on_chosen_is_told_of_the_chosen_tokens() -> None:
    told = []
    c = GatingController("fixed", on_chosen=lambda v, d, t: told.append((v, d, t)))
    vs = views(2)
    decided = c.decide(vs)
    c.chosen(vs, decided, [4, 5])
    assert told == [(vs, decided, [4, 5])]
    GatingController("fixed").chosen(vs, decided, [4, 5])  # no listener: nothing to do
