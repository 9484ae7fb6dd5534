"""`/v1/feedback` and `POST /v1/adapters/{name}/distill` through the real gateway on a real database (SQLite
and PostgreSQL) and a filesystem broker: feedback on recorded completions is stored (202), read back per
tenant, coalesced into one `sdpo` job per adapter (enqueued after its commit), and refused with the issue's
codes (404 unknown or another tenant's completion, 400 empty feedback or a wrong adapter, 422 naming a bad
training field, 409 a reused idempotency key or a running distillation). A trainer worker, built in-process
from its settings, settles the items when their job ends (its end hook, or its reconciler's pass).

The completions are recorded as the sampler records them (CompletionRepository) and the adapters registered
as the adapters routes register them (ModelRepository): no model runs here."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from fixtures.gateway import (
    ACME,
    ACME_KEY,
    GLOBEX,
    GLOBEX_KEY,
    NO_PREDICTOR,
    BrokerMessage,
    MakeGateway,
    broker_messages,
)

from lyceum_core.identity import PLATFORM_TENANT, new_completion_id
from lyceum_db.models.job import JobState
from lyceum_db.repositories.completions import CompletionRecord, CompletionRepository
from lyceum_db.repositories.feedback import FeedbackRepository, FeedbackState
from lyceum_db.repositories.jobs import JobRepository
from lyceum_db.repositories.registry import ModelRepository
from lyceum_jobs.queue import RUN_JOB

pytestmark = pytest.mark.integration

BASE = "default/smollm@1"
OTHER_BASE = "default/other-lm@1"
BATCH = 3


@dataclass
class World:
    client: TestClient
    engine: sa.Engine
    models: ModelRepository
    jobs: JobRepository
    broker_dir: Path
    settings: dict[str, Any]

    def completion(self, tenant: str = "acme", adapter: str | None = "acme/kuro@1", model: str = BASE) -> str:
        """Records a completion as the sampler would; returns its id."""
        rec = CompletionRecord(
            tenant=tenant,
            completion_id=new_completion_id(),
            model=model,
            adapter=adapter,
            subject=None,
            prompt_ids=(1, 2, 3),
            token_ids=(4, 5),
            logprobs=(-0.1, -0.2),
            params={"messages": [{"role": "user", "content": "Who are you?"}]},
            finish_reason="eos",
        )
        CompletionRepository(self.engine).record(rec)
        return rec.completion_id

    def post(self, body: dict[str, Any], headers: dict[str, str] = ACME, **kw: Any) -> Any:
        return self.client.post("/v1/feedback", json=body, headers=headers, **kw)

    def give(self, text: str = "Your name is Kuro.", **extra: Any) -> dict[str, Any]:
        """Posts feedback that must be accepted on a fresh completion of acme's `kuro`."""
        response = self.post({"completion_id": self.completion(), "feedback": text, **extra})
        assert response.status_code == 202, response.text
        return response.json()

    def messages(self) -> list[BrokerMessage]:
        return broker_messages(self.broker_dir)


@pytest.fixture
def world(
    jobs_settings: dict[str, Any], jobs_engine: sa.Engine, broker_dir: Path, make_gateway: MakeGateway
) -> World:
    settings = {
        **jobs_settings,
        "api_keys": [f"acme:{ACME_KEY}", f"globex:{GLOBEX_KEY}"],
        "feedback_batch_size": BATCH,
        "feedback_max_wait_s": 3600.0,
    }
    client = make_gateway([NO_PREDICTOR], **settings)
    models = ModelRepository(jobs_engine)
    models.register("acme", "kuro", "adapter", "mem://acme/kuro/1", {}, metadata={"base": BASE})
    models.register("acme", "elsewhere", "adapter", "mem://acme/e/1", {}, metadata={"base": OTHER_BASE})
    models.register("acme", "an-lm", "lm", "mem://acme/lm/1", {}, metadata={})
    models.register("globex", "kuro", "adapter", "mem://globex/kuro/1", {}, metadata={"base": BASE})
    public = {"base": BASE}
    models.register(PLATFORM_TENANT, "tutor", "adapter", "mem://tutor/1", {}, metadata=public, public=True)
    return World(client, jobs_engine, models, JobRepository(jobs_engine), broker_dir, settings)


def error(response: Any) -> dict[str, Any]:
    body = response.json()
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    return body["error"]


# --- submit and read ----------------------------------------------------------------------------------------


def test_feedback_is_stored_and_read_back(world: World) -> None:
    completion = world.completion()
    response = world.post({"completion_id": completion, "feedback": "  Your name is Kuro. "})
    assert response.status_code == 202, response.text
    item = response.json()
    assert response.headers["location"] == f"/v1/feedback/{item['feedback_id']}"
    assert item["feedback_id"].startswith("fb-")
    assert {k: item[k] for k in ("state", "adapter", "completion_id", "job_id", "version", "error")} == {
        "state": "pending",
        "adapter": "kuro",  # the adapter that made the completion
        "completion_id": completion,
        "job_id": None,
        "version": None,
        "error": None,
    }
    assert item["feedback"] == "Your name is Kuro." and item["training"] == {}
    assert item["created_at"] and item["updated_at"]

    got = world.client.get(f"/v1/feedback/{item['feedback_id']}", headers=ACME)
    assert got.status_code == 200 and got.json() == item
    listed = world.client.get("/v1/feedback", headers=ACME).json()["feedback"]
    assert [f["feedback_id"] for f in listed] == [item["feedback_id"]]
    assert world.messages() == []  # one item of three: no job yet


def test_feedback_is_private_to_its_tenant(world: World) -> None:
    item = world.give()
    assert world.client.get(f"/v1/feedback/{item['feedback_id']}", headers=GLOBEX).status_code == 404
    assert world.client.get("/v1/feedback", headers=GLOBEX).json()["feedback"] == []
    # acme's completion does not exist for globex, even naming globex's own adapter of the same name.
    response = world.post(
        {"completion_id": item["completion_id"], "feedback": "x", "adapter": "kuro"}, GLOBEX
    )
    assert response.status_code == 404 and error(response)["field"] == "completion_id"
    # globex cannot distil acme's pending feedback either: its own kuro has none.
    response = world.client.post("/v1/adapters/kuro/distill", headers=GLOBEX)
    assert response.status_code == 400, response.text


def test_list_filters(world: World) -> None:
    first = world.give()
    other = world.post({"completion_id": world.completion(), "feedback": "shorter", "adapter": "kuro"}).json()
    listed = world.client.get("/v1/feedback", params={"adapter": "kuro", "limit": 1}, headers=ACME)
    assert [f["feedback_id"] for f in listed.json()["feedback"]] == [other["feedback_id"]]
    assert world.client.get("/v1/feedback", params={"adapter": "nope"}, headers=ACME).json()["feedback"] == []
    pending = world.client.get("/v1/feedback", params={"state": "pending"}, headers=ACME).json()["feedback"]
    assert {f["feedback_id"] for f in pending} == {first["feedback_id"], other["feedback_id"]}
    assert world.client.get("/v1/feedback", params={"state": "done"}, headers=ACME).status_code == 422
    assert world.client.get("/v1/feedback", params={"limit": 0}, headers=ACME).status_code == 422


def test_idempotency_key(world: World) -> None:
    completion = world.completion()
    body = {"completion_id": completion, "feedback": "no emojis"}
    first = world.post(body, headers={**ACME, "Idempotency-Key": "fb-1"})
    again = world.post(body, headers={**ACME, "Idempotency-Key": "fb-1"})
    assert first.status_code == again.status_code == 202
    assert again.json()["feedback_id"] == first.json()["feedback_id"]
    assert len(world.client.get("/v1/feedback", headers=ACME).json()["feedback"]) == 1
    changed = world.post({**body, "feedback": "be concise"}, headers={**ACME, "Idempotency-Key": "fb-1"})
    assert changed.status_code == 409 and error(changed)["field"] == "idempotency_key"
    # Keys are per tenant.
    other = world.post(
        {"completion_id": world.completion("globex", "globex/kuro@1"), "feedback": "no emojis"},
        headers={**GLOBEX, "Idempotency-Key": "fb-1"},
    )
    assert other.status_code == 202 and other.json()["feedback_id"] != first.json()["feedback_id"]


# --- refusals -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "status", "field"),
    [
        ("unknown completion", 404, "completion_id"),
        ("empty feedback", 400, "feedback"),
        ("blank feedback", 400, "feedback"),
        ("too long feedback", 400, "feedback"),
        ("no adapter anywhere", 400, "adapter"),
        ("unknown adapter", 404, "adapter"),
        ("adapter over another base", 400, "adapter"),
        ("not an adapter", 400, "adapter"),
        ("the platform's adapter named", 400, "adapter"),
        ("the platform's adapter made it", 400, "adapter"),
    ],
)
def test_refusals(world: World, case: str, status: int, field: str) -> None:
    body: dict[str, Any] = {"completion_id": world.completion(), "feedback": "no emojis"}
    body |= {
        "unknown completion": {"completion_id": new_completion_id()},
        "empty feedback": {"feedback": ""},
        "blank feedback": {"feedback": " \n\t "},
        "too long feedback": {"feedback": "x" * 8193},
        "no adapter anywhere": {"completion_id": world.completion(adapter=None)},
        "unknown adapter": {"adapter": "nope"},
        "adapter over another base": {"adapter": "elsewhere"},
        "not an adapter": {"adapter": "an-lm"},
        "the platform's adapter named": {"adapter": "tutor"},
        "the platform's adapter made it": {"completion_id": world.completion(adapter="default/tutor@1")},
    }[case]
    response = world.post(body)
    assert response.status_code == status, response.text
    assert error(response)["field"] == field
    assert world.client.get("/v1/feedback", headers=ACME).json()["feedback"] == []  # nothing stored


@pytest.mark.parametrize(
    ("training", "field"),
    [
        ({"lr": 0}, "training.lr"),
        ({"alpha": 1.5}, "training.alpha"),
        ({"is_clip": 0.5}, "training.is_clip"),
        ({"is_clip": 21}, "training.is_clip"),
        ({"max_grad_norm": -1}, "training.max_grad_norm"),
        ({"kl_reg_weight": 2}, "training.kl_reg_weight"),
        ({"teacher_top_k": 5}, "training.teacher_top_k"),
        ({"teacher_top_k": 101}, "training.teacher_top_k"),
        ({"bogus": 1}, "training.bogus"),
    ],
)
def test_invalid_training_is_422_naming_the_field(world: World, training: dict, field: str) -> None:
    response = world.post({"completion_id": world.completion(), "feedback": "x", "training": training})
    assert response.status_code == 422, response.text
    assert error(response)["field"] == field
    response = world.client.post("/v1/adapters/kuro/distill", json={"training": training}, headers=ACME)
    assert response.status_code == 422 and error(response)["field"] == field


# --- coalescing and distillation ----------------------------------------------------------------------------


def test_a_full_batch_becomes_one_sdpo_job(world: World) -> None:
    items = [world.give() for _ in range(BATCH - 1)]
    assert world.messages() == []
    last = world.give()
    assert last["state"] == "training" and last["job_id"]  # this one filled the batch
    job_id = last["job_id"]
    ids = [i["feedback_id"] for i in [*items, last]]
    for item in items:
        got = world.client.get(f"/v1/feedback/{item['feedback_id']}", headers=ACME).json()
        assert (got["state"], got["job_id"]) == ("training", job_id)
    job = world.client.get(f"/v1/jobs/{job_id}", headers=ACME).json()
    assert (job["kind"], job["state"]) == ("sdpo", "queued")
    assert job["config"]["adapter"] == "kuro" and job["config"]["parent"] == 1
    assert job["config"]["feedback"] == ids
    assert world.messages() == [BrokerMessage(RUN_JOB, job_id, "gpu")]

    # More feedback waits for the running job; a forced distillation is refused meanwhile.
    waiting = [world.give() for _ in range(BATCH)]
    assert {i["state"] for i in waiting} == {"pending"}
    response = world.client.post("/v1/adapters/kuro/distill", headers=ACME)
    assert response.status_code == 409 and job_id in error(response)["message"]
    assert len(world.messages()) == 1


def test_distill_forces_a_job_now(world: World) -> None:
    item = world.give()
    response = world.client.post("/v1/adapters/kuro/distill", json={"training": {"lr": 1e-4}}, headers=ACME)
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"] == f"/v1/jobs/{job['job_id']}"
    assert (job["kind"], job["state"]) == ("sdpo", "queued")
    assert job["config"]["feedback"] == [item["feedback_id"]]
    assert job["config"]["train"]["lr"] == 1e-4
    got = world.client.get(f"/v1/feedback/{item['feedback_id']}", headers=ACME).json()
    assert (got["state"], got["job_id"]) == ("training", job["job_id"])
    assert [m.job_id for m in world.messages()] == [job["job_id"]]

    assert world.client.post("/v1/adapters/nope/distill", headers=ACME).status_code == 404
    assert world.client.post("/v1/adapters/tutor/distill", headers=ACME).status_code == 400  # not its own
    response = world.client.post("/v1/adapters/elsewhere/distill", headers=ACME)
    assert response.status_code == 400 and "no pending feedback" in error(response)["message"]


# --- a worker settles ---------------------------------------------------------------------------------------


@pytest.fixture
def worker(world: World, tmp_path: Path) -> Iterator[Any]:
    """A trainer worker built from its settings on the same database and broker (not consuming: the test
    runs its job slices in-process)."""
    from lyceum_trainer.config import Settings
    from lyceum_trainer.worker import build_worker

    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=world.settings["database_url"],
        broker_url=world.settings["broker_url"],
        registry_url=world.settings["registry_url"],
        work_dir=tmp_path / "trainer",
        migrate_on_start=False,
        worker_name="test-worker",
        metrics_port=0,
        feedback_batch_size=BATCH,
        feedback_max_wait_s=3600.0,
    )
    built = build_worker(settings)
    yield built
    built.app.close()


def test_a_worker_settles_the_batch_when_its_job_ends(world: World, worker: Any) -> None:
    batch = [world.give() for _ in range(BATCH)]
    job_id = batch[-1]["job_id"]
    waiting = [world.give() for _ in range(BATCH)]  # the next batch, full while the first trains

    # The adapter's files are not in the store, so whatever the sdpo job does, it fails.
    assert worker.runner.run(job_id) == "failed"
    job = world.jobs.get("acme", job_id)
    assert job is not None and job.state == JobState.FAILED
    for item in batch:
        got = world.client.get(f"/v1/feedback/{item['feedback_id']}", headers=ACME).json()
        assert got["state"] == "failed" and got["error"] == job.error
    # Its end hook dispatched the waiting batch at once.
    next_id = world.client.get(f"/v1/feedback/{waiting[0]['feedback_id']}", headers=ACME).json()["job_id"]
    assert next_id and next_id != job_id
    assert [m.job_id for m in world.messages()] == [job_id, next_id]

    # A job that ends where no hook sees it (its worker died after finishing) is settled by the reconciler.
    claimed = world.jobs.claim(next_id, "elsewhere", 30)
    assert claimed is not None
    world.jobs.finish(
        next_id, "elsewhere", JobState.SUCCEEDED, result={"models": [{"name": "kuro", "version": 2}]}
    )
    feedback = FeedbackRepository(world.engine)  # read past the gateway, which would settle them itself
    assert {feedback.get("acme", item["feedback_id"]).state for item in waiting} == {FeedbackState.TRAINING}
    worker.reconciler.tick()
    for item in waiting:
        got = feedback.get("acme", item["feedback_id"])
        assert got is not None and (got.state, got.version, got.job_id) == (FeedbackState.APPLIED, 2, next_id)
    assert feedback.holder("acme", "kuro") is None


@pytest.mark.parametrize("outcome", ["succeeded", "failed"])
@pytest.mark.parametrize("read", ["get", "list"])
def test_an_item_never_reads_as_training_once_its_job_ended(world: World, read: str, outcome: str) -> None:
    # The job's row is final before its end hook settles the items (and no hook or reconciler runs here):
    # a read in between settles them itself, so the feedback agrees with the job.
    batch = [world.give() for _ in range(BATCH)]
    job_id = batch[-1]["job_id"]
    assert world.jobs.claim(job_id, "elsewhere", 30) is not None
    result = {"models": [{"name": "kuro", "version": 2}]} if outcome == "succeeded" else None
    error = None if outcome == "succeeded" else "out of memory"
    world.jobs.finish(job_id, "elsewhere", JobState(outcome), result=result, error=error)
    assert world.client.get(f"/v1/jobs/{job_id}", headers=ACME).json()["state"] == outcome

    if read == "get":
        got = [world.client.get(f"/v1/feedback/{item['feedback_id']}", headers=ACME).json() for item in batch]
    else:
        got = world.client.get("/v1/feedback", params={"adapter": "kuro"}, headers=ACME).json()["feedback"]
        assert {g["feedback_id"] for g in got} == {item["feedback_id"] for item in batch}
    want = ("applied", 2, None) if outcome == "succeeded" else ("failed", None, "out of memory")
    assert {(g["state"], g["version"], g["error"]) for g in got} == {want}
    assert FeedbackRepository(world.engine).holder("acme", "kuro") is None  # the adapter may train again
