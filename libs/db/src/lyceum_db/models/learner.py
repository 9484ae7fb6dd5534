"""Learner tables: one row per (tenant, learner) plus its append-only history of (task, outcome) events."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, ForeignKeyConstraint, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from lyceum_core.identity import LEARNER_ID_MAX_LEN, TENANT_ID_MAX_LEN
from lyceum_db.models.base import Base, UTCDateTime

TASK_MAX_LEN = 256
OWNER_MAX_LEN = 128  # a serving process's identity (host, pid, start)


class Learner(Base):
    """A learner of one tenant. `history_len` is the number of events and doubles as the
    optimistic-concurrency version.

    Ownership (see LearnerRepository.claim): the predictor process that serves the learner from its cache
    holds a lease on it until `lease_until` (seconds since the epoch, by the database's clock);
    `owner_epoch` is bumped whenever another process takes the learner over, so a cache built under an
    older epoch is known to be stale."""

    __tablename__ = "learners"

    tenant: Mapped[str] = mapped_column(String(TENANT_ID_MAX_LEN), primary_key=True)
    learner_id: Mapped[str] = mapped_column(String(LEARNER_ID_MAX_LEN), primary_key=True)
    history_len: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    owner: Mapped[str | None] = mapped_column(String(OWNER_MAX_LEN), nullable=True)
    owner_epoch: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default=text("0"))
    lease_until: Mapped[float | None] = mapped_column(Float, nullable=True)


class LearnerEvent(Base):
    """One event of a learner's history; `seq` counts from 0 in append order."""

    __tablename__ = "learner_events"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant", "learner_id"],
            ["learners.tenant", "learners.learner_id"],
            name="fk_learner_events_tenant_learners",
            ondelete="CASCADE",
        ),
    )

    tenant: Mapped[str] = mapped_column(String(TENANT_ID_MAX_LEN), primary_key=True)
    learner_id: Mapped[str] = mapped_column(String(LEARNER_ID_MAX_LEN), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    task: Mapped[str] = mapped_column(String(TASK_MAX_LEN), nullable=False)
    outcome: Mapped[float] = mapped_column(Float, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
