"""Bodies of the native `/v1/learners` API, with their conversions to and from the client dataclasses."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lyceum_db.repositories.learners import EventRecord, LearnerRecord
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
    history_len: int = Field(
        description="Events in the committed history (all of them stay stored)", examples=[1]
    )
    context_len: int = Field(
        description="Events the model conditions on: the whole history, or its most recent events once it "
        "is longer than the served model's context window",
        examples=[1],
    )
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_domain(cls, learner: clients.Learner) -> LearnerOut:
        return cls(
            learner_id=learner.learner_id,
            history_len=learner.history_len,
            context_len=learner.context_len,
            created_at=learner.created_at,
            updated_at=learner.updated_at,
        )


class LearnerSummary(BaseModel):
    """A learner as the tenant's list shows it (without `context_len`, which only a predictor knows)."""

    learner_id: str = Field(examples=["learner-42"])
    history_len: int = Field(description="Events in the committed history", examples=[12])
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_record(cls, record: LearnerRecord) -> LearnerSummary:
        return cls(
            learner_id=record.learner_id,
            history_len=record.history_len,
            created_at=record.created_at,
            updated_at=record.updated_at,
        )


class LearnerList(BaseModel):
    learners: list[LearnerSummary] = Field(description="In learner id order")
    next_cursor: str | None = Field(
        None, description="Pass as `after` for the next page; null on the last page", examples=[None]
    )


class EventOut(BaseModel):
    """One event of a learner's committed history."""

    seq: int = Field(description="Its position in the history, from 0", examples=[0])
    task: str = Field(examples=["t03"])
    outcome: float = Field(description="Score in [0, 1]", examples=[1.0])
    created_at: datetime = Field(description="When it was stored")

    @classmethod
    def from_record(cls, record: EventRecord) -> EventOut:
        return cls(seq=record.seq, task=record.task, outcome=record.outcome, created_at=record.created_at)


class LearnerEvents(BaseModel):
    learner_id: str
    history_len: int = Field(description="Events in the whole committed history")
    events: list[EventOut] = Field(description="Oldest first, from `start`")
    next_start: int | None = Field(
        None, description="Pass as `start` for the next page; null when no more events follow"
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


# Ranges are documented here and checked by the predictor (400 naming the field), as DFM-Server v0.1 did.
class CurriculumSearchRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"target_tasks": ["t07", "t08"], "candidate_tasks": ["t01", "t02", "t03"], "depth": 5},
                {
                    "target_tasks": ["t07"],
                    "candidate_tasks": ["t01", "t02"],
                    "depth": 8,
                    "population_size": 32,
                    "generations": 10,
                    "eval_every": 2,
                    "seed": 7,
                },
            ]
        },
    )

    target_tasks: list[TaskId] = Field(description="Tasks whose mean predicted success is the fitness (>= 1)")
    candidate_tasks: list[TaskId] = Field(description="Tasks a sequence may use, with repetition (>= 1)")
    depth: int = Field(
        strict=True,
        description="Tasks per sequence: >= 1, and the learner's context plus depth within the model's limit",
    )
    population_size: int | None = Field(
        None,
        strict=True,
        description="Individuals per generation (default 64; >= elite_count, tournament_size)",
    )
    generations: int | None = Field(
        None, strict=True, description="Generations after the first (default 20; >= 0)"
    )
    elite_count: int | None = Field(
        None, strict=True, description="Fittest individuals copied unchanged (default 4; >= 0)"
    )
    tournament_size: int | None = Field(
        None, strict=True, description="Individuals per selection tournament (default 2; >= 1)"
    )
    crossover_rate: float | None = Field(
        None, allow_inf_nan=False, description="Probability of single-point crossover (default 0.8; [0, 1])"
    )
    mutation_rate: float | None = Field(
        None, allow_inf_nan=False, description="Per-gene mutation probability (default 0.05; [0, 1])"
    )
    eval_every: int | None = Field(
        None,
        strict=True,
        description="Score after every eval_every steps and after the last (default: after the last; >= 1)",
    )
    seed: int | None = Field(
        None, ge=0, lt=2**64, strict=True, description="Seed of the search (default: a random one)"
    )

    def to_domain(self) -> clients.SearchSpec:
        return clients.SearchSpec(
            target_tasks=self.target_tasks,
            candidate_tasks=self.candidate_tasks,
            depth=self.depth,
            population_size=self.population_size,
            generations=self.generations,
            elite_count=self.elite_count,
            tournament_size=self.tournament_size,
            crossover_rate=self.crossover_rate,
            mutation_rate=self.mutation_rate,
            eval_every=self.eval_every,
            seed=self.seed,
        )


class CurriculumSearchResponse(BaseModel):
    learner_id: str
    best_sequence: list[str] = Field(description="The fittest task sequence found (depth tasks)")
    best_fitness: float = Field(description="Its fitness: mean predicted success on the targets")
    best_fitness_curve: list[float] = Field(description="Per generation: the best fitness found so far")
    mean_fitness_curve: list[float] = Field(description="Per generation: the population's mean fitness")
    evaluations: int = Field(description="Individuals scored: population_size x (generations + 1)")
    history_len: int = Field(description="The history length the search started from (unchanged)")

    @classmethod
    def from_domain(cls, result: clients.CurriculumSearch) -> CurriculumSearchResponse:
        return cls(
            learner_id=result.learner_id,
            best_sequence=result.best_sequence,
            best_fitness=result.best_fitness,
            best_fitness_curve=result.best_fitness_curve,
            mean_fitness_curve=result.mean_fitness_curve,
            evaluations=result.evaluations,
            history_len=result.history_len,
        )
