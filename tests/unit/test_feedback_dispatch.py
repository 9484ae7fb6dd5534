"""Feedback records and the per-adapter dispatcher on real SQLite and PostgreSQL: items are stored and read
back per tenant; an adapter's pending items coalesce into one `sdpo` job at a time (never two, even with
racing dispatchers); the batch policy (size, maximum wait on an injected clock) decides when; a job's end
settles its items (applied with the version it registered, or failed) whether the worker's hook or the
reconciler's pass sees it. Also the completions' response digest, which feedback quoting a response uses."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fixtures.threads import race

from lyceum_core.errors import FailedPrecondition, InvalidArgument
from lyceum_core.identity import SERVING_ALIAS, new_completion_id
from lyceum_db.models.feedback import FeedbackState
from lyceum_db.models.job import JobState
from lyceum_db.repositories.completions import CompletionRecord, CompletionRepository, response_digest
from lyceum_db.repositories.feedback import FeedbackRepository, JobSpec, NewFeedback
from lyceum_db.repositories.jobs import JobRecord, JobRepository
from lyceum_db.repositories.registry import ModelRepository
from lyceum_jobs.configs import SDPOTrain
from lyceum_jobs.feedback import Dispatcher, FeedbackPolicy, parent_version, training_overrides
from lyceum_jobs.kinds import parse_config

pytestmark = pytest.mark.integration

A, B = "acme", "globex"
BASE = "default/smollm@1"
T0 = datetime(2027, 1, 5, 12, 0, tzinfo=UTC)
WORKER = "test-worker"


class Clock:
    """A settable UTC clock."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@dataclasses.dataclass
class Env:
    engine: sa.Engine
    clock: Clock
    feedback: FeedbackRepository
    jobs: JobRepository
    models: ModelRepository
    sent: list[JobRecord]

    def dispatcher(self, policy: FeedbackPolicy | None = None) -> Dispatcher:
        return Dispatcher(
            self.feedback,
            self.jobs,
            self.models,
            self.sent.append,
            policy or FeedbackPolicy(),
            clock=self.clock,
        )

    def submit(self, tenant: str = A, adapter: str = "kuro", text: str = "no emojis", **training: Any) -> str:
        rec = NewFeedback(tenant, new_completion_id(), adapter, text, training)
        record, created = self.feedback.create(rec)
        assert created
        self.clock.advance(1)  # distinct created_at: the order is the submission order
        return record.feedback_id

    def end(self, job: JobRecord, state: JobState, **kw: Any) -> JobRecord:
        """Plays the worker: claims the job and ends it."""
        assert self.jobs.claim(job.job_id, WORKER, 30) is not None
        return self.jobs.finish(job.job_id, WORKER, state, **kw)


@pytest.fixture
def env(db_engine: sa.Engine) -> Iterator[Env]:
    clock = Clock()
    models = ModelRepository(db_engine)
    for tenant in (A, B):
        models.register(tenant, "kuro", "adapter", "mem://kuro/1", {}, metadata={"base": BASE})
    yield Env(
        db_engine, clock, FeedbackRepository(db_engine, clock=clock), JobRepository(db_engine), models, []
    )


# --- records ------------------------------------------------------------------------------------------------


def test_create_get_list_and_idempotency(env: Env) -> None:
    rec = NewFeedback(A, new_completion_id(), "kuro", "Your name is Kuro.", {"lr": 1e-4})
    made, created = env.feedback.create(rec, "key-1")
    assert created and made.state == FeedbackState.PENDING and made.feedback_id.startswith("fb-")
    assert (made.job_id, made.version, made.error) == (None, None, None)
    assert made.created_at == T0 and made.training == {"lr": 1e-4}
    assert env.feedback.get(A, made.feedback_id) == made
    assert env.feedback.get(B, made.feedback_id) is None  # another tenant's item is missing

    again, created = env.feedback.create(dataclasses.replace(rec, text="other"), "key-1")
    assert not created and again == made  # the key's first item; the caller compares the requests
    other, created = env.feedback.create(dataclasses.replace(rec, tenant=B), "key-1")
    assert created and other.feedback_id != made.feedback_id  # keys are per tenant

    env.clock.advance(5)
    second, _ = env.feedback.create(dataclasses.replace(rec, adapter="other"))
    assert [r.feedback_id for r in env.feedback.list(A)] == [second.feedback_id, made.feedback_id]
    assert [r.feedback_id for r in env.feedback.list(A, adapter="kuro")] == [made.feedback_id]
    assert env.feedback.list(A, state=FeedbackState.APPLIED) == []
    assert env.feedback.get_many(A, [second.feedback_id, "fb-" + "0" * 32, made.feedback_id]) == [
        second,
        made,
    ]
    with pytest.raises(InvalidArgument):
        env.feedback.list(A, state="done")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"text": "   "}, "feedback"),
        ({"text": "x" * 8193}, "feedback"),
        ({"text": "no\x00pe"}, "feedback"),
        ({"adapter": "Not A Name"}, "adapter"),
        ({"completion_id": "cmpl-nope"}, "completion_id"),
        ({"training": {"lr": float("nan")}}, "training"),
    ],
)
def test_create_refuses_bad_fields(env: Env, change: dict[str, Any], field: str) -> None:
    rec = dataclasses.replace(NewFeedback(A, new_completion_id(), "kuro", "ok", {}), **change)
    with pytest.raises(InvalidArgument) as err:
        env.feedback.create(rec)
    assert err.value.field == field
    assert env.feedback.list(A) == []


# --- dispatch -----------------------------------------------------------------------------------------------


def test_pending_feedback_coalesces_into_one_job(env: Env) -> None:
    dispatcher = env.dispatcher(FeedbackPolicy(batch_size=3))
    ids = [env.submit() for _ in range(2)]
    assert dispatcher.offer(A, "kuro") is None  # 2 < batch size, and young
    ids.append(env.submit())
    dispatched = dispatcher.offer(A, "kuro")
    assert dispatched is not None and dispatched.feedback_ids == ids
    job = dispatched.job
    assert (job.kind, job.queue, job.state, job.tenant) == ("sdpo", "gpu", JobState.QUEUED, A)
    config = parse_config("sdpo", job.config)
    assert (config.adapter, config.parent, config.feedback) == ("kuro", 1, ids)
    assert config.train == SDPOTrain()
    assert [j.job_id for j in env.sent] == [job.job_id]  # enqueued once, after the commit
    for item in env.feedback.get_many(A, ids):
        assert (item.state, item.job_id) == (FeedbackState.TRAINING, job.job_id)

    # While it trains, new items wait, however many: one job per adapter at a time.
    more = [env.submit() for _ in range(4)]
    assert dispatcher.offer(A, "kuro") is None
    assert env.feedback.pending_adapters(env.clock(), 1, 0) == []
    assert {i.state for i in env.feedback.get_many(A, more)} == {FeedbackState.PENDING}
    assert env.feedback.holder(A, "kuro") == job.job_id
    # Another tenant's adapter of the same name is its own.
    env.submit(tenant=B)
    assert env.feedback.pending_adapters(env.clock(), 1, 0) == [(B, "kuro")]


def test_parent_is_the_serving_version_else_latest(env: Env) -> None:
    env.models.register(A, "kuro", "adapter", "mem://kuro/2", {}, metadata={"base": BASE})
    dispatcher = env.dispatcher(FeedbackPolicy(batch_size=1))
    assert parent_version(env.models, A, "kuro") == 2
    env.models.set_alias(A, "kuro", SERVING_ALIAS, 1)
    assert parent_version(env.models, A, "kuro") == 1
    env.submit()
    dispatched = dispatcher.offer(A, "kuro")
    assert dispatched is not None and dispatched.job.config["parent"] == 1


def test_a_batch_shares_its_training_settings_and_is_bounded(env: Env) -> None:
    dispatcher = env.dispatcher(FeedbackPolicy(batch_size=1, max_items=2))
    first = env.submit(lr=1e-4)
    other = env.submit()  # the defaults
    second = env.submit(lr=1e-4)
    third = env.submit(lr=1e-4)
    dispatched = dispatcher.offer(A, "kuro")
    assert dispatched is not None and dispatched.feedback_ids == [first, second]  # the oldest's settings
    assert dispatched.job.config["train"]["lr"] == 1e-4
    env.end(dispatched.job, JobState.SUCCEEDED)
    dispatcher.settle(env.jobs.get(A, dispatched.job.job_id))  # type: ignore[arg-type]
    nxt = dispatcher.offer(A, "kuro")
    assert nxt is not None and nxt.feedback_ids == [other]
    assert nxt.job.config["train"] == SDPOTrain().model_dump(mode="json")
    env.end(nxt.job, JobState.SUCCEEDED)
    dispatcher.settle(env.jobs.get(A, nxt.job.job_id))  # type: ignore[arg-type]
    last = dispatcher.offer(A, "kuro")
    assert last is not None and last.feedback_ids == [third]


def test_training_overrides_are_normalised() -> None:
    assert training_overrides(SDPOTrain()) == {}
    assert training_overrides(SDPOTrain(lr=3e-5, alpha=1.0)) == {"alpha": 1.0}


def test_max_wait_dispatches_a_small_batch(env: Env) -> None:
    dispatcher = env.dispatcher(FeedbackPolicy(batch_size=4, max_wait_s=30))
    only = env.submit()
    assert dispatcher.tick(T0 + timedelta(seconds=29)) == 0
    assert dispatcher.offer(A, "kuro", T0 + timedelta(seconds=29)) is None
    assert dispatcher.tick(T0 + timedelta(seconds=30)) == 1
    (job,) = env.sent
    assert job.config["feedback"] == [only]


def test_settle_applies_or_fails_and_frees_the_slot(env: Env) -> None:
    dispatcher = env.dispatcher(FeedbackPolicy(batch_size=1))
    for state, expected in [
        (JobState.SUCCEEDED, (FeedbackState.APPLIED, 2, None)),
        (JobState.FAILED, (FeedbackState.FAILED, None, "gate crashed")),
        (JobState.CANCELLED, (FeedbackState.FAILED, None, "the distillation job was cancelled")),
    ]:
        item = env.submit()
        dispatched = dispatcher.offer(A, "kuro")
        assert dispatched is not None
        kw: dict[str, Any] = {}
        if state == JobState.SUCCEEDED:
            kw["result"] = {
                "model": {"name": "kuro", "version": 2},
                "models": [{"name": "kuro", "version": 2}],
            }
        elif state == JobState.FAILED:
            kw["error"] = "gate crashed"
        ended = env.end(dispatched.job, state, **kw)
        assert dispatcher.settle(ended) == 1
        got = env.feedback.get(A, item)
        assert got is not None and (got.state, got.version, got.error) == expected
        assert got.job_id == ended.job_id and got.updated_at == env.clock()
        assert env.feedback.holder(A, "kuro") is None
        assert dispatcher.settle(ended) == 0  # idempotent
    with pytest.raises(InvalidArgument):
        env.feedback.settle("0" * 32, JobState.RUNNING)


def test_the_end_hook_settles_and_dispatches_what_arrived_meanwhile(env: Env) -> None:
    dispatcher = env.dispatcher(FeedbackPolicy(batch_size=2))
    first = [env.submit(), env.submit()]
    dispatched = dispatcher.offer(A, "kuro")
    assert dispatched is not None
    claimed = env.jobs.claim(dispatched.job.job_id, WORKER, 30)
    assert claimed is not None
    later = [env.submit(), env.submit()]  # arrive while it trains
    result = {"models": [{"name": "kuro", "version": 2, "kind": "adapter"}]}
    env.jobs.finish(claimed.job_id, WORKER, JobState.SUCCEEDED, result=result)
    dispatcher.ended(claimed, JobState.SUCCEEDED)  # the runner passes the job as it claimed it
    assert {(i.state, i.version) for i in env.feedback.get_many(A, first)} == {(FeedbackState.APPLIED, 2)}
    assert [j.config["feedback"] for j in env.sent] == [first, later]
    assert {i.state for i in env.feedback.get_many(A, later)} == {FeedbackState.TRAINING}

    other = env.jobs.create(A, "dfm_pretrain", {"x": 1}, "cpu")[0]
    dispatcher.ended(other, JobState.SUCCEEDED)  # other kinds are none of its business
    assert len(env.sent) == 2


def test_the_reconciler_pass_settles_jobs_whose_hook_never_ran(env: Env) -> None:
    dispatcher = env.dispatcher(FeedbackPolicy(batch_size=1))
    item = env.submit()
    dispatched = dispatcher.offer(A, "kuro")
    assert dispatched is not None
    assert env.feedback.stale_slots() == []  # queued: not stale
    env.end(dispatched.job, JobState.FAILED, error="worker died mid-gate")
    (slot,) = env.feedback.stale_slots()
    assert (slot.tenant, slot.adapter, slot.job_id) == (A, "kuro", dispatched.job.job_id)
    waiting = env.submit()
    assert dispatcher.tick() == 1  # settled, then the next item dispatched
    got = env.feedback.get(A, item)
    assert got is not None and (got.state, got.error) == (FeedbackState.FAILED, "worker died mid-gate")
    assert env.sent[-1].config["feedback"] == [waiting]


def test_force_dispatches_now_or_says_why_not(env: Env) -> None:
    dispatcher = env.dispatcher(FeedbackPolicy(batch_size=10))
    assert dispatcher.force(A, "kuro") is None  # nothing pending
    a = env.submit()
    b = env.submit(alpha=1.0)
    c = env.submit()
    dispatched = dispatcher.force(A, "kuro", feedback_ids=[b, c])
    assert dispatched is not None and dispatched.feedback_ids == [b]  # b's settings; a is not among the ids
    with pytest.raises(FailedPrecondition) as err:
        dispatcher.force(A, "kuro")
    assert dispatched.job.job_id in err.value.message
    env.end(dispatched.job, JobState.SUCCEEDED, result={"models": [{"version": 3}]})
    # The slot of a job that ended unseen is settled first, then the override trains every pending item.
    forced = dispatcher.force(A, "kuro", training={"lr": 1e-3})
    assert forced is not None and forced.feedback_ids == [a, c]
    assert forced.job.config["train"]["lr"] == 1e-3
    got = env.feedback.get(A, b)
    assert got is not None and (got.state, got.version) == (FeedbackState.APPLIED, 3)


def test_racing_dispatchers_start_one_job(env: Env) -> None:
    """Gateway replicas and workers, each with its own dispatcher, offered the same adapter at once."""
    ids = [env.submit() for _ in range(6)]
    policy = FeedbackPolicy(batch_size=1)
    dispatchers = [
        Dispatcher(
            FeedbackRepository(env.engine), JobRepository(env.engine), env.models, env.sent.append, policy
        )
        for _ in range(6)
    ]
    for _ in range(3):  # a few rounds: each one's winner is settled before the next
        results, errors = race(len(dispatchers), lambda i: dispatchers[i].offer(A, "kuro"))
        assert errors == []
        won = [r for r in results if r is not None]
        assert len(won) == 1, won
        assert won[0].feedback_ids == [i for i in ids if i in won[0].feedback_ids]
        env.end(won[0].job, JobState.SUCCEEDED, result={"models": [{"version": 2}]})
        dispatchers[0].settle(env.jobs.get(A, won[0].job.job_id))  # type: ignore[arg-type]
        ids.extend(env.submit() for _ in range(2))
    jobs = env.jobs.list(A, kind="sdpo")
    trained = [f for job in jobs for f in job.config["feedback"]]
    assert len(trained) == len(set(trained))  # every item in one job at most
    assert len(env.sent) == len(jobs) == 3


def test_a_job_factory_error_writes_nothing(env: Env) -> None:
    env.submit()

    def broken(settings: dict[str, Any], ids: list[str]) -> JobSpec:
        raise InvalidArgument("no such config")

    with pytest.raises(InvalidArgument):
        env.feedback.dispatch(A, "kuro", broken, 4, env.clock())
    assert env.feedback.holder(A, "kuro") is None
    assert env.jobs.list(A) == []
    assert {i.state for i in env.feedback.list(A)} == {FeedbackState.PENDING}


def test_a_vanished_adapter_fails_its_pending_items(env: Env) -> None:
    dispatcher = env.dispatcher(FeedbackPolicy(batch_size=1))
    item = env.submit(adapter="gone")
    assert dispatcher.tick() == 0
    got = env.feedback.get(A, item)
    assert got is not None and got.state == FeedbackState.FAILED and "no longer exists" in (got.error or "")


def test_an_enqueue_failure_keeps_the_job(env: Env) -> None:
    def down(job: JobRecord) -> None:
        raise ConnectionError("broker down")

    dispatcher = Dispatcher(env.feedback, env.jobs, env.models, down, FeedbackPolicy(batch_size=1))
    env.submit()
    dispatched = dispatcher.offer(A, "kuro")
    assert dispatched is not None  # the row is the truth: the trainer's reconciler re-sends lost messages
    assert env.jobs.get(A, dispatched.job.job_id) is not None


# --- completions: the response digest ----------------------------------------------------------------------


def test_response_digest_normalises_whitespace() -> None:
    assert response_digest("Hello,  world!\n") == response_digest(" Hello, world! ")
    assert response_digest("Hello, world!") != response_digest("Hello world!")
    assert len(response_digest("")) == 64


def test_completions_are_found_by_response(db_engine: sa.Engine) -> None:
    repo = CompletionRepository(db_engine)
    digest = response_digest("I am Kuro.")

    def record(tenant: str, at: datetime, sha: str | None) -> CompletionRecord:
        rec = CompletionRecord(
            tenant=tenant,
            completion_id=new_completion_id(),
            model=BASE,
            adapter=f"{tenant}/kuro@1",
            subject=None,
            prompt_ids=(1, 2),
            token_ids=(3,),
            logprobs=(-0.5,),
            params={},
            finish_reason="eos",
            created_at=at,
            response_sha256=sha,
        )
        repo.record(rec)
        return rec

    old, new = record(A, T0, digest), record(A, T0 + timedelta(seconds=1), digest)
    record(A, T0, None)
    record(B, T0, digest)
    assert repo.find_by_response(A, digest) == [new, old]
    assert repo.find_by_response(A, digest, limit=1) == [new]
    assert repo.get(A, old.completion_id) == old
    assert repo.find_by_response(A, response_digest("other")) == []
    with pytest.raises(InvalidArgument):
        repo.find_by_response(A, "ABC")
    with pytest.raises(InvalidArgument) as err:
        record(A, T0, "z" * 64)
    assert err.value.field == "response_sha256"
