"""Serving through the whole local stack (the `stack` fixture): /v1 and the DFM-Server mount over real HTTP
with learners spread over two predictor processes."""

from __future__ import annotations

import httpx
import pytest
from fixtures.predictor import TEST_TASKS

# the stack comes up from a fresh var/ (demo training, the SmolLM2 conversion): minutes on a busy CPU
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def test_stack_serves_v1_and_dfm_server(stack: str) -> None:
    with httpx.Client(base_url=stack, timeout=30) as http:
        ready = http.get("/readyz")
        assert ready.status_code == 200
        # "Lyceum is up" waits until the gateway routes to every replica it was given
        assert ready.json()["serving"] == ready.json()["predictors"] == 2
        assert ready.json()["samplers_serving"] == ready.json()["samplers"] == 1
        assert "swagger" in http.get("/docs").text.lower()
        assert set(http.get("/v1/tasks").json()["tasks"]) == set(TEST_TASKS)

        # many learners spread over both predictors; each one's calls stay consistent
        for i in range(8):
            lid = f"learner-{i}"
            r = http.post(
                "/v1/learners", json={"learner_id": lid, "history": [{"task": "t01", "outcome": 1}]}
            )
            assert r.status_code == 201, r.text
            before = http.post(f"/v1/learners/{lid}/predictions", json={"tasks": ["t02"]}).json()
            r = http.post(f"/v1/learners/{lid}/events", json={"events": [{"task": "t02", "outcome": 0}]})
            assert r.status_code == 200, r.text
            assert r.json()["prior_probabilities"][0] == pytest.approx(
                before["predictions"][0]["probability"]
            )
            assert r.json()["learner"]["history_len"] == 2

        r = http.post("/dfm-server/learners", json={"learner_id": "bob", "tasks": ["t01"], "outcomes": [1.0]})
        assert r.json() == {"learner_id": "bob", "history_len": 1}
        preds = http.post("/dfm-server/predict", json={"learner_id": "bob", "tasks": ["t02", "t03"]}).json()
        assert len(preds["predictions"]) == 2 and all(0 < p < 1 for p in preds["predictions"])
        r = http.post("/dfm-server/update", json={"learner_id": "bob", "task": "t02", "outcome": 1.0})
        assert r.json() == {"learner_id": "bob", "history_len": 2}
        fc = http.post(
            "/dfm-server/forecast", json={"learner_id": "bob", "task_sequences": [["t01", "t02"]] * 3}
        )
        assert [len(row) for row in fc.json()["predictions"]] == [2, 2, 2]
        assert (
            http.post("/dfm-server/predict", json={"learner_id": "nobody", "tasks": ["t01"]}).status_code
            == 404
        )
        assert "lyceum_http_requests_total" in http.get("/metrics").text


def test_stack_serves_a_token_wheel_session(stack: str) -> None:
    with httpx.Client(base_url=stack + "/token-wheel", timeout=30) as http:
        models = http.get("/api/models").json()
        assert "lm-demo@production" in str(models)
        session = http.post("/api/sessions", json={"model_name": "lm-demo@production"})
        assert session.status_code == 201, session.text
        sid = session.json()["session_id"]
        prompt = http.post(f"/api/sessions/{sid}/set-prompt", json={"prompt": "Once upon a time"})
        assert prompt.status_code == 200, prompt.text
        wheel = http.get(f"/api/sessions/{sid}/next-token-probs", params={"threshold": 0.01}).json()
        shown = wheel["total_above_threshold_probability"] + wheel["other_category"]["total_probability"]
        assert abs(shown - 1) < 1e-4, wheel
        spun = http.post(f"/api/sessions/{sid}/append-token", json={"category": "other"})
        assert spun.status_code in (200, 400), spun.text  # 400 only when the Other bucket is empty
        first = (wheel["above_threshold_tokens"] or wheel["other_category"]["sample_tokens"])[0]["token_id"]
        assert http.post(f"/api/sessions/{sid}/append-token", json={"token_id": first}).status_code == 200
        assert http.post(f"/api/sessions/{sid}/undo").status_code == 200
        assert http.get("/api/sessions/nope").status_code == 404
