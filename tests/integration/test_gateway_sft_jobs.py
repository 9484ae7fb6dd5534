"""Submitting `sft` jobs over REST (real database, SQLite and PostgreSQL; real filesystem broker): a good
config is stored with its defaults and enqueued; bad configs and missing or mismatched registry models are
refused with the field named (422 for the config's shape, 404 for what the tenant does not have, 400 for
a model of the wrong kind or base), and nothing is created (no job row, no broker message)."""

from __future__ import annotations

from typing import Any

import pytest
from fixtures.gateway import JobsGateway

from lyceum_core.identity import DEFAULT_TENANT

pytestmark = pytest.mark.integration

SFT = {
    "base": {"model": "tutor-base@latest"},
    "data": {"format": "chat", "train": "examples/sft/tutor_style.jsonl"},
    "register_as": "tutor",
}
LINEAR = {"architecture": "llama", "linear_modules": {"model.layers.0.self_attn.q_proj": [8, 8]}}


@pytest.fixture
def with_base(jobs_gateway: JobsGateway) -> JobsGateway:
    """`tutor-base` (a language model) and `tutor-lora` (an adapter of it), both the default tenant's."""
    models = jobs_gateway.models
    base = models.register(DEFAULT_TENANT, "tutor-base", "lm", "file:///nowhere/base", {}, metadata=LINEAR)
    key = f"{base.tenant}/{base.name}@{base.version}"
    models.register(
        DEFAULT_TENANT, "tutor-lora", "adapter", "file:///nowhere/lora", {}, metadata={"base": key}
    )
    models.register(DEFAULT_TENANT, "other-lora", "adapter", "file:///x", {}, metadata={"base": "x/y@1"})
    return jobs_gateway


def post(gw: JobsGateway, config: dict[str, Any]) -> Any:
    return gw.client.post("/v1/jobs", json={"kind": "sft", "config": config})


def nothing_created(gw: JobsGateway) -> bool:
    return gw.jobs.list(DEFAULT_TENANT) == [] and gw.messages() == []


def test_an_sft_job_is_stored_with_its_defaults_and_enqueued(with_base: JobsGateway) -> None:
    response = post(with_base, SFT | {"init_adapter": "tutor-lora@latest"})
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["kind"] == "sft" and job["queue"] == "gpu"
    assert job["config"]["lora"] == {"r": 8, "alpha": 16.0, "dropout": 0.05, "target_modules": None}
    assert job["config"]["train"]["method"] == "lora" and job["config"]["data"]["template"] == "auto"
    assert job["config"]["run"]["processes"] == 1
    assert [m.job_id for m in with_base.messages()] == [job["job_id"]]


@pytest.mark.parametrize(
    ("config", "field"),
    [
        (SFT | {"data": {**SFT["data"], "template": "vicuna"}}, "config.data.template"),
        (SFT | {"data": {"format": "sharegpt", "train": "x.jsonl"}}, "config.data.format"),
        (SFT | {"data": {"format": "chat"}}, "config.data.train"),
        (SFT | {"data": {**SFT["data"], "train": {"id": "not-a-dataset"}}}, "config.data.train"),
        (SFT | {"base": {"model": "tutor-base@latest", "path": "/models/x"}}, "config.base"),
        (SFT | {"base": {"model": "no-ref"}}, "config.base.model"),
        (SFT | {"lora": {"r": 0}}, "config.lora.r"),
        (SFT | {"train": {"method": "dora"}}, "config.train.method"),
        (SFT | {"train": {"method": "full"}, "merged_as": "m"}, "config"),
        (SFT | {"run": {"processes": 0}}, "config.run.processes"),
    ],
)
def test_bad_configs_are_422_naming_the_field_and_create_nothing(
    with_base: JobsGateway, config: dict[str, Any], field: str
) -> None:
    response = post(with_base, config)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"].startswith(field)
    assert nothing_created(with_base)


@pytest.mark.parametrize(
    ("config", "status", "field"),
    [
        (SFT | {"base": {"model": "missing@latest"}}, 404, "config.base.model"),
        (SFT | {"base": {"model": "tutor-base@nope"}}, 404, "config.base.model"),
        (SFT | {"base": {"model": "tutor-lora@latest"}}, 400, "config.base.model"),
        (SFT | {"init_adapter": "tutor-base@latest"}, 400, "config.init_adapter"),
        (SFT | {"init_adapter": "other-lora@latest"}, 400, "config.init_adapter"),
        (SFT | {"data": {**SFT["data"], "train": {"id": "ds-" + "0" * 32}}}, 404, "config.data.train"),
    ],
)
def test_registry_models_and_datasets_must_exist_and_fit(
    with_base: JobsGateway, config: dict[str, Any], status: int, field: str
) -> None:
    response = post(with_base, config)
    assert response.status_code == status, response.text
    assert response.json()["error"]["field"].startswith(field.split(".")[0])
    assert nothing_created(with_base)


def test_another_tenants_base_is_not_found(jobs_gateway: JobsGateway) -> None:
    jobs_gateway.models.register("globex", "secret-base", "lm", "file:///x", {}, metadata=LINEAR)
    response = post(jobs_gateway, SFT | {"base": {"model": "secret-base@latest"}})
    assert response.status_code == 404
    assert nothing_created(jobs_gateway)
