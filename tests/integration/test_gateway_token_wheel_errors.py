"""The AI Token Wheel compatibility mount refuses bad input as the original backend did, changing nothing:
404 for unknown sessions, 400 with the original's messages (no prompt, bad threshold or temperature, a text
that is not exactly one token, no token given, an empty Other, nothing to undo, an unknown model), FastAPI's
own 422 for malformed requests, and 503 without a sampler."""

from __future__ import annotations

import pytest
import schemathesis
from fastapi.testclient import TestClient
from fixtures.gateway import NO_PREDICTOR, MakeGateway, compat_json
from fixtures.sampler import HF_MODEL
from test_gateway_token_wheel import API, BASE, SERVED, append, create, probs, state, unchanging

pytestmark = pytest.mark.integration

NO_SUCH_SESSION = {"detail": "Session does not exist"}


@pytest.mark.parametrize("sid", ["0123456789abcdef0123456789abcdef", "not a sampler id!", "x" * 100])
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "", None),
        ("DELETE", "", None),
        ("POST", "/set-prompt", {"prompt": "Hi"}),
        ("POST", "/set-prompt", {"prompt": "   "}),
        ("GET", "/next-token-probs", None),
        ("POST", "/append-token", {"token_id": 1}),
        ("POST", "/undo", None),
    ],
)
def test_unknown_sessions_are_404(
    sampler_gateway: TestClient, sid: str, method: str, path: str, body: dict | None
) -> None:
    response = sampler_gateway.request(method, f"{API}/{sid}{path}", json=body)

    assert (response.status_code, compat_json(response)) == (404, NO_SUCH_SESSION)


@pytest.mark.parametrize(
    ("method", "path", "body", "query", "status", "detail"),
    [
        ("GET", "/next-token-probs", None, {"threshold": 1.5}, 400, "Threshold must be between 0.0 and 1.0"),
        ("GET", "/next-token-probs", None, {"threshold": -0.1}, 400, "Threshold must be between 0.0 and 1.0"),
        (
            "GET",
            "/next-token-probs",
            None,
            {"threshold": "nan"},
            400,
            "Threshold must be between 0.0 and 1.0",
        ),
        ("GET", "/next-token-probs", None, {"temperature": 0}, 400, "Temperature must be greater than 0"),
        ("GET", "/next-token-probs", None, {"temperature": -2}, 400, "Temperature must be greater than 0"),
        ("GET", "/next-token-probs", None, {"threshold": "high"}, 422, None),
        ("GET", "/next-token-probs", None, {"other_top_k": "ten"}, 422, None),
        ("POST", "/append-token", {}, {}, 400, "Either token_id or token_text must be provided"),
        (
            "POST",
            "/append-token",
            {"category": "above"},
            {},
            400,
            "Either token_id or token_text must be provided",
        ),
        (
            "POST",
            "/append-token",
            {"token_text": "Once upon"},
            {},
            400,
            "Token text must correspond to exactly one token",
        ),
        (
            "POST",
            "/append-token",
            {"token_text": ""},
            {},
            400,
            "Token text must correspond to exactly one token",
        ),
        ("POST", "/append-token", {"token_id": 10**6}, {}, 400, "token_id must be in [0, 384)"),
        ("POST", "/append-token", {"token_id": -1}, {}, 400, "token_id must be in [0, 384)"),
        ("POST", "/append-token", {"token_id": 2**40}, {}, 400, "token_id is out of range"),
        (
            "POST",
            "/append-token",
            {"token_id": 1},
            {"temperature": 0},
            400,
            "Temperature must be greater than 0",
        ),
        ("POST", "/append-token", {"token_id": "seven"}, {}, 422, None),
        ("POST", "/append-token", None, {}, 422, None),
        ("POST", "/set-prompt", {"prompt": "  \n "}, {}, 400, "Empty or invalid prompt"),
        ("POST", "/set-prompt", {"prompt": ""}, {}, 422, None),
        ("POST", "/set-prompt", {}, {}, 422, None),
    ],
)
def test_bad_input_is_refused_as_the_original_did_and_changes_nothing(
    sampler_gateway: TestClient,
    method: str,
    path: str,
    body: dict | None,
    query: dict,
    status: int,
    detail: str | None,
) -> None:
    g = sampler_gateway
    sid = create(g)
    append(g, sid, {"token_id": 7})
    before = unchanging(state(g, sid))

    response = g.request(method, f"{API}/{sid}{path}", json=body, params=query)

    assert response.status_code == status, response.text
    assert set(compat_json(response)) == {"detail"}
    if detail is not None:
        assert compat_json(response) == {"detail": detail}
    else:  # FastAPI's own validation errors, as the original (a plain FastAPI app) sent them
        assert isinstance(response.json()["detail"], list)
    assert unchanging(state(g, sid)) == before


def test_malformed_json_is_422(sampler_gateway: TestClient) -> None:
    sid = create(sampler_gateway)
    response = sampler_gateway.post(
        f"{API}/{sid}/append-token", content=b'{"token_id": 1', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422 and isinstance(response.json()["detail"], list)


def test_a_session_without_a_prompt(sampler_gateway: TestClient) -> None:
    g = sampler_gateway
    sid = create(g, prompt=None)

    assert compat_json(g.get(f"{API}/{sid}/next-token-probs")) == {"detail": "No prompt set yet"}
    no_prompt = g.post(f"{API}/{sid}/append-token", json={"token_id": 1})
    assert compat_json(no_prompt) == {"detail": "No prompt set"}
    undo = g.post(f"{API}/{sid}/undo")
    assert (undo.status_code, compat_json(undo)) == (
        400,
        {"detail": "Cannot undo. No generated tokens to remove. Only initial prompt remains."},
    )
    assert state(g, sid)["initial_prompt"] == "" and state(g, sid)["token_history"] == []


def test_nothing_left_to_undo_and_an_empty_other_are_400(sampler_gateway: TestClient) -> None:
    g = sampler_gateway
    sid = create(g)
    before = unchanging(state(g, sid))
    assert g.post(f"{API}/{sid}/undo").status_code == 400

    probs(g, sid, threshold=0.0, other_top_k=0)  # every token is a wedge: Other is empty
    response = g.post(f"{API}/{sid}/append-token", json={"category": "other"})

    assert (response.status_code, compat_json(response)) == (
        400,
        {"detail": "No tokens available in 'Other' category"},
    )
    assert unchanging(state(g, sid)) == before


def test_unknown_models_are_400_naming_the_available_ones(sampler_gateway: TestClient) -> None:
    response = sampler_gateway.post(API, json={"model_name": "gpt-5"})

    assert (response.status_code, compat_json(response)) == (
        400,
        {"detail": f"Invalid model name. Available models: {SERVED}"},
    )
    assert sampler_gateway.post(API, json={"model_name": 5}).status_code == 422


def test_without_a_sampler(make_gateway: MakeGateway) -> None:
    g = make_gateway([NO_PREDICTOR])  # its sampler address has nothing listening

    assert compat_json(g.get(f"{BASE}/ready")) == {"detail": "Models not loaded"}
    assert g.get(f"{BASE}/ready").status_code == 503
    health = g.get(f"{BASE}/health")
    assert health.status_code == 200 and health.json()["model_loaded"] is False
    created = g.post(API, json={"model_name": HF_MODEL})
    assert created.status_code == 503 and set(compat_json(created)) == {"detail"}


def test_the_document_declares_the_errors_in_the_shape_answered(sampler_gateway: TestClient) -> None:
    # Was only FastAPI's 422 per operation (and a bare 503 on /ready): the 400s, 404s and 503s, and the edge's
    # 401/413/429, were undeclared. Each is now declared with the body the mount answers it with.
    g = sampler_gateway
    document = g.get(f"{BASE}/openapi.json").json()
    responses = document["paths"]["/api/sessions/{session_id}/append-token"]["post"]["responses"]
    assert {"400", "401", "404", "413", "422", "429", "503"} <= set(responses)
    assert document["paths"]["/ready"]["get"]["responses"]["503"]["content"]
    operations = schemathesis.openapi.from_dict(document)
    sid = create(g)

    for method, path, body, status in [
        ("POST", "/api/sessions", {"model_name": "gpt-5"}, 400),
        ("POST", "/api/sessions", {"model_name": 5}, 422),
        ("POST", "/api/sessions/{session_id}/append-token", {}, 400),
        ("POST", "/api/sessions/{session_id}/undo", None, 400),
        ("DELETE", "/api/sessions/{session_id}", None, 404),
    ]:
        session = "0123456789abcdef0123456789abcdef" if status == 404 else sid
        response = g.request(method, BASE + path.format(session_id=session), json=body)
        assert response.status_code == status, (path, response.text)
        operations[path][method].validate_response(response)
