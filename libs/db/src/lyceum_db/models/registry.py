"""Model registry tables: immutable numbered versions per (tenant, model name), movable aliases (`latest`,
`prod`, ...) and the history of every alias move, which is what makes a rollback possible. A version marked
`public` (published by the platform) is readable by every tenant."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from lyceum_core.identity import ALIAS_MAX_LEN, MODEL_NAME_MAX_LEN, TENANT_ID_MAX_LEN
from lyceum_db.models.base import Base, UTCDateTime
from lyceum_db.models.job import JOB_ID_LEN, KIND_MAX_LEN

REASON_MAX_LEN = 16


class AliasMove(StrEnum):
    """Why an alias moved; rollbacks are told apart so that repeated rollbacks walk further back."""

    REGISTER = "register"  # a new version was registered and `latest` moved to it
    SET = "set"
    ROLLBACK = "rollback"


class ModelVersion(Base):
    """One registered model version; `version` counts from 1 per (tenant, name). A job registers at most one
    version per name, so a retried registration finds the first one."""

    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("tenant", "name", "job_id", name="uq_model_versions_tenant_name_job_id"),
        Index("ix_model_versions_name_public", "name", "public"),
    )

    tenant: Mapped[str] = mapped_column(String(TENANT_ID_MAX_LEN), primary_key=True)
    name: Mapped[str] = mapped_column(String(MODEL_NAME_MAX_LEN), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(KIND_MAX_LEN), nullable=False)
    uri: Mapped[str] = mapped_column(Text, nullable=False)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    # Not a foreign key: registered models outlive the job rows that produced them.
    job_id: Mapped[str | None] = mapped_column(String(JOB_ID_LEN), nullable=True)
    # `metadata` is reserved on declarative classes, hence the attribute name.
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, nullable=False, default=dict)
    public: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class ModelAlias(Base):
    """A named pointer to one version of a tenant's model."""

    __tablename__ = "model_aliases"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant", "name", "version"],
            ["model_versions.tenant", "model_versions.name", "model_versions.version"],
            name="fk_model_aliases_tenant_model_versions",
            ondelete="CASCADE",
        ),
    )

    tenant: Mapped[str] = mapped_column(String(TENANT_ID_MAX_LEN), primary_key=True)
    name: Mapped[str] = mapped_column(String(MODEL_NAME_MAX_LEN), primary_key=True)
    alias: Mapped[str] = mapped_column(String(ALIAS_MAX_LEN), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class ModelAliasEvent(Base):
    """One move of an alias, from `previous_version` (None when it was created) to `version`."""

    __tablename__ = "model_alias_events"
    __table_args__ = (Index("ix_model_alias_events_tenant_name_alias", "tenant", "name", "alias", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(TENANT_ID_MAX_LEN), nullable=False)
    name: Mapped[str] = mapped_column(String(MODEL_NAME_MAX_LEN), nullable=False)
    alias: Mapped[str] = mapped_column(String(ALIAS_MAX_LEN), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    previous_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reason: Mapped[str] = mapped_column(String(REASON_MAX_LEN), nullable=False)
    moved_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
