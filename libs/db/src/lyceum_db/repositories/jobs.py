"""Background jobs: idempotent creation, lease-based claiming by workers, heartbeats, checkpoints, metrics,
cancellation and resumption, plus the queries a reconciler and a metrics exporter need.

Leases compare timestamps from the repository's clock on every worker, so `lease_s` must stay well above
the clock skew between hosts. A lease owner must be unique per claim (host, pid and a random suffix).

Methods a caller uses (create, get, list, cancel, resume, metrics history, active count) take the tenant first
and see only its jobs; another tenant's job is missing. Worker-side methods (claim, heartbeat, checkpoint,
finish, ...) address jobs by id alone: the job id came from a committed row.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, case, func, insert, literal, or_, select, update
from sqlalchemy.exc import IntegrityError

from lyceum_core.errors import Aborted, AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from lyceum_db.models.base import UTCDateTime
from lyceum_db.models.job import (
    ACTIVE,
    IDEMPOTENCY_KEY_MAX_LEN,
    LEASE_OWNER_MAX_LEN,
    TERMINAL,
    Job,
    JobMetric,
    JobState,
)
from lyceum_db.repositories._common import check_str, json_object, reader, utcnow
from lyceum_db.repositories.job_rows import (
    COLUMNS,
    JobRecord,
    check_job,
    get_job,
    insert_job,
    job_record,
)

Clock = Callable[[], datetime]

_ACTIVE = [state.value for state in ACTIVE]
_TERMINAL = [state.value for state in TERMINAL]
# A cancel or resume that races another transition re-reads and tries again, at most this often.
_MAX_RETRIES = 3


class JobRepository:
    """Job persistence. Every write is one short transaction, committed when the method returns.

    `clock` (default: the system clock in UTC) supplies "now" for timestamps and lease expiry; tests pass a
    controllable one.
    """

    def __init__(self, engine: Engine, *, clock: Clock | None = None) -> None:
        self._engine = engine
        self._clock = clock or utcnow
        self._reader = reader(engine)

    def create(
        self,
        tenant: str,
        kind: str,
        config: Mapping[str, Any],
        queue: str,
        idempotency_key: str | None = None,
    ) -> tuple[JobRecord, bool]:
        """Creates a queued job of `tenant`; returns it and True. An `idempotency_key` the tenant used before
        returns the existing job and False if its kind and config are equal, else AlreadyExists."""
        config = check_job(tenant, kind, config, queue)
        if idempotency_key is not None:
            check_str(idempotency_key, "idempotency_key", IDEMPOTENCY_KEY_MAX_LEN)
            existing = self.find_by_idempotency_key(tenant, idempotency_key)
            if existing is not None:
                return _same_request(existing, kind, config), False
        try:
            with self._engine.begin() as conn:
                job = insert_job(conn, tenant, kind, config, queue, self._clock(), idempotency_key)
        except IntegrityError:
            # Only the idempotency key can collide (a uuid4 does not): a concurrent create with it won.
            existing = (
                self.find_by_idempotency_key(tenant, idempotency_key) if idempotency_key is not None else None
            )
            if existing is None:
                raise
            return _same_request(existing, kind, config), False
        return job, True

    def get(self, tenant: str, job_id: str) -> JobRecord | None:
        """The tenant's job, or None if it has no such job."""
        with self._reader.connect() as conn:
            return get_job(conn, job_id, tenant)

    def find_by_idempotency_key(self, tenant: str, idempotency_key: str) -> JobRecord | None:
        """The job of `tenant` that a create with `idempotency_key` made, or None (another tenant's keys are
        its own)."""
        stmt = select(*COLUMNS).where(Job.tenant == tenant, Job.idempotency_key == idempotency_key)
        with self._reader.connect() as conn:
            row = conn.execute(stmt).one_or_none()
        return None if row is None else job_record(row)

    def active_count(self, tenant: str) -> int:
        """How many of the tenant's jobs are queued, running or cancelling (what a job quota counts)."""
        live = [JobState.QUEUED.value, *_ACTIVE]
        stmt = select(func.count()).select_from(Job).where(Job.tenant == tenant, Job.state.in_(live))
        with self._reader.connect() as conn:
            return conn.execute(stmt).scalar_one()

    def list(
        self,
        tenant: str,
        state: JobState | None = None,
        kind: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> builtins.list[JobRecord]:
        """Up to `limit` of the tenant's jobs, newest first, optionally filtered by state and kind.

        Paging: pass the `job_id` of the last job of a page as `before` to get the next page, i.e. the jobs
        ordered after it by (created_at, job_id) descending. An unknown `before` is InvalidArgument.
        """
        if not 1 <= limit <= 1000:
            raise InvalidArgument(f"limit must be 1 to 1000, got {limit}", field="limit")
        stmt = (
            select(*COLUMNS)
            .where(Job.tenant == tenant)
            .order_by(Job.created_at.desc(), Job.job_id.desc())
            .limit(limit)
        )
        if state is not None:
            stmt = stmt.where(Job.state == _state(state).value)
        if kind is not None:
            stmt = stmt.where(Job.kind == kind)
        with self._reader.connect() as conn:
            if before is not None:
                cursor = conn.execute(
                    select(Job.created_at).where(Job.tenant == tenant, Job.job_id == before)
                ).scalar_one_or_none()
                if cursor is None:
                    raise InvalidArgument(f"unknown cursor job {before!r}", field="before")
                stmt = stmt.where(
                    or_(Job.created_at < cursor, and_(Job.created_at == cursor, Job.job_id < before))
                )
            return [job_record(row) for row in conn.execute(stmt)]

    def claim(self, job_id: str, owner: str, lease_s: float) -> JobRecord | None:
        """Takes the job's lease for `lease_s` seconds if it is queued, or active with an expired lease (its
        worker died); None if it is not claimable (a live lease elsewhere, terminal, or missing).

        Claiming sets state running (a cancelling job stays cancelling, for the new worker to wind down),
        counts an attempt and sets started_at on the first claim.
        """
        check_str(owner, "owner", LEASE_OWNER_MAX_LEN)
        _check_lease(lease_s)
        now = self._clock()
        # One conditional UPDATE is the whole claim: it takes the row's write lock, so of racing claimers
        # exactly one matches; the others re-evaluate the condition against its live lease and match nothing.
        stmt = (
            update(Job)
            .where(
                Job.job_id == job_id,
                or_(
                    Job.state == JobState.QUEUED.value,
                    and_(Job.state.in_(_ACTIVE), Job.lease_expires_at < now),
                ),
            )
            .values(
                state=case(
                    (Job.state == JobState.CANCELLING.value, JobState.CANCELLING.value),
                    else_=JobState.RUNNING.value,
                ),
                lease_owner=owner,
                lease_expires_at=now + timedelta(seconds=lease_s),
                heartbeat_at=now,
                attempt=Job.attempt + 1,
                started_at=func.coalesce(Job.started_at, literal(now, UTCDateTime())),
                updated_at=now,
            )
            .returning(*COLUMNS)
        )
        with self._engine.begin() as conn:
            row = conn.execute(stmt).one_or_none()
        return None if row is None else job_record(row)

    def heartbeat(
        self, job_id: str, owner: str, lease_s: float, progress: Mapping[str, Any] | None = None
    ) -> JobState:
        """Extends `owner`'s lease by `lease_s` from now and merges `progress` (shallowly) into the job's.
        Returns the job's state, so a runner sees `cancelling`; Aborted if the lease is no longer ours (an
        expired lease nobody claimed yet still is)."""
        _check_lease(lease_s)
        patch = json_object(progress or {}, "progress")
        now = self._clock()
        with self._engine.begin() as conn:
            state, current = self._touch(
                conn,
                job_id,
                owner,
                lease_expires_at=now + timedelta(seconds=lease_s),
                heartbeat_at=now,
                updated_at=now,
            )
            if patch:
                _merge_progress(conn, job_id, current, patch)
        return state

    def save_checkpoint(self, job_id: str, owner: str, uri: str, progress: Mapping[str, Any]) -> None:
        """Points the job's resume pointer at `uri` and merges `progress`; Aborted if the lease is not ours.
        Call it only once the checkpoint is completely written, so the pointer never sees a partial one."""
        if not uri:
            raise InvalidArgument("checkpoint uri must not be empty", field="uri")
        patch = json_object(progress, "progress")
        with self._engine.begin() as conn:
            _, current = self._touch(conn, job_id, owner, checkpoint_uri=uri, updated_at=self._clock())
            if patch:
                _merge_progress(conn, job_id, current, patch)

    def set_metrics(self, job_id: str, owner: str, metrics: Mapping[str, Any]) -> None:
        """Replaces the job's latest evaluation metrics; Aborted if the lease is not ours."""
        values = json_object(metrics, "metrics")
        with self._engine.begin() as conn:
            self._touch(conn, job_id, owner, metrics=values, updated_at=self._clock())

    def record_metrics(self, job_id: str, step: int, values: Mapping[str, Any]) -> None:
        """Appends one evaluation report at `step` to the job's metrics history; NotFound if no such job."""
        if step < 0:
            raise InvalidArgument(f"step must be >= 0, got {step}", field="step")
        row = {
            "job_id": job_id,
            "step": step,
            "values": json_object(values, "values"),
            "created_at": self._clock(),
        }
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(JobMetric).values(**row))
        except IntegrityError as exc:
            raise _not_found(job_id) from exc  # the foreign key is the only constraint

    def metrics_history(
        self, tenant: str, job_id: str, after_step: int | None = None
    ) -> builtins.list[tuple[int, dict[str, Any], datetime]]:
        """The job's (step, values, created_at) reports ordered by step, then report order; with `after_step`
        only the later steps. NotFound if the tenant has no such job. A step re-run after a resume appears
        twice."""
        stmt = (
            select(JobMetric.step, JobMetric.values, JobMetric.created_at)
            .join(Job, Job.job_id == JobMetric.job_id)
            .where(JobMetric.job_id == job_id, Job.tenant == tenant)
            .order_by(JobMetric.step, JobMetric.id)
        )
        if after_step is not None:
            stmt = stmt.where(JobMetric.step > after_step)
        with self._reader.connect() as conn:
            rows = conn.execute(stmt).all()
            if not rows and get_job(conn, job_id, tenant) is None:
                raise _not_found(job_id)
        return [(step, values, created_at) for step, values, created_at in rows]

    def requeue(self, job_id: str, owner: str) -> JobRecord:
        """Ends a slice: the running job goes back to queued with its lease released and enqueued_at now.
        A cancelling job is not requeued but returned as is (the runner then finishes it as cancelled).
        Aborted if the lease is not ours."""
        now = self._clock()
        stmt = (
            update(Job)
            .where(Job.job_id == job_id, Job.lease_owner == owner, Job.state == JobState.RUNNING.value)
            .values(
                state=JobState.QUEUED.value,
                lease_owner=None,
                lease_expires_at=None,
                enqueued_at=now,
                updated_at=now,
            )
            .returning(*COLUMNS)
        )
        with self._engine.begin() as conn:
            row = conn.execute(stmt).one_or_none()
            if row is not None:
                return job_record(row)
            job = get_job(conn, job_id)
        if job is None:
            raise _not_found(job_id)
        if job.lease_owner == owner and job.state == JobState.CANCELLING:
            return job
        raise _lease_lost(job, owner)

    def finish(
        self,
        job_id: str,
        owner: str,
        state: JobState,
        error: str | None = None,
        result: Mapping[str, Any] | None = None,
    ) -> JobRecord:
        """Moves the job to a terminal `state`, releasing the lease and setting finished_at; Aborted if the
        lease is not ours."""
        if _state(state) not in TERMINAL:
            raise InvalidArgument(f"finish needs a terminal state, got {state!r}", field="state")
        result_json = None if result is None else json_object(result, "result")
        now = self._clock()
        stmt = (
            update(Job)
            .where(Job.job_id == job_id, Job.lease_owner == owner, Job.state.in_(_ACTIVE))
            .values(
                state=JobState(state).value,
                error=error,
                result=result_json,
                lease_owner=None,
                lease_expires_at=None,
                finished_at=now,
                updated_at=now,
            )
            .returning(*COLUMNS)
        )
        with self._engine.begin() as conn:
            row = conn.execute(stmt).one_or_none()
            if row is not None:
                return job_record(row)
            job = get_job(conn, job_id)
        if job is None:
            raise _not_found(job_id)
        raise _lease_lost(job, owner)

    def request_cancel(self, tenant: str, job_id: str) -> JobRecord:
        """Cancels a queued job at once and asks a running one to stop (state cancelling); a job already
        cancelling or cancelled is returned unchanged. FailedPrecondition if it succeeded or failed."""
        queued = Job.state == JobState.QUEUED.value
        now = self._clock()
        stmt = (
            update(Job)
            .where(
                Job.tenant == tenant,
                Job.job_id == job_id,
                Job.state.in_([JobState.QUEUED.value, JobState.RUNNING.value]),
            )
            .values(
                state=case((queued, JobState.CANCELLED.value), else_=JobState.CANCELLING.value),
                finished_at=case((queued, literal(now, UTCDateTime())), else_=Job.finished_at),
                updated_at=now,
            )
            .returning(*COLUMNS)
        )
        for _ in range(_MAX_RETRIES):
            with self._engine.begin() as conn:
                row = conn.execute(stmt).one_or_none()
                if row is not None:
                    return job_record(row)
                job = get_job(conn, job_id, tenant)
            if job is None:
                raise _not_found(job_id)
            if job.state in (JobState.CANCELLING, JobState.CANCELLED):
                return job
            if job.state in (JobState.SUCCEEDED, JobState.FAILED):
                raise FailedPrecondition(f"job {job_id!r} already {job.state}", field="job_id")
            # Queued or running again: a resume or claim slipped in between; try again.
        raise Aborted(f"job {job_id!r} kept changing state; retry the cancel", field="job_id")

    def resume(self, tenant: str, job_id: str) -> JobRecord:
        """Queues a cancelled or failed job again (from its checkpoint, which is kept), clearing its error,
        result and finished_at; FailedPrecondition in any other state."""
        now = self._clock()
        stmt = (
            update(Job)
            .where(
                Job.tenant == tenant,
                Job.job_id == job_id,
                Job.state.in_([JobState.CANCELLED.value, JobState.FAILED.value]),
            )
            .values(
                state=JobState.QUEUED.value,
                error=None,
                result=None,
                finished_at=None,
                enqueued_at=now,
                updated_at=now,
            )
            .returning(*COLUMNS)
        )
        with self._engine.begin() as conn:
            row = conn.execute(stmt).one_or_none()
            if row is not None:
                return job_record(row)
            job = get_job(conn, job_id, tenant)
        if job is None:
            raise _not_found(job_id)
        raise FailedPrecondition(
            f"only cancelled or failed jobs can be resumed; job {job_id!r} is {job.state}", field="job_id"
        )

    def mark_enqueued(self, job_id: str) -> bool:
        """Records that a broker message for the job was just sent (enqueued_at = now); False if the job is
        terminal or missing. A reconciler calls it after re-sending, so `stale` skips the job for a grace."""
        now = self._clock()
        stmt = (
            update(Job)
            .where(Job.job_id == job_id, Job.state.not_in(_TERMINAL))
            .values(enqueued_at=now, updated_at=now)
        )
        with self._engine.begin() as conn:
            return conn.execute(stmt).rowcount > 0

    def stale(self, queued_grace_s: float, limit: int = 100) -> builtins.list[JobRecord]:
        """Jobs that need a new broker message, oldest enqueue first: queued ones enqueued more than
        `queued_grace_s` ago (the message was lost), and running or cancelling ones whose lease expired (the
        worker died) unless a message was sent after the expiry, within the grace."""
        now = self._clock()
        grace_start = now - timedelta(seconds=queued_grace_s)
        stmt = (
            select(*COLUMNS)
            .where(
                or_(
                    and_(Job.state == JobState.QUEUED.value, Job.enqueued_at < grace_start),
                    and_(
                        Job.state.in_(_ACTIVE),
                        Job.lease_expires_at < now,
                        or_(Job.enqueued_at < Job.lease_expires_at, Job.enqueued_at < grace_start),
                    ),
                )
            )
            .order_by(Job.enqueued_at, Job.job_id)
            .limit(limit)
        )
        with self._reader.connect() as conn:
            return [job_record(row) for row in conn.execute(stmt)]

    def counts(self) -> dict[tuple[str, str], int]:
        """The number of jobs per (kind, state), for a Prometheus gauge; absent pairs are zero."""
        stmt = select(Job.kind, Job.state, func.count()).group_by(Job.kind, Job.state)
        with self._reader.connect() as conn:
            return {(kind, state): n for kind, state, n in conn.execute(stmt)}

    @staticmethod
    def _touch(conn: Connection, job_id: str, owner: str, **values: Any) -> tuple[JobState, dict[str, Any]]:
        """Applies `values` if `owner` holds the job's lease and returns (state, progress) read under the row
        lock this UPDATE takes, so a following progress merge cannot lose a concurrent one."""
        stmt = (
            update(Job)
            .where(Job.job_id == job_id, Job.lease_owner == owner, Job.state.in_(_ACTIVE))
            .values(**values)
            .returning(Job.state, Job.progress)
        )
        row = conn.execute(stmt).one_or_none()
        if row is None:
            job = get_job(conn, job_id)
            if job is None:
                raise _not_found(job_id)
            raise _lease_lost(job, owner)
        return JobState(row.state), row.progress


def _merge_progress(conn: Connection, job_id: str, current: dict[str, Any], patch: dict[str, Any]) -> None:
    conn.execute(update(Job).where(Job.job_id == job_id).values(progress={**current, **patch}))


def _same_request(existing: JobRecord, kind: str, config: dict[str, Any]) -> JobRecord:
    """The existing job if it was created by the same request, else AlreadyExists."""
    if existing.kind != kind or existing.config != config:
        raise AlreadyExists(
            f"idempotency key {existing.idempotency_key!r} was used for a different job",
            field="idempotency_key",
        )
    return existing


def _not_found(job_id: str) -> NotFound:
    return NotFound(f"job {job_id!r} not found", field="job_id")


def _lease_lost(job: JobRecord, owner: str) -> Aborted:
    holder = f"held by {job.lease_owner!r}" if job.lease_owner else "not held"
    return Aborted(
        f"job {job.job_id!r} is {job.state} and its lease is {holder}, not by {owner!r}", field="owner"
    )


def _state(state: JobState | str) -> JobState:
    try:
        return JobState(state)
    except ValueError as exc:
        raise InvalidArgument(f"unknown job state {state!r}", field="state") from exc


def _check_lease(lease_s: float) -> None:
    if not lease_s > 0:
        raise InvalidArgument(f"lease_s must be > 0, got {lease_s}", field="lease_s")
