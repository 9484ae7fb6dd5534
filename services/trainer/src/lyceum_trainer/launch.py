"""Jobs that ask for several processes (`run.processes: N`): the worker that claimed the job launches N ranks
under torchrun (DDP over NCCL on GPUs, gloo on CPUs) and waits for them. Rank 0 keeps the job's lease under
the worker's own name and does everything the one process of a plain job does; the others train. The
worker hands a stop request (SIGTERM) on through a file the leader watches, enqueues a handed-back job, and
fails the job if the ranks die without ending it themselves.

    python -m torch.distributed.run --standalone --nproc_per_node N -m lyceum_trainer.launch \\
        --job JOB_ID --tenant TENANT --outcome FILE --stop FILE      (settings: LYCEUM_TRAINER_* variables)
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import threading
import uuid
from collections import deque
from pathlib import Path

from lyceum_core.context import RequestContext, bound
from lyceum_core.errors import Aborted
from lyceum_db.models.job import JobState
from lyceum_db.repositories.jobs import JobRecord
from lyceum_trainer.config import Settings
from lyceum_trainer.runner import JobRunner

log = logging.getLogger(__name__)

POLL_S = 0.2
STDERR_TAIL_LINES = 40


class RankLauncher:
    """The worker's side: launches a job's ranks and waits for them (the runner's `launch`)."""

    def __init__(self, settings: Settings, runner: JobRunner) -> None:
        self.settings, self.runner = settings, runner

    def __call__(self, job: JobRecord, processes: int) -> str:
        # beside the job's folder, which the leader deletes when the job succeeds
        folder = self.runner.cfg.work_dir
        folder.mkdir(parents=True, exist_ok=True)
        token = f"{job.job_id}-{uuid.uuid4().hex[:8]}"
        outcome_file, stop_file = folder / f".outcome-{token}", folder / f".stop-{token}"
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={processes}",
            "-m",
            "lyceum_trainer.launch",
            *("--job", job.job_id, "--tenant", job.tenant),
            *("--outcome", str(outcome_file), "--stop", str(stop_file)),
        ]
        env = os.environ | rank_environment(self.settings)
        with tempfile.TemporaryFile("w+") as errors:
            process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=errors)
            while process.poll() is None:
                if self.runner.stopping.is_set() and not stop_file.exists():
                    stop_file.touch()  # the leader checkpoints and hands the job back
                try:
                    process.wait(timeout=POLL_S)
                except subprocess.TimeoutExpired:
                    pass
            errors.seek(0)
            tail = "".join(deque(errors, maxlen=STDERR_TAIL_LINES))
        outcome = outcome_file.read_text().strip() if outcome_file.exists() else None
        for file in (outcome_file, stop_file):
            file.unlink(missing_ok=True)
        if outcome == "requeued":
            requeued = self.runner.jobs.get(job.tenant, job.job_id)
            if requeued is not None and requeued.state == JobState.QUEUED:
                self.runner.enqueue(requeued)
        if process.returncode:  # a rank's own error is only in its stderr (the leader saw e.g. a lost peer)
            log.warning("job %s: its ranks exited with status %s:\n%s", job.job_id, process.returncode, tail)
        if outcome is None:  # the ranks died before the leader could end the slice
            last = tail.strip().splitlines()[-1] if tail.strip() else "no output"
            error = RuntimeError(f"{processes} ranks exited with status {process.returncode}: {last}")
            return self.runner.fail(job.job_id, error)
        return outcome


def rank_environment(settings: Settings) -> dict[str, str]:
    """The worker's settings as the LYCEUM_TRAINER_* variables a rank reads (paths absolute; no database
    migration and no metrics server of their own)."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, list):
            value = ",".join(map(str, value))
        elif isinstance(value, Path):
            value = value.resolve()
        env[f"LYCEUM_TRAINER_{name.upper()}"] = str(value)
    env["LYCEUM_TRAINER_MIGRATE_ON_START"] = "false"
    env["LYCEUM_TRAINER_METRICS_PORT"] = "0"
    return env


def _watch(stop_file: Path, runner: JobRunner, done: threading.Event) -> None:
    while not done.wait(POLL_S):
        if stop_file.exists():
            runner.stopping.set()
            return


def main(argv: list[str] | None = None) -> int:
    """One rank of a launched job slice (run by torchrun)."""
    import torch.distributed as dist

    from lyceum_ml.distributed import dist_env, init_distributed
    from lyceum_trainer.group import TorchGroup
    from lyceum_trainer.worker import build_worker

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    for flag in ("--job", "--tenant", "--outcome", "--stop"):
        parser.add_argument(flag, required=True)
    args = parser.parse_args(argv)

    env = dist_env()
    init_distributed(env)
    group = TorchGroup(env.rank, env.world_size)
    worker = build_worker(Settings())
    runner = worker.runner
    runner.enqueue = lambda _: None  # the launching worker enqueues a handed-back job
    done = threading.Event()
    threading.Thread(target=_watch, args=(Path(args.stop), runner, done), daemon=True).start()
    job = worker.jobs.get(args.tenant, args.job)
    outcome, status = "failed", 1
    try:
        if job is None:
            raise RuntimeError(f"job {args.job} of tenant {args.tenant} not found")
        with bound(RequestContext.system(tenant=args.tenant)):
            outcome, status = runner.run_claimed(job, group), 0
    except Aborted:
        outcome, status = "lease-lost", 0
    except Exception as exc:  # noqa: BLE001 - the leader ends the job as failed; torchrun stops the others
        if group.leader:
            outcome = runner.fail(args.job, exc)
    finally:
        done.set()
    if group.leader:
        Path(args.outcome).write_text(outcome)
    if status == 0 and dist.is_initialized():
        dist.destroy_process_group()
    return status


if __name__ == "__main__":
    sys.exit(main())
