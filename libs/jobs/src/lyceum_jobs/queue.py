"""The Celery side of jobs: one task name, the queues, and the app configuration both the gateway (which only
sends) and the trainer workers use. Messages carry only a job id; the job table is the truth."""

from __future__ import annotations

from pathlib import Path

from celery import Celery
from kombu import Queue

from lyceum_jobs.kinds import QUEUES

RUN_JOB = "training.run_job"
FILESYSTEM = "filesystem://"


def make_celery(broker_url: str, name: str = "lyceum") -> Celery:
    """A Celery app for `broker_url`: Redis in deployments (`redis://...`), or a local folder
    (`filesystem:///abs/path`) for the embedded default, where no broker server runs."""
    app = Celery(name)
    options: dict[str, object] = {}
    if broker_url.startswith(FILESYSTEM):
        folder = Path(broker_url.removeprefix(FILESYSTEM) or "var/broker")
        for sub in ("queue", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        options = {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "control_folder": str(folder / "control"),
        }
        broker_url = "filesystem://"
    app.conf.update(
        broker_url=broker_url,
        broker_transport_options=options,
        broker_connection_retry_on_startup=True,
        task_queues=[Queue(q) for q in QUEUES],
        task_default_queue="cpu",
        task_ignore_result=True,  # state lives in the job table
        task_acks_late=True,  # a message is acked only once its slice has finished ...
        task_reject_on_worker_lost=True,  # ... and requeued if the worker process dies (the lease dedupes)
        worker_prefetch_multiplier=1,  # one job slice at a time per worker
        task_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
    )
    return app


def enqueue(app: Celery, job_id: str, queue: str) -> None:
    """Sends the run message for a committed job."""
    app.send_task(RUN_JOB, args=[job_id], queue=queue)
