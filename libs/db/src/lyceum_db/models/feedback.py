"""Feedback tables: a tenant's words about a recorded completion, waiting to be distilled into one of its
adapters (pending -> training -> applied | failed), and the per-adapter slot that lets one distillation job
run at a time."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from lyceum_core.identity import COMPLETION_ID_LEN, FEEDBACK_ID_LEN, MODEL_NAME_MAX_LEN, TENANT_ID_MAX_LEN
from lyceum_db.models.base import Base, UTCDateTime
from lyceum_db.models.job import IDEMPOTENCY_KEY_MAX_LEN, JOB_ID_LEN, STATE_MAX_LEN

# The longest feedback text accepted, in characters: a few paragraphs, and a bound on the teacher's prompt.
FEEDBACK_TEXT_MAX_LEN = 8192


class FeedbackState(StrEnum):
    """An item's lifecycle: pending until a job takes it, training while that job runs, then applied (the job
    succeeded: `version` holds what it trained) or failed (the job failed or was cancelled: `error`)."""

    PENDING = "pending"
    TRAINING = "training"
    APPLIED = "applied"
    FAILED = "failed"


class Feedback(Base):
    """One feedback item of a tenant about its completion `completion_id`, for its adapter `adapter` (a name:
    the version trained from is pinned when the job is made). `training` holds the SDPO settings it asked
    for, as overrides of the defaults ({} = the defaults); items asking for the same settings train together.
    Not foreign keys: an item outlives the completion (purged by age) and the job row."""

    __tablename__ = "feedback"
    __table_args__ = (
        Index("ix_feedback_tenant_adapter_state_created_at", "tenant", "adapter", "state", "created_at"),
        Index("ix_feedback_job_id", "job_id"),
        UniqueConstraint("tenant", "idempotency_key", name="uq_feedback_tenant_idempotency_key"),
    )

    tenant: Mapped[str] = mapped_column(String(TENANT_ID_MAX_LEN), primary_key=True)
    feedback_id: Mapped[str] = mapped_column(String(FEEDBACK_ID_LEN), primary_key=True)
    completion_id: Mapped[str] = mapped_column(String(COMPLETION_ID_LEN), nullable=False)
    adapter: Mapped[str] = mapped_column(String(MODEL_NAME_MAX_LEN), nullable=False)
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    text: Mapped[str] = mapped_column(Text, nullable=False)
    training: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    state: Mapped[str] = mapped_column(String(STATE_MAX_LEN), nullable=False)
    job_id: Mapped[str | None] = mapped_column(String(JOB_ID_LEN), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Unique per tenant (a NULL key never collides).
    idempotency_key: Mapped[str | None] = mapped_column(String(IDEMPOTENCY_KEY_MAX_LEN), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class AdapterDistillation(Base):
    """The distillation slot of one adapter of a tenant: `job_id` is the job training it now (NULL: free),
    `since` when that job took the slot. Taking it is a conditional UPDATE (`WHERE job_id IS NULL`), so of
    racing dispatchers (gateway replicas, trainer workers) exactly one starts a job, on either backend."""

    __tablename__ = "adapter_distillations"

    tenant: Mapped[str] = mapped_column(String(TENANT_ID_MAX_LEN), primary_key=True)
    adapter: Mapped[str] = mapped_column(String(MODEL_NAME_MAX_LEN), primary_key=True)
    job_id: Mapped[str | None] = mapped_column(String(JOB_ID_LEN), nullable=True)
    since: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
