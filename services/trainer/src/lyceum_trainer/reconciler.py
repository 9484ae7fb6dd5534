"""Re-sends jobs the broker lost: queued jobs nobody claimed within a grace period, and running jobs whose
worker stopped renewing its lease (it died). Duplicate messages are harmless: the lease dedupes them.

Each pass also drives the feedback dispatcher: it settles distillations whose job ended unseen and starts
jobs for adapters whose pending feedback waited long enough."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from prometheus_client import Counter

from lyceum_db.models.job import JobState
from lyceum_db.repositories.jobs import JobRecord, JobRepository
from lyceum_jobs.feedback import Dispatcher

log = logging.getLogger(__name__)
RESENT = Counter("lyceum_trainer_reconciler_resent_total", "Jobs re-sent by the reconciler", ["reason"])


class Reconciler:
    def __init__(
        self,
        jobs: JobRepository,
        enqueue: Callable[[JobRecord], None],
        *,
        queued_grace_s: float,
        every_s: float,
        dispatcher: Dispatcher | None = None,
    ) -> None:
        self.jobs, self.enqueue, self.dispatcher = jobs, enqueue, dispatcher
        self.queued_grace_s, self.every_s = queued_grace_s, every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> int:
        """One pass; returns how many jobs were re-sent (then the feedback dispatcher's pass)."""
        now, sent = datetime.now(UTC), 0
        for job in self.jobs.stale(self.queued_grace_s):
            recently_sent = job.enqueued_at and now - job.enqueued_at < timedelta(seconds=self.queued_grace_s)
            if job.state != JobState.QUEUED and recently_sent:
                continue  # already re-sent for this expiry; give a worker time to claim it
            self.jobs.mark_enqueued(job.job_id)
            self.enqueue(job)
            reason = "lost_message" if job.state == JobState.QUEUED else "lease_expired"
            RESENT.labels(reason).inc()
            log.warning("re-sent job %s (%s, state %s)", job.job_id, reason, job.state)
            sent += 1
        if self.dispatcher is not None:
            try:
                self.dispatcher.tick(now)
            except Exception:  # noqa: BLE001 - re-sending must go on whatever feedback does
                log.exception("feedback dispatch pass failed")
        return sent

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="reconciler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - keep reconciling through transient database errors
                log.exception("reconciler pass failed")
