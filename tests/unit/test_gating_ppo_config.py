"""The `gating_ppo` job config: its reward, ppo and policy sections have the gating library's dataclass
defaults field for field (one set of defaults), every number is bounded (the field named), and a gate signal
is refused up front for an LM whose registry metadata says it has no gates."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest
from pydantic import BaseModel

from lyceum_core.errors import InvalidArgument
from lyceum_jobs.configs import check_models, referenced_models
from lyceum_jobs.gating import GatingPolicySettings, GatingPPO, GatingPPOConfig, GatingReward, lm_is_gated
from lyceum_jobs.kinds import KINDS, parse_config
from lyceum_ml.gating.policy import KIND, PolicyConfig
from lyceum_ml.gating.ppo import PPOSettings
from lyceum_ml.gating.reward import RewardWeights
from lyceum_ml.gating.train import GatingTrainer

PAIRS = [(GatingReward, RewardWeights), (GatingPPO, PPOSettings), (GatingPolicySettings, PolicyConfig)]
FIXED = {PolicyConfig: {"obs_dim"}}  # dataclass fields the job does not expose
MINIMAL = {"lm": "tiny@latest", "prompts": "stories.txt"}
PLAIN = {"architecture": "lyceum", "linear_modules": {"blocks.0.attn.q_proj": [8, 8]}}
GATE = {"blocks.0.attn_gate.fc": [1, 4]}
GATED = {"architecture": "lyceum", "linear_modules": {**PLAIN["linear_modules"], **GATE}}


@pytest.mark.parametrize(("section", "dataclass"), PAIRS, ids=lambda c: c.__name__)
def test_sections_mirror_the_library_dataclasses(section: type[BaseModel], dataclass: type) -> None:
    ml = {f.name: f.default for f in dataclasses.fields(dataclass)}
    assert set(section.model_fields) == set(ml) - FIXED.get(dataclass, set())
    for name, field in section.model_fields.items():
        assert field.default == ml[name], f"{section.__name__}.{name}: {field.default!r} vs {ml[name]!r}"
    assert dataclass(**section().model_dump()) == dataclass()


def test_run_shape_defaults_are_the_trainer_s() -> None:
    defaults = {k: p.default for k, p in inspect.signature(GatingTrainer).parameters.items()}
    config = GatingPPOConfig(**MINIMAL)
    assert (config.envs, config.episode_length, config.seed) == (
        defaults["envs"],
        defaults["episode_length"],
        defaults["seed"],
    )


def test_the_kind_is_registered_with_its_model_kind() -> None:
    kind = KINDS["gating_ppo"]
    assert kind.config is GatingPPOConfig and kind.model_kind == KIND and kind.unit == "steps/s"
    parsed = parse_config("gating_ppo", MINIMAL | {"prompts": {"id": "ds-" + "0" * 32}})
    assert referenced_models(parsed) == [("config.lm", "tiny@latest", "lm")]
    dumped = parsed.model_dump(mode="json")
    assert dumped["ablation"] == {"episodes": 32, "seeds": [0, 1, 2], "modulation": 0.5}
    assert dumped["gate_signal"] is None and dumped["iterations"] == 200 and dumped["register_as"] == "gating"
    assert dumped["run"] == {"checkpoint_every": 10, "eval_every": 0, "log_every": 1, "processes": 1}
    run = parse_config("gating_ppo", MINIMAL | {"run": {"checkpoint_every": 5}}).run  # type: ignore[attr-defined]
    assert (run.checkpoint_every, run.log_every) == (5, 1)  # a partial section keeps the kind's defaults


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"iterations": 0}, "config.iterations"),
        ({"envs": 5000}, "config.envs"),
        ({"held_out": 1.0}, "config.held_out"),
        ({"prompt_tokens": 0}, "config.prompt_tokens"),
        ({"lm": "no-ref"}, "config.lm"),
        ({"reward": {"div": -0.1}}, "config.reward.div"),
        ({"ppo": {"clip": 0}}, "config.ppo.clip"),
        ({"ppo": {"diversity": "sometimes"}}, "config.ppo.diversity"),
        ({"ppo": {"diversity_target": 1.5}}, "config.ppo.diversity_target"),
        ({"ppo": {"entropy_coef_min": 0.5, "entropy_coef_max": 0.1}}, "config.ppo"),
        ({"policy": {"action": "median"}}, "config.policy.action"),
        ({"policy": {"obs_dim": 32}}, "config.policy.obs_dim"),
        ({"ablation": {"seeds": []}}, "config.ablation.seeds"),
        ({"ablation": {"modulation": 1.5}}, "config.ablation.modulation"),
        ({"run": {"processes": 2}}, "config"),
        ({"temperature": 1.0}, "config.temperature"),
    ],
)
def test_bad_values_name_their_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_config("gating_ppo", MINIMAL | change)
    assert err.value.field == field


@pytest.mark.parametrize(
    ("metadata", "gated"),
    [
        (GATED, True),
        (PLAIN, False),
        ({"architecture": "llama", "linear_modules": {"model.layers.0.mlp.gate_proj": [8, 8]}}, False),
        ({"architecture": "lyceum"}, None),
        ({}, None),
    ],
)
def test_whether_an_lm_is_gated_is_read_from_its_metadata(
    metadata: dict[str, Any], gated: bool | None
) -> None:
    assert lm_is_gated(metadata) is gated


def test_a_gate_signal_for_an_lm_without_gates_is_refused() -> None:
    on = GatingPPOConfig(**MINIMAL, gate_signal=True)
    with pytest.raises(InvalidArgument) as err:
        check_models(on, {"config.lm": PLAIN})
    assert err.value.field == "config.gate_signal"
    check_models(on, {"config.lm": GATED})
    check_models(on, {"config.lm": {}})  # cannot tell: the job decides
    check_models(GatingPPOConfig(**MINIMAL), {"config.lm": PLAIN})  # auto: sampling only
