"""Repositories: the only code that touches Lyceum's tables; they speak dataclasses and domain errors.

Methods that act for a caller take its tenant first; another tenant's resource behaves like a missing one."""

from lyceum_db.repositories.completions import CompletionRecord, CompletionRepository
from lyceum_db.repositories.jobs import JobRecord, JobRepository
from lyceum_db.repositories.learners import LearnerRecord, LearnerRepository
from lyceum_db.repositories.registry import AliasEvent, ModelRecord, ModelRepository
from lyceum_db.repositories.tenants import (
    ApiKeyRepository,
    KeyRecord,
    TenantRecord,
    TenantRepository,
    hash_key,
)

__all__ = [
    "AliasEvent",
    "ApiKeyRepository",
    "CompletionRecord",
    "CompletionRepository",
    "JobRecord",
    "JobRepository",
    "KeyRecord",
    "LearnerRecord",
    "LearnerRepository",
    "ModelRecord",
    "ModelRepository",
    "TenantRecord",
    "TenantRepository",
    "hash_key",
]
