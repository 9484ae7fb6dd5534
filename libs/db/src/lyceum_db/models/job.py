"""Job tables: one row per background job (its state machine, lease, progress and resume pointer) plus the
append-only history of the evaluation metrics it reported."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from lyceum_core.identity import TENANT_ID_MAX_LEN
from lyceum_db.models.base import Base, UTCDateTime

JOB_ID_LEN = 32  # uuid4().hex
KIND_MAX_LEN = 32
QUEUE_MAX_LEN = 16
STATE_MAX_LEN = 16
IDEMPOTENCY_KEY_MAX_LEN = 128
LEASE_OWNER_MAX_LEN = 128


class JobState(StrEnum):
    """A job's lifecycle: queued -> running -> succeeded | failed; cancel via cancelling -> cancelled."""

    QUEUED = "queued"
    RUNNING = "running"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        """True for the states a job only leaves through an explicit resume."""
        return self in TERMINAL


TERMINAL: frozenset[JobState] = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
# The states in which a worker holds (or held, if it died) the job's lease.
ACTIVE: frozenset[JobState] = frozenset({JobState.RUNNING, JobState.CANCELLING})


class Job(Base):
    """A background job of one tenant. The lease (`lease_owner`, `lease_expires_at`) says which worker runs
    it; a lease that expired means that worker died and the job may be claimed again, resuming from
    `checkpoint_uri`."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_tenant_created_at_job_id", "tenant", "created_at", "job_id"),
        UniqueConstraint("tenant", "idempotency_key", name="uq_jobs_tenant_idempotency_key"),
    )

    job_id: Mapped[str] = mapped_column(String(JOB_ID_LEN), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(TENANT_ID_MAX_LEN), nullable=False)
    kind: Mapped[str] = mapped_column(String(KIND_MAX_LEN), nullable=False)
    queue: Mapped[str] = mapped_column(String(QUEUE_MAX_LEN), nullable=False)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    state: Mapped[str] = mapped_column(String(STATE_MAX_LEN), nullable=False, index=True)
    attempt: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default=text("0"))
    # step, total, throughput, eta_s, last_checkpoint, ...: merged by heartbeats, shown to users.
    progress: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    # The latest evaluation metrics; their history is in job_metrics.
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Unique per tenant (a NULL key never collides).
    idempotency_key: Mapped[str | None] = mapped_column(String(IDEMPOTENCY_KEY_MAX_LEN), nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(LEASE_OWNER_MAX_LEN), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    checkpoint_uri: Mapped[str | None] = mapped_column(Text, nullable=True)
    # none_as_null: a Python None is SQL NULL, not the JSON literal null.
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    enqueued_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class JobMetric(Base):
    """One evaluation report of a job at a training step; `id` keeps the order of reports within a step."""

    __tablename__ = "job_metrics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(
        String(JOB_ID_LEN), ForeignKey("jobs.job_id", ondelete="CASCADE"), nullable=False, index=True
    )
    step: Mapped[int] = mapped_column(Integer, nullable=False)
    values: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
