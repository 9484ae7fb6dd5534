"""The gateway's side of training jobs, over the job table and the broker: submit (idempotent, enqueued after
the commit), page, cancel, resume (re-enqueued after the commit) and `watch`, the polling behind a job's
event stream. Every method acts for one tenant (its first argument): another tenant's job is missing. It
knows nothing of HTTP; the routes convert what it returns."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from anyio import to_thread
from celery import Celery
from kombu.exceptions import OperationalError as BrokerError

from lyceum_core.errors import NotFound, Unavailable
from lyceum_db.models.job import JobState
from lyceum_db.repositories.jobs import JobRecord, JobRepository
from lyceum_jobs.queue import enqueue
from lyceum_jobs.submit import submit

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MetricsPoint:
    """One report of a job's metrics history."""

    step: int
    values: dict[str, Any]
    time: datetime


@dataclass(frozen=True, slots=True)
class ProgressChanged:
    """The job's state, attempt, progress or latest metrics differ from what the watcher last saw."""

    job: JobRecord


@dataclass(frozen=True, slots=True)
class Ended:
    """The job reached a terminal state; the watch is over."""

    job: JobRecord


JobUpdate = MetricsPoint | ProgressChanged | Ended


class JobService:
    """Job operations for the routes. Methods are synchronous (the repository is); `watch` is async and
    runs each database read in a worker thread."""

    def __init__(self, jobs: JobRepository, celery: Celery, *, poll_s: float = 0.5) -> None:
        self.jobs = jobs
        self.celery = celery
        self.poll_s = poll_s

    def submit(
        self,
        tenant: str,
        kind: str,
        config: dict[str, Any],
        *,
        queue: str | None,
        idempotency_key: str | None,
    ) -> tuple[JobRecord, bool]:
        """Creates the job (or returns the one the idempotency key already made) and enqueues a new one after
        its row is committed. Returns the job and whether this call created it."""
        try:
            return submit(
                self.jobs, self.celery, tenant, kind, config, queue=queue, idempotency_key=idempotency_key
            )
        except BrokerError as exc:
            # The row may be committed already; the reconciler re-sends queued jobs whose message was lost,
            # and a retry with the same idempotency key returns that job instead of creating another.
            log.warning("broker unavailable while submitting a %s job: %s", kind, exc)
            raise Unavailable(
                "the job queue is unavailable; retry (with the same idempotency key, to get the same job)"
            ) from None

    def find_submitted(self, tenant: str, idempotency_key: str) -> JobRecord | None:
        """The job a submit of `tenant` with `idempotency_key` already created, if any."""
        return self.jobs.find_by_idempotency_key(tenant, idempotency_key)

    def get(self, tenant: str, job_id: str) -> JobRecord:
        job = self.jobs.get(tenant, job_id)
        if job is None:
            raise NotFound(f"job {job_id!r} not found", field="job_id")
        return job

    def page(
        self, tenant: str, *, state: JobState | None, kind: str | None, limit: int, before: str | None
    ) -> tuple[list[JobRecord], str | None]:
        """Up to `limit` jobs, newest first, and the cursor of the next page (None on the last page)."""
        jobs = self.jobs.list(tenant, state=state, kind=kind, limit=limit + 1, before=before)
        if len(jobs) <= limit:
            return jobs, None
        return jobs[:limit], jobs[limit - 1].job_id

    def metrics(self, tenant: str, job_id: str, after_step: int | None = None) -> list[MetricsPoint]:
        """The job's metrics history (only steps after `after_step`, if given); NotFound for unknown jobs."""
        history = self.jobs.metrics_history(tenant, job_id, after_step=after_step)
        return [MetricsPoint(step, values, time) for step, values, time in history]

    def cancel(self, tenant: str, job_id: str) -> JobRecord:
        """A queued job is cancelled at once; a running one becomes cancelling until its worker stops."""
        return self.jobs.request_cancel(tenant, job_id)

    def resume(self, tenant: str, job_id: str) -> JobRecord:
        """Queues a cancelled or failed job again (it continues from its last checkpoint) and enqueues it."""
        job = self.jobs.resume(tenant, job_id)
        try:
            enqueue(self.celery, job.job_id, job.queue)  # after the commit
        except BrokerError as exc:
            # The job is queued in the table, which is the truth: the reconciler sends it once the broker
            # is back. Failing here would only make a retry fail (a queued job cannot be resumed).
            log.warning("broker unavailable; resumed job %s waits for the reconciler: %s", job_id, exc)
        return job

    async def watch(
        self, tenant: str, job_id: str, *, after_step: int | None = None
    ) -> AsyncIterator[JobUpdate | None]:
        """Polls the job every `poll_s` seconds: yields each new metrics point, a `ProgressChanged` when the
        job changes (once at the start), and finally `Ended`. A poll that brings nothing yields None, so that
        the caller can keep its connection alive and notice a departed client."""
        last_seen: tuple[Any, ...] | None = None
        last_step: int | None = None  # the step of the last point sent ...
        sent_at_last = 0  # ... and how many points of that step were sent (a step may report twice)
        while True:
            # The job first, then its points: a job read as terminal has recorded all its points.
            job = await to_thread.run_sync(self.get, tenant, job_id)
            after = after_step if last_step is None else last_step - 1
            points = await to_thread.run_sync(self.metrics, tenant, job_id, after)
            quiet = True
            skip = sent_at_last
            for point in points:
                if point.step == last_step and skip > 0:
                    skip -= 1
                    continue
                sent_at_last = sent_at_last + 1 if point.step == last_step else 1
                last_step = point.step
                quiet = False
                yield point
            seen = (job.state, job.attempt, job.progress, job.metrics)
            if seen != last_seen:
                last_seen = seen
                quiet = False
                yield ProgressChanged(job)
            if job.state.terminal:
                yield Ended(job)
                return
            if quiet:
                yield None
            await asyncio.sleep(self.poll_s)
