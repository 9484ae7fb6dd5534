"""Bodies of the native `/v1/learners` API, with their conversions to and from the client dataclasses."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lyceum_fleet import predictor as clients
from lyceum_gateway.schemas.common import LearnerId, Outcome, Probability, TaskId


class EventIn(BaseModel):
    """One observed interaction."""

    model_config = ConfigDict(extra="forbid")

    task: TaskId
    outcome: Outcome

    def to_domain(self) -> clients.Event:
        return clients.Event(task=self.task, outcome=self.outcome)


class RegisterLearnerRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"learner_id": "learner-42", "history": [{"task": "t03", "outcome": 1.0}]},
            ]
        },
    )

    learner_id: LearnerId
    history: list[EventIn] = Field(default_factory=list, description="Prior events, oldest first")


class LearnerOut(BaseModel):
    learner_id: str = Field(examples=["learner-42"])
    history_len: int = Field(description="Events in the committed history", examples=[1])
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_domain(cls, learner: clients.Learner) -> LearnerOut:
        return cls(
            learner_id=learner.learner_id,
            history_len=learner.history_len,
            created_at=learner.created_at,
            updated_at=learner.updated_at,
        )


class AppendEventsRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"events": [{"task": "t05", "outcome": 0.0}, {"task": "t01", "outcome": 1.0}]},
                {"events": [{"task": "t05", "outcome": 0.5}], "expected_history_len": 3},
            ]
        },
    )

    events: list[EventIn] = Field(min_length=1, description="New events, oldest first")
    expected_history_len: int | None = Field(
        None,
        ge=0,
        strict=True,
        description="Apply only if the history has exactly this many events (else 409): safe retries",
    )


class AppendEventsResponse(BaseModel):
    learner: LearnerOut
    prior_probabilities: list[Probability] = Field(
        description="What the model predicted for each event's task just before its outcome"
    )

    @classmethod
    def from_domain(cls, result: clients.AppendResult) -> AppendEventsResponse:
        return cls(
            learner=LearnerOut.from_domain(result.learner),
            prior_probabilities=result.prior_probabilities,
        )


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"tasks": ["t01", "t02"]}]})

    tasks: list[TaskId] = Field(min_length=1, description="Candidate tasks; duplicates are answered each")


class TaskProbability(BaseModel):
    task: str = Field(examples=["t01"])
    probability: Probability


class PredictResponse(BaseModel):
    learner_id: str
    history_len: int = Field(description="The history length the predictions were conditioned on")
    predictions: list[TaskProbability]

    @classmethod
    def from_domain(cls, tasks: list[str], result: clients.Predictions) -> PredictResponse:
        return cls(
            learner_id=result.learner_id,
            history_len=result.history_len,
            predictions=[
                TaskProbability(task=task, probability=p)
                for task, p in zip(tasks, result.probabilities, strict=True)
            ],
        )


class ForecastRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"task_sequences": [["t01", "t02", "t03"], ["t03", "t02", "t01"]]},
                {"task_sequences": [["t01", "t02"]], "feedback": "sample", "seed": 7},
            ]
        },
    )

    task_sequences: list[list[TaskId]] = Field(
        min_length=1, description="S sequences of the same length L >= 1, each rolled out independently"
    )
    feedback: clients.Feedback = Field(
        clients.Feedback.EXPECTED,
        description="`expected` feeds back each prediction (deterministic); `sample` a Bernoulli draw",
    )
    seed: int | None = Field(None, ge=0, lt=2**64, strict=True, description="Seed for `sample` feedback")

    @field_validator("task_sequences")
    @classmethod
    def _rectangular(cls, task_sequences: list[list[str]]) -> list[list[str]]:
        lengths = {len(seq) for seq in task_sequences}
        if 0 in lengths:
            raise ValueError("every task sequence must have at least one task")
        if len(lengths) > 1:
            raise ValueError(f"all task sequences must have the same length (got lengths {sorted(lengths)})")
        return task_sequences


class ForecastResponse(BaseModel):
    learner_id: str
    feedback: clients.Feedback
    predictions: list[list[Probability]] = Field(description="S sequences of L probabilities")
