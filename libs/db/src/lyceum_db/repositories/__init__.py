"""Repositories: the only code that touches Lyceum's tables; they speak dataclasses and domain errors."""

from lyceum_db.repositories.jobs import JobRecord, JobRepository
from lyceum_db.repositories.learners import LearnerRecord, LearnerRepository
from lyceum_db.repositories.registry import AliasEvent, ModelRecord, ModelRepository

__all__ = [
    "AliasEvent",
    "JobRecord",
    "JobRepository",
    "LearnerRecord",
    "LearnerRepository",
    "ModelRecord",
    "ModelRepository",
]
