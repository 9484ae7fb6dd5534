"""The DFM-Server v0.1 compatibility mount: an existing client pointed at `http://host:port/dfm-server`
works unchanged (paths, bodies, status codes, `{"detail": ...}` errors), against a real predictor."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from fixtures.dfm_server import BASE, assert_detail, post, register, state
from fixtures.gateway import NO_PREDICTOR, MakeGateway, compat_json, without_request_id
from fixtures.predictor import MAX_HISTORY_LEN, TEST_TASKS

from lyceum_core.identity import DEFAULT_TENANT
from lyceum_db.engine import create_engine
from lyceum_db.repositories import LearnerRepository

pytestmark = pytest.mark.integration


@pytest.fixture
def ada(gateway: TestClient) -> TestClient:
    register(gateway, "ada", ["t01", "t02"], [1.0, 0.0])
    return gateway


class DfmServerClient:
    """The original client's calling pattern: plain JSON over HTTP with the standard library."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.base_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            return err.code, without_request_id(json.loads(err.read()), err.headers.get("x-request-id"))


# --- the original client's session, over a real socket -----------------------------------------------


def test_original_client_session_over_http(gateway_url: str) -> None:
    client = DfmServerClient(gateway_url + BASE)

    assert client.call("GET", "/health") == (200, {"status": "ok", "learner_count": 0})
    assert client.call(
        "POST", "/learners", {"learner_id": "s1", "tasks": ["t01", "t02"], "outcomes": [1, 0]}
    ) == (
        200,
        {"learner_id": "s1", "history_len": 2},
    )
    status, predicted = client.call("POST", "/predict", {"learner_id": "s1", "tasks": ["t03", "t04"]})
    assert status == 200
    assert predicted["learner_id"] == "s1"
    assert len(predicted["predictions"]) == 2
    assert client.call("POST", "/update", {"learner_id": "s1", "task": "t03", "outcome": 1.0}) == (
        200,
        {"learner_id": "s1", "history_len": 3},
    )
    status, forecast = client.call(
        "POST", "/forecast", {"learner_id": "s1", "task_sequences": [["t01", "t02"]]}
    )
    assert status == 200
    assert [len(row) for row in forecast["predictions"]] == [2]
    assert client.call("POST", "/learners", {"learner_id": "s1"}) == (
        409,
        {"detail": "Learner 's1' already exists"},
    )
    assert client.call("DELETE", "/learners/s1") == (200, {"learner_id": "s1"})
    assert client.call("POST", "/predict", {"learner_id": "s1", "tasks": ["t01"]}) == (
        404,
        {"detail": "Learner 's1' not found"},
    )
    status, tasks = client.call("GET", "/tasks")
    assert (status, tasks["count"]) == (200, len(TEST_TASKS))


# --- endpoints ------------------------------------------------------------------------------------------


def test_register_without_history(gateway: TestClient) -> None:
    assert register(gateway, "ada") == {"learner_id": "ada", "history_len": 0}


def test_register_with_history(gateway: TestClient) -> None:
    assert register(gateway, "ada", ["t01", "t02", "t03"], [1, 0.5, 0]) == {
        "learner_id": "ada",
        "history_len": 3,
    }


def test_register_with_empty_history(gateway: TestClient) -> None:
    assert register(gateway, "ada", [], []) == {"learner_id": "ada", "history_len": 0}


def test_duplicate_register_is_409(ada: TestClient) -> None:
    before = state(ada)

    status, body = post(ada, "/learners", {"learner_id": "ada", "tasks": ["t05"], "outcomes": [1.0]})

    assert (status, body) == (409, {"detail": "Learner 'ada' already exists"})
    assert state(ada) == before


def test_predict_matches_the_native_api(ada: TestClient) -> None:
    status, body = post(ada, "/predict", {"learner_id": "ada", "tasks": ["t03", "t04", "t03"]})

    assert status == 200
    assert set(body) == {"learner_id", "predictions"}
    assert body["learner_id"] == "ada"
    native = ada.post("/v1/learners/ada/predictions", json={"tasks": ["t03", "t04", "t03"]}).json()
    assert body["predictions"] == [p["probability"] for p in native["predictions"]]
    assert body["predictions"][0] == pytest.approx(body["predictions"][2], abs=1e-6)  # AVX2 rounding


def test_update_appends_one_event(ada: TestClient) -> None:
    status, body = post(ada, "/update", {"learner_id": "ada", "task": "t05", "outcome": 1.0})

    assert (status, body) == (200, {"learner_id": "ada", "history_len": 3})
    assert ada.get("/v1/learners/ada").json()["history_len"] == 3


def test_update_matches_registering_with_the_whole_history(gateway: TestClient) -> None:
    register(gateway, "stepwise")
    for task, outcome in [("t01", 1.0), ("t02", 0.0), ("t03", 1)]:
        assert (
            post(gateway, "/update", {"learner_id": "stepwise", "task": task, "outcome": outcome})[0] == 200
        )
    register(gateway, "at-once", ["t01", "t02", "t03"], [1.0, 0.0, 1.0])

    assert state(gateway, "stepwise")[1] == pytest.approx(state(gateway, "at-once")[1], abs=1e-5)


def test_forecast_is_s_by_l_with_expected_feedback(ada: TestClient) -> None:
    before = state(ada)
    sequences = [["t01", "t02", "t03"], ["t04", "t05", "t06"]]

    status, body = post(ada, "/forecast", {"learner_id": "ada", "task_sequences": sequences})

    assert status == 200
    assert set(body) == {"learner_id", "predictions"}
    assert [len(row) for row in body["predictions"]] == [3, 3]
    native = ada.post(
        "/v1/learners/ada/forecasts", json={"task_sequences": sequences, "feedback": "expected"}
    )
    assert body["predictions"] == native.json()["predictions"]
    assert state(ada) == before


def test_forecast_with_no_sequences_is_empty(ada: TestClient) -> None:
    assert post(ada, "/forecast", {"learner_id": "ada", "task_sequences": []}) == (
        200,
        {"learner_id": "ada", "predictions": []},
    )


def test_forecast_with_empty_sequences_is_s_empty_lists(ada: TestClient) -> None:
    assert post(ada, "/forecast", {"learner_id": "ada", "task_sequences": [[], [], []]}) == (
        200,
        {"learner_id": "ada", "predictions": [[], [], []]},
    )


def test_ragged_forecast_is_400(ada: TestClient) -> None:
    status, body = post(ada, "/forecast", {"learner_id": "ada", "task_sequences": [["t01", "t02"], ["t01"]]})

    assert_detail(status, body, 400, mentions="same length")


def test_delete(ada: TestClient) -> None:
    response = ada.delete(f"{BASE}/learners/ada")

    assert (response.status_code, response.json()) == (200, {"learner_id": "ada"})
    assert ada.get("/v1/learners/ada").status_code == 404


def test_health_counts_resident_learners(gateway: TestClient) -> None:
    assert gateway.get(f"{BASE}/health").json() == {"status": "ok", "learner_count": 0}
    register(gateway, "ada", ["t01"], [1.0])
    register(gateway, "bob")

    health = gateway.get(f"{BASE}/health")

    assert health.status_code == 200
    assert health.json() == {"status": "ok", "learner_count": 2}


def test_tasks_are_sorted_with_a_count(gateway: TestClient) -> None:
    response = gateway.get(f"{BASE}/tasks")

    assert response.status_code == 200
    assert response.json() == {"tasks": sorted(TEST_TASKS), "count": len(TEST_TASKS)}


def test_config_uses_the_original_field_names(gateway: TestClient) -> None:
    model = gateway.get("/v1/model").json()

    response = gateway.get(f"{BASE}/config")

    assert response.status_code == 200
    assert response.json() == {
        "n_layer": model["n_layer"],
        "n_head": model["n_head"],
        "n_kv_head": model["n_kv_head"],
        "n_embd": model["d_model"],
        "n_input": model["d_model"],  # a learned task table: d_model-wide task inputs
        "encoder_name": model["task_encoder"],
        "block_size": 2 * (MAX_HISTORY_LEN + 1),
    }
    assert model["task_encoder"] == "table"


# --- unknown learners -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/predict", {"learner_id": "ghost", "tasks": ["t01"]}),
        ("/update", {"learner_id": "ghost", "task": "t01", "outcome": 1.0}),
        ("/forecast", {"learner_id": "ghost", "task_sequences": [["t01"]]}),
        ("/forecast", {"learner_id": "ghost", "task_sequences": []}),
        ("/forecast", {"learner_id": "ghost", "task_sequences": [[]]}),
    ],
)
def test_unknown_learner_is_404(gateway: TestClient, path: str, body: dict) -> None:
    assert post(gateway, path, body) == (404, {"detail": "Learner 'ghost' not found"})
    assert gateway.get("/v1/learners/ghost").status_code == 404


def test_delete_unknown_learner_is_404(gateway: TestClient) -> None:
    response = gateway.delete(f"{BASE}/learners/ghost")

    assert (response.status_code, compat_json(response)) == (404, {"detail": "Learner 'ghost' not found"})


# --- bad input: 4xx, a message naming the problem, nothing stored ------------------------------------------


BAD_REGISTRATIONS = [
    pytest.param(
        {"learner_id": "bob", "tasks": ["t01", "t02"], "outcomes": [1.0]}, 400, "same length", id="mismatch"
    ),
    pytest.param({"learner_id": "bob", "tasks": ["t01"]}, 400, "outcomes", id="tasks-without-outcomes"),
    pytest.param({"learner_id": "bob", "outcomes": [1.0]}, 400, "tasks", id="outcomes-without-tasks"),
    pytest.param(
        {"learner_id": "bob", "tasks": ["t01", "zz"], "outcomes": [1.0, 0.0]}, 400, "zz", id="unknown-task"
    ),
    pytest.param(
        {"learner_id": "bob", "tasks": ["t01"], "outcomes": [1.5]}, 422, "outcomes", id="outcome-above-1"
    ),
    pytest.param(
        {"learner_id": "bob", "tasks": ["t01"], "outcomes": [-1]}, 422, "outcomes", id="outcome-below-0"
    ),
    pytest.param(
        {"learner_id": "bob", "tasks": ["t01"], "outcomes": ["1"]}, 422, "outcomes", id="outcome-string"
    ),
    pytest.param(
        {"learner_id": "bob", "tasks": "t01", "outcomes": [1.0]}, 422, "tasks", id="tasks-not-a-list"
    ),
    pytest.param({"learner_id": 7}, 422, "learner_id", id="id-not-a-string"),
    pytest.param({"tasks": ["t01"], "outcomes": [1.0]}, 422, "learner_id", id="id-missing"),
]


@pytest.mark.parametrize(("body", "status", "mentions"), BAD_REGISTRATIONS)
def test_bad_registrations_store_nothing(gateway: TestClient, body: dict, status: int, mentions: str) -> None:
    assert_detail(*post(gateway, "/learners", body), status, mentions=mentions)
    assert gateway.get("/v1/learners/bob").status_code == 404


def test_nan_outcome_in_registration_stores_nothing(gateway: TestClient) -> None:
    raw = b'{"learner_id": "bob", "tasks": ["t01"], "outcomes": [NaN]}'

    response = gateway.post(f"{BASE}/learners", content=raw, headers={"content-type": "application/json"})

    assert_detail(response.status_code, response.json(), 422, mentions="finite")
    assert gateway.get("/v1/learners/bob").status_code == 404


BAD_UPDATES = [
    pytest.param({"learner_id": "ada", "task": "t03", "outcome": 1.5}, 422, "outcome", id="above-1"),
    pytest.param({"learner_id": "ada", "task": "t03", "outcome": -0.5}, 422, "outcome", id="below-0"),
    pytest.param({"learner_id": "ada", "task": "t03", "outcome": "high"}, 422, "outcome", id="string"),
    pytest.param({"learner_id": "ada", "task": "t03", "outcome": None}, 422, "outcome", id="null"),
    pytest.param({"learner_id": "ada", "task": "t03"}, 422, "outcome", id="missing"),
    pytest.param({"learner_id": "ada", "task": ["t03"], "outcome": 1.0}, 422, "task", id="task-not-a-string"),
    pytest.param({"learner_id": "ada", "task": "nope", "outcome": 1.0}, 400, "nope", id="unknown-task"),
]


@pytest.mark.parametrize(("body", "status", "mentions"), BAD_UPDATES)
def test_bad_updates_change_nothing(ada: TestClient, body: dict, status: int, mentions: str) -> None:
    before = state(ada)

    assert_detail(*post(ada, "/update", body), status, mentions=mentions)
    assert state(ada) == before


@pytest.mark.parametrize("literal", ["NaN", "Infinity"])
def test_non_finite_update_changes_nothing(ada: TestClient, literal: str) -> None:
    before = state(ada)
    raw = '{"learner_id": "ada", "task": "t03", "outcome": ' + literal + "}"

    response = ada.post(f"{BASE}/update", content=raw, headers={"content-type": "application/json"})

    assert_detail(response.status_code, response.json(), 422, mentions="finite")
    assert state(ada) == before


def test_updates_go_on_past_the_models_context(gateway: TestClient) -> None:
    # v0.1 refused an update past the model's context; Lyceum's default sliding window keeps the learner
    # alive (every event stored, the most recent in context); the `reject` policy restores the 400
    register(gateway, "ada", ["t01"] * MAX_HISTORY_LEN, [1.0] * MAX_HISTORY_LEN)

    for i in range(3):
        status, body = post(gateway, "/update", {"learner_id": "ada", "task": "t02", "outcome": 1.0})
        assert (status, body["history_len"]) == (200, MAX_HISTORY_LEN + i + 1)
    status, body = post(gateway, "/predict", {"learner_id": "ada", "tasks": ["t02"]})
    assert status == 200 and 0.0 < body["predictions"][0] < 1.0


BAD_PREDICTIONS = [
    pytest.param({"learner_id": "ada", "tasks": []}, 422, "tasks", id="empty"),
    pytest.param({"learner_id": "ada"}, 422, "tasks", id="missing"),
    pytest.param({"learner_id": "ada", "tasks": "t01"}, 422, "tasks", id="not-a-list"),
    pytest.param({"learner_id": "ada", "tasks": ["t01", "nope"]}, 400, "nope", id="unknown-task"),
]


@pytest.mark.parametrize(("body", "status", "mentions"), BAD_PREDICTIONS)
def test_bad_predictions_are_refused(ada: TestClient, body: dict, status: int, mentions: str) -> None:
    before = state(ada)

    assert_detail(*post(ada, "/predict", body), status, mentions=mentions)
    assert state(ada) == before


BAD_FORECASTS = [
    pytest.param({"learner_id": "ada", "task_sequences": ["t01"]}, 422, "task_sequences", id="not-nested"),
    pytest.param({"learner_id": "ada", "task_sequences": [["t01", "nope"]]}, 400, "nope", id="unknown-task"),
    pytest.param({"learner_id": "ada"}, 422, "task_sequences", id="missing"),
]


@pytest.mark.parametrize(("body", "status", "mentions"), BAD_FORECASTS)
def test_bad_forecasts_are_refused(ada: TestClient, body: dict, status: int, mentions: str) -> None:
    before = state(ada)

    assert_detail(*post(ada, "/forecast", body), status, mentions=mentions)
    assert state(ada) == before


# --- quotas and the mount's own document -------------------------------------------------------------------


def test_a_register_counts_against_the_learner_quota(make_gateway: MakeGateway, sqlite_url: str) -> None:
    # Was a way round `max_learners`: only `/v1/learners` checked it. No predictor behind: refused before one.
    engine = create_engine(sqlite_url)
    LearnerRepository(engine).create(DEFAULT_TENANT, "ada", [])
    engine.dispose()
    client = make_gateway([NO_PREDICTOR], quota_max_learners=1)

    status, body = post(client, "/learners", {"learner_id": "bob"})

    assert_detail(status, body, 429, mentions="quota of 1 learners")


def test_the_document_declares_the_errors_in_the_shape_answered(gateway: TestClient) -> None:
    # Was FastAPI's default 422 (`detail`: a list of problems) where the mount answers one message, and no
    # 4xx/5xx else; now every error a call may answer, the edge's included, with the mount's own body.
    document = gateway.get(f"{BASE}/openapi.json").json()
    error = {"$ref": "#/components/schemas/CompatErrorResponse"}
    register_errors = document["paths"]["/learners"]["post"]["responses"]
    for status in ("400", "401", "409", "413", "422", "429", "503"):
        assert register_errors[status]["content"]["application/json"]["schema"] == error, status
    assert {"401", "429", "503"} <= set(document["paths"]["/tasks"]["get"]["responses"])
    assert {"400", "404", "422", "503"} <= set(document["paths"]["/search"]["post"]["responses"])
    assert {"200", "503"} <= set(document["paths"]["/gc"]["post"]["responses"])
    assert "413" not in document["paths"]["/tasks"]["get"]["responses"]  # no body, no body errors
    assert "HTTPValidationError" not in document["components"]["schemas"]
    operations = schemathesis.openapi.from_dict(document)

    for method, path, body in [("POST", "/learners", None), ("POST", "/predict", {"learner_id": "x"})]:
        response = gateway.request(method, BASE + path, json=body)
        assert response.status_code == 422
        operations[path][method].validate_response(response)
    operations["/learners/{learner_id}"]["DELETE"].validate_response(gateway.delete(f"{BASE}/learners/ghost"))
