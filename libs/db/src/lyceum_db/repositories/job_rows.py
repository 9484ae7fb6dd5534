"""A job's row as the repositories see it: the record type, its columns, and the statements shared by
`JobRepository` and the feedback dispatcher (which writes a job in the same transaction as its feedback)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, insert, select

from lyceum_core.identity import check_tenant_id
from lyceum_db.models.job import IDEMPOTENCY_KEY_MAX_LEN, KIND_MAX_LEN, QUEUE_MAX_LEN, Job, JobState
from lyceum_db.repositories._common import check_str, json_object

COLUMNS = tuple(Job.__table__.c)


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A job's row; timestamps are timezone-aware UTC, JSON columns are plain dicts."""

    job_id: str
    tenant: str
    kind: str
    queue: str
    config: dict[str, Any]
    state: JobState
    attempt: int
    progress: dict[str, Any]
    metrics: dict[str, Any]
    error: str | None
    idempotency_key: str | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    heartbeat_at: datetime | None
    checkpoint_uri: str | None
    result: dict[str, Any] | None
    enqueued_at: datetime
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime


def new_job_id() -> str:
    """A fresh job id (uuid4 hex)."""
    return uuid.uuid4().hex


def check_job(tenant: str, kind: str, config: Mapping[str, Any], queue: str) -> dict[str, Any]:
    """Checks a new job's fields (InvalidArgument naming the first bad one); returns the config as stored."""
    check_tenant_id(tenant)
    check_str(kind, "kind", KIND_MAX_LEN)
    check_str(queue, "queue", QUEUE_MAX_LEN)
    return json_object(config, "config")


def insert_job(
    conn: Connection,
    tenant: str,
    kind: str,
    config: Mapping[str, Any],
    queue: str,
    now: datetime,
    idempotency_key: str | None = None,
    job_id: str | None = None,
) -> JobRecord:
    """Inserts a queued job on `conn`, in the caller's transaction (a dispatcher writes the job and what it
    works on together); `JobRepository.create` is this in a transaction of its own, made idempotent.
    `job_id` (default: a new one, `new_job_id()`) lets a caller name the job before it exists. IntegrityError
    if the tenant already used `idempotency_key`."""
    config = check_job(tenant, kind, config, queue)
    if idempotency_key is not None:
        check_str(idempotency_key, "idempotency_key", IDEMPOTENCY_KEY_MAX_LEN)
    stmt = (
        insert(Job)
        .values(
            job_id=job_id or new_job_id(),
            tenant=tenant,
            kind=kind,
            queue=queue,
            config=config,
            state=JobState.QUEUED.value,
            attempt=0,
            progress={},
            metrics={},
            idempotency_key=idempotency_key,
            enqueued_at=now,
            created_at=now,
            updated_at=now,
        )
        .returning(*COLUMNS)
    )
    return job_record(conn.execute(stmt).one())


def job_record(row: Row[Any]) -> JobRecord:
    """A row selected or returned with `COLUMNS` as a record."""
    values = dict(row._mapping)
    values["state"] = JobState(values["state"])
    return JobRecord(**values)


def get_job(conn: Connection, job_id: str, tenant: str | None = None) -> JobRecord | None:
    """The job (of `tenant`, when given), or None."""
    stmt = select(*COLUMNS).where(Job.job_id == job_id)
    if tenant is not None:
        stmt = stmt.where(Job.tenant == tenant)
    row = conn.execute(stmt).one_or_none()
    return None if row is None else job_record(row)
