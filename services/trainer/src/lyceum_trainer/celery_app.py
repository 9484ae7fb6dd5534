"""The trainer's Celery app (`celery -A lyceum_trainer.celery_app worker ...` works too) and its one task.

The task is a thin edge: it hands the job id to the runner of this process's Worker, built on first use.
A warm shutdown (SIGTERM) tells the runner to end its slice at the next step: checkpoint, re-enqueue, exit."""

from __future__ import annotations

from functools import cache
from typing import Any

from celery.signals import worker_shutting_down

from lyceum_jobs.queue import RUN_JOB, make_celery
from lyceum_trainer.config import Settings
from lyceum_trainer.worker import Worker, build_worker

settings = Settings()
app = make_celery(settings.broker_url, name="lyceum_trainer")


@cache
def worker() -> Worker:
    return build_worker(settings, app)


@app.task(name=RUN_JOB)
def run_job(job_id: str) -> str:
    """Runs one slice of a training job (see runner.py)."""
    return worker().runner.run(job_id)


@worker_shutting_down.connect
def _end_slice_early(**_: Any) -> None:
    if worker.cache_info().currsize:  # a runner exists (else there is no slice to end)
        worker().runner.stopping.set()
