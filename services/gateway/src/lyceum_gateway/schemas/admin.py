"""Schemas of the admin routes: tenants (with their quota overrides) and API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from lyceum_core.identity import SUBJECT_PATTERN, TENANT_ID_PATTERN, TENANT_ID_RULE

QUOTAS_DOC = (
    "Overrides of the deployment's default quotas: rps (requests per second), burst, max_learners, "
    "max_sessions, max_jobs (0 = no limit); a quota left out keeps the default"
)


class QuotaOverrides(BaseModel):
    rps: float | None = Field(None, ge=0, examples=[5.0])
    burst: int | None = Field(None, ge=0, examples=[10])
    max_learners: int | None = Field(None, ge=0, examples=[1000])
    max_sessions: int | None = Field(None, ge=0, examples=[50])
    max_jobs: int | None = Field(None, ge=0, examples=[4])

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class CreateTenantRequest(BaseModel):
    tenant_id: str = Field(pattern=TENANT_ID_PATTERN, description=TENANT_ID_RULE, examples=["acme"])
    quotas: QuotaOverrides = Field(default_factory=QuotaOverrides, description=QUOTAS_DOC)


class TenantOut(BaseModel):
    tenant_id: str
    created_at: datetime
    quotas: dict[str, Any] = Field(description=QUOTAS_DOC)

    @classmethod
    def from_record(cls, record: Any) -> TenantOut:
        return cls(tenant_id=record.tenant_id, created_at=record.created_at, quotas=dict(record.quotas or {}))


class TenantList(BaseModel):
    tenants: list[TenantOut]


class CreateKeyRequest(BaseModel):
    tenant: str = Field(
        pattern=TENANT_ID_PATTERN, description="The tenant the key acts for", examples=["acme"]
    )
    subject: str | None = Field(
        None,
        max_length=128,
        pattern=SUBJECT_PATTERN,
        description="The end user the key acts for, if one (else callers may send X-Lyceum-Subject)",
    )
    name: str | None = Field(None, max_length=128, description="A label for people", examples=["ci"])


class KeyOut(BaseModel):
    key_id: str
    tenant: str
    subject: str | None
    name: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def from_record(cls, record: Any) -> KeyOut:
        return cls(
            key_id=record.key_id,
            tenant=record.tenant,
            subject=record.subject,
            name=record.name,
            created_at=record.created_at,
            last_used_at=record.last_used_at,
            revoked_at=record.revoked_at,
        )


class CreatedKeyOut(KeyOut):
    key: str = Field(description="The key itself: shown this once, never stored (only its hash is)")


class KeyList(BaseModel):
    keys: list[KeyOut]
