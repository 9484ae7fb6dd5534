"""Bodies of the native batch prediction API (`POST /v1/predictions:batch`), with their conversions to and
from the client dataclasses."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from lyceum_core.errors import LyceumError
from lyceum_fleet import predictor as clients
from lyceum_gateway.schemas.common import LEARNER_ID_RULE, Probability


class BatchItem(BaseModel):
    """One learner and its candidate tasks. The learner id and the tasks are checked per item: a bad one
    fails its own item (400), not the batch."""

    model_config = ConfigDict(extra="forbid")

    learner_id: str = Field(description=LEARNER_ID_RULE, examples=["learner-42"])
    tasks: list[str] = Field(description="Candidate tasks (at least one); duplicates are answered each")

    def to_domain(self) -> clients.PredictItem:
        return clients.PredictItem(learner_id=self.learner_id, tasks=self.tasks)


class BatchPredictRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {"learner_id": "learner-42", "tasks": ["t01", "t02"]},
                        {"learner_id": "learner-43", "tasks": ["t01"]},
                    ]
                }
            ]
        },
    )

    items: list[BatchItem] = Field(
        min_length=1, description="Learners to score, each with its tasks (at most `max_batch_items`)"
    )


class ItemError(BaseModel):
    code: str = Field(description="Canonical error code", examples=["NOT_FOUND"])
    message: str = Field(examples=["learner 'learner-43' not found"])
    field: str | None = Field(None, description="The offending input of the item, if any", examples=["tasks"])


class BatchItemResult(BaseModel):
    """One item's answer: its predictions (`status` 200), or the error it alone met (`status` as the same
    call on `/v1/learners/{learner_id}/predictions` would answer)."""

    learner_id: str
    status: int = Field(description="The item's HTTP status", examples=[200, 404])
    probabilities: list[Probability] | None = Field(
        None, description="probabilities[i] is P(success on tasks[i]); on success only"
    )
    history_len: int | None = Field(
        None, description="The history length the predictions were conditioned on; on success only"
    )
    error: ItemError | None = Field(None, description="Why the item failed; on failure only")

    @classmethod
    def of(cls, learner_id: str, result: clients.Predictions | clients.ItemFailure) -> BatchItemResult:
        if isinstance(result, clients.ItemFailure):
            return cls.failed(learner_id, result.error)
        return cls(
            learner_id=learner_id,
            status=200,
            probabilities=result.probabilities,
            history_len=result.history_len,
        )

    @classmethod
    def failed(cls, learner_id: str, err: LyceumError) -> BatchItemResult:
        error = ItemError(code=err.code.value, message=err.message, field=err.field)
        return cls(learner_id=learner_id, status=err.http_status, error=error)


class BatchPredictResponse(BaseModel):
    results: list[BatchItemResult] = Field(description="results[i] answers items[i]")
