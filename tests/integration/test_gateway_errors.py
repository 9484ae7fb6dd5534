"""Errors, authentication, probes and metrics of the gateway against a real predictor: every bad input is
a 4xx naming the problem and leaves the learner exactly as it was."""

from __future__ import annotations

import socket

import pytest
from fastapi.testclient import TestClient
from fixtures.gateway import API_KEY, MakeGateway
from fleet import wait_until

pytestmark = pytest.mark.integration

HISTORY = [{"task": "t01", "outcome": 1.0}, {"task": "t02", "outcome": 0.0}]
PROBE_TASKS = ["t00", "t01", "t05", "t15"]


def snapshot(gateway: TestClient, learner_id: str = "ada") -> tuple[int, list[dict]]:
    """What must not change when a request is refused: history length and predictions."""
    learner = gateway.get(f"/v1/learners/{learner_id}")
    assert learner.status_code == 200, learner.text
    predictions = gateway.post(f"/v1/learners/{learner_id}/predictions", json={"tasks": PROBE_TASKS})
    assert predictions.status_code == 200, predictions.text
    return learner.json()["history_len"], predictions.json()["predictions"]


@pytest.fixture
def ada(gateway: TestClient) -> TestClient:
    """The gateway, with learner "ada" registered with a two-event history."""
    response = gateway.post("/v1/learners", json={"learner_id": "ada", "history": HISTORY})
    assert response.status_code == 201, response.text
    return gateway


def assert_error(
    response, status: int, code: str, field: str | None = None, mentions: str | None = None
) -> dict:  # noqa: ANN001
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "field", "request_id"}
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    assert body["error"]["code"] == code
    if field is not None:
        assert body["error"]["field"] == field
    if mentions is not None:
        assert mentions in body["error"]["message"]
    return body["error"]


def closed_port_address() -> str:
    """An address where nothing listens (the port was just released by the OS)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


# --- bad input is refused and stores nothing -------------------------------------------------------

BAD_EVENTS = [
    pytest.param({"events": [{"task": "t03", "outcome": 1.5}]}, "events[0].outcome", id="outcome-above-1"),
    pytest.param({"events": [{"task": "t03", "outcome": -0.1}]}, "events[0].outcome", id="outcome-below-0"),
    pytest.param({"events": [{"task": "t03", "outcome": "0.5"}]}, "events[0].outcome", id="outcome-string"),
    pytest.param({"events": [{"task": "t03", "outcome": True}]}, "events[0].outcome", id="outcome-bool"),
    pytest.param({"events": [{"task": "t03", "outcome": None}]}, "events[0].outcome", id="outcome-null"),
    pytest.param({"events": [{"task": "t03"}]}, "events[0].outcome", id="outcome-missing"),
    pytest.param({"events": [{"task": 3, "outcome": 1.0}]}, "events[0].task", id="task-not-a-string"),
    pytest.param({"events": []}, "events", id="no-events"),
    pytest.param({"events": {"task": "t03", "outcome": 1.0}}, "events", id="events-not-a-list"),
    pytest.param({}, "events", id="events-missing"),
    pytest.param(
        {"events": [{"task": "t03", "outcome": 1.0}, {"task": "t04", "outcome": 2.0}]},
        "events[1].outcome",
        id="second-event-bad",
    ),
    pytest.param(
        {"events": [{"task": "t03", "outcome": 1.0, "answer": "x"}]}, "events[0].answer", id="extra-field"
    ),
    pytest.param(
        {"events": [{"task": "t03", "outcome": 1.0}], "expected_history_len": -1},
        "expected_history_len",
        id="negative-expected-len",
    ),
]


@pytest.mark.parametrize(("body", "field"), BAD_EVENTS)
def test_bad_events_are_refused_and_change_nothing(ada: TestClient, body: dict, field: str) -> None:
    before = snapshot(ada)

    response = ada.post("/v1/learners/ada/events", json=body)

    assert_error(response, 422, "INVALID_ARGUMENT", field=field, mentions=field)
    assert snapshot(ada) == before


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_outcomes_are_refused_and_change_nothing(ada: TestClient, literal: str) -> None:
    before = snapshot(ada)
    raw = '{"events": [{"task": "t03", "outcome": ' + literal + "}]}"

    response = ada.post("/v1/learners/ada/events", content=raw, headers={"content-type": "application/json"})

    error = assert_error(response, 422, "INVALID_ARGUMENT", field="events[0].outcome")
    assert "finite" in error["message"]
    assert snapshot(ada) == before


def test_unknown_task_in_a_batch_is_refused_atomically(ada: TestClient) -> None:
    before = snapshot(ada)
    body = {"events": [{"task": "t03", "outcome": 1.0}, {"task": "nope", "outcome": 1.0}]}

    response = ada.post("/v1/learners/ada/events", json=body)

    assert_error(response, 400, "INVALID_ARGUMENT", field="events", mentions="nope")
    assert snapshot(ada) == before


def test_appending_past_the_context_keeps_every_event(ada: TestClient) -> None:
    model = ada.get("/v1/model").json()
    assert model["context_policy"] == "sliding_window" and model["context_window"] < model["max_history_len"]
    events = [{"task": "t03", "outcome": 1.0}] * 8
    total = len(HISTORY)
    while total <= model["max_history_len"]:
        assert ada.post("/v1/learners/ada/events", json={"events": events}).status_code == 200
        total += len(events)

    learner = ada.get("/v1/learners/ada").json()
    assert learner["history_len"] == total and learner["context_len"] <= model["context_window"]


def test_an_append_larger_than_the_window_is_refused(ada: TestClient) -> None:
    before = snapshot(ada)
    window = ada.get("/v1/model").json()["context_window"]
    events = [{"task": "t03", "outcome": 1.0}] * (window + 1)

    response = ada.post("/v1/learners/ada/events", json={"events": events})

    assert_error(response, 400, "INVALID_ARGUMENT", field="events", mentions="window")
    assert snapshot(ada) == before


def test_malformed_json_is_refused(ada: TestClient) -> None:
    before = snapshot(ada)

    response = ada.post(
        "/v1/learners/ada/events", content=b'{"events": [', headers={"content-type": "application/json"}
    )

    assert_error(response, 422, "INVALID_ARGUMENT")
    assert snapshot(ada) == before


BAD_REGISTRATIONS = [
    pytest.param({"learner_id": "has space"}, "learner_id", id="id-bad-character"),
    pytest.param({"learner_id": ""}, "learner_id", id="id-empty"),
    pytest.param({"learner_id": 42}, "learner_id", id="id-not-a-string"),
    pytest.param({}, "learner_id", id="id-missing"),
    pytest.param(
        {"learner_id": "bob", "history": [{"task": "t01", "outcome": 7}]}, "history[0].outcome", id="outcome"
    ),
    pytest.param({"learner_id": "bob", "history": "t01"}, "history", id="history-not-a-list"),
]


@pytest.mark.parametrize(("body", "field"), BAD_REGISTRATIONS)
def test_bad_registrations_are_refused_and_store_nothing(gateway: TestClient, body: dict, field: str) -> None:
    response = gateway.post("/v1/learners", json=body)

    assert_error(response, 422, "INVALID_ARGUMENT", field=field, mentions=field)
    assert gateway.get("/v1/learners/bob").status_code == 404


def test_registration_with_an_unknown_task_stores_nothing(gateway: TestClient) -> None:
    body = {"learner_id": "bob", "history": [{"task": "t01", "outcome": 1.0}, {"task": "zz", "outcome": 1.0}]}

    response = gateway.post("/v1/learners", json=body)

    assert_error(response, 400, "INVALID_ARGUMENT", field="history", mentions="zz")
    assert gateway.get("/v1/learners/bob").status_code == 404


def test_duplicate_registration_is_409_and_keeps_the_original(ada: TestClient) -> None:
    before = snapshot(ada)

    response = ada.post(
        "/v1/learners", json={"learner_id": "ada", "history": [{"task": "t09", "outcome": 0.0}]}
    )

    assert_error(response, 409, "ALREADY_EXISTS", field="learner_id", mentions="ada")
    assert snapshot(ada) == before


BAD_PREDICTIONS = [
    pytest.param({"tasks": []}, 422, "tasks", id="empty"),
    pytest.param({}, 422, "tasks", id="missing"),
    pytest.param({"tasks": "t01"}, 422, "tasks", id="not-a-list"),
    pytest.param({"tasks": ["t01", 5]}, 422, "tasks[1]", id="not-strings"),
    pytest.param({"tasks": ["t01", "unknown-task"]}, 400, "tasks", id="unknown-task"),
]


@pytest.mark.parametrize(("body", "status", "field"), BAD_PREDICTIONS)
def test_bad_prediction_requests_are_refused(ada: TestClient, body: dict, status: int, field: str) -> None:
    before = snapshot(ada)

    response = ada.post("/v1/learners/ada/predictions", json=body)

    assert_error(response, status, "INVALID_ARGUMENT", field=field)
    assert snapshot(ada) == before


BAD_FORECASTS = [
    pytest.param({"task_sequences": [["t01", "t02"], ["t01"]]}, 422, "task_sequences", id="ragged"),
    pytest.param({"task_sequences": []}, 422, "task_sequences", id="no-sequences"),
    pytest.param({"task_sequences": [[]]}, 422, "task_sequences", id="empty-sequence"),
    pytest.param({"task_sequences": ["t01"]}, 422, "task_sequences[0]", id="not-nested"),
    pytest.param({"task_sequences": [["t01"]], "feedback": "greedy"}, 422, "feedback", id="bad-feedback"),
    pytest.param({"task_sequences": [["t01"]], "seed": -1}, 422, "seed", id="negative-seed"),
    pytest.param({"task_sequences": [["t01", "nope"]]}, 400, "task_sequences", id="unknown-task"),
]


@pytest.mark.parametrize(("body", "status", "field"), BAD_FORECASTS)
def test_bad_forecasts_are_refused(ada: TestClient, body: dict, status: int, field: str) -> None:
    before = snapshot(ada)

    response = ada.post("/v1/learners/ada/forecasts", json=body)

    assert_error(response, status, "INVALID_ARGUMENT", field=field)
    assert snapshot(ada) == before


def test_ragged_forecast_message_names_the_lengths(ada: TestClient) -> None:
    response = ada.post("/v1/learners/ada/forecasts", json={"task_sequences": [["t01", "t02"], ["t01"]]})

    error = assert_error(response, 422, "INVALID_ARGUMENT", field="task_sequences")
    assert "same length" in error["message"]


@pytest.mark.parametrize("learner_id", ["has%20space", "semi;colon", "x" * 129])
def test_bad_learner_ids_in_paths_are_refused(gateway: TestClient, learner_id: str) -> None:
    response = gateway.get(f"/v1/learners/{learner_id}")

    assert response.status_code in (400, 422)
    assert_error(response, response.status_code, "INVALID_ARGUMENT", field="learner_id")


# --- request size caps ------------------------------------------------------------------------------


def test_request_size_caps_are_enforced_before_the_predictor(
    predictor_address: str, make_gateway: MakeGateway
) -> None:
    gateway = make_gateway(
        [predictor_address],
        max_tasks_per_request=2,
        max_events_per_request=2,
        max_forecast_sequences=2,
        max_forecast_length=2,
        max_learner_id_len=8,
    )
    gateway.post("/v1/learners", json={"learner_id": "ada"}).raise_for_status()
    event = {"task": "t01", "outcome": 1.0}

    refused = {
        "tasks": gateway.post("/v1/learners/ada/predictions", json={"tasks": ["t01"] * 3}),
        "events": gateway.post("/v1/learners/ada/events", json={"events": [event] * 3}),
        "history": gateway.post("/v1/learners", json={"learner_id": "bob", "history": [event] * 3}),
        "task_sequences": gateway.post("/v1/learners/ada/forecasts", json={"task_sequences": [["t01"]] * 3}),
        "learner_id": gateway.post("/v1/learners", json={"learner_id": "nine-char"}),
    }
    long_forecast = gateway.post("/v1/learners/ada/forecasts", json={"task_sequences": [["t01"] * 3]})

    for field, response in refused.items():
        assert_error(response, 400, "INVALID_ARGUMENT", field=field, mentions="at most")
    assert_error(long_forecast, 400, "INVALID_ARGUMENT", field="task_sequences", mentions="at most 2")
    assert gateway.get("/v1/learners/ada").json()["history_len"] == 0
    assert gateway.get("/v1/learners/bob").status_code == 404
    assert gateway.post("/v1/learners/ada/predictions", json={"tasks": ["t01"] * 2}).status_code == 200


# --- unknown learners --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/learners/ghost", None),
        ("DELETE", "/v1/learners/ghost", None),
        ("POST", "/v1/learners/ghost/events", {"events": [{"task": "t01", "outcome": 1.0}]}),
        ("POST", "/v1/learners/ghost/predictions", {"tasks": ["t01"]}),
        ("POST", "/v1/learners/ghost/forecasts", {"task_sequences": [["t01"]]}),
    ],
)
def test_unknown_learners_are_404(gateway: TestClient, method: str, path: str, body: dict | None) -> None:
    response = gateway.request(method, path, json=body)

    assert_error(response, 404, "NOT_FOUND", field="learner_id", mentions="ghost")
    assert gateway.get("/v1/learners/ghost").status_code == 404  # an append does not create it


def test_unknown_routes_answer_in_the_native_shape(gateway: TestClient) -> None:
    assert_error(gateway.get("/v1/nothing-here"), 404, "NOT_FOUND")
    assert gateway.put("/v1/tasks").status_code == 405


# --- predictors that cannot be reached ---------------------------------------------------------------


def test_unreachable_predictor_is_503_and_not_ready(make_gateway: MakeGateway) -> None:
    gateway = make_gateway([closed_port_address()], request_timeout_s=5)

    assert gateway.get("/healthz").status_code == 200
    ready = gateway.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["serving"] == 0
    error = assert_error(gateway.get("/v1/tasks"), 503, "UNAVAILABLE")
    assert "127.0.0.1" not in error["message"]  # internal addresses stay in the logs
    assert gateway.get("/dfm-server/tasks").status_code == 503
    assert set(gateway.get("/dfm-server/tasks").json()) == {"detail", "request_id"}


def test_ready_while_one_of_several_predictors_serves(
    predictor_address: str, make_gateway: MakeGateway
) -> None:
    gateway = make_gateway([closed_port_address(), predictor_address], request_timeout_s=5)

    # Until its health watch first fails, the closed sampler address is STARTING, which routes (and counts):
    # wait for the watch rather than race it (a loaded machine answered /readyz first once).
    ready = wait_until(
        lambda: (r := gateway.get("/readyz")).json()["samplers_serving"] == 0 and r, 30, what="sampler watch"
    )

    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "serving": 1,
        "predictors": 2,
        "membership_version": 1,
        "samplers": 1,
        "samplers_serving": 0,  # the test gateway's sampler address is a closed port; readiness ignores it
    }


# --- authentication ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-key"),
        pytest.param({"Authorization": "Bearer wrong"}, id="wrong-bearer"),
        pytest.param({"X-API-Key": "wrong"}, id="wrong-header"),
        pytest.param({"Authorization": f"Basic {API_KEY}"}, id="wrong-scheme"),
        pytest.param({"X-API-Key": API_KEY[:-1]}, id="prefix-of-key"),
    ],
)
def test_auth_refuses_requests_without_a_valid_key(gateway_with_auth: TestClient, headers: dict) -> None:
    native = gateway_with_auth.get("/v1/tasks", headers=headers)
    compat = gateway_with_auth.get("/dfm-server/tasks", headers=headers)
    write = gateway_with_auth.post("/v1/learners", json={"learner_id": "eve"}, headers=headers)

    assert_error(native, 401, "UNAUTHENTICATED", mentions="API key")
    assert native.headers["www-authenticate"] == "Bearer"
    assert compat.status_code == 401
    assert compat.json() == {"detail": compat.json()["detail"], "request_id": compat.headers["x-request-id"]}
    assert write.status_code == 401
    assert gateway_with_auth.get("/v1/learners/eve", headers={"X-API-Key": API_KEY}).status_code == 404


def test_auth_runs_before_body_parsing(gateway_with_auth: TestClient) -> None:
    response = gateway_with_auth.post(
        "/v1/learners", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_error(response, 401, "UNAUTHENTICATED")


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": f"Bearer {API_KEY}"}, {"authorization": f"bearer {API_KEY}"}, {"X-API-Key": API_KEY}],
)
def test_auth_accepts_either_header(gateway_with_auth: TestClient, headers: dict) -> None:
    assert gateway_with_auth.get("/v1/tasks", headers=headers).status_code == 200
    assert gateway_with_auth.get("/dfm-server/tasks", headers=headers).status_code == 200
    created = gateway_with_auth.post("/v1/learners", json={"learner_id": "eve"}, headers=headers)
    assert created.status_code == 201


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"])
def test_probes_metrics_and_docs_stay_open(gateway_with_auth: TestClient, path: str) -> None:
    assert gateway_with_auth.get(path).status_code == 200


def test_openapi_declares_the_credentials_when_auth_is_on(gateway_with_auth: TestClient) -> None:
    schema = gateway_with_auth.get("/openapi.json").json()

    assert set(schema["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    assert schema["paths"]["/v1/tasks"]["get"]["security"] == [{"bearer": []}, {"apiKey": []}]
    assert "security" not in schema["paths"]["/healthz"]["get"]


def test_no_keys_configured_means_auth_is_off(gateway: TestClient) -> None:
    assert gateway.get("/v1/tasks").status_code == 200
    assert gateway.get("/dfm-server/tasks").status_code == 200


# --- metrics --------------------------------------------------------------------------------------------


def test_metrics_count_requests_by_route_template(ada: TestClient) -> None:
    ada.get("/v1/learners/ada")
    ada.get("/v1/learners/ghost")
    ada.get("/v1/learners/ghost")
    ada.post("/dfm-server/predict", json={"learner_id": "ada", "tasks": ["t01"]})
    ada.get("/not-a-route")

    text = ada.get("/metrics").text

    assert 'lyceum_http_requests_total{method="POST",route="/v1/learners",status="201"} 1.0' in text
    assert (
        'lyceum_http_requests_total{method="GET",route="/v1/learners/{learner_id}",status="200"} 1.0' in text
    )
    assert (
        'lyceum_http_requests_total{method="GET",route="/v1/learners/{learner_id}",status="404"} 2.0' in text
    )
    assert 'lyceum_http_requests_total{method="POST",route="/dfm-server/predict",status="200"} 1.0' in text
    assert 'lyceum_http_requests_total{method="GET",route="<unmatched>",status="404"} 1.0' in text
    assert "ghost" not in text  # raw paths never become labels
    assert (
        'lyceum_http_request_latency_seconds_bucket{le="0.005",method="GET",route="/v1/learners/{learner_id}"}'
        in text
    )
    assert (
        'lyceum_http_request_latency_seconds_count{method="GET",route="/v1/learners/{learner_id}"} 3.0'
        in text
    )


def test_metrics_count_refused_requests(gateway_with_auth: TestClient) -> None:
    gateway_with_auth.get("/v1/tasks")

    text = gateway_with_auth.get("/metrics").text

    # refused before routing, so no route template is known yet
    assert 'lyceum_http_requests_total{method="GET",route="<unmatched>",status="401"} 1.0' in text
