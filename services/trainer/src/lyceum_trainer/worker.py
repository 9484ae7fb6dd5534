"""Everything one worker process needs, built once from settings: repositories, artifact store, Celery app,
the job runner, the feedback dispatcher (settling a distillation when its job ends here, starting the next)
and the reconciler."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from celery import Celery

from lyceum_core.storage import ArtifactStore
from lyceum_db.engine import create_engine
from lyceum_db.migrate import upgrade
from lyceum_db.repositories.datasets import DatasetRepository
from lyceum_db.repositories.feedback import FeedbackRepository
from lyceum_db.repositories.jobs import JobRecord, JobRepository
from lyceum_db.repositories.registry import ModelRepository
from lyceum_jobs.feedback import Dispatcher
from lyceum_jobs.queue import enqueue, make_celery
from lyceum_trainer.config import Settings
from lyceum_trainer.launch import RankLauncher
from lyceum_trainer.reconciler import Reconciler
from lyceum_trainer.runner import JobRunner, RunnerConfig


@dataclass
class Worker:
    settings: Settings
    app: Celery
    jobs: JobRepository
    runner: JobRunner
    reconciler: Reconciler
    dispatcher: Dispatcher


def build_worker(settings: Settings, app: Celery | None = None) -> Worker:
    if settings.migrate_on_start:
        upgrade(settings.database_url)
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    app = app or make_celery(settings.broker_url)
    engine = create_engine(settings.database_url)
    jobs = JobRepository(engine)

    def send(job: JobRecord) -> None:
        enqueue(app, job.job_id, job.queue)

    cfg = RunnerConfig(
        owner=settings.worker_name,
        work_dir=settings.work_dir.resolve(),
        lease_s=settings.lease_s,
        heartbeat_s=settings.heartbeat_s,
        slice_s=settings.slice_s,
    )
    store = ArtifactStore(settings.registry_url)
    models = ModelRepository(engine)
    # The engine lets jobs read more than the registry (an sdpo job: its feedback and completions).
    runner = JobRunner(jobs, models, DatasetRepository(engine), store, cfg, send, engine=engine)
    runner.launch = RankLauncher(settings, runner)
    dispatcher = Dispatcher(FeedbackRepository(engine), jobs, models, send, settings.feedback_policy())
    runner.on_end.append(dispatcher.ended)
    reconciler = Reconciler(
        jobs,
        send,
        queued_grace_s=settings.queued_grace_s,
        every_s=settings.reconcile_every_s,
        dispatcher=dispatcher,
    )
    return Worker(settings, app, jobs, runner, reconciler, dispatcher)
