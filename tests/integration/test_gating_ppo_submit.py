"""Submitting `gating_ppo` jobs over REST (real database, SQLite and PostgreSQL; real filesystem broker): a
good config is stored with its defaults and enqueued; bad numbers are 422 naming the field, an LM the tenant
does not see is 404, a model of another kind or a gate signal for an LM without gates is 400; nothing is
created for any of them (no job row, no broker message)."""

from __future__ import annotations

from typing import Any

import pytest
from fixtures.gateway import JobsGateway

from lyceum_core.identity import DEFAULT_TENANT

pytestmark = pytest.mark.integration

GATING = {"lm": "tiny-gated@latest", "prompts": "stories.txt", "iterations": 3}
GATED = {
    "architecture": "lyceum",
    "linear_modules": {"blocks.0.attn.q_proj": [8, 8], "blocks.0.mlp_gate.fc": [1, 4]},
}
HF = {"architecture": "llama", "linear_modules": {"model.layers.0.self_attn.q_proj": [8, 8]}}


@pytest.fixture
def with_lms(jobs_gateway: JobsGateway) -> JobsGateway:
    """`tiny-gated` (a gated Lyceum LM), `tiny-hf` (a Llama: no gates), `tiny-lora` (an adapter)."""
    models = jobs_gateway.models
    models.register(DEFAULT_TENANT, "tiny-gated", "lm", "file:///nowhere/gated", {}, metadata=GATED)
    hf = models.register(DEFAULT_TENANT, "tiny-hf", "lm", "file:///nowhere/hf", {}, metadata=HF)
    base = {"base": f"{hf.tenant}/{hf.name}@{hf.version}"}
    models.register(DEFAULT_TENANT, "tiny-lora", "adapter", "file:///nowhere/lora", {}, metadata=base)
    return jobs_gateway


def post(gw: JobsGateway, config: dict[str, Any]) -> Any:
    return gw.client.post("/v1/jobs", json={"kind": "gating_ppo", "config": config})


def nothing_created(gw: JobsGateway) -> bool:
    return gw.jobs.list(DEFAULT_TENANT) == [] and gw.messages() == []


def test_a_gating_job_is_stored_with_its_defaults_and_enqueued(with_lms: JobsGateway) -> None:
    response = post(with_lms, GATING)
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["kind"] == "gating_ppo" and job["queue"] == "gpu"
    config = job["config"]
    assert config["iterations"] == 3 and config["envs"] == 16 and config["episode_length"] == 50
    assert config["gate_signal"] is None and config["register_as"] == "gating"
    assert config["reward"] == {"ppl": 0.4375, "div": 0.1875, "rep": 0.1875, "coh": 0.0, "samp": 0.1875}
    assert config["ppo"]["diversity"] == "homeostasis" and config["policy"]["action"] == "mean"
    assert config["ablation"] == {"episodes": 32, "seeds": [0, 1, 2], "modulation": 0.5}
    assert [m.job_id for m in with_lms.messages()] == [job["job_id"]]


def test_an_lm_without_gates_trains_through_sampling_only(with_lms: JobsGateway) -> None:
    for gate_signal in (None, False):
        response = post(with_lms, GATING | {"lm": "tiny-hf@latest", "gate_signal": gate_signal})
        assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("config", "field"),
    [
        (GATING | {"iterations": 0}, "config.iterations"),
        (GATING | {"envs": 100_000}, "config.envs"),
        (GATING | {"held_out": 0}, "config.held_out"),
        (GATING | {"ppo": {"gamma": 1.5}}, "config.ppo.gamma"),
        (GATING | {"ppo": {"diversity": "maybe"}}, "config.ppo.diversity"),
        (GATING | {"reward": {"ppl": -1}}, "config.reward.ppl"),
        (GATING | {"policy": {"action": "median"}}, "config.policy.action"),
        (GATING | {"ablation": {"modulation": 2}}, "config.ablation.modulation"),
        (GATING | {"prompts": {"id": "not-a-dataset"}}, "config.prompts"),
        ({"lm": "tiny-gated@latest"}, "config.prompts"),
    ],
)
def test_bad_configs_are_422_naming_the_field_and_create_nothing(
    with_lms: JobsGateway, config: dict[str, Any], field: str
) -> None:
    response = post(with_lms, config)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"].startswith(field)
    assert nothing_created(with_lms)


@pytest.mark.parametrize(
    ("config", "status", "field"),
    [
        (GATING | {"lm": "missing@latest"}, 404, "config.lm"),
        (GATING | {"lm": "tiny-gated@nope"}, 404, "config.lm"),
        (GATING | {"lm": "tiny-lora@latest"}, 400, "config.lm"),
        (GATING | {"lm": "tiny-hf@latest", "gate_signal": True}, 400, "config.gate_signal"),
        (GATING | {"prompts": {"id": "ds-" + "0" * 32}}, 404, "config"),
    ],
)
def test_registry_models_must_exist_and_fit(
    with_lms: JobsGateway, config: dict[str, Any], status: int, field: str
) -> None:
    response = post(with_lms, config)
    assert response.status_code == status, response.text
    assert response.json()["error"]["field"] == field
    assert nothing_created(with_lms)


def test_another_tenants_lm_is_not_found(jobs_gateway: JobsGateway) -> None:
    jobs_gateway.models.register("globex", "secret-lm", "lm", "file:///x", {}, metadata=GATED)
    response = post(jobs_gateway, GATING | {"lm": "secret-lm@latest"})
    assert response.status_code == 404 and response.json()["error"]["field"] == "config.lm"
    assert nothing_created(jobs_gateway)
