"""Model registry tables: immutable numbered versions per model name, movable aliases (`latest`, `prod`, ...)
and the history of every alias move, which is what makes a rollback possible."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from lyceum_db.models.base import Base, UTCDateTime
from lyceum_db.models.job import JOB_ID_LEN, KIND_MAX_LEN

MODEL_NAME_MAX_LEN = 128
ALIAS_MAX_LEN = 64
REASON_MAX_LEN = 16


class AliasMove(StrEnum):
    """Why an alias moved; rollbacks are told apart so that repeated rollbacks walk further back."""

    REGISTER = "register"  # a new version was registered and `latest` moved to it
    SET = "set"
    ROLLBACK = "rollback"


class ModelVersion(Base):
    """One registered model version; `version` counts from 1 per name. A job registers at most one version
    per name, so a retried registration finds the first one."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("name", "job_id", name="uq_model_versions_name_job_id"),)

    name: Mapped[str] = mapped_column(String(MODEL_NAME_MAX_LEN), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(KIND_MAX_LEN), nullable=False)
    uri: Mapped[str] = mapped_column(Text, nullable=False)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    # Not a foreign key: registered models outlive the job rows that produced them.
    job_id: Mapped[str | None] = mapped_column(String(JOB_ID_LEN), nullable=True)
    # `metadata` is reserved on declarative classes, hence the attribute name.
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, nullable=False, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class ModelAlias(Base):
    """A named pointer to one version of a model."""

    __tablename__ = "model_aliases"
    __table_args__ = (
        ForeignKeyConstraint(
            ["name", "version"], ["model_versions.name", "model_versions.version"], ondelete="CASCADE"
        ),
    )

    name: Mapped[str] = mapped_column(String(MODEL_NAME_MAX_LEN), primary_key=True)
    alias: Mapped[str] = mapped_column(String(ALIAS_MAX_LEN), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class ModelAliasEvent(Base):
    """One move of an alias, from `previous_version` (None when it was created) to `version`."""

    __tablename__ = "model_alias_events"
    __table_args__ = (Index("ix_model_alias_events_name_alias", "name", "alias", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(MODEL_NAME_MAX_LEN), nullable=False)
    alias: Mapped[str] = mapped_column(String(ALIAS_MAX_LEN), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    previous_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reason: Mapped[str] = mapped_column(String(REASON_MAX_LEN), nullable=False)
    moved_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
