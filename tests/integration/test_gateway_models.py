"""The `/v1/models` API over a real model registry (SQLite and PostgreSQL): versions with their aliases,
alias moves and rollbacks. Versions are registered through `ModelRepository`, as a finishing job does."""

from __future__ import annotations

import pytest
from fixtures.gateway import JobsGateway

from lyceum_core.identity import DEFAULT_TENANT

pytestmark = pytest.mark.integration


@pytest.fixture
def registry(jobs_gateway: JobsGateway) -> JobsGateway:
    """dfm versions 1-3 (`latest` -> 3) and lm version 1 (`latest` -> 1)."""
    for i in (1, 2, 3):
        jobs_gateway.models.register(
            DEFAULT_TENANT, "dfm", "dfm", f"var/registry/dfm/{i}", {"auc": 0.7 + i / 100}, job_id=f"job{i}"
        )
    jobs_gateway.models.register(
        DEFAULT_TENANT, "lm", "lm", "var/registry/lm/1", {"val_loss": 3.2}, metadata={"vocab": 2048}
    )
    return jobs_gateway


def test_list_shows_every_version_with_its_aliases(registry: JobsGateway) -> None:
    response = registry.client.get("/v1/models")

    assert response.status_code == 200
    models = response.json()["models"]
    assert [(m["name"], m["version"], m["aliases"]) for m in models] == [
        ("dfm", 1, []),
        ("dfm", 2, []),
        ("dfm", 3, ["latest"]),
        ("lm", 1, ["latest"]),
    ]
    first = models[0]
    assert first["kind"] == "dfm" and first["uri"] == "var/registry/dfm/1" and first["job_id"] == "job1"
    assert first["metrics"] == {"auc": 0.71}
    assert models[3]["metadata"] == {"vocab": 2048}


def test_list_filters_by_name(registry: JobsGateway) -> None:
    models = registry.client.get("/v1/models", params={"name": "lm"}).json()["models"]

    assert [(m["name"], m["version"]) for m in models] == [("lm", 1)]
    assert registry.client.get("/v1/models", params={"name": "nope"}).json() == {"models": []}


def test_get_model_has_versions_and_aliases(registry: JobsGateway) -> None:
    body = registry.client.get("/v1/models/dfm").json()

    assert body["name"] == "dfm"
    assert [v["version"] for v in body["versions"]] == [1, 2, 3]
    assert body["aliases"] == {"latest": 3}


def test_get_unknown_model_is_404(registry: JobsGateway) -> None:
    response = registry.client.get("/v1/models/nope")

    assert response.status_code == 404
    assert response.json()["error"]["field"] == "name"


@pytest.mark.parametrize(("ref", "version"), [("2", 2), ("latest", 3)])
def test_get_a_version_by_number_or_alias(registry: JobsGateway, ref: str, version: int) -> None:
    response = registry.client.get(f"/v1/models/dfm/versions/{ref}")

    assert response.status_code == 200
    assert response.json()["version"] == version


@pytest.mark.parametrize(("path", "field"), [("dfm/versions/9", "ref"), ("nope/versions/1", "name")])
def test_get_an_unknown_version_is_404(registry: JobsGateway, path: str, field: str) -> None:
    response = registry.client.get(f"/v1/models/{path}")

    assert response.status_code == 404
    assert response.json()["error"]["field"] == field


def test_alias_moves_and_rolls_back_along_its_history(registry: JobsGateway) -> None:
    client = registry.client

    created = client.put("/v1/models/dfm/aliases/prod", json={"version": 2})
    moved = client.put("/v1/models/dfm/aliases/prod", json={"version": 3})

    assert created.status_code == 200
    assert created.json() | {"model": None} == {
        "name": "dfm",
        "alias": "prod",
        "version": 2,
        "previous_version": None,
        "model": None,
    }
    assert created.json()["model"]["aliases"] == ["prod"]
    assert (moved.json()["version"], moved.json()["previous_version"]) == (3, 2)
    assert moved.json()["model"]["aliases"] == ["latest", "prod"]
    assert registry.models.resolve(DEFAULT_TENANT, "dfm", "prod").version == 3

    back = client.post("/v1/models/dfm/aliases/prod/rollback")

    assert back.status_code == 200
    assert (back.json()["version"], back.json()["previous_version"]) == (2, 3)
    assert client.get("/v1/models/dfm").json()["aliases"] == {"latest": 3, "prod": 2}

    further = client.post("/v1/models/dfm/aliases/prod/rollback")

    assert further.status_code == 409  # prod has no version before 2
    assert further.json()["error"]["code"] == "FAILED_PRECONDITION"
    assert registry.models.resolve(DEFAULT_TENANT, "dfm", "prod").version == 2


def test_latest_rolls_back_to_the_previous_registration(registry: JobsGateway) -> None:
    response = registry.client.post("/v1/models/dfm/aliases/latest/rollback")

    assert response.json()["version"] == 2
    assert registry.client.get("/v1/models/dfm/versions/latest").json()["version"] == 2


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("dfm/aliases/prod", {"version": 9}, 404, "version"),
        ("nope/aliases/prod", {"version": 1}, 404, "version"),
        ("dfm/aliases/123", {"version": 1}, 400, "alias"),
        ("dfm/aliases/prod", {"version": "2"}, 422, "version"),
        ("dfm/aliases/prod", {"version": 0}, 422, "version"),
        ("dfm/aliases/prod", {}, 422, "version"),
    ],
)
def test_bad_alias_moves(registry: JobsGateway, path: str, body: dict, status: int, field: str) -> None:
    response = registry.client.put(f"/v1/models/{path}", json=body)

    assert response.status_code == status, response.text
    assert response.json()["error"]["field"] == field
    assert registry.models.aliases(DEFAULT_TENANT, "dfm") == {"latest": 3}


def test_rollback_of_an_unknown_alias_is_404(registry: JobsGateway) -> None:
    response = registry.client.post("/v1/models/dfm/aliases/prod/rollback")

    assert response.status_code == 404
    assert response.json()["error"]["field"] == "alias"
