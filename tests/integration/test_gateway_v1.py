"""The native `/v1` REST API against a real predictor: status codes, bodies and the model's contracts."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from fixtures.predictor import MAX_HISTORY_LEN, TEST_TASKS

pytestmark = pytest.mark.integration

HISTORY = [{"task": "t01", "outcome": 1.0}, {"task": "t02", "outcome": 0.0}, {"task": "t03", "outcome": 0.5}]


def register(gateway: TestClient, learner_id: str = "ada", history: list[dict] | None = None) -> dict:
    response = gateway.post("/v1/learners", json={"learner_id": learner_id, "history": history or []})
    assert response.status_code == 201, response.text
    return response.json()


def predict(gateway: TestClient, learner_id: str, tasks: list[str]) -> dict:
    response = gateway.post(f"/v1/learners/{learner_id}/predictions", json={"tasks": tasks})
    assert response.status_code == 200, response.text
    return response.json()


def test_register_returns_201_with_the_learner_and_its_location(gateway: TestClient) -> None:
    response = gateway.post("/v1/learners", json={"learner_id": "ada", "history": HISTORY})

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"learner_id", "history_len", "context_len", "created_at", "updated_at"}
    assert body["learner_id"] == "ada"
    assert body["history_len"] == 3
    assert response.headers["location"] == "/v1/learners/ada"


def test_register_without_history_starts_empty(gateway: TestClient) -> None:
    assert register(gateway, "grace")["history_len"] == 0


def test_get_returns_the_registered_learner(gateway: TestClient) -> None:
    created = register(gateway, "ada", HISTORY)

    response = gateway.get("/v1/learners/ada")

    assert response.status_code == 200
    assert response.json() == created


def test_delete_returns_204_and_the_learner_is_gone(gateway: TestClient) -> None:
    register(gateway, "ada", HISTORY)

    response = gateway.delete("/v1/learners/ada")

    assert response.status_code == 204
    assert response.content == b""
    assert gateway.get("/v1/learners/ada").status_code == 404
    assert register(gateway, "ada")["history_len"] == 0  # the id is free again


def test_learner_ids_use_the_whole_allowed_alphabet(gateway: TestClient) -> None:
    learner_id = "Ab.9_x:y@z-1"
    register(gateway, learner_id)
    assert gateway.get(f"/v1/learners/{learner_id}").json()["learner_id"] == learner_id


def test_predictions_echo_tasks_and_the_conditioning_history(gateway: TestClient) -> None:
    register(gateway, "ada", HISTORY)

    body = predict(gateway, "ada", ["t04", "t05", "t04"])

    assert body["learner_id"] == "ada"
    assert body["history_len"] == 3
    assert [p["task"] for p in body["predictions"]] == ["t04", "t05", "t04"]
    probabilities = [p["probability"] for p in body["predictions"]]
    assert all(0.0 <= p <= 1.0 for p in probabilities)
    # duplicates are answered independently, identically (up to the kernels' float rounding)
    assert probabilities[0] == pytest.approx(probabilities[2], abs=1e-6)


def test_predictions_are_deterministic_and_change_nothing(gateway: TestClient) -> None:
    register(gateway, "ada", HISTORY)

    first = predict(gateway, "ada", TEST_TASKS)
    second = predict(gateway, "ada", TEST_TASKS)

    assert first == second
    assert gateway.get("/v1/learners/ada").json()["history_len"] == 3


def test_history_changes_predictions(gateway: TestClient) -> None:
    register(gateway, "fresh")
    register(gateway, "ada", HISTORY)

    fresh = predict(gateway, "fresh", TEST_TASKS)["predictions"]
    taught = predict(gateway, "ada", TEST_TASKS)["predictions"]

    assert fresh != taught


def test_append_events_grows_the_history_and_returns_the_priors(gateway: TestClient) -> None:
    register(gateway, "ada", HISTORY)
    before = predict(gateway, "ada", ["t07"])["predictions"][0]["probability"]

    response = gateway.post(
        "/v1/learners/ada/events",
        json={"events": [{"task": "t07", "outcome": 1}, {"task": "t08", "outcome": 0}]},
    )

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"learner", "prior_probabilities"}
    assert body["learner"]["learner_id"] == "ada"
    assert body["learner"]["history_len"] == 5
    assert len(body["prior_probabilities"]) == 2
    # the first prior is exactly what /predictions said just before the append
    assert body["prior_probabilities"][0] == pytest.approx(before, abs=1e-5)
    assert gateway.get("/v1/learners/ada").json()["history_len"] == 5
    assert predict(gateway, "ada", ["t07"])["history_len"] == 5


def test_appending_matches_registering_with_the_whole_history(gateway: TestClient) -> None:
    register(gateway, "incremental", HISTORY[:1])
    gateway.post("/v1/learners/incremental/events", json={"events": HISTORY[1:]}).raise_for_status()
    register(gateway, "at-once", HISTORY)

    incremental = [p["probability"] for p in predict(gateway, "incremental", TEST_TASKS)["predictions"]]
    at_once = [p["probability"] for p in predict(gateway, "at-once", TEST_TASKS)["predictions"]]

    assert incremental == pytest.approx(at_once, abs=1e-5)


def test_expected_history_len_applies_the_append_once(gateway: TestClient) -> None:
    register(gateway, "ada", HISTORY)
    append = {"events": [{"task": "t09", "outcome": 1.0}], "expected_history_len": 3}

    first = gateway.post("/v1/learners/ada/events", json=append)
    retried = gateway.post("/v1/learners/ada/events", json=append)

    assert first.status_code == 200
    assert first.json()["learner"]["history_len"] == 4
    assert retried.status_code == 409
    assert retried.json()["error"]["code"] == "FAILED_PRECONDITION"
    assert retried.json()["error"]["field"] == "expected_history_len"
    assert gateway.get("/v1/learners/ada").json()["history_len"] == 4


def test_forecast_returns_s_by_l_probabilities_and_changes_nothing(gateway: TestClient) -> None:
    register(gateway, "ada", HISTORY)
    before = predict(gateway, "ada", TEST_TASKS)
    sequences = [["t01", "t02", "t03"], ["t03", "t02", "t01"]]

    response = gateway.post("/v1/learners/ada/forecasts", json={"task_sequences": sequences})

    assert response.status_code == 200
    body = response.json()
    assert body["learner_id"] == "ada"
    assert body["feedback"] == "expected"
    assert [len(row) for row in body["predictions"]] == [3, 3]
    assert all(0.0 <= p <= 1.0 for row in body["predictions"] for p in row)
    # the first step of each roll-out is conditioned on the committed history only
    first_steps = predict(gateway, "ada", ["t01", "t03"])["predictions"]
    assert [row[0] for row in body["predictions"]] == pytest.approx(
        [p["probability"] for p in first_steps], abs=1e-5
    )
    assert predict(gateway, "ada", TEST_TASKS) == before
    again = gateway.post("/v1/learners/ada/forecasts", json={"task_sequences": sequences})
    assert again.json() == body


def test_sampled_forecasts_are_reproducible_by_seed(gateway: TestClient) -> None:
    register(gateway, "ada", HISTORY)
    request = {"task_sequences": [["t04"] * 6] * 4, "feedback": "sample", "seed": 1234}

    first = gateway.post("/v1/learners/ada/forecasts", json=request)
    second = gateway.post("/v1/learners/ada/forecasts", json=request)

    assert first.status_code == 200
    assert first.json()["feedback"] == "sample"
    assert first.json() == second.json()
    assert [len(row) for row in first.json()["predictions"]] == [6, 6, 6, 6]


def test_tasks_lists_the_vocabulary(gateway: TestClient) -> None:
    response = gateway.get("/v1/tasks")

    assert response.status_code == 200
    assert response.json() == {"tasks": TEST_TASKS, "count": len(TEST_TASKS)}


def test_model_describes_the_served_model(gateway: TestClient) -> None:
    response = gateway.get("/v1/model")

    assert response.status_code == 200
    body = response.json()
    assert body["n_tasks"] == len(TEST_TASKS)
    assert body["max_history_len"] == MAX_HISTORY_LEN
    assert {
        "name",
        "version",
        "n_layer",
        "n_head",
        "n_kv_head",
        "d_model",
        "task_encoder",
        "dtype",
        "device",
        "n_parameters",
        "resident_learners",
    } <= set(body)


def test_openapi_lists_the_v1_paths_and_docs_are_served(gateway: TestClient) -> None:
    schema = gateway.get("/openapi.json").json()

    assert {
        "/v1/learners",
        "/v1/learners/{learner_id}",
        "/v1/learners/{learner_id}/events",
        "/v1/learners/{learner_id}/predictions",
        "/v1/learners/{learner_id}/forecasts",
        "/v1/tasks",
        "/v1/model",
    } <= set(schema["paths"])
    register_op = schema["paths"]["/v1/learners"]["post"]
    assert register_op["tags"] == ["learners"]
    assert register_op["summary"]
    assert "201" in register_op["responses"]
    assert gateway.get("/docs").status_code == 200
    assert "/learners" in gateway.get("/dfm-server/openapi.json").json()["paths"]


def test_probes(gateway: TestClient) -> None:
    assert gateway.get("/healthz").json() == {"status": "ok"}
    ready = gateway.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
