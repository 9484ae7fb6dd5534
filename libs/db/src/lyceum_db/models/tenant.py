"""Tenant tables: the tenants (each with its quota overrides) and their API keys, stored as sha256 hashes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from lyceum_core.identity import SUBJECT_MAX_LEN, TENANT_ID_MAX_LEN
from lyceum_db.models.base import Base, UTCDateTime

KEY_ID_LEN = 16  # 8 random bytes in hex, or the first 16 hex digits of a static key's hash
KEY_HASH_LEN = 64  # sha256 hex
KEY_NAME_MAX_LEN = 128


class Tenant(Base):
    """A tenant: owns learners, sessions, jobs and models. `quotas` overrides the gateway's defaults."""

    __tablename__ = "tenants"

    tenant_id: Mapped[str] = mapped_column(String(TENANT_ID_MAX_LEN), primary_key=True)
    quotas: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class ApiKey(Base):
    """An API key of one tenant, optionally acting for a subject. Only the sha256 of the key is stored."""

    __tablename__ = "api_keys"

    key_id: Mapped[str] = mapped_column(String(KEY_ID_LEN), primary_key=True)
    tenant: Mapped[str] = mapped_column(
        String(TENANT_ID_MAX_LEN),
        ForeignKey("tenants.tenant_id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    )
    subject: Mapped[str | None] = mapped_column(String(SUBJECT_MAX_LEN), nullable=True)
    name: Mapped[str | None] = mapped_column(String(KEY_NAME_MAX_LEN), nullable=True)
    key_hash: Mapped[str] = mapped_column(String(KEY_HASH_LEN), nullable=False, unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
