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
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import Engine

from lyceum_core.context import RequestContext, bound
from lyceum_core.errors import Aborted, LyceumError, NotFound
from lyceum_core.storage import ArtifactStore
from lyceum_db.models.job import JobState
from lyceum_db.repositories.datasets import DatasetRepository
from lyceum_db.repositories.jobs import JobRecord, JobRepository
from lyceum_db.repositories.registry import ModelRepository
from lyceum_jobs.configs import referenced_datasets, with_local_paths
from lyceum_jobs.kinds import KINDS, JobKind, parse_config
from lyceum_ml.training import Export, training_loss
from lyceum_trainer.group import SOLO, Group
from lyceum_trainer.jobs import JobContext, builder

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
        datasets: DatasetRepository,
        store: ArtifactStore,
        cfg: RunnerConfig,
        enqueue: Callable[[JobRecord], None],
        engine: Engine | None = None,
    ) -> None:
        self.jobs, self.models, self.datasets, self.store = jobs, models, datasets, store
        self.cfg, self.enqueue, self.engine = cfg, enqueue, engine
        # Set when the worker is asked to stop (SIGTERM): the running slice checkpoints at its next step and
        # re-enqueues its job, so a pod stops in seconds and the job goes on elsewhere, losing nothing.
        self.stopping = threading.Event()
        # How a job that asks for several processes runs its slice: (job, processes) -> how it ended. Set by
        # the worker (lyceum_trainer.launch: under torchrun); None: such jobs fail here.
        self.launch: Callable[[JobRecord, int], str] | None = None
        # Called after a job this worker ran ended (succeeded, failed, cancelled), with the job and its final
        # state: e.g. the feedback dispatcher settles the job's feedback and dispatches the next batch. A
        # hook that raises is logged; the reconciler's pass does the same work again later.
        self.on_end: list[Callable[[JobRecord, JobState], None]] = []

    def run(self, job_id: str) -> str:
        """Runs one slice of the job; returns how it ended (for logs and tests)."""
        job = self.jobs.claim(job_id, self.cfg.owner, self.cfg.lease_s)
        if job is None:
            return "not-claimed"  # terminal, or a live worker holds it: a duplicate message
        RUNNING.inc()
        ctx = RequestContext.system(tenant=job.tenant)
        try:
            with bound(ctx):
                log.info("job %s (%s, tenant %s) slice started", job_id, job.kind, job.tenant)
                processes = _processes(job)
                if processes > 1 and job.state != JobState.CANCELLING:
                    if self.launch is None:
                        raise RuntimeError("this worker cannot launch multi-process jobs")
                    outcome = self.launch(job, processes)  # its ranks finish the job themselves
                else:
                    outcome = self.run_claimed(job, SOLO)
        except Aborted:
            outcome = "lease-lost"  # another worker took over after our lease expired; it owns the job now
        except Exception as exc:  # noqa: BLE001 - any failure of the job itself ends it as failed
            outcome = self.fail(job_id, exc)
        finally:
            RUNNING.dec()
        SLICES.labels(job.kind, outcome).inc()
        log.info("job %s slice ended: %s", job_id, outcome)
        ended = {"succeeded": JobState.SUCCEEDED, "failed": JobState.FAILED, "cancelled": JobState.CANCELLED}
        if outcome in ended:
            self.ended(job, ended[outcome])
        return outcome

    def ended(self, job: JobRecord, state: JobState) -> None:
        """Runs the `on_end` hooks for a job that reached `state`."""
        for hook in self.on_end:
            try:
                hook(job, state)
            except Exception:  # noqa: BLE001 - the reconciler's pass catches up
                log.exception("end hook for job %s failed", job.job_id)

    def fail(self, job_id: str, exc: BaseException) -> str:
        """Ends the job as failed with the error's message (unless another worker owns it by now)."""
        log.error("job %s failed", job_id, exc_info=exc)
        message = exc.message if isinstance(exc, LyceumError) else f"{type(exc).__name__}: {exc}"
        try:
            self.jobs.finish(job_id, self.cfg.owner, JobState.FAILED, error=message)
        except Aborted:
            pass
        return "failed"

    def run_claimed(self, job: JobRecord, group: Group) -> str:
        """Runs a claimed job's slice in every rank of `group` (one process, or a torchrun launch): all ranks
        train; the leader (rank 0) keeps the lease, records progress, talks to the store and the database,
        and decides each step whether to go on, checkpoint, stop or hand the job back; the others follow."""
        if not group.leader:
            return self._train(job, None, group)
        cfg = self.cfg
        with LeaseKeeper(self.jobs, job.job_id, cfg.owner, cfg.lease_s, cfg.heartbeat_s) as lease:
            return self._train(job, lease, group)

    def _train(self, job: JobRecord, lease: LeaseKeeper | None, group: Group) -> str:
        owner = self.cfg.owner
        if job.state == JobState.CANCELLING:  # its worker died while stopping: finish the stop
            self.jobs.finish(job.job_id, owner, JobState.CANCELLED)
            return "cancelled"
        kind = KINDS[job.kind]
        workdir = self.cfg.work_dir / job.job_id
        workdir.mkdir(parents=True, exist_ok=True)
        config = self._with_datasets(job, parse_config(job.kind, job.config), workdir)
        resume = self.store.get_dir(job.checkpoint_uri, workdir / "resume") if job.checkpoint_uri else None
        context = JobContext(job.job_id, job.tenant, workdir, resume, self.models, self.store, self.engine)
        trainer, final_metrics = builder(job.kind)(config, context)
        if resume is not None:
            trainer.load(resume)
            log.info("job %s resumed at step %d/%d", job.job_id, trainer.step, trainer.total_steps)

        run = config.run  # type: ignore[attr-defined]
        started = time.monotonic()
        progress, rate = dict(job.progress), PhaseRate(trainer, started)
        while trainer.step < trainer.total_steps:
            t0 = time.perf_counter()
            figures = trainer.run(1)
            loss = training_loss(figures)
            if loss is not None and not math.isfinite(loss):
                raise FloatingPointError(f"training diverged: loss is {loss} at step {trainer.step}")
            STEPS.labels(job.kind).inc()
            STEP_SECONDS.labels(job.kind).observe(time.perf_counter() - t0)
            step = trainer.step
            metrics = None
            if run.eval_every and step % run.eval_every == 0 and step < trainer.total_steps:
                metrics = trainer.evaluate()  # every rank: the evaluation is sharded
            action = ""
            if lease is not None:
                now = time.monotonic()
                elapsed = now - started
                progress = step_progress(trainer, figures, rate.steps_per_s(now), progress, kind.unit)
                action = self._observe(job, trainer, run, figures, metrics, progress, lease, elapsed)
            action = group.agree(action)
            if action == "lost":
                raise Aborted(f"lease on job {job.job_id} lost")
            if action in ("checkpoint", "cancel", "requeue"):
                progress = self._checkpoint(job, trainer, progress, group)
            if action == "cancel":
                if group.leader:
                    self.jobs.finish(job.job_id, owner, JobState.CANCELLED)
                return "cancelled"
            if action == "requeue":
                return self._requeue(job) if group.leader else "requeued"
        if group.leader:
            self.jobs.heartbeat(job.job_id, owner, self.cfg.lease_s, progress)  # the final progress
        return self._complete(job, trainer, kind, config, final_metrics, group, context)

    def _observe(
        self,
        job: JobRecord,
        trainer: Any,
        run: Any,
        figures: dict,
        metrics: dict | None,
        progress: dict,
        lease: LeaseKeeper,
        elapsed: float,
    ) -> str:
        """The leader's part of a step: record what happened, then decide what all ranks do next."""
        step = trainer.step
        if step % run.log_every == 0 or step == trainer.total_steps:
            self.jobs.record_metrics(job.job_id, step, figures)
        if metrics is not None:
            self.jobs.record_metrics(job.job_id, step, metrics)
            self.jobs.set_metrics(job.job_id, self.cfg.owner, metrics)
        lease.progress = progress
        unfinished = step < trainer.total_steps
        if lease.lost:
            return "lost"
        if lease.state == JobState.CANCELLING:
            return "cancel"
        if (elapsed >= self.cfg.slice_s or self.stopping.is_set()) and unfinished:
            return "requeue"
        if step % run.checkpoint_every == 0 and unfinished:
            return "checkpoint"
        return ""

    def _requeue(self, job: JobRecord) -> str:
        requeued = self.jobs.requeue(job.job_id, self.cfg.owner)
        if requeued.state == JobState.QUEUED:
            self.enqueue(requeued)  # after the commit
            return "requeued"
        self.jobs.finish(job.job_id, self.cfg.owner, JobState.CANCELLED)  # a cancel came in meanwhile
        return "cancelled"

    def _with_datasets(self, job: JobRecord, config: Any, workdir: Path) -> Any:
        """The config with each uploaded dataset it names replaced by a local copy's path."""
        paths: dict[str, str] = {}
        for dataset_id in referenced_datasets(config):
            record = self.datasets.get(job.tenant, dataset_id)
            if record is None:
                raise NotFound(f"dataset {dataset_id} not found", field="dataset")
            local = self.store.get_dir(record.uri, workdir / "datasets" / dataset_id)
            paths[dataset_id] = str(local / record.data_file)
        return with_local_paths(config, paths) if paths else config

    def _complete(
        self,
        job: JobRecord,
        trainer: Any,
        kind: JobKind,
        config: Any,
        final_metrics: Any,
        group: Group,
        context: JobContext,
    ) -> str:
        """Final evaluation, export to the job's tenant's registry (idempotent per job), the trainer's own
        finishing work (`finish(context, registered) -> dict`, merged into the result: an SDPO job's gate
        moves an alias, an evaluation stores its plots), and success."""
        metrics = trainer.evaluate() | final_metrics()
        export_dir = self.cfg.work_dir / job.job_id / "export"
        if hasattr(trainer, "exports"):
            exports: list[Export] = trainer.exports(export_dir)
        else:
            exports = [Export(export_dir, kind.model_kind, None, trainer.export(export_dir))]
        if not group.leader:
            return "succeeded"
        self.jobs.record_metrics(job.job_id, trainer.step, metrics)
        self.jobs.set_metrics(job.job_id, self.cfg.owner, metrics)
        registered = []
        for export in exports:
            name = export.name or config.register_as
            uri = self.store.put_dir(export.path, f"models/{job.tenant}/{name}/{job.job_id}")
            model = self.models.register(
                job.tenant, name, export.kind, uri, metrics, job_id=job.job_id, metadata=export.metadata
            )
            registered.append({"name": model.name, "version": model.version, "kind": model.kind, "uri": uri})
        result: dict[str, Any] = {"model": registered[0] if registered else None, "models": registered}
        finish = getattr(trainer, "finish", None)
        if callable(finish):
            result |= finish(context, registered)
        self.jobs.finish(job.job_id, self.cfg.owner, JobState.SUCCEEDED, result=result)
        shutil.rmtree(self.cfg.work_dir / job.job_id, ignore_errors=True)
        return "succeeded"

    def _checkpoint(self, job: JobRecord, trainer: Any, progress: dict, group: Group) -> dict:
        """Saves the training state (every rank takes part; rank 0 writes) to the store and points the job
        at it; the previous one is deleted."""
        local = self.cfg.work_dir / job.job_id / f"ckpt-{trainer.step:09d}"
        trainer.save(local)
        if not group.leader:
            return progress
        uri = self.store.put_dir(local, f"jobs/{job.job_id}/checkpoint-{trainer.step:09d}")
        shutil.rmtree(local, ignore_errors=True)
        previous = self.jobs.get(job.tenant, job.job_id)
        progress = progress | {"last_checkpoint": trainer.step}
        self.jobs.save_checkpoint(job.job_id, self.cfg.owner, uri, progress)
        if previous is not None and previous.checkpoint_uri and previous.checkpoint_uri != uri:
            self.store.delete(previous.checkpoint_uri)
        return progress


def _processes(job: JobRecord) -> int:
    """How many processes the job asks for (1 if its config cannot say: parsing fails it properly later)."""
    run = job.config.get("run") if isinstance(job.config, dict) else None
    value = run.get("processes", 1) if isinstance(run, dict) else 1
    return value if isinstance(value, int) and value > 1 else 1


class PhaseRate:
    """Steps per second since this process started the trainer's current phase (`trainer.phase`: a distilled
    DFM's `teacher`, then `student`; a one-phase trainer has none): each phase's step costs its own, so
    the faster teacher steps do not make the student's ETA low."""

    def __init__(self, trainer: Any, now: float) -> None:
        self.trainer = trainer
        self.phase, self.since, self.from_step = getattr(trainer, "phase", None), now, trainer.step

    def steps_per_s(self, now: float) -> float:
        phase = getattr(self.trainer, "phase", None)
        if phase != self.phase:  # the step that ended the last phase began this one: time counts from here
            self.phase, self.since, self.from_step = phase, now, self.trainer.step
        seconds = now - self.since
        return (self.trainer.step - self.from_step) / seconds if seconds > 0 else 0.0


def step_progress(trainer: Any, figures: dict, steps_per_s: float, previous: dict, unit: str) -> dict:
    """The job's progress after a step; the ETA carries the current phase's rate over every step left."""
    remaining = trainer.total_steps - trainer.step
    phase = getattr(trainer, "phase", None)
    return (
        previous
        | ({"phase": phase} if phase else {})
        | {
            "step": trainer.step,
            "total": trainer.total_steps,
            "throughput": figures.get("throughput", 0.0),
            "throughput_unit": unit,
            "steps_per_s": steps_per_s,
            "eta_s": remaining / steps_per_s if steps_per_s > 0 else None,
            "loss": training_loss(figures),
        }
    )
