"""The trainer's settings (env prefix LYCEUM_TRAINER_), built once in the entrypoint."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from pydantic import Field

from lyceum_core.settings import (
    DEFAULT_BROKER_URL,
    DEFAULT_DATABASE_URL,
    DEFAULT_REGISTRY_URL,
    DEFAULT_STATE_DIR,
    CommaList,
    ServiceSettings,
    service_config,
)
from lyceum_jobs.configs import MAX_FEEDBACK_PER_JOB
from lyceum_jobs.feedback import DEFAULT_BATCH_SIZE, DEFAULT_MAX_ITEMS, DEFAULT_MAX_WAIT_S, FeedbackPolicy


class Settings(ServiceSettings):
    model_config = service_config("trainer")

    database_url: str = DEFAULT_DATABASE_URL
    broker_url: str = Field(DEFAULT_BROKER_URL, description="redis://host:6379/0 in deployments")
    registry_url: str = Field(DEFAULT_REGISTRY_URL, description="artifact store root (path or fsspec URL)")
    work_dir: Path = Field(DEFAULT_STATE_DIR / "trainer", description="local scratch for running jobs")
    queues: CommaList = Field(["cpu", "gpu"], description="queues this worker consumes")
    worker_name: str = Field(f"{socket.gethostname()}-{os.getpid()}", description="lease owner id")
    migrate_on_start: bool = True
    lease_s: float = Field(30.0, gt=0, description="silent this long, a job resumes elsewhere")
    heartbeat_s: float = Field(5.0, gt=0, description="how often a running job renews its lease")
    slice_s: float = Field(600.0, gt=0, description="a job re-enqueues itself after this long (checkpointed)")
    reconcile_every_s: float = Field(10.0, gt=0)
    queued_grace_s: float = Field(60.0, gt=0, description="a queued job unclaimed this long is re-sent")
    metrics_port: int = Field(9201, ge=0, le=65535, description="Prometheus port (0 = off)")
    torch_threads: int = Field(0, ge=0)
    # Feedback: an adapter's pending items become one `sdpo` job at a time (the gateway's should agree).
    feedback_batch_size: int = Field(
        DEFAULT_BATCH_SIZE, ge=1, description="pending feedback items of an adapter that start a job at once"
    )
    feedback_max_wait_s: float = Field(
        DEFAULT_MAX_WAIT_S, ge=0, description="fewer items start a job once the oldest waited this long"
    )
    feedback_max_items: int = Field(
        DEFAULT_MAX_ITEMS, ge=1, le=MAX_FEEDBACK_PER_JOB, description="feedback items one job trains at most"
    )

    def feedback_policy(self) -> FeedbackPolicy:
        """When pending feedback becomes a distillation job (checked after each job and each reconcile)."""
        return FeedbackPolicy(self.feedback_batch_size, self.feedback_max_wait_s, self.feedback_max_items)
