"""HTTP hardening at the gateway: request body limits (413 in each mount's shape, by Content-Length and for
streamed bodies), CORS per mount (token-wheel open, native closed unless configured), request ids (headers,
error bodies, log lines), the token-wheel mount's model aliases and anonymous tenant, and the learner routes'
dependencies resolved on the event loop (no thread hand-off per request)."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterator

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from fixtures.gateway import ACME_KEY, DFM_CONFIG, NO_PREDICTOR, MakeGateway
from fixtures.sampler import LYCEUM_MODEL, RunningSampler

from lyceum_core.logging import RequestContextFilter
from lyceum_gateway.routes import dfm_server, learners

pytestmark = pytest.mark.integration

ORIGIN = "http://127.0.0.1:5173"  # the AI Token Wheel frontend, served by Vite
LIMIT = 2048


@pytest.fixture
def gateway(make_gateway: MakeGateway) -> TestClient:
    return make_gateway([NO_PREDICTOR], max_body_bytes=LIMIT)


def preflight(client: TestClient, path: str, origin: str = ORIGIN) -> object:
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,authorization",
        },
    )


# --- body limits --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/v1/jobs", "/v1/learners", "/dfm-server/learners", "/token-wheel/api/sessions", "/nowhere"]
)
def test_large_bodies_are_413_naming_the_limit(gateway: TestClient, path: str) -> None:
    response = gateway.post(path, content=b"x" * (LIMIT + 1), headers={"content-type": "application/json"})

    assert response.status_code == 413
    rid = response.headers["x-request-id"]
    if path.startswith(("/dfm-server", "/token-wheel")):
        assert response.json() == {
            "detail": f"the request body exceeds the limit of {LIMIT} bytes",
            "request_id": rid,
        }
    else:
        assert response.json()["error"] == {
            "code": "PAYLOAD_TOO_LARGE",
            "message": f"the request body exceeds the limit of {LIMIT} bytes",
            "field": "body",
            "request_id": rid,
        }


@pytest.mark.parametrize("path", ["/v1/jobs", "/dfm-server/learners"])
def test_streamed_bodies_are_cut_at_the_limit(gateway: TestClient, path: str) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: the body arrives in chunks
        for _ in range(8):
            yield b" " * 512

    response = gateway.post(path, content=chunks(), headers={"content-type": "application/json"})

    assert response.status_code == 413
    assert str(LIMIT) in response.text
    assert "content-length" not in response.request.headers


def test_bodies_under_the_limit_pass(gateway: TestClient) -> None:
    response = gateway.post("/v1/jobs", json={"kind": "dfm_pretrain", "config": DFM_CONFIG})
    assert response.status_code == 201


# --- CORS ---------------------------------------------------------------------------------------------------


def test_token_wheel_answers_preflight_from_any_origin(gateway: TestClient) -> None:
    response = preflight(gateway, "/token-wheel/api/sessions")

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "access-control-allow-credentials" not in response.headers
    assert response.headers["x-request-id"]
    simple = gateway.get("/token-wheel/health", headers={"Origin": ORIGIN})
    assert simple.headers["access-control-allow-origin"] == "*"
    assert "X-Request-Id" in simple.headers["access-control-expose-headers"]


def test_native_api_is_closed_to_browsers_by_default(gateway: TestClient) -> None:
    response = preflight(gateway, "/v1/jobs")
    simple = gateway.get("/v1/jobs", headers={"Origin": ORIGIN})

    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-origin" not in simple.headers
    assert "access-control-allow-origin" not in preflight(gateway, "/dfm-server/learners").headers


def test_cors_origins_are_configurable_per_mount(make_gateway: MakeGateway) -> None:
    client = make_gateway([NO_PREDICTOR], cors_origins=["https://app.example"], token_wheel_cors_origins=[])

    allowed = preflight(client, "/v1/jobs", origin="https://app.example")
    other = preflight(client, "/v1/jobs", origin="https://evil.example")

    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-origin" not in other.headers
    assert "access-control-allow-origin" not in preflight(client, "/token-wheel/api/sessions").headers


# --- request ids --------------------------------------------------------------------------------------------


def test_request_ids_are_kept_or_made(gateway: TestClient) -> None:
    given = gateway.get("/v1/jobs", headers={"X-Request-Id": "trace-42.a"})
    made = gateway.get("/healthz")
    unsafe = gateway.get("/v1/jobs/nope", headers={"X-Request-Id": "bad id\twith spaces"})

    assert given.headers["x-request-id"] == "trace-42.a"
    assert len(made.headers["x-request-id"]) == 32
    assert unsafe.headers["x-request-id"] != "bad id\twith spaces"
    assert unsafe.json()["error"]["request_id"] == unsafe.headers["x-request-id"]


def test_log_lines_carry_the_request_id(make_gateway: MakeGateway) -> None:
    client = make_gateway([NO_PREDICTOR], quota_rps=0.001, quota_burst=1)
    records: list[logging.LogRecord] = []
    handler = logging.Handler(level=logging.INFO)
    handler.addFilter(RequestContextFilter())
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("lyceum_gateway")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        client.get("/v1/jobs")
        refused = client.get("/v1/jobs", headers={"X-Request-Id": "find-me-1"})
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)

    assert refused.status_code == 429
    mine = [r for r in records if getattr(r, "request_id", None) == "find-me-1"]
    assert mine and all(r.tenant == "default" for r in mine)  # type: ignore[attr-defined]


# --- the token-wheel mount ----------------------------------------------------------------------------------


def test_token_wheel_model_aliases_and_anonymous_tenant(
    sampler: RunningSampler, make_gateway: MakeGateway
) -> None:
    client = make_gateway(
        [NO_PREDICTOR],
        sampler_addresses=[sampler.address],
        api_keys=[f"acme:{ACME_KEY}"],
        token_wheel_model_aliases=[f"gpt-4={LYCEUM_MODEL}"],
        anonymous_tenant_token_wheel="classroom",
    )

    created = client.post("/token-wheel/api/sessions", json={"model_name": "gpt-4"})

    assert created.status_code == 201, created.text
    assert created.json()["model_name"] == LYCEUM_MODEL
    sid = created.json()["session_id"]
    assert client.get(f"/token-wheel/api/sessions/{sid}").status_code == 200  # the classroom's own
    acme = client.get(f"/token-wheel/api/sessions/{sid}", headers={"X-API-Key": ACME_KEY})
    assert acme.status_code == 404  # another tenant's session is missing
    assert client.get(f"/v1/sessions/{sid}").status_code == 401  # only the token-wheel mount is open


# --- the request path stays on the event loop ---------------------------------------------------------------


def dependency_calls(dependant: Dependant) -> Iterator[object]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from dependency_calls(sub)


def test_learner_routes_resolve_their_dependencies_on_the_event_loop() -> None:
    # FastAPI runs a plain `def` dependency in its thread pool: a thread hand-off per dependency per request,
    # which was most of the gateway's own CPU per prediction (bench/predictor_throughput.py).
    routes = [r for router in (learners.router, dfm_server.router) for r in router.routes]
    calls = [
        call for route in routes if isinstance(route, APIRoute) for call in dependency_calls(route.dependant)
    ]

    assert calls
    assert [c for c in calls if not inspect.iscoroutinefunction(c)] == []
