"""JobRepository state transitions on real SQLite and PostgreSQL: slices (requeue), finishing, cancelling,
resuming, the reconciler's stale query and the per-(kind, state) counts. Illegal moves change nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from test_db_jobs import LEASE_S, A, FakeClock, new_job, running_job

from lyceum_core.errors import Aborted, FailedPrecondition, InvalidArgument, NotFound
from lyceum_db import TERMINAL, JobRecord, JobRepository, JobState

pytestmark = pytest.mark.integration

MISSING = "0" * 32


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def repo(db_engine: sa.Engine, clock: FakeClock) -> JobRepository:
    return JobRepository(db_engine, clock=clock)


def in_state(repo: JobRepository, state: JobState) -> JobRecord:
    """A job brought to `state` through the public transitions."""
    if state == JobState.QUEUED:
        return new_job(repo)
    job = running_job(repo)
    if state == JobState.RUNNING:
        return job
    if state == JobState.CANCELLING:
        return repo.request_cancel(A, job.job_id)
    return repo.finish(job.job_id, "w1", state, error="boom" if state == JobState.FAILED else None)


def test_terminal_states() -> None:
    assert TERMINAL == {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}
    assert [state.terminal for state in JobState] == [False, False, False, True, True, True]


def test_requeue_ends_a_slice(repo: JobRepository, clock: FakeClock) -> None:
    job = running_job(repo)
    repo.save_checkpoint(job.job_id, "w1", "file:///ckpt/1", {"step": 1})
    clock.advance(10)
    queued = repo.requeue(job.job_id, "w1")
    assert queued.state == JobState.QUEUED
    assert queued.lease_owner is queued.lease_expires_at is None
    assert queued.enqueued_at == queued.updated_at == clock.now
    assert (queued.attempt, queued.checkpoint_uri, queued.started_at) == (1, "file:///ckpt/1", job.started_at)
    assert repo.get(A, job.job_id) == queued

    again = repo.claim(job.job_id, "w2", LEASE_S)
    assert again is not None and again.attempt == 2 and again.checkpoint_uri == "file:///ckpt/1"


def test_requeue_of_a_cancelling_job_returns_it_as_is(repo: JobRepository) -> None:
    cancelling = in_state(repo, JobState.CANCELLING)
    assert repo.requeue(cancelling.job_id, "w1") == cancelling
    assert repo.get(A, cancelling.job_id) == cancelling


@pytest.mark.parametrize(
    "state", [JobState.QUEUED, JobState.RUNNING, JobState.CANCELLING, JobState.SUCCEEDED]
)
def test_requeue_without_the_lease_aborts_and_changes_nothing(repo: JobRepository, state: JobState) -> None:
    job = in_state(repo, state)
    with pytest.raises(Aborted):
        repo.requeue(job.job_id, "w2")
    assert repo.get(A, job.job_id) == job
    with pytest.raises(NotFound):
        repo.requeue(MISSING, "w1")


@pytest.mark.parametrize("state", [JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED])
def test_finish_releases_the_lease(repo: JobRepository, clock: FakeClock, state: JobState) -> None:
    job = running_job(repo)
    clock.advance(7)
    done = repo.finish(
        job.job_id, "w1", state, error="e" if state == JobState.FAILED else None, result={"v": 3}
    )
    assert done.state == state
    assert done.lease_owner is done.lease_expires_at is None
    assert done.finished_at == done.updated_at == clock.now
    assert done.result == {"v": 3}
    assert done.error == ("e" if state == JobState.FAILED else None)
    assert repo.get(A, job.job_id) == done


def test_finish_of_a_cancelling_job(repo: JobRepository) -> None:
    job = in_state(repo, JobState.CANCELLING)
    assert repo.finish(job.job_id, "w1", JobState.CANCELLED).state == JobState.CANCELLED


def test_finish_without_a_result_stores_sql_null(repo: JobRepository, db_engine: sa.Engine) -> None:
    job = running_job(repo)
    assert repo.finish(job.job_id, "w1", JobState.SUCCEEDED).result is None
    with db_engine.connect() as conn:
        query = sa.text("SELECT count(*) FROM jobs WHERE result IS NULL AND job_id = :id")
        assert conn.execute(query, {"id": job.job_id}).scalar_one() == 1


def test_finish_needs_the_lease_and_a_terminal_state(repo: JobRepository) -> None:
    job = running_job(repo)
    with pytest.raises(InvalidArgument) as info:
        repo.finish(job.job_id, "w1", JobState.QUEUED)
    assert info.value.field == "state"
    with pytest.raises(Aborted):
        repo.finish(job.job_id, "w2", JobState.SUCCEEDED)
    assert repo.get(A, job.job_id) == job
    done = repo.finish(job.job_id, "w1", JobState.SUCCEEDED)
    with pytest.raises(Aborted):
        repo.finish(job.job_id, "w1", JobState.FAILED)  # finishing twice
    assert repo.get(A, job.job_id) == done
    with pytest.raises(NotFound):
        repo.finish(MISSING, "w1", JobState.FAILED)


def test_cancel_of_a_queued_job_is_immediate(repo: JobRepository, clock: FakeClock) -> None:
    job = new_job(repo)
    clock.advance(3)
    cancelled = repo.request_cancel(A, job.job_id)
    assert cancelled.state == JobState.CANCELLED
    assert cancelled.finished_at == cancelled.updated_at == clock.now
    assert repo.claim(job.job_id, "w1", LEASE_S) is None  # the broker message that is still out is dropped


def test_cancel_of_a_running_job_asks_its_worker(repo: JobRepository) -> None:
    job = running_job(repo)
    cancelling = repo.request_cancel(A, job.job_id)
    assert cancelling.state == JobState.CANCELLING
    assert cancelling.finished_at is None
    assert cancelling.lease_owner == "w1"


@pytest.mark.parametrize("state", [JobState.CANCELLING, JobState.CANCELLED])
def test_cancel_is_idempotent(repo: JobRepository, clock: FakeClock, state: JobState) -> None:
    job = in_state(repo, state)
    clock.advance(1)
    assert repo.request_cancel(A, job.job_id) == job
    assert repo.get(A, job.job_id) == job


@pytest.mark.parametrize("state", [JobState.SUCCEEDED, JobState.FAILED])
def test_cancel_of_a_finished_job_is_a_failed_precondition(repo: JobRepository, state: JobState) -> None:
    job = in_state(repo, state)
    with pytest.raises(FailedPrecondition):
        repo.request_cancel(A, job.job_id)
    assert repo.get(A, job.job_id) == job
    with pytest.raises(NotFound):
        repo.request_cancel(A, MISSING)


@pytest.mark.parametrize("state", [JobState.CANCELLED, JobState.FAILED])
def test_resume_queues_a_stopped_job_from_its_checkpoint(
    repo: JobRepository, clock: FakeClock, state: JobState
) -> None:
    job = running_job(repo)
    repo.save_checkpoint(job.job_id, "w1", "file:///ckpt/5", {"step": 5})
    if state == JobState.CANCELLED:
        repo.request_cancel(A, job.job_id)
    repo.finish(job.job_id, "w1", state, error="boom", result={"partial": True})
    clock.advance(60)
    resumed = repo.resume(A, job.job_id)
    assert resumed.state == JobState.QUEUED
    assert resumed.error is resumed.finished_at is resumed.result is None
    assert resumed.enqueued_at == clock.now
    assert (resumed.checkpoint_uri, resumed.progress, resumed.attempt) == ("file:///ckpt/5", {"step": 5}, 1)
    claimed = repo.claim(job.job_id, "w2", LEASE_S)
    assert claimed is not None and claimed.attempt == 2


@pytest.mark.parametrize(
    "state", [JobState.QUEUED, JobState.RUNNING, JobState.CANCELLING, JobState.SUCCEEDED]
)
def test_resume_in_other_states_is_a_failed_precondition(repo: JobRepository, state: JobState) -> None:
    job = in_state(repo, state)
    with pytest.raises(FailedPrecondition):
        repo.resume(A, job.job_id)
    assert repo.get(A, job.job_id) == job
    with pytest.raises(NotFound):
        repo.resume(A, MISSING)


def test_mark_enqueued(repo: JobRepository, clock: FakeClock) -> None:
    job = new_job(repo)
    clock.advance(5)
    assert repo.mark_enqueued(job.job_id) is True
    record = repo.get(A, job.job_id)
    assert record is not None and record.enqueued_at == clock.now
    done = in_state(repo, JobState.SUCCEEDED)
    assert repo.mark_enqueued(done.job_id) is False
    assert repo.get(A, done.job_id) == done
    assert repo.mark_enqueued(MISSING) is False


def test_stale_finds_lost_messages_and_dead_workers(repo: JobRepository, clock: FakeClock) -> None:
    grace = 60.0
    lost = new_job(repo)
    dead = running_job(repo, "w1")
    dead_cancelling = running_job(repo, "w2")
    repo.request_cancel(A, dead_cancelling.job_id)
    in_state(repo, JobState.SUCCEEDED)
    in_state(repo, JobState.CANCELLED)
    assert repo.stale(grace) == []

    clock.advance(grace + 1)  # the leases (30 s) expired, the queued job outlived the grace
    alive = running_job(repo, "w3")
    fresh = new_job(repo)
    stale = {job.job_id for job in repo.stale(grace)}
    assert stale == {lost.job_id, dead.job_id, dead_cancelling.job_id}
    assert alive.job_id not in stale and fresh.job_id not in stale

    # Re-sent messages hide the jobs for a grace; then they are stale again if still unclaimed.
    for job_id in stale:
        assert repo.mark_enqueued(job_id)
    assert repo.stale(grace) == []
    clock.advance(grace + 1)
    again = {job.job_id for job in repo.stale(grace)}
    assert again == {*stale, alive.job_id, fresh.job_id}
    # All were (re-)enqueued at one instant, so the job_id breaks the tie.
    assert [job.job_id for job in repo.stale(grace, limit=1)] == [min(again)]


def test_counts_by_kind_and_state(repo: JobRepository) -> None:
    assert repo.counts() == {}
    new_job(repo)
    new_job(repo)
    new_job(repo, kind="lm_train")
    in_state(repo, JobState.SUCCEEDED)
    assert repo.counts() == {
        ("dfm_train", "queued"): 2,
        ("lm_train", "queued"): 1,
        ("dfm_train", "succeeded"): 1,
    }


def test_a_whole_life(repo: JobRepository, clock: FakeClock) -> None:
    """Queued -> two slices with a checkpoint and a dead worker in between -> succeeded."""
    job, _ = repo.create(A, "dfm_train", {"steps": 4}, "gpu", idempotency_key="life")
    first = repo.claim(job.job_id, "w1", LEASE_S)
    assert first is not None
    repo.record_metrics(job.job_id, 1, {"loss": 1.0})
    repo.save_checkpoint(job.job_id, "w1", "memory:///ckpt/1", {"step": 1, "total": 4})
    repo.requeue(job.job_id, "w1")

    second = repo.claim(job.job_id, "w2", LEASE_S)
    assert second is not None and second.checkpoint_uri == "memory:///ckpt/1"
    clock.advance(LEASE_S + 1)  # w2 dies without a word
    third = repo.claim(job.job_id, "w3", LEASE_S)
    assert third is not None and third.attempt == 3 and third.progress == {"step": 1, "total": 4}
    assert repo.heartbeat(job.job_id, "w3", LEASE_S, {"step": 4}) == JobState.RUNNING
    repo.record_metrics(job.job_id, 4, {"loss": 0.1})
    repo.set_metrics(job.job_id, "w3", {"loss": 0.1})
    done = repo.finish(job.job_id, "w3", JobState.SUCCEEDED, result={"model": "dfm", "version": 1})

    assert done.state == JobState.SUCCEEDED and done.metrics == {"loss": 0.1}
    assert done.finished_at is not None and done.started_at is not None
    assert done.finished_at - done.started_at == timedelta(seconds=LEASE_S + 1)
    assert [step for step, _, _ in repo.metrics_history(A, job.job_id)] == [1, 4]
    assert repo.create(A, "dfm_train", {"steps": 4}, "gpu", idempotency_key="life") == (done, False)
