"""All Lyceum models, imported here so that `Base.metadata` is complete for Alembic and the repositories."""

from lyceum_db.models.base import NAMING_CONVENTION, Base, UTCDateTime
from lyceum_db.models.learner import Learner, LearnerEvent

__all__ = ["NAMING_CONVENTION", "Base", "Learner", "LearnerEvent", "UTCDateTime"]
