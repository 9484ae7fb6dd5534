"""The rest of the gateway's sampler face over real samplers: `POST /v1/generate` as JSON and as Server-Sent
Events (in-process and over a real socket), `GET /v1/sampler/models`, the OpenAPI documents, authentication
on both sampler mounts, route-template metrics, and sessions routed to their owner replica."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fixtures.fleet import owner_of
from fixtures.gateway import API_KEY, NO_PREDICTOR, MakeGateway, compat_json
from fixtures.sampler import EOS_PROMPT, EOS_SUFFIX, HF_MODEL, LYCEUM_MODEL, PROMPT, MakeSampler

from lyceum_gateway.config import Settings

pytestmark = pytest.mark.integration

SSE = {"Accept": "text/event-stream"}


def generate(gateway: TestClient, **body: Any) -> dict[str, Any]:
    response = gateway.post("/v1/generate", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def parse_sse(text: str) -> list[tuple[str, str | None, Any]]:
    """(event, id, data) of each event in a `text/event-stream` body."""
    events = []
    for block in text.strip().split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            name, _, value = line.partition(": ")
            fields[name] = value
        if "event" in fields:
            events.append((fields["event"], fields.get("id"), json.loads(fields["data"])))
    return events


def stream(gateway: TestClient, **body: Any) -> list[tuple[str, str | None, Any]]:
    with gateway.stream("POST", "/v1/generate", json=body, headers=SSE) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return parse_sse(response.read().decode())


# --- generation ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [LYCEUM_MODEL, HF_MODEL])
def test_generate_returns_each_token_and_the_whole_text(sampler_gateway: TestClient, model: str) -> None:
    result = generate(sampler_gateway, model=model, prompt=PROMPT, max_new_tokens=6, seed=3)

    assert (result["model"], result["finish_reason"]) == (model, "length")
    tokens = result["tokens"]
    assert [t["index"] for t in tokens] == list(range(6))
    assert tokens[-1]["text"] == result["text"]
    assert all(0 < t["probability"] <= 1 for t in tokens)
    assert all(t["text"].startswith(u["text"]) for u, t in zip(tokens, tokens[1:], strict=False))


def test_sampling_is_reproducible_by_seed_and_greedy_is_deterministic(sampler_gateway: TestClient) -> None:
    g = sampler_gateway
    body = {"model": HF_MODEL, "prompt": "The cat", "max_new_tokens": 5}

    assert generate(g, **body, seed=9) == generate(g, **body, seed=9)
    assert generate(g, **body, strategy="greedy") == generate(g, **body, strategy="greedy")
    assert generate(g, **body, strategy="beam")["finish_reason"] in {"length", "eos"}


def test_generation_stops_at_eos_and_at_a_stop_string(sampler_gateway: TestClient) -> None:
    g = sampler_gateway
    eos = generate(
        g, model=LYCEUM_MODEL + EOS_SUFFIX, prompt=EOS_PROMPT, strategy="greedy", max_new_tokens=20
    )
    assert eos["finish_reason"] == "eos" and len(eos["tokens"]) < 20

    body = {"model": HF_MODEL, "prompt": "The cat", "strategy": "greedy", "max_new_tokens": 12}
    free = generate(g, **body)
    third = free["tokens"][2]["text"][len(free["tokens"][1]["text"]) :]  # what the third token added
    assert third.strip()

    stopped = generate(g, **body, stop=[third])

    assert stopped["finish_reason"] == "stop" and len(stopped["tokens"]) <= 3
    assert stopped["text"] == free["text"][: free["text"].index(third)]  # cut before the stop string


def test_event_stream_sends_each_token_then_the_end(sampler_gateway: TestClient) -> None:
    body = {"model": HF_MODEL, "prompt": "Once", "max_new_tokens": 4, "seed": 5}
    expected = generate(sampler_gateway, **body)

    events = stream(sampler_gateway, **body)

    assert [(name, event_id) for name, event_id, _ in events] == [
        *[("token", str(i)) for i in range(4)],
        ("end", None),
    ]
    assert [data for _, _, data in events[:-1]] == expected["tokens"]
    assert events[-1][2] == {"model": HF_MODEL, "text": expected["text"], "finish_reason": "length"}


def test_event_stream_over_a_real_socket(sampler_gateway_url: str) -> None:
    body = json.dumps({"model": LYCEUM_MODEL, "prompt": PROMPT, "max_new_tokens": 3, "seed": 1}).encode()
    request = urllib.request.Request(
        sampler_gateway_url + "/v1/generate",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", **SSE},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert response.headers["Cache-Control"] == "no-cache"
        events = parse_sse(response.read().decode())

    assert [name for name, _, _ in events] == ["token", "token", "token", "end"]


@pytest.mark.parametrize("headers", [{}, SSE])
def test_errors_before_the_first_token_are_plain_responses(
    sampler_gateway: TestClient, headers: dict
) -> None:
    response = sampler_gateway.post(
        "/v1/generate", json={"model": "no-such-model", "prompt": "Hi"}, headers=headers
    )

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["field"] == "model"


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"prompt": "Hi"}, 422, "model"),
        ({"model": LYCEUM_MODEL, "prompt": ""}, 422, "prompt"),
        ({"model": LYCEUM_MODEL, "prompt": "Hi", "max_new_tokens": 0}, 422, "max_new_tokens"),
        ({"model": LYCEUM_MODEL, "prompt": "Hi", "max_new_tokens": 4097}, 422, "max_new_tokens"),
        ({"model": LYCEUM_MODEL, "prompt": "Hi", "strategy": "nucleus"}, 422, "strategy"),
        ({"model": LYCEUM_MODEL, "prompt": "Hi", "num_beams": 4}, 422, "body"),
        ({"model": LYCEUM_MODEL, "prompt": "Hi", "strategy": "beam", "num_beams": 17}, 422, "num_beams"),
        ({"model": LYCEUM_MODEL, "prompt": "Hi", "stop": [""]}, 422, "stop[0]"),
        ({"model": LYCEUM_MODEL, "prompt": "Hi", "stop": ["x"] * 17}, 422, "stop"),
        ({"model": LYCEUM_MODEL, "prompt": "Hi", "temperature": -1}, 422, "temperature"),
        ({"model": LYCEUM_MODEL, "prompt": "Hi", "seed": 2**64}, 422, "seed"),
        ({"model": LYCEUM_MODEL, "prompt": "a" + " a" * 150}, 400, "prompt"),
    ],
)
def test_bad_generations_are_refused(
    sampler_gateway: TestClient, body: dict, status: int, field: str
) -> None:
    response = sampler_gateway.post("/v1/generate", json=body)

    assert response.status_code == status, response.text
    assert response.json()["error"]["field"] == field


# --- models, documents, auth, metrics -----------------------------------------------------------------------


def test_sampler_models_lists_what_the_sampler_serves(sampler_gateway: TestClient) -> None:
    before = sampler_gateway.get("/v1/sampler/models").json()["models"]
    assert [m["name"] for m in before] == [
        LYCEUM_MODEL,
        LYCEUM_MODEL + EOS_SUFFIX,
        HF_MODEL,
        HF_MODEL + EOS_SUFFIX,
    ]
    assert not any(m["loaded"] for m in before) and before[0]["vocab_size"] is None

    generate(sampler_gateway, model=HF_MODEL, prompt="Hi", max_new_tokens=1)
    after = {m["name"]: m for m in sampler_gateway.get("/v1/sampler/models").json()["models"]}
    assert after[HF_MODEL] == {
        "name": HF_MODEL,
        "kind": "hf-causal-lm",
        "vocab_size": 50257,
        "max_context_len": 256,
        "loaded": True,
    }


def test_openapi_documents_the_sampler_routes(sampler_gateway: TestClient) -> None:
    schema = sampler_gateway.get("/openapi.json").json()
    paths = schema["paths"]

    for path, method in [
        ("/v1/sessions", "post"),
        ("/v1/sessions/{session_id}", "get"),
        ("/v1/sessions/{session_id}", "delete"),
        ("/v1/sessions/{session_id}/prompt", "put"),
        ("/v1/sessions/{session_id}/distribution", "get"),
        ("/v1/sessions/{session_id}/tokens", "post"),
        ("/v1/sessions/{session_id}/undo", "post"),
    ]:
        operation = paths[path][method]
        assert operation["tags"] == ["sessions"] and operation["summary"] and operation["description"]
    assert "201" in paths["/v1/sessions"]["post"]["responses"]
    assert "text/event-stream" in paths["/v1/generate"]["post"]["responses"]["200"]["content"]
    assert {"sessions", "generation"} <= {tag["name"] for tag in schema["tags"]}
    assert "base64" in schema["components"]["schemas"]["TokenOut"]["properties"]["bytes"]["description"]
    wheel = sampler_gateway.get("/token-wheel/openapi.json").json()["paths"]
    assert {"/api/sessions", "/api/sessions/{session_id}/next-token-probs", "/api/models"} <= set(wheel)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/sessions", {"model": LYCEUM_MODEL}),
        ("GET", "/v1/sampler/models", None),
        ("POST", "/v1/generate", {"model": LYCEUM_MODEL, "prompt": "Hi", "max_new_tokens": 1}),
        ("POST", "/token-wheel/api/sessions", {"model_name": LYCEUM_MODEL}),
        ("GET", "/token-wheel/api/models", None),
        ("GET", "/token-wheel/health", None),
    ],
)
def test_auth_applies_to_both_sampler_mounts(
    sampler_gateway_with_auth: TestClient, method: str, path: str, body: dict | None
) -> None:
    g = sampler_gateway_with_auth

    refused = g.request(method, path, json=body)
    wrong = g.request(method, path, json=body, headers={"X-API-Key": "nope"})
    allowed = g.request(method, path, json=body, headers={"Authorization": f"Bearer {API_KEY}"})

    for response in (refused, wrong):
        assert response.status_code == 401
        if path.startswith("/token-wheel"):
            assert set(compat_json(response)) == {"detail"}
        else:
            assert response.json()["error"]["code"] == "UNAUTHENTICATED"
    assert allowed.status_code in {200, 201}, allowed.text


def test_metrics_label_sampler_routes_by_template(sampler_gateway: TestClient) -> None:
    g = sampler_gateway
    sid = g.post("/v1/sessions", json={"model": LYCEUM_MODEL, "prompt": PROMPT}).json()["session_id"]
    g.get(f"/v1/sessions/{sid}/distribution")
    wheel = g.post("/token-wheel/api/sessions", json={"model_name": LYCEUM_MODEL}).json()["session_id"]
    g.get(f"/token-wheel/api/sessions/{wheel}/next-token-probs")

    text = g.get("/metrics").text

    assert 'route="/v1/sessions/{session_id}/distribution",status="200"' in text
    assert 'route="/token-wheel/api/sessions/{session_id}/next-token-probs",status="400"' in text
    assert sid not in text and wheel not in text


# --- settings and routing -----------------------------------------------------------------------------------


def test_sampler_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SAMPLER_ADDRESSES", "GENERATE_TIMEOUT_S", "TOKEN_WHEEL_DEFAULT_MODEL"):
        monkeypatch.delenv(f"LYCEUM_GATEWAY_{name}", raising=False)
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    assert defaults.sampler_addresses == ["127.0.0.1:50061"] and defaults.token_wheel_default_model is None

    monkeypatch.setenv("LYCEUM_GATEWAY_SAMPLER_ADDRESSES", "sampler-0:50061, sampler-1:50061")
    assert Settings(_env_file=None).sampler_addresses == ["sampler-0:50061", "sampler-1:50061"]  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="sampler_addresses"):
        Settings(_env_file=None, sampler_addresses="")  # type: ignore[call-arg]


def test_each_sessions_calls_go_to_its_owner_replica(
    make_sampler: MakeSampler, make_gateway: MakeGateway
) -> None:
    """Two samplers over one Redis: any may create a session, and the owner of its id serves the rest, so
    its KV cache is built (and kept warm) on that replica alone."""
    samplers = [make_sampler(), make_sampler()]
    addresses = [s.address for s in samplers]
    g = make_gateway([NO_PREDICTOR], sampler_addresses=addresses)
    sessions = [g.post("/v1/sessions", json={"model": LYCEUM_MODEL}).json()["session_id"] for _ in range(12)]
    owners = {sid: owner_of(addresses, sid) for sid in sessions}
    assert set(owners.values()) == set(addresses)  # both replicas own some (12 ids: a 1-in-2048 miss)

    for sid in sessions:
        assert g.put(f"/v1/sessions/{sid}/prompt", json={"prompt": PROMPT}).status_code == 200
        for _ in range(3):
            r = g.get(f"/v1/sessions/{sid}/distribution")
            assert r.status_code == 200, r.text
        assert g.post(f"/v1/sessions/{sid}/tokens", json={"token_id": 5}).status_code == 200

    for sampler in samplers:
        owned = sum(owners[sid] == sampler.address for sid in sessions)
        # one prompt pass and one appended token per owned session; no rebuilds, no other replica's work
        assert len(sampler.models[LYCEUM_MODEL].extends) == 2 * owned
