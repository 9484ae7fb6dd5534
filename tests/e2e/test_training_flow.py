"""Training as a new user meets it on the embedded stack: submit a DFM job over REST and an LM job with the
`lyceum` CLI, follow them, cancel and resume one, find the results in /v1/models, and move the production
alias so the running predictors serve the new DFM without a restart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

# the stack comes up from a fresh var/ (demo training, the SmolLM2 conversion): minutes on a busy CPU
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
TINYSTORIES = (
    Path(__file__).resolve().parents[3] / "shared" / "data" / "tinystories" / "tinystories_sample.txt"
)


def dfm_job(steps: int) -> dict:
    return {
        "kind": "dfm_pretrain",
        "queue": "cpu",
        "config": {
            "dataset": {"format": "simulated", "n_learners": 150, "seed": 3},
            "model": {"d_model": 16, "n_layer": 1, "n_head": 2, "n_kv_head": 1, "max_len": 256},
            "train": {"steps": steps, "batch_size": 8, "window": 60, "warmup_steps": 2},
            "run": {"checkpoint_every": 5, "log_every": 5},
            "register_as": "dfm-demo",
        },
    }


def wait_job(http: httpx.Client, job_id: str, ok, timeout: float = 180) -> dict:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = http.get(f"/v1/jobs/{job_id}").json()
        if ok(job):
            return job
        time.sleep(0.3)
    pytest.fail(f"job {job_id} did not get there: {job}")


def served_everywhere(http: httpx.Client, version: str, timeout_s: float = 30.0) -> dict:
    """`/v1/model` once every predictor serves `version`: model calls rotate over the replicas, and each swaps
    within its own poll interval, so wait for several answers in a row (both replicas, twice) to agree."""
    deadline, agreeing, info = time.monotonic() + timeout_s, 0, {}
    while agreeing < 4 and time.monotonic() < deadline:
        info = http.get("/v1/model").json()
        agreeing = agreeing + 1 if info["version"] == version else 0
        if agreeing == 0:
            time.sleep(0.3)
    return info


def test_jobs_models_and_a_live_model_swap(stack: str) -> None:
    with httpx.Client(base_url=stack, timeout=30) as http:
        # a job far too long to finish: cancel it mid-run (its checkpoint stays), resume it, cancel again
        long = http.post("/v1/jobs", json=dfm_job(steps=1_000_000)).json()
        wait_job(http, long["job_id"], lambda j: (j["progress"].get("last_checkpoint") or 0) >= 5)
        assert http.post(f"/v1/jobs/{long['job_id']}/cancel").json()["state"] in ("cancelling", "cancelled")
        cancelled = wait_job(http, long["job_id"], lambda j: j["state"] == "cancelled")
        kept = cancelled["progress"]["last_checkpoint"]
        assert kept >= 5
        assert http.post(f"/v1/jobs/{long['job_id']}/resume").json()["state"] == "queued"
        resumed = wait_job(
            http, long["job_id"], lambda j: j["state"] == "running" and j["progress"]["step"] > kept
        )
        assert resumed["attempt"] == 2
        http.post(f"/v1/jobs/{long['job_id']}/cancel").raise_for_status()
        wait_job(http, long["job_id"], lambda j: j["state"] == "cancelled")

        # a short one runs to success and lands in the registry
        job = http.post("/v1/jobs", json=dfm_job(steps=30)).json()
        done = wait_job(http, job["job_id"], lambda j: j["state"] in ("succeeded", "failed", "cancelled"))
        assert done["state"] == "succeeded", done["error"]
        assert done["progress"]["step"] == 60 and done["metrics"]["auc"] > 0.5  # a DKT teacher, then the DFM
        assert done["progress"]["phase"] == "student"
        history = http.get(f"/v1/jobs/{job['job_id']}/metrics").json()["points"]
        assert history[-1]["step"] == 60

        # the registry shows it; moving `production` makes the predictors serve it without a restart
        version = done["result"]["model"]["version"]
        model = http.get("/v1/models/dfm-demo").json()
        assert model["aliases"]["latest"] == version and model["aliases"]["production"] == version - 1
        before = http.get("/v1/model").json()
        http.put("/v1/models/dfm-demo/aliases/production", json={"version": version}).raise_for_status()
        after = served_everywhere(http, str(version))
        assert after["version"] == str(version) and before["version"] != after["version"]
        tasks = http.get("/v1/tasks").json()["tasks"]
        assert "counting/q0" in tasks  # the new model's vocabulary (the simulator's tasks)
        # every predictor swaps within its poll interval; the one owning this learner may be a beat behind
        learner = {"learner_id": "new-model", "history": [{"task": tasks[0], "outcome": 1}]}
        until = time.monotonic() + 30
        while (r := http.post("/v1/learners", json=learner)).status_code == 400 and time.monotonic() < until:
            assert "unknown task" in r.text, r.text
            time.sleep(0.3)
        assert r.status_code == 201, r.text
        p = http.post("/v1/learners/new-model/predictions", json={"tasks": tasks[:3]}).json()["predictions"]
        assert all(0 < x["probability"] < 1 for x in p)

        # roll production back: the old model is served again
        http.post("/v1/models/dfm-demo/aliases/production/rollback").raise_for_status()
        assert served_everywhere(http, before["version"])["version"] == before["version"]


def test_lm_job_through_the_cli(stack: str, tmp_path: Path) -> None:
    if not TINYSTORIES.exists():
        pytest.fail(f"shared data missing: {TINYSTORIES}")
    config = {
        "corpus": {"paths": [str(TINYSTORIES)]},
        "tokenizer": {"kind": "bpe", "vocab_size": 400},
        "model": {"d_model": 32, "n_layer": 2, "n_head": 2, "n_kv_head": 2, "max_seq_len": 64},
        "train": {"steps": 12, "batch_size": 4, "seq_len": 32, "warmup_steps": 2},
        "run": {"checkpoint_every": 4},
        "register_as": "lm-cli",
    }
    path = tmp_path / "lm.json"
    path.write_text(json.dumps(config))
    env = {**os.environ, "LYCEUM_URL": stack, "COLUMNS": "250"}  # a table wide enough for its names
    cli = [sys.executable, "-m", "lyceum_client"]
    out = subprocess.run(
        [*cli, "jobs", "submit", "lm_pretrain", "--config", str(path), "--queue", "cpu", "--follow"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    listed = subprocess.run(
        [*cli, "models", "list", "lm-cli"], env=env, capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0 and "lm-cli" in listed.stdout
    with httpx.Client(base_url=stack, timeout=30) as http:
        versions = http.get("/v1/models/lm-cli").json()
        assert versions["aliases"]["latest"] == 1
        jobs = http.get("/v1/jobs", params={"kind": "lm_pretrain"}).json()["jobs"]
        assert jobs[0]["state"] == "succeeded" and "perplexity" in jobs[0]["metrics"]
