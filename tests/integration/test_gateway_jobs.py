"""The `/v1/jobs` API on a real database (SQLite and PostgreSQL) and a real filesystem broker, with the test
playing the worker through `JobRepository` (claim, heartbeat, finish): submit, list, get, cancel, resume,
the job gauge, auth and docs. Metrics and event streams are in test_gateway_jobs_events.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fixtures.gateway import (
    API_KEY,
    DFM_CONFIG,
    LM_CONFIG,
    NO_PREDICTOR,
    WORKER,
    BrokerMessage,
    JobsGateway,
    MakeGateway,
)
from fixtures.gateway import submit_job as submit
from fixtures.parallel import redis_url

from lyceum_core.identity import DEFAULT_TENANT
from lyceum_db.models.job import JobState
from lyceum_db.repositories.jobs import JobRepository

pytestmark = pytest.mark.integration

RUN_JOB = "training.run_job"
REDIS_URL = redis_url(3)


def run(jobs: JobRepository, job_id: str) -> None:
    """What a worker does first: claim the job."""
    assert jobs.claim(job_id, WORKER, lease_s=60) is not None


# --- submit -------------------------------------------------------------------------------------------------


def test_submit_writes_the_job_and_then_enqueues_it(jobs_gateway: JobsGateway) -> None:
    response = jobs_gateway.client.post("/v1/jobs", json={"kind": "dfm_pretrain", "config": DFM_CONFIG})

    assert response.status_code == 201
    job = response.json()
    assert response.headers["location"] == f"/v1/jobs/{job['job_id']}"
    assert (job["kind"], job["queue"], job["state"], job["attempt"]) == ("dfm_pretrain", "gpu", "queued", 0)
    assert job["config"]["train"]["steps"] == 40
    assert job["config"]["train"]["lr"] == 3e-3  # defaults are filled in
    assert job["error"] is None and job["result"] is None and job["finished_at"] is None
    row = jobs_gateway.jobs.get(DEFAULT_TENANT, job["job_id"])
    assert row is not None and row.state == JobState.QUEUED and row.config == job["config"]
    assert jobs_gateway.messages() == [BrokerMessage(RUN_JOB, job["job_id"], "gpu")]


def test_submit_sends_to_the_requested_queue(jobs_gateway: JobsGateway) -> None:
    job = submit(jobs_gateway.client, "lm_pretrain", LM_CONFIG, queue="cpu")

    assert job["queue"] == "cpu"
    assert jobs_gateway.messages() == [BrokerMessage(RUN_JOB, job["job_id"], "cpu")]


@pytest.mark.parametrize("how", ["body", "header"])
def test_resubmitting_with_the_same_idempotency_key_returns_the_same_job(
    jobs_gateway: JobsGateway, how: str
) -> None:
    body: dict[str, Any] = {"kind": "dfm_pretrain", "config": DFM_CONFIG}
    headers = {}
    if how == "body":
        body["idempotency_key"] = "nightly-1"
    else:
        headers["Idempotency-Key"] = "nightly-1"

    first = jobs_gateway.client.post("/v1/jobs", json=body, headers=headers)
    again = jobs_gateway.client.post("/v1/jobs", json=body, headers=headers)

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["job_id"] == first.json()["job_id"]
    assert len(jobs_gateway.jobs.list(DEFAULT_TENANT)) == 1
    assert len(jobs_gateway.messages()) == 1  # the repeat sent nothing


def test_the_same_idempotency_key_with_a_different_config_is_409(jobs_gateway: JobsGateway) -> None:
    submit(jobs_gateway.client, idempotency_key="nightly-1")
    other = {"dataset": {"format": "simulated"}, "train": {"steps": 41}}

    response = jobs_gateway.client.post(
        "/v1/jobs", json={"kind": "dfm_pretrain", "config": other, "idempotency_key": "nightly-1"}
    )

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "ALREADY_EXISTS"
    assert response.json()["error"]["field"] == "idempotency_key"
    assert len(jobs_gateway.jobs.list(DEFAULT_TENANT)) == 1
    assert len(jobs_gateway.messages()) == 1


def test_idempotency_keys_in_header_and_body_must_agree(jobs_gateway: JobsGateway) -> None:
    response = jobs_gateway.client.post(
        "/v1/jobs",
        json={"kind": "dfm_pretrain", "config": DFM_CONFIG, "idempotency_key": "a"},
        headers={"Idempotency-Key": "b"},
    )

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "idempotency_key"
    assert jobs_gateway.jobs.list(DEFAULT_TENANT) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "rlhf", "config": DFM_CONFIG}, "kind"),
        ({"kind": "dfm_pretrain"}, "config"),
        ({"kind": "dfm_pretrain", "config": {"train": {"steps": 10}}}, "config.dataset"),
        ({"kind": "dfm_pretrain", "config": {**DFM_CONFIG, "train": {"lr": 0}}}, "config.train.lr"),
        ({"kind": "dfm_pretrain", "config": {**DFM_CONFIG, "train": {"stepz": 5}}}, "config.train.stepz"),
        ({"kind": "dfm_pretrain", "config": {"dataset": {"format": "csv"}}}, "config.dataset.format"),
        ({"kind": "lm_pretrain", "config": {"corpus": {"paths": []}}}, "config.corpus.paths"),
        # a check across fields names the config itself
        ({"kind": "dfm_pretrain", "config": {**DFM_CONFIG, "model": {"max_len": 64}}}, "config"),
        ({"kind": "dfm_pretrain", "config": DFM_CONFIG, "queue": "tpu"}, "queue"),
        ({"kind": "dfm_pretrain", "config": DFM_CONFIG, "priority": 1}, "priority"),
    ],
)
def test_invalid_submissions_are_422_naming_the_field_and_create_nothing(
    jobs_gateway: JobsGateway, body: dict, field: str
) -> None:
    response = jobs_gateway.client.post("/v1/jobs", json=body)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("INVALID_ARGUMENT", field)
    assert field in error["message"]
    assert jobs_gateway.jobs.list(DEFAULT_TENANT) == []
    assert jobs_gateway.messages() == []


# --- list and get -------------------------------------------------------------------------------------------


def test_list_filters_by_state_and_kind_newest_first(jobs_gateway: JobsGateway) -> None:
    client = jobs_gateway.client
    dfm = [submit(client)["job_id"] for _ in range(3)]
    lm = [submit(client, "lm_pretrain", LM_CONFIG)["job_id"] for _ in range(2)]
    jobs_gateway.jobs.request_cancel(DEFAULT_TENANT, dfm[0])

    def ids(**params: Any) -> list[str]:
        response = client.get("/v1/jobs", params=params)
        assert response.status_code == 200, response.text
        return [job["job_id"] for job in response.json()["jobs"]]

    assert ids() == (dfm + lm)[::-1]
    assert ids(kind="lm_pretrain") == lm[::-1]
    assert ids(state="cancelled") == [dfm[0]]
    assert ids(state="queued", kind="dfm_pretrain") == dfm[:0:-1]
    assert ids(state="running") == []


def test_list_pages_with_a_cursor(jobs_gateway: JobsGateway) -> None:
    created = [submit(jobs_gateway.client)["job_id"] for _ in range(5)]
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2} | ({"before": cursor} if cursor else {})
        body = jobs_gateway.client.get("/v1/jobs", params=params).json()
        seen += [job["job_id"] for job in body["jobs"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break

    assert seen == created[::-1]
    assert pages == 3


def test_an_exactly_full_last_page_has_no_cursor(jobs_gateway: JobsGateway) -> None:
    for _ in range(2):
        submit(jobs_gateway.client)

    body = jobs_gateway.client.get("/v1/jobs", params={"limit": 2}).json()

    assert len(body["jobs"]) == 2 and body["next_cursor"] is None


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({"before": "nope"}, 400, "before"),
        ({"state": "sleeping"}, 422, "state"),
        ({"kind": "rlhf"}, 422, "kind"),
        ({"limit": 0}, 422, "limit"),
        ({"limit": 201}, 422, "limit"),
    ],
)
def test_bad_list_parameters(jobs_gateway: JobsGateway, params: dict, status: int, field: str) -> None:
    response = jobs_gateway.client.get("/v1/jobs", params=params)

    assert response.status_code == status
    assert response.json()["error"]["field"] == field


def test_get_shows_state_progress_metrics_and_result(jobs_gateway: JobsGateway) -> None:
    job_id = submit(jobs_gateway.client)["job_id"]
    jobs = jobs_gateway.jobs
    run(jobs, job_id)
    progress = {"step": 20, "total": 40, "throughput": 1234.5, "throughput_unit": "events/s", "eta_s": 3.5}
    progress |= {"phase": "teacher"}  # a distilled DFM's first phase
    jobs.heartbeat(job_id, WORKER, 60, progress | {"steps_per_s": 5.7})
    jobs.save_checkpoint(job_id, WORKER, "var/ckpt/20", {"last_checkpoint": 20})

    running = jobs_gateway.client.get(f"/v1/jobs/{job_id}").json()

    assert (running["state"], running["attempt"]) == ("running", 1)
    assert running["progress"] == progress | {"last_checkpoint": 20, "loss": None, "steps_per_s": 5.7}
    assert running["started_at"] is not None and running["finished_at"] is None
    assert "checkpoint_uri" not in running and "lease_owner" not in running  # internals stay inside

    jobs.set_metrics(job_id, WORKER, {"auc": 0.8})
    jobs.finish(job_id, WORKER, JobState.SUCCEEDED, result={"model": {"name": "dfm", "version": 1}})
    done = jobs_gateway.client.get(f"/v1/jobs/{job_id}").json()

    assert done["state"] == "succeeded"
    assert done["metrics"] == {"auc": 0.8}
    assert done["result"] == {"model": {"name": "dfm", "version": 1}}
    assert done["finished_at"] is not None


def test_get_unknown_job_is_404(jobs_gateway: JobsGateway) -> None:
    response = jobs_gateway.client.get("/v1/jobs/0123456789abcdef")

    assert response.status_code == 404
    assert response.json()["error"] == {
        "code": "NOT_FOUND",
        "message": "job '0123456789abcdef' not found",
        "field": "job_id",
        "request_id": response.headers["x-request-id"],
    }


# --- cancel and resume --------------------------------------------------------------------------------------


def test_cancel_a_queued_job_cancels_it_at_once(jobs_gateway: JobsGateway) -> None:
    job_id = submit(jobs_gateway.client)["job_id"]

    response = jobs_gateway.client.post(f"/v1/jobs/{job_id}/cancel")

    assert response.status_code == 200
    assert response.json()["state"] == "cancelled"
    assert response.json()["finished_at"] is not None
    again = jobs_gateway.client.post(f"/v1/jobs/{job_id}/cancel")
    assert (again.status_code, again.json()["state"]) == (200, "cancelled")


def test_cancel_a_running_job_asks_its_worker_to_stop(jobs_gateway: JobsGateway) -> None:
    job_id = submit(jobs_gateway.client)["job_id"]
    run(jobs_gateway.jobs, job_id)

    response = jobs_gateway.client.post(f"/v1/jobs/{job_id}/cancel")

    assert response.json()["state"] == "cancelling"
    assert jobs_gateway.jobs.heartbeat(job_id, WORKER, 60) == JobState.CANCELLING  # what the worker sees


@pytest.mark.parametrize("state", [JobState.SUCCEEDED, JobState.FAILED])
def test_cancel_a_finished_job_is_409(jobs_gateway: JobsGateway, state: JobState) -> None:
    job_id = submit(jobs_gateway.client)["job_id"]
    run(jobs_gateway.jobs, job_id)
    jobs_gateway.jobs.finish(job_id, WORKER, state)

    response = jobs_gateway.client.post(f"/v1/jobs/{job_id}/cancel")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "FAILED_PRECONDITION"
    assert jobs_gateway.jobs.get(DEFAULT_TENANT, job_id).state == state  # type: ignore[union-attr]


def test_cancel_unknown_job_is_404(jobs_gateway: JobsGateway) -> None:
    assert jobs_gateway.client.post("/v1/jobs/nope/cancel").status_code == 404


def test_resume_queues_the_job_and_enqueues_it_again(jobs_gateway: JobsGateway) -> None:
    job_id = submit(jobs_gateway.client)["job_id"]
    run(jobs_gateway.jobs, job_id)
    jobs_gateway.jobs.finish(job_id, WORKER, JobState.FAILED, error="preempted")

    response = jobs_gateway.client.post(f"/v1/jobs/{job_id}/resume")

    assert response.status_code == 200
    job = response.json()
    assert (job["state"], job["error"], job["finished_at"]) == ("queued", None, None)
    assert jobs_gateway.messages() == [BrokerMessage(RUN_JOB, job_id, "gpu")] * 2


@pytest.mark.parametrize("state", ["queued", "running", "succeeded"])
def test_resume_in_other_states_is_409_and_sends_nothing(jobs_gateway: JobsGateway, state: str) -> None:
    job_id = submit(jobs_gateway.client)["job_id"]
    if state != "queued":
        run(jobs_gateway.jobs, job_id)
    if state == "succeeded":
        jobs_gateway.jobs.finish(job_id, WORKER, JobState.SUCCEEDED)

    response = jobs_gateway.client.post(f"/v1/jobs/{job_id}/resume")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "FAILED_PRECONDITION"
    assert len(jobs_gateway.messages()) == 1


# --- metrics, auth, docs, broker ----------------------------------------------------------------------------


def test_job_states_are_exported_as_a_gauge(jobs_gateway: JobsGateway) -> None:
    first, second = (submit(jobs_gateway.client)["job_id"] for _ in range(2))
    submit(jobs_gateway.client, "lm_pretrain", LM_CONFIG)
    run(jobs_gateway.jobs, first)
    jobs_gateway.jobs.request_cancel(DEFAULT_TENANT, second)

    text = jobs_gateway.client.get("/metrics").text

    assert "# TYPE lyceum_jobs gauge" in text
    assert 'lyceum_jobs{kind="dfm_pretrain",state="running"} 1.0' in text
    assert 'lyceum_jobs{kind="dfm_pretrain",state="cancelled"} 1.0' in text
    assert 'lyceum_jobs{kind="dfm_pretrain",state="queued"} 0.0' in text
    assert 'lyceum_jobs{kind="lm_pretrain",state="queued"} 1.0' in text
    # and the requests are labelled by route template, not by job id
    jobs_gateway.client.get(f"/v1/jobs/{first}")
    assert 'route="/v1/jobs/{job_id}"' in jobs_gateway.client.get("/metrics").text


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_job_and_model_routes_need_the_api_key(make_gateway: MakeGateway, jobs_settings: dict) -> None:
    client = make_gateway([NO_PREDICTOR], api_keys=[API_KEY], **jobs_settings)
    body = {"kind": "dfm_pretrain", "config": DFM_CONFIG}

    assert client.post("/v1/jobs", json=body).status_code == 401
    assert client.get("/v1/jobs").status_code == 401
    assert client.get("/v1/jobs/x/events").status_code == 401
    assert client.get("/v1/models").status_code == 401
    wrong = client.get("/v1/jobs", headers={"Authorization": "Bearer nope"})
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (401, "UNAUTHENTICATED")
    assert client.post("/v1/jobs", json=body, headers={"X-API-Key": API_KEY}).status_code == 201
    assert client.get("/v1/jobs", headers={"Authorization": f"Bearer {API_KEY}"}).status_code == 200
    assert client.get("/metrics").status_code == 200  # probes and metrics stay open


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_openapi_documents_jobs_and_models(jobs_gateway: JobsGateway) -> None:
    schema = jobs_gateway.client.get("/openapi.json").json()

    submit_op = schema["paths"]["/v1/jobs"]["post"]
    assert submit_op["tags"] == ["jobs"]
    assert {"201", "200", "409", "422"} <= set(submit_op["responses"])
    request = schema["components"]["schemas"]["SubmitJobRequest"]
    kinds = ["dfm_pretrain", "lm_pretrain", "sft", "sdpo", "eval", "gating_ppo"]
    assert request["properties"]["kind"]["enum"] == kinds
    assert request["examples"]
    stream = schema["paths"]["/v1/jobs/{job_id}/events"]["get"]["responses"]["200"]["content"]
    assert "text/event-stream" in stream
    assert schema["paths"]["/v1/models/{name}/aliases/{alias}"]["put"]["tags"] == ["models"]


@pytest.fixture
def redis_db() -> Iterator[redis.Redis]:
    """Database 15 of the local Redis, empty before and after the test."""
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_submit_over_redis_puts_one_message_on_the_queue(
    make_gateway: MakeGateway, database_url: str, redis_db: redis.Redis
) -> None:
    client = make_gateway([NO_PREDICTOR], database_url=database_url, broker_url=REDIS_URL)

    job = submit(client, idempotency_key="k")
    submit_again = client.post(
        "/v1/jobs", json={"kind": "dfm_pretrain", "config": DFM_CONFIG, "idempotency_key": "k"}
    )

    assert submit_again.status_code == 200
    assert redis_db.llen("gpu") == 1
    message = json.loads(redis_db.lindex("gpu", 0))  # type: ignore[arg-type]
    assert message["headers"]["task"] == RUN_JOB
    assert message["headers"]["argsrepr"] == repr([job["job_id"]])


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_submit_with_the_broker_down_is_503_and_a_retry_returns_the_saved_job(
    make_gateway: MakeGateway, database_url: str
) -> None:
    client = make_gateway([NO_PREDICTOR], database_url=database_url, broker_url="redis://127.0.0.1:9/0")
    body = {"kind": "dfm_pretrain", "config": DFM_CONFIG, "idempotency_key": "k"}

    down = client.post("/v1/jobs", json=body)
    retry = client.post("/v1/jobs", json=body)

    assert down.status_code == 503
    assert down.json()["error"]["code"] == "UNAVAILABLE"
    # The row was committed before the send failed: the reconciler sends queued jobs whose message was lost.
    assert (retry.status_code, retry.json()["state"]) == (200, "queued")
