"""Submitting a job: validate, write the row (idempotently), and only then enqueue."""

from __future__ import annotations

from typing import Any

from celery import Celery

from lyceum_core.errors import InvalidArgument
from lyceum_db.repositories.jobs import JobRecord, JobRepository
from lyceum_jobs.kinds import KINDS, QUEUES, parse_config
from lyceum_jobs.queue import enqueue


def submit(
    jobs: JobRepository,
    app: Celery,
    tenant: str,
    kind: str,
    config: dict[str, Any],
    *,
    queue: str | None = None,
    idempotency_key: str | None = None,
) -> tuple[JobRecord, bool]:
    """Creates (or, for a repeated idempotency key of the tenant's, returns) a job of `tenant`; enqueues it
    after the row is committed. Returns the job and whether it was created by this call."""
    parsed = parse_config(kind, config)
    queue = queue or KINDS[kind].default_queue
    if queue not in QUEUES:
        raise InvalidArgument(f"queue must be one of {', '.join(QUEUES)}", field="queue")
    job, created = jobs.create(
        tenant, kind, parsed.model_dump(mode="json"), queue, idempotency_key=idempotency_key
    )
    if created:
        enqueue(app, job.job_id, job.queue)  # after commit; a lost message is re-sent by the reconciler
    return job, created
