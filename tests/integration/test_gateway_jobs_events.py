"""A job's metrics history and its Server-Sent Events stream, on a real database (SQLite and PostgreSQL), with
the test playing the worker through `JobRepository` (claim, heartbeat, record_metrics, finish)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from fixtures.gateway import DFM_CONFIG, WORKER, JobsGateway
from fixtures.gateway import submit_job as submit

from lyceum_core.identity import DEFAULT_TENANT
from lyceum_db.models.job import JobState
from lyceum_db.repositories.jobs import JobRepository

pytestmark = pytest.mark.integration


def run(jobs: JobRepository, job_id: str) -> None:
    """What a worker does first: claim the job."""
    assert jobs.claim(job_id, WORKER, lease_s=60) is not None


def parse_sse(text: str) -> list[tuple[str, Any]]:
    """(event, JSON data) pairs of an event stream; comments and the retry hint are dropped."""
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"])))
    return events


def test_metrics_history_in_step_order(jobs_gateway: JobsGateway) -> None:
    job_id = submit(jobs_gateway.client)["job_id"]
    jobs = jobs_gateway.jobs
    run(jobs, job_id)
    jobs.record_metrics(job_id, 10, {"loss": 0.9})
    jobs.record_metrics(job_id, 20, {"loss": 0.7})
    jobs.record_metrics(job_id, 20, {"auc": 0.75})

    body = jobs_gateway.client.get(f"/v1/jobs/{job_id}/metrics").json()
    later = jobs_gateway.client.get(f"/v1/jobs/{job_id}/metrics", params={"after_step": 10}).json()

    assert body["job_id"] == job_id
    assert [(p["step"], p["values"]) for p in body["points"]] == [
        (10, {"loss": 0.9}),
        (20, {"loss": 0.7}),
        (20, {"auc": 0.75}),
    ]
    assert all(p["time"].endswith("Z") for p in body["points"])
    assert [p["step"] for p in later["points"]] == [20, 20]
    assert jobs_gateway.client.get("/v1/jobs/nope/metrics").status_code == 404


def test_metrics_of_a_job_without_any_is_empty(jobs_gateway: JobsGateway) -> None:
    job_id = submit(jobs_gateway.client)["job_id"]

    assert jobs_gateway.client.get(f"/v1/jobs/{job_id}/metrics").json() == {"job_id": job_id, "points": []}


def drive(jobs: JobRepository, job_id: str, started: threading.Event) -> None:
    """A worker's life after the stream opened: progress, metrics (two reports at one step), success."""
    started.wait(10)
    time.sleep(0.2)
    for step in (10, 20, 30, 40):
        jobs.record_metrics(job_id, step, {"loss": 1.0 / step})
        jobs.heartbeat(job_id, WORKER, 60, {"step": step, "total": 40, "loss": 1.0 / step})
        time.sleep(0.1)
    jobs.record_metrics(job_id, 40, {"auc": 0.8})
    jobs.finish(job_id, WORKER, JobState.SUCCEEDED, result={"model": {"name": "dfm", "version": 1}})


def read_stream(client: TestClient, url: str, started: threading.Event, **kwargs: Any) -> str:
    with client.stream("GET", url, **kwargs) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        started.set()
        return "".join(response.iter_text())


@pytest.mark.parametrize("how", ["accept", "events"])
def test_event_stream_sends_new_metrics_and_progress_and_ends_with_the_terminal_job(
    jobs_gateway: JobsGateway, how: str
) -> None:
    job_id = submit(jobs_gateway.client)["job_id"]
    run(jobs_gateway.jobs, job_id)
    jobs_gateway.jobs.record_metrics(job_id, 0, {"loss": 2.0})  # before the stream: sent first
    started = threading.Event()
    worker = threading.Thread(target=drive, args=(jobs_gateway.jobs, job_id, started))
    worker.start()
    if how == "accept":
        url, headers = f"/v1/jobs/{job_id}/metrics", {"Accept": "text/event-stream"}
    else:
        url, headers = f"/v1/jobs/{job_id}/events", {}

    text = read_stream(jobs_gateway.client, url, started, headers=headers)
    worker.join()

    assert text.startswith("retry: ")
    events = parse_sse(text)
    metrics = [(data["step"], data["values"]) for name, data in events if name == "metrics"]
    assert metrics == [(0, {"loss": 2.0})] + [(s, {"loss": 1.0 / s}) for s in (10, 20, 30, 40)] + [
        (40, {"auc": 0.8})
    ]
    progress = [data for name, data in events if name == "progress"]
    assert progress[0]["state"] == "running"
    assert progress[-1]["state"] == "succeeded"
    assert [p["progress"]["step"] for p in progress].count(None) <= 1  # only the snapshot before any progress
    assert max(p["progress"]["step"] or 0 for p in progress) == 40
    name, end = events[-1]
    assert name == "end"
    assert (end["job_id"], end["state"]) == (job_id, "succeeded")
    assert end["result"] == {"model": {"name": "dfm", "version": 1}}
    assert "id: 40" in text  # metrics events carry their step, for reconnecting clients


def test_event_stream_of_a_finished_job_replays_and_ends_at_once(jobs_gateway: JobsGateway) -> None:
    job_id = submit(jobs_gateway.client)["job_id"]
    run(jobs_gateway.jobs, job_id)
    for step in (1, 2, 3):
        jobs_gateway.jobs.record_metrics(job_id, step, {"loss": float(step)})
    jobs_gateway.jobs.finish(job_id, WORKER, JobState.FAILED, error="CUDA out of memory")

    text = read_stream(jobs_gateway.client, f"/v1/jobs/{job_id}/events?after_step=1", threading.Event())

    events = parse_sse(text)
    assert [name for name, _ in events] == ["metrics", "metrics", "progress", "end"]
    assert [data["step"] for name, data in events if name == "metrics"] == [2, 3]
    assert events[-1][1]["state"] == "failed"
    assert events[-1][1]["error"] == "CUDA out of memory"


def test_event_stream_resumes_after_last_event_id(jobs_gateway: JobsGateway) -> None:
    job_id = submit(jobs_gateway.client)["job_id"]
    jobs_gateway.jobs.request_cancel(DEFAULT_TENANT, job_id)
    run_points = [(5, {"loss": 0.5}), (6, {"loss": 0.4})]
    # A cancelled job can hold metrics from before it was cancelled; record them directly.
    for step, values in run_points:
        jobs_gateway.jobs.record_metrics(job_id, step, values)

    text = read_stream(
        jobs_gateway.client, f"/v1/jobs/{job_id}/events", threading.Event(), headers={"Last-Event-ID": "5"}
    )

    events = parse_sse(text)
    assert [data["step"] for name, data in events if name == "metrics"] == [6]
    assert events[-1][0] == "end" and events[-1][1]["state"] == "cancelled"


def test_event_stream_of_an_unknown_job_is_404(jobs_gateway: JobsGateway) -> None:
    response = jobs_gateway.client.get("/v1/jobs/nope/events")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_event_stream_ends_when_the_client_leaves(jobs_gateway_url: str) -> None:
    with httpx.Client(base_url=jobs_gateway_url, timeout=10) as client:
        job_id = client.post("/v1/jobs", json={"kind": "dfm_pretrain", "config": DFM_CONFIG}).json()["job_id"]
        with client.stream("GET", f"/v1/jobs/{job_id}/events") as response:
            lines = response.iter_lines()
            assert next(line for line in lines if line.startswith("event: ")) == "event: progress"
        # The job is still queued, so only the client's departure can end the stream; once it has ended,
        # the request is counted.
        served = 'lyceum_http_requests_total{method="GET",route="/v1/jobs/{job_id}/events",status="200"} 1.0'
        deadline = time.monotonic() + 10
        while served not in client.get("/metrics").text:
            assert time.monotonic() < deadline, "the stream kept running after the client left"
            time.sleep(0.1)
