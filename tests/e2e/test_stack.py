"""The whole local stack as `make run` starts it: scripts/run_local.py with two predictor processes and the
gateway, driven over real HTTP like a new user would."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fixtures.predictor import TEST_TASKS

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_block(n: int) -> int:
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20_000, 60_000)
        if all(_free(base + i) for i in range(n)):
            return base
    raise RuntimeError("no free ports")


@pytest.fixture
def stack(tmp_path: Path, test_checkpoint: Path) -> Iterator[str]:
    base = _free_block(6)
    env = {
        **os.environ,
        "PREDICTORS": "2",
        "GATEWAY_PORT": str(base),
        "PREDICTOR_BASE_PORT": str(base + 1),
        "PREDICTOR_METRICS_BASE_PORT": str(base + 3),
        "LYCEUM_STATE_DIR": str(tmp_path / "var"),
        "LYCEUM_PREDICTOR_MODEL_PATH": str(test_checkpoint),
        "PYTHONUNBUFFERED": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "scripts/run_local.py"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    up = threading.Event()
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "Lyceum is up" in line:
                up.set()

    threading.Thread(target=read, daemon=True).start()
    if not up.wait(timeout=120):
        proc.kill()
        pytest.fail("stack did not come up:\n" + "".join(lines[-40:]))
    url = f"http://127.0.0.1:{base}"
    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(100):  # the gateway starts after the predictors report ready
            try:
                if client.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            threading.Event().wait(0.2)
    yield url
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, "".join(lines[-40:])


def test_stack_serves_v1_and_dfm_server(stack: str) -> None:
    with httpx.Client(base_url=stack, timeout=30) as http:
        assert http.get("/readyz").status_code == 200
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
