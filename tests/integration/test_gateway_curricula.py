"""`POST /v1/learners/{learner_id}/curricula:search` through the gateway over a real predictor: the genetic
search of DFM-Server v0.1 with its defaults, seeded (same request, same answer), changing nothing, with the
fitness per generation; its 400s name the field, an unknown (or another tenant's) learner is 404. And
`GET /v1/learners/{id}` reports the events in context beside the events stored."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from fixtures.gateway import ACME, ACME_KEY, GLOBEX, GLOBEX_KEY, MakeGateway
from fixtures.predictor import MAX_HISTORY_LEN, TEST_TASKS, RunningPredictor

pytestmark = pytest.mark.integration

HISTORY = [{"task": t, "outcome": o} for t, o in [("t00", 1.0), ("t03", 0.0), ("t03", 1.0), ("t07", 0.5)]]
TARGETS = ["t07", "t08"]
CANDIDATES = ["t01", "t02", "t03", "t04"]
SMALL = {"population_size": 8, "generations": 3}  # a quick search


def path(learner_id: str) -> str:
    return f"/v1/learners/{learner_id}/curricula:search"


def body(**fields: Any) -> dict[str, Any]:
    return {"target_tasks": TARGETS, "candidate_tasks": CANDIDATES, "depth": 3, **fields}


def search(client: TestClient, learner_id: str = "ada", **fields: Any) -> dict[str, Any]:
    response = client.post(path(learner_id), json=body(**fields))
    assert response.status_code == 200, response.text
    return response.json()


def predictions(client: TestClient, learner_id: str = "ada") -> list[float]:
    response = client.post(f"/v1/learners/{learner_id}/predictions", json={"tasks": TEST_TASKS})
    assert response.status_code == 200, response.text
    return [p["probability"] for p in response.json()["predictions"]]


@pytest.fixture
def ada(gateway: TestClient) -> TestClient:
    response = gateway.post("/v1/learners", json={"learner_id": "ada", "history": HISTORY})
    assert response.status_code == 201, response.text
    return gateway


def test_a_seeded_search_is_repeatable_and_changes_nothing(ada: TestClient) -> None:
    before = (ada.get("/v1/learners/ada").json(), predictions(ada))

    first = search(ada, seed=11, **SMALL)
    again = search(ada, seed=11, **SMALL)

    assert first == again
    assert first["learner_id"] == "ada" and first["history_len"] == len(HISTORY)
    assert len(first["best_sequence"]) == 3 and set(first["best_sequence"]) <= set(CANDIDATES)
    assert first["evaluations"] == 8 * (3 + 1)
    assert len(first["best_fitness_curve"]) == len(first["mean_fitness_curve"]) == 3 + 1
    assert first["best_fitness_curve"] == sorted(first["best_fitness_curve"])  # best so far: never falls
    assert first["best_fitness"] == first["best_fitness_curve"][-1]
    assert 0.0 <= first["best_fitness"] <= 1.0
    assert (ada.get("/v1/learners/ada").json(), predictions(ada)) == before


def test_the_best_fitness_is_the_forecast_success_on_the_targets(ada: TestClient) -> None:
    found = search(ada, seed=5, **SMALL)
    # expected feedback through the sequence, then each target predicted from that state (one row each)
    rows = [[*found["best_sequence"], target] for target in TARGETS]
    response = ada.post("/v1/learners/ada/forecasts", json={"task_sequences": rows})
    finals = [row[-1] for row in response.json()["predictions"]]

    assert abs(found["best_fitness"] - sum(finals) / len(finals)) < 1e-4


def test_omitted_options_take_the_v01_defaults(ada: TestClient) -> None:
    found = search(ada, depth=1, generations=0, seed=3)

    assert found["evaluations"] == 64  # population_size 64
    assert len(found["best_fitness_curve"]) == 1


def test_the_route_does_not_shadow_the_learner_routes(ada: TestClient) -> None:
    for learner_id in ("a:b", "x.y@z"):  # ids may hold ':' and '@'
        assert (
            ada.post("/v1/learners", json={"learner_id": learner_id, "history": HISTORY}).status_code == 201
        )
        assert search(ada, learner_id, seed=1, **SMALL)["learner_id"] == learner_id
        assert ada.get(f"/v1/learners/{learner_id}").json()["learner_id"] == learner_id
    assert ada.get("/v1/learners/ada/curricula:search").status_code == 405
    assert ada.post("/v1/learners/ada/curricula:find", json=body()).status_code == 404


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        pytest.param({"depth": 0}, "depth", id="depth-0"),
        pytest.param({"depth": -2}, "depth", id="depth-negative"),
        pytest.param({"target_tasks": []}, "target_tasks", id="no-targets"),
        pytest.param({"candidate_tasks": []}, "candidate_tasks", id="no-candidates"),
        pytest.param(
            {"population_size": 3, "elite_count": 4}, "population_size", id="population-below-elite"
        ),
        pytest.param(
            {"population_size": 1, "elite_count": 0}, "population_size", id="population-below-tournament"
        ),
        pytest.param({"candidate_tasks": ["t01", "zz"]}, "candidate_tasks", id="unknown-candidate"),
        pytest.param({"target_tasks": ["zz"]}, "target_tasks", id="unknown-target"),
        pytest.param({"depth": MAX_HISTORY_LEN}, "depth", id="past-the-history-limit"),
        pytest.param({"depth": 2**40}, "depth", id="depth-huge"),
        pytest.param({"mutation_rate": 1.5}, "mutation_rate", id="rate-above-1"),
        pytest.param({"crossover_rate": -0.1}, "crossover_rate", id="rate-below-0"),
        pytest.param({"generations": -1}, "generations", id="generations-negative"),
        pytest.param({"eval_every": 0}, "eval_every", id="eval-every-0"),
    ],
)
def test_bad_searches_are_400_naming_the_field(ada: TestClient, fields: dict, field: str) -> None:
    response = ada.post(path("ada"), json=body(**fields))

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("INVALID_ARGUMENT", field), error


@pytest.mark.parametrize(
    "fields",
    [{"depth": "3"}, {"depth": 2.5}, {"seed": -1}, {"seed": 2**64}, {"mutation_rate": "high"}, {"extra": 1}],
)
def test_a_malformed_search_is_422(ada: TestClient, fields: dict) -> None:
    response = ada.post(path("ada"), json=body(**fields))

    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "INVALID_ARGUMENT"


def test_an_unknown_or_another_tenants_learner_is_404(
    predictor_address: str, make_gateway: MakeGateway
) -> None:
    gateway = make_gateway([predictor_address], api_keys=[f"acme:{ACME_KEY}", f"globex:{GLOBEX_KEY}"])
    response = gateway.post("/v1/learners", json={"learner_id": "ada", "history": HISTORY}, headers=ACME)
    assert response.status_code == 201

    theirs = gateway.post(path("ada"), json=body(**SMALL), headers=GLOBEX)
    missing = gateway.post(path("ghost"), json=body(**SMALL), headers=ACME)

    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["error"]["message"] == "learner 'ada' not found"
    assert missing.json()["error"]["field"] == "learner_id"
    assert gateway.post(path("ada"), json=body(**SMALL), headers=ACME).status_code == 200


def test_a_learner_reports_the_events_in_context(ada: TestClient, predictor: RunningPredictor) -> None:
    learner = ada.get("/v1/learners/ada").json()

    assert learner["history_len"] == len(HISTORY)
    assert learner["context_len"] == min(len(HISTORY), predictor.engine.info().context_window)
    appended = ada.post("/v1/learners/ada/events", json={"events": HISTORY[:1]}).json()["learner"]
    assert (appended["history_len"], appended["context_len"]) == (len(HISTORY) + 1, len(HISTORY) + 1)


def test_the_document_lists_the_search_route(gateway: TestClient) -> None:
    operation = gateway.get("/openapi.json").json()["paths"]["/v1/learners/{learner_id}/curricula:search"]
    assert operation["post"]["tags"] == ["learners"]
    assert {"200", "400", "404", "422"} <= set(operation["post"]["responses"])
