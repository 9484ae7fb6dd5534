"""All Lyceum models, imported here so that `Base.metadata` is complete for Alembic and the repositories."""

from lyceum_db.models.base import NAMING_CONVENTION, Base, UTCDateTime
from lyceum_db.models.completion import FINISH_REASONS, Completion
from lyceum_db.models.dataset import Dataset
from lyceum_db.models.feedback import FEEDBACK_TEXT_MAX_LEN, AdapterDistillation, Feedback, FeedbackState
from lyceum_db.models.job import TERMINAL, Job, JobMetric, JobState
from lyceum_db.models.learner import Learner, LearnerEvent
from lyceum_db.models.registry import AliasMove, ModelAlias, ModelAliasEvent, ModelVersion
from lyceum_db.models.tenant import ApiKey, Tenant

__all__ = [
    "FEEDBACK_TEXT_MAX_LEN",
    "FINISH_REASONS",
    "NAMING_CONVENTION",
    "TERMINAL",
    "AdapterDistillation",
    "AliasMove",
    "ApiKey",
    "Base",
    "Completion",
    "Dataset",
    "Feedback",
    "FeedbackState",
    "Job",
    "JobMetric",
    "JobState",
    "Learner",
    "LearnerEvent",
    "ModelAlias",
    "ModelAliasEvent",
    "ModelVersion",
    "Tenant",
    "UTCDateTime",
]
