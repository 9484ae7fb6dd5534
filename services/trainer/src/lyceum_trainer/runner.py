"""Runs one slice of a training job: claim the job's lease, resume from its last checkpoint, train while
renewing the lease, checkpoint, and then finish, stop on a cancel request, or re-enqueue itself.

Why slices: a broker redelivers a message that stays unacked too long (Redis: after the visibility timeout),
so no message is held for longer than `slice_s`. Why a lease: a duplicate or redelivered message finds the
job claimed and does nothing; a worker that dies stops renewing, and the reconciler re-sends the job, whose
next claim resumes from the last checkpoint. The job table, not the broker, is the truth.

A job acts for its tenant: the slice runs with `RequestContext.system(tenant=job.tenant)` bound, so its log
lines carry the context's request id and any call it makes carries the tenant; its model is the tenant's.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from lyceum_core.context import RequestContext, bound
from lyceum_core.errors import Aborted, LyceumError
from lyceum_core.storage import ArtifactStore
from lyceum_db.models.job import JobState
from lyceum_db.repositories.jobs import JobRecord, JobRepository
from lyceum_db.repositories.registry import ModelRepository
from lyceum_jobs.kinds import KINDS, JobKind, parse_config
from lyceum_trainer.jobs import BUILDERS

log = logging.getLogger(__name__)

STEPS = Counter("lyceum_trainer_steps_total", "Optimizer steps run by this worker", ["kind"])
STEP_SECONDS = Histogram(
    "lyceum_trainer_step_seconds",
    "Wall time per optimizer step",
    ["kind"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
SLICES = Counter("lyceum_trainer_slices_total", "Job slices run, by how they ended", ["kind", "outcome"])
RUNNING = Gauge("lyceum_trainer_running_jobs", "Jobs this worker is running now")


@dataclass(frozen=True)
class RunnerConfig:
    owner: str  # the lease owner: this worker's unique name
    work_dir: Path
    lease_s: float = 30.0
    heartbeat_s: float = 5.0
    slice_s: float = 600.0


class LeaseKeeper:
    """Renews a job's lease every `every_s` from a thread, for the whole slice: however long loading data or
    one training step takes, a live worker never loses its job. Publishes the latest progress with each
    renewal and brings back the job's state (to see cancel requests) and whether the lease was lost."""

    def __init__(self, jobs: JobRepository, job_id: str, owner: str, lease_s: float, every_s: float) -> None:
        self.jobs, self.job_id, self.owner, self.lease_s, self.every_s = jobs, job_id, owner, lease_s, every_s
        self.progress: dict[str, Any] | None = None
        self.state = JobState.RUNNING
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"lease-{job_id}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.lease_s)

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.state = self.jobs.heartbeat(self.job_id, self.owner, self.lease_s, self.progress)
            except Aborted:
                self.lost = True  # another worker owns the job now
                return
            except Exception:  # noqa: BLE001 - a passing database error; the lease has slack
                log.exception("heartbeat for job %s failed", self.job_id)


class JobRunner:
    def __init__(
        self,
        jobs: JobRepository,
        models: ModelRepository,
        store: ArtifactStore,
        cfg: RunnerConfig,
        enqueue: Callable[[JobRecord], None],
    ) -> None:
        self.jobs, self.models, self.store, self.cfg, self.enqueue = jobs, models, store, cfg, enqueue
        # Set when the worker is asked to stop (SIGTERM): the running slice checkpoints at its next step and
        # re-enqueues its job, so a pod stops in seconds and the job goes on elsewhere, losing nothing.
        self.stopping = threading.Event()

    def run(self, job_id: str) -> str:
        """Runs one slice of the job; returns how it ended (for logs and tests)."""
        job = self.jobs.claim(job_id, self.cfg.owner, self.cfg.lease_s)
        if job is None:
            return "not-claimed"  # terminal, or a live worker holds it: a duplicate message
        RUNNING.inc()
        ctx = RequestContext.system(tenant=job.tenant)
        try:
            with (
                bound(ctx),
                LeaseKeeper(
                    self.jobs, job_id, self.cfg.owner, self.cfg.lease_s, self.cfg.heartbeat_s
                ) as lease,
            ):
                log.info("job %s (%s, tenant %s) slice started", job_id, job.kind, job.tenant)
                outcome = self._run_claimed(job, lease)
        except Aborted:
            outcome = "lease-lost"  # another worker took over after our lease expired; it owns the job now
        except Exception as exc:  # noqa: BLE001 - any failure of the job itself ends it as failed
            log.exception("job %s failed", job_id)
            message = exc.message if isinstance(exc, LyceumError) else f"{type(exc).__name__}: {exc}"
            try:
                self.jobs.finish(job_id, self.cfg.owner, JobState.FAILED, error=message)
            except Aborted:
                pass
            outcome = "failed"
        finally:
            RUNNING.dec()
        SLICES.labels(job.kind, outcome).inc()
        log.info("job %s slice ended: %s", job_id, outcome)
        return outcome

    def _run_claimed(self, job: JobRecord, lease: LeaseKeeper) -> str:
        owner = self.cfg.owner
        if job.state == JobState.CANCELLING:  # its worker died while stopping: finish the stop
            self.jobs.finish(job.job_id, owner, JobState.CANCELLED)
            return "cancelled"
        kind = KINDS[job.kind]
        config = parse_config(job.kind, job.config)
        workdir = self.cfg.work_dir / job.job_id
        workdir.mkdir(parents=True, exist_ok=True)
        resume = self.store.get_dir(job.checkpoint_uri, workdir / "resume") if job.checkpoint_uri else None
        trainer, final_metrics = BUILDERS[job.kind](config, workdir, resume)
        if resume is not None:
            trainer.load(resume)
            log.info("job %s resumed at step %d/%d", job.job_id, trainer.step, trainer.total_steps)

        run = config.run  # type: ignore[attr-defined]
        started = time.monotonic()
        start_step, figures, progress = trainer.step, {}, dict(job.progress)
        while trainer.step < trainer.total_steps:
            t0 = time.perf_counter()
            figures = trainer.run(1)
            if not math.isfinite(figures.get("loss", 0.0)):
                loss = figures["loss"]
                raise FloatingPointError(f"training diverged: loss is {loss} at step {trainer.step}")
            STEPS.labels(job.kind).inc()
            STEP_SECONDS.labels(job.kind).observe(time.perf_counter() - t0)
            step = trainer.step
            if step % run.log_every == 0 or step == trainer.total_steps:
                self.jobs.record_metrics(job.job_id, step, figures)
            if run.eval_every and step % run.eval_every == 0 and step < trainer.total_steps:
                metrics = trainer.evaluate()
                self.jobs.record_metrics(job.job_id, step, metrics)
                self.jobs.set_metrics(job.job_id, owner, metrics)
            elapsed = time.monotonic() - started
            progress = _progress(trainer, figures, start_step, elapsed, progress, kind.unit)
            lease.progress = progress
            if lease.lost:
                raise Aborted(f"lease on job {job.job_id} lost")
            if lease.state == JobState.CANCELLING:
                self._checkpoint(job, trainer, progress)
                self.jobs.finish(job.job_id, owner, JobState.CANCELLED)
                return "cancelled"
            if step % run.checkpoint_every == 0 and step < trainer.total_steps:
                progress = self._checkpoint(job, trainer, progress)
            if (elapsed >= self.cfg.slice_s or self.stopping.is_set()) and step < trainer.total_steps:
                self._checkpoint(job, trainer, progress)
                requeued = self.jobs.requeue(job.job_id, owner)
                if requeued.state == JobState.QUEUED:
                    self.enqueue(requeued)  # after the commit
                    return "requeued"
                self.jobs.finish(job.job_id, owner, JobState.CANCELLED)  # a cancel came in meanwhile
                return "cancelled"
        self.jobs.heartbeat(job.job_id, owner, self.cfg.lease_s, progress)  # the final progress
        return self._complete(job, trainer, kind, config, final_metrics)

    def _complete(self, job: JobRecord, trainer: Any, kind: JobKind, config: Any, final_metrics: Any) -> str:
        """Final evaluation, export to the job's tenant's registry (idempotent per job), and success."""
        metrics = trainer.evaluate() | final_metrics()
        self.jobs.record_metrics(job.job_id, trainer.step, metrics)
        self.jobs.set_metrics(job.job_id, self.cfg.owner, metrics)
        export_dir = Path(tempfile.mkdtemp(prefix="export-", dir=self.cfg.work_dir / job.job_id))
        metadata = trainer.export(export_dir)
        uri = self.store.put_dir(export_dir, f"models/{job.tenant}/{config.register_as}/{job.job_id}")
        model = self.models.register(
            job.tenant,
            config.register_as,
            kind.model_kind,
            uri,
            metrics,
            job_id=job.job_id,
            metadata=metadata,
        )
        result = {"model": {"name": model.name, "version": model.version, "uri": uri}}
        self.jobs.finish(job.job_id, self.cfg.owner, JobState.SUCCEEDED, result=result)
        shutil.rmtree(self.cfg.work_dir / job.job_id, ignore_errors=True)
        return "succeeded"

    def _checkpoint(self, job: JobRecord, trainer: Any, progress: dict) -> dict:
        """Saves the training state to the store and points the job at it; the previous one is deleted."""
        local = Path(tempfile.mkdtemp(prefix="ckpt-", dir=self.cfg.work_dir / job.job_id))
        trainer.save(local)
        uri = self.store.put_dir(local, f"jobs/{job.job_id}/checkpoint-{trainer.step:09d}")
        previous = self.jobs.get(job.tenant, job.job_id)
        progress = progress | {"last_checkpoint": trainer.step}
        self.jobs.save_checkpoint(job.job_id, self.cfg.owner, uri, progress)
        if previous is not None and previous.checkpoint_uri and previous.checkpoint_uri != uri:
            self.store.delete(previous.checkpoint_uri)
        return progress


def _progress(
    trainer: Any, figures: dict, start_step: int, elapsed: float, previous: dict, unit: str
) -> dict:
    steps_per_s = (trainer.step - start_step) / elapsed if elapsed > 0 else 0.0
    remaining = trainer.total_steps - trainer.step
    return previous | {
        "step": trainer.step,
        "total": trainer.total_steps,
        "throughput": figures.get("throughput", 0.0),
        "throughput_unit": unit,
        "steps_per_s": steps_per_s,
        "eta_s": remaining / steps_per_s if steps_per_s > 0 else None,
        "loss": figures.get("loss"),
    }
