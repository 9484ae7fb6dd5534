"""Training jobs on real worker processes: `python -m lyceum_trainer worker` consuming a real Redis broker,
jobs tracked in the real Postgres. Submit -> succeed; cancel -> checkpoint kept -> resume -> succeed;
SIGKILL the worker holding a job -> another worker resumes it from its checkpoint and it finishes once."""

from __future__ import annotations

import signal

import pytest
from fixtures.trainer import TENANT, Workers, wait_for

from lyceum_db.engine import create_engine
from lyceum_db.models.job import JobState
from lyceum_db.repositories.jobs import JobRepository
from lyceum_db.repositories.registry import ModelRepository
from lyceum_jobs.queue import enqueue, make_celery
from lyceum_jobs.submit import submit

pytestmark = pytest.mark.integration


def dfm_config(steps: int, checkpoint_every: int = 10) -> dict:
    return {
        "dataset": {"format": "simulated", "n_learners": 120, "seed": 1},
        "model": {"d_model": 16, "n_layer": 1, "n_head": 2, "n_kv_head": 1, "max_len": 128},
        "train": {"steps": steps, "batch_size": 8, "window": 40, "warmup_steps": 2},
        "run": {"checkpoint_every": checkpoint_every, "log_every": 5},
        "register_as": "dfm-test",
    }


def test_submit_runs_to_success_and_registers_the_model(workers: Workers, db: str, broker: str) -> None:
    jobs, models = JobRepository(create_engine(db)), ModelRepository(create_engine(db))
    workers.start("w1")
    job, created = submit(
        jobs, make_celery(broker), TENANT, "dfm_pretrain", dfm_config(steps=20), queue="cpu"
    )
    assert created and job.state == JobState.QUEUED
    done = wait_for(jobs, job.job_id, lambda j: j.state.terminal, 120, "success", workers)
    assert done.state == JobState.SUCCEEDED, done.error
    # 20 steps of its DKT teacher, then 20 of the DFM (dfm.distill.DistilledDFMTrainer)
    assert done.progress["step"] == done.progress["total"] == 40
    assert 0.5 < done.metrics["auc"] <= 1 and "test_auc" in done.metrics
    registered = models.resolve(TENANT, "dfm-test", "latest")
    expected = {"name": "dfm-test", "version": registered.version, "kind": "dfm", "uri": registered.uri}
    assert done.result["model"] == expected and done.result["models"] == [expected]
    assert registered.job_id == job.job_id and registered.metrics["auc"] == done.metrics["auc"]
    assert registered.metadata["train_config"]["distill"] == 0.5  # distilled from a DKT teacher by default
    assert registered.metadata["teacher"] == "dkt"
    steps = [step for step, _, _ in jobs.metrics_history(TENANT, job.job_id)]
    assert steps == sorted(steps) and steps[-1] == 40
    assert registered.tenant == TENANT and not registered.public
    assert models.list("globex") == [] and jobs.get("globex", job.job_id) is None
    assert f"tenant {TENANT}" in workers.log("w1")


def test_cancel_keeps_the_checkpoint_and_resume_finishes(workers: Workers, db: str, broker: str) -> None:
    jobs, models = JobRepository(create_engine(db)), ModelRepository(create_engine(db))
    app = make_celery(broker)
    workers.start("w1")
    job, _ = submit(
        jobs, app, TENANT, "dfm_pretrain", dfm_config(steps=400, checkpoint_every=10), queue="cpu"
    )
    wait_for(
        jobs, job.job_id, lambda j: j.progress.get("last_checkpoint", 0) >= 10, 120, "a checkpoint", workers
    )
    jobs.request_cancel(TENANT, job.job_id)
    cancelled = wait_for(jobs, job.job_id, lambda j: j.state.terminal, 60, "the cancel", workers)
    assert cancelled.state == JobState.CANCELLED
    assert cancelled.checkpoint_uri is not None
    stopped_at = cancelled.progress["last_checkpoint"]
    assert 10 <= stopped_at < 400

    resumed = jobs.resume(TENANT, job.job_id)
    enqueue(app, resumed.job_id, resumed.queue)
    wait_for(jobs, job.job_id, lambda j: j.state == JobState.RUNNING, 60, "the resume", workers)
    running = wait_for(
        jobs, job.job_id, lambda j: j.progress.get("step", 0) > stopped_at, 60, "progress", workers
    )
    assert running.attempt == 2
    assert "resumed at step" in workers.log("w1")
    jobs.request_cancel(TENANT, job.job_id)  # a second cancel, so the test need not wait for 400 steps
    final = wait_for(jobs, job.job_id, lambda j: j.state.terminal, 60, "the second cancel", workers)
    assert final.state == JobState.CANCELLED and final.progress["last_checkpoint"] > stopped_at
    assert models.list(TENANT, "dfm-test") == []


def test_a_killed_worker_s_job_resumes_elsewhere_and_finishes_once(
    workers: Workers, db: str, broker: str
) -> None:
    jobs, models = JobRepository(create_engine(db)), ModelRepository(create_engine(db))
    workers.start("w1")
    workers.start("w2")
    job, _ = submit(
        jobs, make_celery(broker), TENANT, "dfm_pretrain", dfm_config(steps=120, checkpoint_every=10)
    )
    held = wait_for(
        jobs, job.job_id, lambda j: j.progress.get("last_checkpoint", 0) >= 20, 120, "progress", workers
    )
    victim = held.lease_owner
    assert victim in ("w1", "w2")
    workers.kill(victim)
    survivor = "w2" if victim == "w1" else "w1"

    done = wait_for(jobs, job.job_id, lambda j: j.state.terminal, 180, "failover and success", workers)
    assert done.state == JobState.SUCCEEDED, done.error
    assert done.attempt == 2  # claimed once by the victim, once by the survivor
    assert "resumed at step" in workers.log(survivor)
    versions = [m for m in models.list(TENANT, "dfm-test") if m.job_id == job.job_id]
    assert len(versions) == 1  # registered exactly once
    assert done.result["model"]["version"] == versions[0].version
    steps = [step for step, _, _ in jobs.metrics_history(TENANT, job.job_id)]
    assert steps[-1] == 240  # the teacher's 120 steps and the DFM's


def test_a_job_whose_message_was_lost_is_resent_by_the_reconciler(workers: Workers, db: str) -> None:
    jobs = JobRepository(create_engine(db))
    workers.start("w1")
    # the row is committed but no message is ever sent, as if the broker lost it
    job, _ = jobs.create(TENANT, "dfm_pretrain", dfm_config(steps=5), "cpu")
    done = wait_for(jobs, job.job_id, lambda j: j.state.terminal, 120, "the reconciler", workers)
    assert done.state == JobState.SUCCEEDED, done.error
    assert "re-sent job" in workers.log("w1")


def test_sigterm_ends_the_slice_at_a_step_and_another_worker_finishes_the_job(
    workers: Workers, db: str, broker: str
) -> None:
    jobs = JobRepository(create_engine(db))
    workers.start("w1")
    job, _ = submit(
        jobs,
        make_celery(broker),
        TENANT,
        "dfm_pretrain",
        dfm_config(steps=400, checkpoint_every=1000),
    )
    wait_for(jobs, job.job_id, lambda j: j.progress.get("step", 0) >= 20, 120, "progress", workers)

    workers.procs["w1"].send_signal(signal.SIGTERM)  # warm shutdown, as Kubernetes stops a pod

    assert workers.procs["w1"].wait(timeout=60) == 0  # within seconds, not at the end of a 10-minute slice
    stopped = jobs.get(TENANT, job.job_id)
    assert stopped is not None and stopped.state == JobState.QUEUED and stopped.checkpoint_uri
    assert 20 <= stopped.progress["last_checkpoint"] < 400  # checkpointed where it stopped
    workers.start("w2")
    done = wait_for(jobs, job.job_id, lambda j: j.state.terminal, 180, "success elsewhere", workers)
    assert done.state == JobState.SUCCEEDED, done.error
    assert "resumed at step" in workers.log("w2")
