"""JobRepository on real SQLite and PostgreSQL: creation and idempotency, listing, claiming and leases,
heartbeats, checkpoints, metrics, and the races between workers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fixtures.threads import race

from lyceum_core.errors import Aborted, AlreadyExists, InvalidArgument, NotFound
from lyceum_db import JobRecord, JobRepository, JobState

pytestmark = pytest.mark.integration

CONFIG = {"model": "dfm", "steps": 100, "lr": 0.001, "layers": [64, 64]}
LEASE_S = 30.0
A, B = "acme", "globex"  # two tenants


class FakeClock:
    """A clock that only moves when told; lease expiry is then deterministic."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def repo(db_engine: sa.Engine, clock: FakeClock) -> JobRepository:
    return JobRepository(db_engine, clock=clock)


def new_job(repo: JobRepository, **kwargs: Any) -> JobRecord:
    tenant = kwargs.pop("tenant", A)
    kind, queue = kwargs.pop("kind", "dfm_train"), kwargs.pop("queue", "gpu")
    job, created = repo.create(tenant, kind, CONFIG, queue, **kwargs)
    assert created
    return job


def running_job(repo: JobRepository, owner: str = "w1") -> JobRecord:
    job = repo.claim(new_job(repo).job_id, owner, LEASE_S)
    assert job is not None
    return job


def test_create_then_get_round_trip(repo: JobRepository, clock: FakeClock) -> None:
    job, created = repo.create(A, "dfm_train", CONFIG, "gpu")
    assert created
    assert len(job.job_id) == 32 and int(job.job_id, 16) >= 0
    assert (job.kind, job.queue, job.config, job.state) == ("dfm_train", "gpu", CONFIG, JobState.QUEUED)
    assert (job.attempt, job.progress, job.metrics, job.error, job.result) == (0, {}, {}, None, None)
    assert job.lease_owner is job.lease_expires_at is job.heartbeat_at is job.checkpoint_uri is None
    assert job.started_at is job.finished_at is job.idempotency_key is None
    assert job.enqueued_at == job.created_at == job.updated_at == clock.now
    assert job.created_at.utcoffset() == timedelta(0)
    assert repo.get(A, job.job_id) == job


def test_get_missing_is_none(repo: JobRepository) -> None:
    assert repo.get(A, "0" * 32) is None


def test_same_idempotency_key_and_request_returns_the_existing_job(repo: JobRepository) -> None:
    first, created = repo.create(A, "dfm_train", CONFIG, "gpu", idempotency_key="req-1")
    assert created
    # Key order does not make another request; the queue is not part of it.
    again, created = repo.create(
        A, "dfm_train", dict(reversed(CONFIG.items())), "cpu", idempotency_key="req-1"
    )
    assert not created
    assert again == first
    assert repo.list(A) == [first]


@pytest.mark.parametrize(("kind", "config"), [("dfm_train", {**CONFIG, "steps": 101}), ("lm_train", CONFIG)])
def test_same_idempotency_key_for_another_request_is_already_exists(
    repo: JobRepository, kind: str, config: dict[str, Any]
) -> None:
    first, _ = repo.create(A, "dfm_train", CONFIG, "gpu", idempotency_key="req-1")
    with pytest.raises(AlreadyExists) as info:
        repo.create(A, kind, config, "gpu", idempotency_key="req-1")
    assert info.value.field == "idempotency_key"
    assert repo.list(A) == [first]


def test_racing_creates_with_one_key_make_one_job(repo: JobRepository) -> None:
    results, errors = race(6, lambda i: repo.create(A, "dfm_train", CONFIG, "gpu", idempotency_key="req-1"))
    assert not errors, errors
    assert sum(created for _, created in results) == 1
    assert len({job.job_id for job, _ in results}) == 1
    assert len(repo.list(A)) == 1


def test_jobs_without_keys_are_independent(repo: JobRepository) -> None:
    a, b = new_job(repo), new_job(repo)
    assert a.job_id != b.job_id


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ((A, "", CONFIG, "gpu"), "kind"),
        ((A, "k" * 33, CONFIG, "gpu"), "kind"),
        ((A, "dfm_train", CONFIG, "q" * 17), "queue"),
        ((A, "dfm_train", ["not", "an", "object"], "gpu"), "config"),
        ((A, "dfm_train", {"lr": float("nan")}, "gpu"), "config"),
        ((A, "dfm_train", {"when": datetime.now(UTC)}, "gpu"), "config"),
        ((A, "dfm_train", CONFIG, "gpu", "x" * 129), "idempotency_key"),
        (("Bad Tenant", "dfm_train", CONFIG, "gpu"), "tenant"),
    ],
)
def test_invalid_create_is_rejected_on_every_backend(
    repo: JobRepository, args: tuple[Any, ...], field: str
) -> None:
    with pytest.raises(InvalidArgument) as info:
        repo.create(*args)
    assert info.value.field == field
    assert repo.list(A) == []


def test_list_is_newest_first_filtered_and_paged(repo: JobRepository, clock: FakeClock) -> None:
    jobs = []
    for i in range(7):
        clock.advance(1)
        jobs.append(new_job(repo, kind="lm_train" if i % 2 else "dfm_train"))
    repo.request_cancel(A, jobs[0].job_id)
    newest_first = [job.job_id for job in reversed(jobs)]

    assert [job.job_id for job in repo.list(A)] == newest_first
    assert [job.job_id for job in repo.list(A, kind="lm_train")] == newest_first[1::2]
    assert [job.job_id for job in repo.list(A, state=JobState.CANCELLED)] == [jobs[0].job_id]
    assert repo.list(A, state=JobState.RUNNING) == []

    pages, before = [], None
    while page := repo.list(A, limit=3, before=before):
        pages.append([job.job_id for job in page])
        before = page[-1].job_id
    assert pages == [newest_first[0:3], newest_first[3:6], newest_first[6:]]


def test_list_pages_through_jobs_created_at_the_same_instant(repo: JobRepository) -> None:
    ids = sorted((new_job(repo).job_id for _ in range(5)), reverse=True)  # the clock stands still
    first = repo.list(A, limit=2)
    second = repo.list(A, limit=2, before=first[-1].job_id)
    third = repo.list(A, limit=2, before=second[-1].job_id)
    assert [job.job_id for job in first + second + third] == ids


def test_list_rejects_bad_arguments(repo: JobRepository) -> None:
    with pytest.raises(InvalidArgument) as info:
        repo.list(A, before="f" * 32)
    assert info.value.field == "before"
    with pytest.raises(InvalidArgument) as info:
        repo.list(A, limit=0)
    assert info.value.field == "limit"
    with pytest.raises(InvalidArgument) as info:
        repo.list(A, state="sleeping")  # type: ignore[arg-type]
    assert info.value.field == "state"


def test_claim_takes_a_queued_job(repo: JobRepository, clock: FakeClock) -> None:
    job = new_job(repo)
    clock.advance(5)
    claimed = repo.claim(job.job_id, "w1", LEASE_S)
    assert claimed is not None
    assert (claimed.state, claimed.lease_owner, claimed.attempt) == (JobState.RUNNING, "w1", 1)
    assert claimed.lease_expires_at == clock.now + timedelta(seconds=LEASE_S)
    assert claimed.heartbeat_at == claimed.started_at == claimed.updated_at == clock.now
    assert claimed.enqueued_at == job.enqueued_at
    assert repo.get(A, job.job_id) == claimed


def test_claim_with_a_live_lease_elsewhere_is_none_and_changes_nothing(
    repo: JobRepository, clock: FakeClock
) -> None:
    job = running_job(repo, "w1")
    clock.advance(LEASE_S)  # expiry is strict: at exactly lease end the lease still holds
    assert repo.claim(job.job_id, "w2", LEASE_S) is None
    assert repo.claim(job.job_id, "w1", LEASE_S) is None  # not even the holder claims twice
    assert repo.get(A, job.job_id) == job


def test_claim_after_the_lease_expired_takes_over(repo: JobRepository, clock: FakeClock) -> None:
    job = running_job(repo, "w1")
    clock.advance(LEASE_S + 1)
    taken = repo.claim(job.job_id, "w2", LEASE_S)
    assert taken is not None
    assert (taken.state, taken.lease_owner, taken.attempt) == (JobState.RUNNING, "w2", 2)
    assert taken.started_at == job.started_at  # the first start is kept
    assert taken.lease_expires_at == clock.now + timedelta(seconds=LEASE_S)
    with pytest.raises(Aborted):
        repo.heartbeat(job.job_id, "w1", LEASE_S)  # the dead worker's lease is gone


def test_claim_of_an_expired_cancelling_job_keeps_it_cancelling(
    repo: JobRepository, clock: FakeClock
) -> None:
    job = running_job(repo, "w1")
    repo.request_cancel(A, job.job_id)
    clock.advance(LEASE_S + 1)
    taken = repo.claim(job.job_id, "w2", LEASE_S)
    assert taken is not None
    assert (taken.state, taken.lease_owner, taken.attempt) == (JobState.CANCELLING, "w2", 2)


@pytest.mark.parametrize("state", [JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED])
def test_terminal_and_missing_jobs_are_not_claimable(
    repo: JobRepository, clock: FakeClock, state: JobState
) -> None:
    job = running_job(repo)
    done = repo.finish(job.job_id, "w1", state)
    clock.advance(LEASE_S * 10)
    assert repo.claim(job.job_id, "w2", LEASE_S) is None
    assert repo.get(A, job.job_id) == done
    assert repo.claim("0" * 32, "w2", LEASE_S) is None


@pytest.mark.parametrize(("owner", "lease_s", "field"), [("", 1.0, "owner"), ("w", 0.0, "lease_s")])
def test_claim_rejects_bad_arguments(repo: JobRepository, owner: str, lease_s: float, field: str) -> None:
    job = new_job(repo)
    with pytest.raises(InvalidArgument) as info:
        repo.claim(job.job_id, owner, lease_s)
    assert info.value.field == field
    assert repo.get(A, job.job_id) == job


def test_racing_claimers_exactly_one_wins(repo: JobRepository, clock: FakeClock) -> None:
    for _ in range(3):
        job = new_job(repo)
        results, errors = race(8, lambda i, job_id=job.job_id: repo.claim(job_id, f"w{i}", LEASE_S))
        assert not errors, errors
        winners = [record for record in results if record is not None]
        assert len(winners) == 1
        assert repo.get(A, job.job_id) == winners[0]
        assert winners[0].attempt == 1

    # The same holds for taking over an expired lease.
    clock.advance(LEASE_S + 1)
    results, errors = race(8, lambda i: repo.claim(job.job_id, f"x{i}", LEASE_S))
    assert not errors, errors
    winners = [record for record in results if record is not None]
    assert len(winners) == 1
    assert winners[0].attempt == 2


def test_heartbeat_extends_the_lease_and_merges_progress(repo: JobRepository, clock: FakeClock) -> None:
    job = running_job(repo)
    clock.advance(10)
    assert repo.heartbeat(job.job_id, "w1", 60, {"step": 10, "total": 100}) == JobState.RUNNING
    clock.advance(10)
    assert repo.heartbeat(job.job_id, "w1", 60, {"step": 20, "eta_s": 80.0}) == JobState.RUNNING
    assert repo.heartbeat(job.job_id, "w1", 60) == JobState.RUNNING
    now = repo.get(A, job.job_id)
    assert now is not None
    assert now.progress == {"step": 20, "total": 100, "eta_s": 80.0}
    assert now.lease_expires_at == clock.now + timedelta(seconds=60)
    assert now.heartbeat_at == clock.now


def test_heartbeat_reports_a_cancel_request(repo: JobRepository) -> None:
    job = running_job(repo)
    repo.request_cancel(A, job.job_id)
    assert repo.heartbeat(job.job_id, "w1", LEASE_S, {"step": 3}) == JobState.CANCELLING


def test_heartbeat_after_expiry_still_works_while_nobody_took_over(
    repo: JobRepository, clock: FakeClock
) -> None:
    job = running_job(repo)
    clock.advance(LEASE_S * 2)
    assert repo.heartbeat(job.job_id, "w1", LEASE_S) == JobState.RUNNING
    assert repo.claim(job.job_id, "w2", LEASE_S) is None


def test_heartbeat_without_the_lease_aborts_and_changes_nothing(repo: JobRepository) -> None:
    job = running_job(repo)
    with pytest.raises(Aborted) as info:
        repo.heartbeat(job.job_id, "w2", LEASE_S, {"step": 99})
    assert info.value.field == "owner"
    assert repo.get(A, job.job_id) == job
    queued = new_job(repo)
    with pytest.raises(Aborted):
        repo.heartbeat(queued.job_id, "w1", LEASE_S)
    with pytest.raises(NotFound):
        repo.heartbeat("0" * 32, "w1", LEASE_S)


def test_concurrent_progress_merges_are_not_lost(repo: JobRepository) -> None:
    job = running_job(repo)
    _, errors = race(8, lambda i: repo.heartbeat(job.job_id, "w1", LEASE_S, {f"k{i}": i}))
    assert not errors, errors
    record = repo.get(A, job.job_id)
    assert record is not None
    assert record.progress == {f"k{i}": i for i in range(8)}


def test_save_checkpoint_sets_the_resume_pointer(repo: JobRepository) -> None:
    job = running_job(repo)
    repo.heartbeat(job.job_id, "w1", LEASE_S, {"step": 5, "total": 100})
    repo.save_checkpoint(
        job.job_id, "w1", "file:///ckpt/10", {"step": 10, "last_checkpoint": "file:///ckpt/10"}
    )
    record = repo.get(A, job.job_id)
    assert record is not None
    assert record.checkpoint_uri == "file:///ckpt/10"
    assert record.progress == {"step": 10, "total": 100, "last_checkpoint": "file:///ckpt/10"}
    with pytest.raises(Aborted):
        repo.save_checkpoint(job.job_id, "w2", "file:///ckpt/evil", {})
    assert repo.get(A, job.job_id) == record


def test_metrics_history_is_ordered_by_step_then_report(repo: JobRepository, clock: FakeClock) -> None:
    job = new_job(repo)
    assert repo.metrics_history(A, job.job_id) == []
    reports = [(30, {"loss": 0.3}), (10, {"loss": 0.9}), (20, {"loss": 0.5}), (10, {"loss": 0.8})]
    for step, values in reports:
        clock.advance(1)
        repo.record_metrics(job.job_id, step, values)
    history = repo.metrics_history(A, job.job_id)
    assert [(step, values) for step, values, _ in history] == [
        (10, {"loss": 0.9}),
        (10, {"loss": 0.8}),
        (20, {"loss": 0.5}),
        (30, {"loss": 0.3}),
    ]
    assert all(created.utcoffset() == timedelta(0) for _, _, created in history)
    assert [step for step, _, _ in repo.metrics_history(A, job.job_id, after_step=10)] == [20, 30]
    assert repo.metrics_history(A, job.job_id, after_step=30) == []


def test_metrics_of_a_missing_job_are_not_found(repo: JobRepository) -> None:
    with pytest.raises(NotFound):
        repo.record_metrics("0" * 32, 1, {"loss": 1.0})
    with pytest.raises(NotFound):
        repo.metrics_history(A, "0" * 32)
    with pytest.raises(InvalidArgument):
        repo.record_metrics(new_job(repo).job_id, 1, {"loss": float("inf")})


def test_set_metrics_replaces_the_latest(repo: JobRepository) -> None:
    job = running_job(repo)
    repo.set_metrics(job.job_id, "w1", {"loss": 0.5, "acc": 0.7})
    repo.set_metrics(job.job_id, "w1", {"loss": 0.4})
    record = repo.get(A, job.job_id)
    assert record is not None and record.metrics == {"loss": 0.4}
    with pytest.raises(Aborted):
        repo.set_metrics(job.job_id, "w2", {"loss": 0.0})
    assert repo.get(A, job.job_id) == record


def test_deleting_a_job_deletes_its_metrics(repo: JobRepository, db_engine: sa.Engine) -> None:
    job = new_job(repo)
    repo.record_metrics(job.job_id, 1, {"loss": 1.0})
    with db_engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM jobs WHERE job_id = :id"), {"id": job.job_id})
    with db_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM job_metrics")).scalar_one() == 0


def test_two_tenants_may_use_the_same_idempotency_key(repo: JobRepository) -> None:
    mine, created_a = repo.create(A, "dfm_train", CONFIG, "gpu", idempotency_key="req-1")
    theirs, created_b = repo.create(B, "lm_train", {"other": True}, "cpu", idempotency_key="req-1")
    assert created_a and created_b
    assert mine.job_id != theirs.job_id
    assert (mine.tenant, theirs.tenant) == (A, B)
    assert repo.create(A, "dfm_train", CONFIG, "gpu", idempotency_key="req-1") == (mine, False)
    assert repo.list(A) == [mine]
    assert repo.list(B) == [theirs]
    assert repo.find_by_idempotency_key(A, "req-1") == mine
    assert repo.find_by_idempotency_key(B, "req-1") == theirs
    assert repo.find_by_idempotency_key(A, "req-2") is None


def test_another_tenants_job_behaves_exactly_as_missing(repo: JobRepository, clock: FakeClock) -> None:
    job = running_job(repo)
    repo.record_metrics(job.job_id, 1, {"loss": 1.0})
    missing = "f" * 32

    def error(call: Callable[[], object]) -> tuple[str, str | None]:
        with pytest.raises(NotFound) as info:
            call()
        return info.value.message.replace(missing, job.job_id), info.value.field

    assert repo.get(B, job.job_id) is None
    assert repo.list(B) == []
    for action in ("request_cancel", "resume", "metrics_history"):
        assert error(lambda a=action: getattr(repo, a)(B, job.job_id)) == error(
            lambda a=action: getattr(repo, a)(B, missing)
        )
    with pytest.raises(InvalidArgument, match="unknown cursor"):
        repo.list(B, before=job.job_id)
    assert repo.get(A, job.job_id) == job  # untouched: B's cancel did nothing
    assert repo.active_count(B) == 0


def test_active_count_counts_queued_running_and_cancelling(repo: JobRepository) -> None:
    assert repo.active_count(A) == 0
    new_job(repo)
    running = running_job(repo)
    cancelling = running_job(repo)
    repo.request_cancel(A, cancelling.job_id)
    repo.finish(running.job_id, "w1", JobState.SUCCEEDED)
    new_job(repo, tenant=B)
    cancelled = new_job(repo)
    repo.request_cancel(A, cancelled.job_id)
    assert repo.active_count(A) == 2  # one queued, one cancelling
    assert repo.active_count(B) == 1
