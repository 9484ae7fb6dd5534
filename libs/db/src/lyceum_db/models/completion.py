"""Recorded completions: what a sampler generated for a tenant (prompt and sampled token ids with their
log-probs, the sampling params, why it stopped, a digest of the response's text), kept for later training on
them and purged by age."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from lyceum_core.identity import COMPLETION_ID_LEN, SUBJECT_MAX_LEN, TENANT_ID_MAX_LEN
from lyceum_db.models.base import Base, UTCDateTime

FINISH_REASON_MAX_LEN = 16
RESPONSE_SHA256_LEN = 64  # hex
# Why a generation ended: the end-of-sequence token, a stop sequence, the token limit, or the caller left.
FINISH_REASONS: frozenset[str] = frozenset({"eos", "stop", "length", "cancelled"})


class Completion(Base):
    """One recorded completion of a tenant. `model` is the served model's key (`tenant/name@version`, or a
    local model's name) and `adapter` the adapter's registry key, if one was applied; both are kept as text,
    not foreign keys, so a completion outlives the versions that produced it."""

    __tablename__ = "completions"
    __table_args__ = (
        Index("ix_completions_created_at", "created_at"),  # retention: purge by age across tenants
        Index("ix_completions_tenant_subject_created_at", "tenant", "subject", "created_at"),
        # Feedback that quotes a response's text (the /claas mount) finds its completion by this digest.
        Index("ix_completions_tenant_response_sha256", "tenant", "response_sha256"),
    )

    tenant: Mapped[str] = mapped_column(String(TENANT_ID_MAX_LEN), primary_key=True)
    completion_id: Mapped[str] = mapped_column(String(COMPLETION_ID_LEN), primary_key=True)
    subject: Mapped[str | None] = mapped_column(String(SUBJECT_MAX_LEN), nullable=True)
    model: Mapped[str] = mapped_column(Text, nullable=False)
    adapter: Mapped[str | None] = mapped_column(Text, nullable=True)
    prompt_ids: Mapped[list[int]] = mapped_column(JSON, nullable=False)
    token_ids: Mapped[list[int]] = mapped_column(JSON, nullable=False)
    logprobs: Mapped[list[float]] = mapped_column(JSON, nullable=False)  # one per entry of token_ids
    params: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    finish_reason: Mapped[str] = mapped_column(String(FINISH_REASON_MAX_LEN), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    # sha256 hex of the response's whitespace-normalised text (repositories.completions.response_digest);
    # NULL for completions recorded before it was kept.
    response_sha256: Mapped[str | None] = mapped_column(String(RESPONSE_SHA256_LEN), nullable=True)
