"""The AI Token Wheel compatibility mount at `/token-wheel`, against a real sampler: the original frontend's
calls work unchanged (paths, field names, status codes), appends are scored under the settings the wheel was
last shown with, sessions are independent and shared with the native API. Bad input: `*_errors.py`. The
original: cmmiller26/ai-fun-token-wheel-v2, backend/app/{routers/sessions.py, models.py, main.py}.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fixtures.gateway import NO_PREDICTOR, MakeGateway, without_request_id
from fixtures.sampler import EOS_SUFFIX, HF_MODEL, LYCEUM_MODEL, PROMPT, RunningSampler

pytestmark = pytest.mark.integration

BASE = "/token-wheel"
API = f"{BASE}/api/sessions"
SERVED = [LYCEUM_MODEL, LYCEUM_MODEL + EOS_SUFFIX, HF_MODEL, HF_MODEL + EOS_SUFFIX]
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z$")

# The original's response shapes (backend/app/models.py), field for field.
CREATE_KEYS = {"session_id", "model_name", "created_at"}
STATE_KEYS = {
    "session_id",
    "model_name",
    "initial_prompt",
    "current_text",
    "token_history",
    "generation_count",
    "created_at",
    "last_accessed",
}
HISTORY_KEYS = {"token_id", "token_text", "probability", "category", "selected_at", "sampled_from_other"}
SET_PROMPT_KEYS = {"session_id", "current_text", "token_count", "message"}
PROBS_KEYS = {
    "session_id",
    "current_text",
    "threshold",
    "temperature",
    "above_threshold_tokens",
    "other_category",
    "total_above_threshold_probability",
    "vocabulary_size",
}
TOKEN_DATA_KEYS = {"token_id", "token_text", "probability", "log_probability"}
OTHER_KEYS = {"total_probability", "token_count", "sample_tokens"}
APPENDED_KEYS = {"token_id", "token_text", "probability", "category", "sampled_from_other"}
APPEND_KEYS = {"session_id", "previous_text", "appended_token", "current_text", "token_history"}
OTHER_SELECTION_KEYS = {"total_probability", "token_count", "selected_token_rank"}
UNDO_KEYS = {"session_id", "previous_text", "removed_token", "current_text", "token_history", "message"}
MODEL_KEYS = {"id", "name", "description", "parameters", "default"}


class OriginalFrontend:
    """The original frontend's calling pattern (frontend/src/lib/api/client.ts): fetch with JSON bodies."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def call(
        self, method: str, path: str, body: dict[str, Any] | None = None, **query: Any
    ) -> tuple[int, Any]:
        url = self.base_url + path + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            url, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            return err.code, without_request_id(json.loads(err.read()), err.headers.get("x-request-id"))


def create(g: TestClient, model: str = LYCEUM_MODEL, prompt: str | None = PROMPT) -> str:
    response = g.post(API, json={"model_name": model})
    assert response.status_code == 201, response.text
    sid = response.json()["session_id"]
    if prompt is not None:
        assert g.post(f"{API}/{sid}/set-prompt", json={"prompt": prompt}).status_code == 200
    return sid


def probs(g: TestClient, sid: str, **query: Any) -> dict[str, Any]:
    response = g.get(f"{API}/{sid}/next-token-probs", params=query)
    assert response.status_code == 200, response.text
    return response.json()


def everything(g: TestClient, sid: str, temperature: float) -> dict[int, float]:
    """Every token of the tiny model at `temperature`, most likely first (threshold 1: all are Other)."""
    shown = probs(g, sid, threshold=1.0, other_top_k=1000, temperature=temperature)
    return {t["token_id"]: t["probability"] for t in shown["other_category"]["sample_tokens"]}


def append(g: TestClient, sid: str, body: dict[str, Any], **query: Any) -> dict[str, Any]:
    response = g.post(f"{API}/{sid}/append-token", json=body, params=query)
    assert response.status_code == 200, response.text
    return response.json()


def state(g: TestClient, sid: str) -> dict[str, Any]:
    response = g.get(f"{API}/{sid}")
    assert response.status_code == 200, response.text
    return response.json()


def unchanging(session: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in session.items() if k != "last_accessed"}


# --- the original frontend, over a real socket --------------------------------------------------------------


def test_the_original_frontends_wheel_flow(sampler_gateway_url: str) -> None:
    app = OriginalFrontend(sampler_gateway_url + BASE)

    status, models = app.call("GET", "/api/models")
    assert status == 200 and [m["id"] for m in models["models"]] == SERVED
    assert all(set(m) == MODEL_KEYS for m in models["models"])
    status, created = app.call("POST", "/api/sessions", {"model_name": HF_MODEL})
    assert status == 201 and set(created) == CREATE_KEYS and created["model_name"] == HF_MODEL
    assert TIMESTAMP.match(created["created_at"])
    sid = created["session_id"]
    path = f"/api/sessions/{sid}"
    assert app.call("GET", f"{path}/next-token-probs") == (400, {"detail": "No prompt set yet"})

    status, prompted = app.call("POST", f"{path}/set-prompt", {"prompt": "The cat sat on the"})
    assert (status, prompted) == (
        200,
        {
            "session_id": sid,
            "current_text": "The cat sat on the",
            "token_count": 5,
            "message": "Prompt set successfully",
        },
    )

    # The wheel: the top of the distribution, then a threshold with three wedges and the rest as Other.
    status, top = app.call("GET", f"{path}/next-token-probs", threshold=1.0, other_top_k=4, temperature=0.7)
    ranked = [t["probability"] for t in top["other_category"]["sample_tokens"]]
    threshold = (ranked[2] + ranked[3]) / 2
    status, wheel = app.call("GET", f"{path}/next-token-probs", threshold=threshold, temperature=0.7)
    assert status == 200 and set(wheel) == PROBS_KEYS and set(wheel["other_category"]) == OTHER_KEYS
    above, other = wheel["above_threshold_tokens"], wheel["other_category"]
    assert (wheel["threshold"], wheel["temperature"], wheel["vocabulary_size"]) == (threshold, 0.7, 50257)
    assert len(above) == 3 and len(other["sample_tokens"]) == 10  # the original's default other_top_k
    assert all(set(t) == TOKEN_DATA_KEYS for t in above + other["sample_tokens"])
    assert len(above) + other["token_count"] == 50257
    assert abs(wheel["total_above_threshold_probability"] + other["total_probability"] - 1) < 1e-6

    status, spun = app.call("POST", f"{path}/append-token", {"category": "other"})
    assert status == 200 and set(spun) == APPEND_KEYS | {"other_category_info"}
    token = spun["appended_token"]
    assert set(token) == APPENDED_KEYS and (token["category"], token["sampled_from_other"]) == ("other", True)
    assert token["probability"] < threshold and token["token_id"] not in {t["token_id"] for t in above}
    assert spun["other_category_info"]["total_probability"] == pytest.approx(other["total_probability"])
    assert spun["other_category_info"]["token_count"] == other["token_count"]
    assert spun["other_category_info"]["selected_token_rank"] > 3
    assert spun["previous_text"] == "The cat sat on the"
    assert spun["current_text"] == "The cat sat on the" + token["token_text"]

    status, top = app.call("GET", f"{path}/next-token-probs", threshold=1.0, other_top_k=2, temperature=0.7)
    favourite, runner_up = top["other_category"]["sample_tokens"]
    middle = (favourite["probability"] + runner_up["probability"]) / 2
    status, wheel = app.call("GET", f"{path}/next-token-probs", threshold=middle, temperature=0.7)
    assert [t["token_id"] for t in wheel["above_threshold_tokens"]] == [favourite["token_id"]]
    status, picked = app.call("POST", f"{path}/append-token", {"token_id": favourite["token_id"]})
    assert status == 200 and picked["other_category_info"] is None
    assert picked["appended_token"]["category"] == "above_threshold"
    assert picked["appended_token"]["sampled_from_other"] is None  # the original sent null, never false
    assert picked["appended_token"]["probability"] == pytest.approx(favourite["probability"], abs=1e-6)
    status, typed = app.call("POST", f"{path}/append-token", {"token_text": " the"})
    assert status == 200 and typed["appended_token"]["token_text"] == " the"
    assert [t["token_id"] for t in typed["token_history"]][:2] == [token["token_id"], favourite["token_id"]]

    status, undone = app.call("POST", f"{path}/undo")
    assert status == 200 and set(undone) == UNDO_KEYS
    assert undone["message"] == "Last token removed successfully"
    assert (
        undone["removed_token"] == typed["appended_token"]
        and undone["previous_text"] == typed["current_text"]
    )
    assert undone["token_history"] == picked["token_history"]

    status, session = app.call("GET", path)
    assert status == 200 and set(session) == STATE_KEYS
    assert (session["generation_count"], session["initial_prompt"]) == (2, "The cat sat on the")
    assert (
        session["current_text"] == picked["current_text"] and session["created_at"] == created["created_at"]
    )
    assert all(set(t) == HISTORY_KEYS and TIMESTAMP.match(t["selected_at"]) for t in session["token_history"])
    assert TIMESTAMP.match(session["last_accessed"])

    assert app.call("DELETE", path) == (200, {"message": "Session deleted successfully", "session_id": sid})
    assert app.call("GET", path) == (404, {"detail": "Session does not exist"})
    status, health = app.call("GET", "/health")
    assert status == 200 and (health["status"], health["model_loaded"]) == ("healthy", True)
    assert app.call("GET", "/ready") == (200, {"status": "ready"})


# --- scored as shown ----------------------------------------------------------------------------------------


def test_appends_are_scored_under_the_settings_last_shown(sampler_gateway: TestClient) -> None:
    """The original scored every append at temperature 1 and threshold 0.01, whatever the wheel showed."""
    g = sampler_gateway
    sid = create(g)
    cold, warm, hot = everything(g, sid, 0.5), everything(g, sid, 1.0), everything(g, sid, 2.0)
    fifth = list(cold)[4]
    assert abs(cold[fifth] - warm[fifth]) > 1e-3  # the settings matter for this token

    threshold = (list(cold.values())[2] + list(cold.values())[3]) / 2
    probs(g, sid, threshold=threshold, temperature=0.5)  # the wheel the user sees
    as_shown = append(g, sid, {"token_id": fifth})["appended_token"]
    assert as_shown["probability"] == pytest.approx(cold[fifth], abs=1e-6)
    assert as_shown["category"] == "other"  # below the threshold the wheel showed
    g.post(f"{API}/{sid}/undo")

    probs(g, sid, threshold=0.0, temperature=2.0)
    assert append(g, sid, {"token_id": fifth})["appended_token"]["probability"] == pytest.approx(
        hot[fifth], abs=1e-6
    )
    g.post(f"{API}/{sid}/undo")

    # A Lyceum extension: query parameters on append-token override what was last shown.
    overridden = append(g, sid, {"token_id": fifth}, temperature=1.0, threshold=1.0)["appended_token"]
    assert overridden["probability"] == pytest.approx(warm[fifth], abs=1e-6)
    assert overridden["category"] == "other"


def test_a_spin_of_other_draws_from_the_other_the_wheel_showed(sampler_gateway: TestClient) -> None:
    g = sampler_gateway
    sid = create(g)
    cold = everything(g, sid, 0.5)
    threshold = (list(cold.values())[19] + list(cold.values())[20]) / 2  # twenty wedges
    shown = probs(g, sid, threshold=threshold, temperature=0.5)
    wedges = {t["token_id"] for t in shown["above_threshold_tokens"]}
    assert len(wedges) == 20

    for _ in range(5):
        spun = append(g, sid, {"category": "other"})
        token = spun["appended_token"]
        assert token["token_id"] not in wedges
        assert spun["other_category_info"]["selected_token_rank"] == list(cold).index(token["token_id"]) + 1
        assert token["probability"] == pytest.approx(cold[token["token_id"]], abs=1e-6)
        g.post(f"{API}/{sid}/undo")


# --- sessions, models and service routes --------------------------------------------------------------------


def test_two_sessions_are_independent(sampler_gateway: TestClient) -> None:
    g = sampler_gateway
    a, b = create(g), create(g, HF_MODEL, "Hello there")
    b_before = unchanging(state(g, b))

    probs(g, a, threshold=0.2, temperature=3.0)
    append(g, a, {"category": "other"})
    append(g, a, {"token_id": 3})
    g.post(f"{API}/{a}/undo")
    g.post(f"{API}/{a}/set-prompt", json={"prompt": "Another story"})

    assert unchanging(state(g, b)) == b_before
    assert g.delete(f"{API}/{a}").status_code == 200
    assert unchanging(state(g, b)) == b_before
    assert g.get(f"{API}/{a}").status_code == 404


def test_the_default_model(sampler: RunningSampler, make_gateway: MakeGateway) -> None:
    plain = make_gateway([NO_PREDICTOR], sampler_addresses=[sampler.address])
    configured = make_gateway(
        [NO_PREDICTOR], sampler_addresses=[sampler.address], token_wheel_default_model=HF_MODEL
    )

    assert plain.post(API, json={}).json()["model_name"] == LYCEUM_MODEL  # the first the sampler lists
    assert configured.post(API, json={}).json()["model_name"] == HF_MODEL
    defaults = [m["id"] for m in configured.get(f"{BASE}/api/models").json()["models"] if m["default"]]
    assert defaults == [HF_MODEL]


def test_byte_tokens_read_as_the_original_decoded_them(sampler_gateway: TestClient) -> None:
    """GPT-2 spells '’' as tokens 447 (E2 80) and 247 (99); the original's decode([id]) showed U+FFFD."""
    g = sampler_gateway
    sid = create(g, HF_MODEL, "It")

    first = append(g, sid, {"token_id": 447})
    second = append(g, sid, {"token_id": 247})

    assert first["appended_token"]["token_text"] == "\ufffd" and first["current_text"] == "It\ufffd"
    assert second["current_text"] == "It\u2019"


def test_sessions_are_shared_with_the_native_api(sampler_gateway: TestClient) -> None:
    g = sampler_gateway
    sid = create(g)
    append(g, sid, {"category": "other"})

    native = g.post(f"/v1/sessions/{sid}/tokens", json={"token_id": 9})
    session = state(g, sid)

    assert native.status_code == 200
    assert g.get(f"/v1/sessions/{sid}").json()["text"] == session["current_text"]
    history = session["token_history"]
    assert [t["token_id"] for t in history][1] == 9 and len(history) == 2
    assert (history[0]["sampled_from_other"], history[1]["sampled_from_other"]) == (True, None)
    assert TIMESTAMP.match(history[1]["selected_at"])


def test_any_gateway_replica_answers_alike(sampler: RunningSampler, make_gateway: MakeGateway) -> None:
    """The wheel's state (creation and selection times, Other draws, the settings last shown) lives in the
    sampler's session, not in a gateway: a second replica scores, shows and undoes exactly as the first."""
    a = make_gateway([NO_PREDICTOR], sampler_addresses=[sampler.address])
    b = make_gateway([NO_PREDICTOR], sampler_addresses=[sampler.address])
    created = a.post(API, json={"model_name": LYCEUM_MODEL}).json()
    sid = created["session_id"]
    assert b.post(f"{API}/{sid}/set-prompt", json={"prompt": PROMPT}).status_code == 200
    cold = everything(a, sid, 0.5)
    fifth = list(cold)[4]
    threshold = (list(cold.values())[2] + list(cold.values())[3]) / 2
    probs(a, sid, threshold=threshold, temperature=0.5)  # shown through replica a

    as_shown = append(b, sid, {"token_id": fifth})["appended_token"]  # appended through replica b
    assert as_shown["probability"] == pytest.approx(cold[fifth], abs=1e-6)
    assert as_shown["category"] == "other" and as_shown["sampled_from_other"] is None
    drawn = append(a, sid, {"category": "other"})["appended_token"]
    assert drawn["sampled_from_other"] is True and drawn["token_id"] in cold

    seen_by_a, seen_by_b = state(a, sid), state(b, sid)
    assert unchanging(seen_by_a) == unchanging(seen_by_b)
    assert seen_by_a["created_at"] == created["created_at"]
    assert [t["sampled_from_other"] for t in seen_by_b["token_history"]] == [None, True]
    assert seen_by_b["token_history"][0]["selected_at"] <= seen_by_b["token_history"][1]["selected_at"]
    undone = b.post(f"{API}/{sid}/undo").json()
    assert undone["removed_token"]["sampled_from_other"] is True
    assert undone["token_history"] == seen_by_a["token_history"][:1]
