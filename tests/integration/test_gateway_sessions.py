"""The native `/v1/sessions` API over a real sampler (tiny local models, sessions in real Redis): the wheel
flow (prompt, distribution, a spin of Other, appends, undo), tokens recorded as they were shown, independent
sessions, faithful byte-form tokens, and every bad input refused with the right 4xx and nothing changed."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fixtures.sampler import HF_MODEL, LYCEUM_MODEL, PROMPT

pytestmark = pytest.mark.integration

BASE = "/v1/sessions"
TINY_VOCAB = 384


def create(gateway: TestClient, model: str = LYCEUM_MODEL, prompt: str | None = PROMPT) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model} if prompt is None else {"model": model, "prompt": prompt}
    response = gateway.post(BASE, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def get(gateway: TestClient, sid: str) -> dict[str, Any]:
    response = gateway.get(f"{BASE}/{sid}")
    assert response.status_code == 200, response.text
    return response.json()


def distribution(gateway: TestClient, sid: str, **params: Any) -> dict[str, Any]:
    response = gateway.get(f"{BASE}/{sid}/distribution", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def append(gateway: TestClient, sid: str, **body: Any) -> dict[str, Any]:
    response = gateway.post(f"{BASE}/{sid}/tokens", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def ranked(gateway: TestClient, sid: str, **params: Any) -> list[tuple[int, float]]:
    """Every token of the tiny model with its probability, most likely first (threshold 0 shows all)."""
    d = distribution(gateway, sid, threshold=0.0, other_top_k=0, **params)
    assert len(d["above"]) == TINY_VOCAB
    return [(p["token"]["id"], p["probability"]) for p in d["above"]]


def threshold_after(gateway: TestClient, sid: str, n: int, **params: Any) -> float:
    """A threshold with exactly the n most likely tokens at or above it."""
    probs = [p for _, p in ranked(gateway, sid, **params)]
    assert probs[n - 1] > probs[n]
    return (probs[n - 1] + probs[n]) / 2


def same_distribution(a: dict[str, Any], b: dict[str, Any], tol: float = 1e-5) -> bool:
    """Equal up to float noise (a cache rebuilt in one pass and one extended token by token differ)."""
    tokens = [[p["token"] for p in d["above"] + d["other"]["top"]] for d in (a, b)]
    probs = [[p["probability"] for p in d["above"] + d["other"]["top"]] for d in (a, b)]
    return (
        tokens[0] == tokens[1]
        and a["other"]["count"] == b["other"]["count"]
        and a["context_len"] == b["context_len"]
        and all(abs(p - q) < tol for p, q in zip(*probs, strict=True))
    )


def assert_error(response: Any, status: int, code: str, field: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    if field is not None:
        assert error["field"] == field, error


# --- the wheel ----------------------------------------------------------------------------------------------


def test_create_returns_201_with_the_session_and_its_location(sampler_gateway: TestClient) -> None:
    response = sampler_gateway.post(BASE, json={"model": LYCEUM_MODEL, "prompt": PROMPT})

    assert response.status_code == 201
    session = response.json()
    assert response.headers["location"] == f"{BASE}/{session['session_id']}"
    assert (session["model"], session["prompt"], session["text"]) == (LYCEUM_MODEL, PROMPT, PROMPT)
    assert session["generated"] == [] and session["max_context_len"] == 96
    assert session["context_len"] == len(session["prompt_token_ids"]) > 0
    assert get(sampler_gateway, session["session_id"]) == session


def test_a_session_keeps_its_gate_signal_and_ungated_models_refuse_one(sampler_gateway: TestClient) -> None:
    response = sampler_gateway.post(BASE, json={"model": LYCEUM_MODEL, "prompt": PROMPT, "gate_signal": 0.25})
    assert response.status_code == 201, response.text
    session = response.json()
    assert session["gate_signal"] == 0.25 and session["adapter"] is None
    assert get(sampler_gateway, session["session_id"])["gate_signal"] == 0.25
    assert distribution(sampler_gateway, session["session_id"])["above"]
    refused = sampler_gateway.post(BASE, json={"model": HF_MODEL, "prompt": PROMPT, "gate_signal": 0.5})
    assert_error(refused, 400, "INVALID_ARGUMENT", "gate_signal")
    out_of_range = sampler_gateway.post(BASE, json={"model": LYCEUM_MODEL, "gate_signal": 1.5})
    assert out_of_range.status_code == 422
    unknown = sampler_gateway.post(BASE, json={"model": LYCEUM_MODEL, "adapter": "no-such-adapter"})
    assert unknown.status_code == 404, unknown.text


def test_a_session_created_without_a_prompt_takes_one_later(sampler_gateway: TestClient) -> None:
    sid = create(sampler_gateway, prompt=None)["session_id"]
    assert_error(sampler_gateway.get(f"{BASE}/{sid}/distribution"), 409, "FAILED_PRECONDITION", "prompt")

    response = sampler_gateway.put(f"{BASE}/{sid}/prompt", json={"prompt": "The cat"})

    assert response.status_code == 200, response.text
    assert response.json()["prompt"] == "The cat" and response.json()["text"] == "The cat"
    assert distribution(sampler_gateway, sid)["threshold"] == 0.01  # the sampler's default


def test_the_wheel_flow(sampler_gateway: TestClient) -> None:
    """prompt -> distribution -> spin Other -> append the favourite -> undo, undo, and nothing left."""
    g = sampler_gateway
    sid = create(g)["session_id"]
    settings = {"temperature": 0.8}
    t = threshold_after(g, sid, 3, **settings)
    everything = dict(ranked(g, sid, **settings))

    shown = distribution(g, sid, threshold=t, other_top_k=5, **settings)
    assert [p["token"]["id"] for p in shown["above"]] == list(everything)[:3]
    assert shown["other"]["count"] == TINY_VOCAB - 3 and len(shown["other"]["top"]) == 5
    assert abs(sum(p["probability"] for p in shown["above"]) + shown["other"]["probability"] - 1) < 1e-6

    spun = append(g, sid, from_other=True, threshold=t, seed=11, **settings)["appended"]
    token_id = spun["token"]["id"]
    assert spun["category"] == "other" and token_id not in list(everything)[:3]
    assert abs(spun["probability"] - everything[token_id]) < 1e-5  # as shown, at temperature 0.8
    assert spun["rank"] == list(everything).index(token_id)

    favourite = distribution(g, sid, threshold=t, **settings)["above"][0]
    result = append(g, sid, token_id=favourite["token"]["id"], threshold=t, **settings)
    assert result["appended"]["category"] == "above" and result["appended"]["rank"] == 0
    assert abs(result["appended"]["probability"] - favourite["probability"]) < 1e-6
    session = result["session"]
    assert [e["token"]["id"] for e in session["generated"]] == [token_id, favourite["token"]["id"]]
    assert session["context_len"] == len(session["prompt_token_ids"]) + 2

    undone = g.post(f"{BASE}/{sid}/undo")
    assert undone.status_code == 200
    assert undone.json()["removed"] == result["appended"]
    assert undone.json()["session"]["generated"] == [spun]
    assert g.post(f"{BASE}/{sid}/undo").json()["removed"] == spun
    assert_error(g.post(f"{BASE}/{sid}/undo"), 409, "FAILED_PRECONDITION")
    assert get(g, sid)["text"] == PROMPT


def test_an_appended_token_is_recorded_under_the_settings_given(sampler_gateway: TestClient) -> None:
    g = sampler_gateway
    sid = create(g)["session_id"]
    hot, cold = dict(ranked(g, sid, temperature=2.0)), dict(ranked(g, sid, temperature=0.5))
    token_id = list(cold)[1]

    at_two = append(g, sid, token_id=token_id, threshold=0.0, temperature=2.0)["appended"]
    g.post(f"{BASE}/{sid}/undo")
    at_half = append(g, sid, token_id=token_id, threshold=1.0, temperature=0.5)["appended"]

    assert abs(at_two["probability"] - hot[token_id]) < 1e-5 and at_two["category"] == "above"
    assert abs(at_half["probability"] - cold[token_id]) < 1e-5 and at_half["category"] == "other"
    assert at_half["rank"] == 1


def test_an_append_pinned_to_the_shown_length_lands_once(sampler_gateway: TestClient) -> None:
    g = sampler_gateway
    sid = create(g)["session_id"]
    shown = distribution(g, sid)
    token_id = shown["above"][0]["token"]["id"]
    body = {"token_id": token_id, "expected_context_len": shown["context_len"]}

    first = g.post(f"{BASE}/{sid}/tokens", json=body)
    retried = g.post(f"{BASE}/{sid}/tokens", json=body)  # e.g. resent after a 503 that had applied it

    assert first.status_code == 200
    assert first.json()["session"]["context_len"] == shown["context_len"] + 1
    assert_error(retried, 409, "FAILED_PRECONDITION", field="expected_context_len")
    assert [e["token"]["id"] for e in get(g, sid)["generated"]] == [token_id]  # once
    negative = g.post(f"{BASE}/{sid}/tokens", json={**body, "expected_context_len": -1})
    assert negative.status_code == 422


def test_append_by_text_names_the_same_token_as_by_id(sampler_gateway: TestClient) -> None:
    g = sampler_gateway
    sid = create(g, HF_MODEL, "The cat sat on the")["session_id"]
    by_text = append(g, sid, token_text=" mat")["appended"]
    assert by_text["token"]["text"] == " mat" and get(g, sid)["text"] == "The cat sat on the mat"
    g.post(f"{BASE}/{sid}/undo")

    by_id = append(g, sid, token_id=by_text["token"]["id"])["appended"]

    assert {**by_id, "probability": None} == {**by_text, "probability": None}
    assert abs(by_id["probability"] - by_text["probability"]) < 1e-9


def test_a_spin_of_the_wheel_draws_from_the_whole_distribution_by_seed(sampler_gateway: TestClient) -> None:
    g = sampler_gateway
    first, second = create(g)["session_id"], create(g)["session_id"]
    shown = distribution(g, first, threshold=0.0, temperature=0.8)
    everything = {p["token"]["id"]: p["probability"] for p in shown["above"]}
    spins = [
        [append(g, sid, spin=True, threshold=0.05, temperature=0.8, seed=seed)["appended"] for seed in (1, 2)]
        for sid in (first, second)
    ]
    assert [s["token"]["id"] for s in spins[0]] == [s["token"]["id"] for s in spins[1]]
    spun = spins[0][0]  # scored as shown: its probability, category and rank at threshold 0.05
    assert abs(spun["probability"] - everything[spun["token"]["id"]]) < 1e-5
    assert spun["category"] == ("above" if spun["probability"] >= 0.05 else "other")
    assert get(g, first)["context_len"] == shown["context_len"] + 2


def test_spins_of_other_are_reproducible_by_seed(sampler_gateway: TestClient) -> None:
    g = sampler_gateway
    first, second = create(g)["session_id"], create(g)["session_id"]
    spins = [
        [append(g, sid, from_other=True, threshold=0.05, seed=seed)["appended"] for seed in (1, 2, 3)]
        for sid in (first, second)
    ]
    assert spins[0] == spins[1]


def test_two_sessions_are_independent(sampler_gateway: TestClient) -> None:
    g = sampler_gateway
    a, b = create(g)["session_id"], create(g, HF_MODEL, "Hello there")["session_id"]
    b_before, b_shown = get(g, b), distribution(g, b)

    append(g, a, from_other=True, seed=5)
    append(g, a, token_id=3)
    g.put(f"{BASE}/{a}/prompt", json={"prompt": "A new start"})
    append(g, a, token_id=4)

    assert get(g, b) == b_before and same_distribution(distribution(g, b), b_shown)
    assert g.delete(f"{BASE}/{a}").status_code == 204
    assert_error(g.get(f"{BASE}/{a}"), 404, "NOT_FOUND", "session_id")
    assert get(g, b) == b_before


def test_tokens_are_shown_faithfully_as_text_and_bytes(sampler_gateway: TestClient) -> None:
    """GPT-2 spells '’' (E2 80 99) as two tokens, 447 (E2 80) and 247 (99): neither is text on its own."""
    g = sampler_gateway
    sid = create(g, HF_MODEL, "It")["session_id"]

    first = append(g, sid, token_id=447)
    second = append(g, sid, token_id=247)

    assert first["appended"]["token"] == {"id": 447, "text": "", "bytes": "4oA=", "is_valid_utf8": False}
    assert second["appended"]["token"] == {"id": 247, "text": "", "bytes": "mQ==", "is_valid_utf8": False}
    assert first["session"]["text"] == "It\ufffd" and second["session"]["text"] == "It\u2019"
    for p in distribution(g, create(g)["session_id"], threshold=0.0, other_top_k=0)["above"]:
        token = p["token"]
        raw = base64.b64decode(token["bytes"], validate=True)
        assert token["text"] == (raw.decode() if token["is_valid_utf8"] else "")


# --- bad input ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"threshold": 1.5}, "threshold"),
        ({"threshold": -0.1}, "threshold"),
        ({"threshold": "nan"}, "threshold"),
        ({"other_top_k": 1001}, "other_top_k"),
        ({"temperature": 0}, "temperature"),
        ({"temperature": "inf"}, "temperature"),
        ({"top_k": -1}, "top_k"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.1}, "top_p"),
        ({"repetition_penalty": 0.9}, "repetition_penalty"),
        ({"threshold": "high"}, "threshold"),
    ],
)
def test_bad_distribution_settings_are_422(sampler_gateway: TestClient, params: dict, field: str) -> None:
    sid = create(sampler_gateway)["session_id"]
    assert_error(
        sampler_gateway.get(f"{BASE}/{sid}/distribution", params=params), 422, "INVALID_ARGUMENT", field
    )


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({}, 422, "body"),
        ({"token_id": 1, "token_text": "a"}, 422, "body"),
        ({"token_id": 1, "from_other": True}, 422, "body"),
        ({"from_other": False}, 422, "from_other"),
        ({"spin": True, "from_other": True}, 422, "body"),
        ({"spin": False}, 422, "spin"),
        ({"spin": True, "seed": 2**64}, 422, "seed"),
        ({"token_id": -1}, 422, "token_id"),
        ({"token_id": "5"}, 422, "token_id"),
        ({"token_id": 2**31}, 422, "token_id"),
        ({"token_id": 1, "threshold": 2}, 422, "threshold"),
        ({"token_id": 1, "temperature": 0}, 422, "temperature"),
        ({"from_other": True, "seed": -1}, 422, "seed"),
        ({"token_id": 1, "colour": "red"}, 422, "colour"),
        ({"token_text": ""}, 422, "token_text"),
        ({"token_id": TINY_VOCAB + 100}, 400, "token_id"),
        ({"token_text": "Once upon"}, 400, "token_text"),
        ({"from_other": True, "threshold": 0.0}, 400, "from_other"),  # everything is above: Other is empty
    ],
)
def test_bad_appends_are_refused_and_change_nothing(
    sampler_gateway: TestClient, body: dict, status: int, field: str
) -> None:
    g = sampler_gateway
    sid = create(g)["session_id"]
    append(g, sid, token_id=7)
    before, shown = get(g, sid), distribution(g, sid)

    assert_error(g.post(f"{BASE}/{sid}/tokens", json=body), status, "INVALID_ARGUMENT", field)

    assert get(g, sid) == before and same_distribution(distribution(g, sid), shown)


def test_bad_prompts_are_refused_and_change_nothing(sampler_gateway: TestClient) -> None:
    g = sampler_gateway
    sid = create(g)["session_id"]
    append(g, sid, token_id=7)
    before = get(g, sid)

    assert_error(g.put(f"{BASE}/{sid}/prompt", json={"prompt": ""}), 400, "INVALID_ARGUMENT", "prompt")
    assert_error(
        g.put(f"{BASE}/{sid}/prompt", json={"prompt": "a" + " a" * 150}), 400, "INVALID_ARGUMENT", "prompt"
    )
    assert_error(g.put(f"{BASE}/{sid}/prompt", json={}), 422, "INVALID_ARGUMENT", "prompt")
    assert_error(g.put(f"{BASE}/{sid}/prompt", json={"prompt": 3}), 422, "INVALID_ARGUMENT", "prompt")

    assert get(g, sid) == before


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"model": "no-such-model"}, 404, "NOT_FOUND", "model"),
        ({"model": ""}, 422, "INVALID_ARGUMENT", "model"),
        ({}, 422, "INVALID_ARGUMENT", "model"),
        ({"model": LYCEUM_MODEL, "prompt": ""}, 400, "INVALID_ARGUMENT", "prompt"),
        ({"model": LYCEUM_MODEL, "temperature": 1}, 422, "INVALID_ARGUMENT", "temperature"),
    ],
)
def test_bad_creations_are_refused(
    sampler_gateway: TestClient, body: dict, status: int, code: str, field: str
) -> None:
    assert_error(sampler_gateway.post(BASE, json=body), status, code, field)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "", None),
        ("DELETE", "", None),
        ("PUT", "/prompt", {"prompt": "Hi"}),
        ("GET", "/distribution", None),
        ("POST", "/tokens", {"token_id": 1}),
        ("POST", "/undo", None),
    ],
)
def test_unknown_and_malformed_session_ids(
    sampler_gateway: TestClient, method: str, path: str, body: dict | None
) -> None:
    unknown = sampler_gateway.request(method, f"{BASE}/0123456789abcdef{path}", json=body)
    malformed = sampler_gateway.request(method, f"{BASE}/not.an.id{path}", json=body)

    assert_error(unknown, 404, "NOT_FOUND", "session_id")
    assert_error(malformed, 422, "INVALID_ARGUMENT", "session_id")
