"""Repositories: the only code that touches Lyceum's tables; they speak dataclasses and domain errors."""

from lyceum_db.repositories.learners import LearnerRecord, LearnerRepository

__all__ = ["LearnerRecord", "LearnerRepository"]
