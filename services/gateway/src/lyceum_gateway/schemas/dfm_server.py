"""Bodies of the DFM-Server v0.1 compatibility API, field for field as the original server had them."""

from __future__ import annotations

from pydantic import BaseModel, Field

from lyceum_core import curriculum
from lyceum_gateway.schemas.common import Outcome


class RegisterRequest(BaseModel):
    learner_id: str = Field(examples=["learner-42"])
    tasks: list[str] | None = Field(None, description="History tasks; requires `outcomes` of the same length")
    outcomes: list[Outcome] | None = Field(None, description="History outcomes in [0, 1]")


class RegisterResponse(BaseModel):
    learner_id: str
    history_len: int


class PredictRequest(BaseModel):
    learner_id: str
    tasks: list[str] = Field(min_length=1)


class PredictResponse(BaseModel):
    learner_id: str
    predictions: list[float]


class UpdateRequest(BaseModel):
    learner_id: str
    task: str
    outcome: Outcome


class UpdateResponse(BaseModel):
    learner_id: str
    history_len: int


class ForecastRequest(BaseModel):
    learner_id: str
    task_sequences: list[list[str]] = Field(description="S sequences of the same length L")


class ForecastResponse(BaseModel):
    learner_id: str
    predictions: list[list[float]] = Field(description="S x L probabilities, with expected feedback")


class DeleteResponse(BaseModel):
    learner_id: str


class HealthResponse(BaseModel):
    status: str = Field(examples=["ok"])
    learner_count: int = Field(
        description="The caller's learners with a resident cache, summed over the predictors"
    )


class TasksResponse(BaseModel):
    tasks: list[str]
    count: int


class ConfigResponse(BaseModel):
    n_layer: int
    n_head: int
    n_kv_head: int
    n_embd: int
    n_input: int = Field(description="Width of the model's task input (n_embd for a learned task table)")
    encoder_name: str = Field(description="The task encoder (earlier Lyceum clients read it)")
    block_size: int = Field(description="Longest interleaved token sequence: 2 * (max_history_len + 1)")


class SearchRequest(BaseModel):
    learner_id: str
    target_tasks: list[str] = Field(description="Tasks whose mean predicted success is the fitness")
    candidate_tasks: list[str] = Field(description="Tasks a sequence may use, with repetition")
    depth: int = Field(description="Tasks per sequence")
    population_size: int = curriculum.POPULATION_SIZE
    generations: int = curriculum.GENERATIONS
    elite_count: int = curriculum.ELITE_COUNT
    tournament_size: int = curriculum.TOURNAMENT_SIZE
    crossover_rate: float = curriculum.CROSSOVER_RATE
    mutation_rate: float = curriculum.MUTATION_RATE
    eval_every: int | None = Field(
        None, description="Score every eval_every steps and the last (null: the last)"
    )
    seed: int | None = Field(None, description="Seed of the search (null: a random one)")


class SearchResponse(BaseModel):
    learner_id: str
    best_sequence: list[str]
    best_fitness: float


class GcResponse(BaseModel):
    status: str = Field(examples=["ok"])
