"""Bodies of the native `/v1/feedback` API (and of `POST /v1/adapters/{name}/distill`), and their conversions
from the feedback repository's records."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from lyceum_core.identity import COMPLETION_ID_PATTERN, COMPLETION_ID_RULE, MODEL_NAME_PATTERN
from lyceum_db.models.feedback import FEEDBACK_TEXT_MAX_LEN, FeedbackState
from lyceum_db.repositories.feedback import FeedbackRecord
from lyceum_jobs.configs import GateSettings, SDPOTrain

TRAINING_DOC = (
    "SDPO settings for the step this feedback is trained in; omitted fields take CLaaS's defaults. Items "
    "asking for the same settings are trained together. Invalid values are a 422 naming the field "
    "(lr > 0, alpha in [0, 1], is_clip in [1, 20], max_grad_norm >= 0, kl_reg_weight in [0, 1], "
    "teacher_top_k in [10, 100])"
)
EXAMPLE = {
    "completion_id": "cmpl-0f5e8c1d2b3a49e6a7c8d9e0f1a2b3c4",
    "feedback": "Don't use emojis.",
    "adapter": "kuro",
    "training": {"lr": 3e-5, "alpha": 0.5},
}


class SubmitFeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE]})

    completion_id: str = Field(
        pattern=COMPLETION_ID_PATTERN,
        description=f"A completion recorded by the OpenAI-compatible API ({COMPLETION_ID_RULE}): its "
        "`completion_id`",
    )
    # Not constrained here: an empty feedback is a 400 (the service's rule), not a malformed body.
    feedback: str = Field(
        description=f"What the response should have done differently, in words (1 to {FEEDBACK_TEXT_MAX_LEN} "
        "characters)"
    )
    adapter: str | None = Field(
        None,
        pattern=MODEL_NAME_PATTERN,
        description="Your adapter that should learn from it; defaults to the adapter that made the "
        "completion. It must be over the completion's base model",
    )
    training: SDPOTrain | None = Field(None, description=TRAINING_DOC)


class DistillRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    training: SDPOTrain | None = Field(
        None,
        description="Train the pending items with these settings, whatever they asked for; omitted: the "
        "oldest pending item and those asking for its settings",
    )
    gate: GateSettings | None = Field(
        None,
        description="The quality gate the new version must pass to be served; omitted: the default gate",
    )


class FeedbackOut(BaseModel):
    feedback_id: str = Field(examples=["fb-6b1d0e9f3c2a4b5d8e7f6a5b4c3d2e1f"])
    state: FeedbackState = Field(
        description="pending (waiting for a job), training (its job runs), applied (trained into "
        "`version`) or failed (`error` says why)"
    )
    adapter: str
    completion_id: str
    feedback: str
    training: dict[str, Any] = Field(description="The settings asked for, as overrides of the defaults")
    job_id: str | None = Field(None, description="The `sdpo` job that trains it, once one does")
    version: int | None = Field(None, description="The adapter version it was trained into, once applied")
    error: str | None = None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_record(cls, record: FeedbackRecord) -> FeedbackOut:
        return cls(
            feedback_id=record.feedback_id,
            state=record.state,
            adapter=record.adapter,
            completion_id=record.completion_id,
            feedback=record.text,
            training=record.training,
            job_id=record.job_id,
            version=record.version,
            error=record.error,
            created_at=record.created_at,
            updated_at=record.updated_at,
        )


class FeedbackList(BaseModel):
    feedback: list[FeedbackOut] = Field(description="Newest first")
