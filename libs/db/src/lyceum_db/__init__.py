"""Lyceum's database layer: engines, SQLAlchemy models, repositories and packaged Alembic migrations.

Migration helpers live in `lyceum_db.migrate`, imported on demand so repository users skip Alembic.
"""

from lyceum_db.engine import create_engine
from lyceum_db.models import TERMINAL, AliasMove, JobState
from lyceum_db.repositories import (
    AliasEvent,
    ApiKeyRepository,
    CompletionRecord,
    CompletionRepository,
    JobRecord,
    JobRepository,
    KeyRecord,
    LearnerRecord,
    LearnerRepository,
    ModelRecord,
    ModelRepository,
    TenantRecord,
    TenantRepository,
)

__all__ = [
    "TERMINAL",
    "AliasEvent",
    "AliasMove",
    "ApiKeyRepository",
    "CompletionRecord",
    "CompletionRepository",
    "JobRecord",
    "JobRepository",
    "JobState",
    "KeyRecord",
    "LearnerRecord",
    "LearnerRepository",
    "ModelRecord",
    "ModelRepository",
    "TenantRecord",
    "TenantRepository",
    "create_engine",
]
