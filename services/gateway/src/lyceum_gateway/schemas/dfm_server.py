"""Bodies of the DFM-Server v0.1 compatibility API, field for field as the original server had them."""

from __future__ import annotations

from pydantic import BaseModel, Field

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
    encoder_name: str
    block_size: int = Field(description="Longest interleaved token sequence: 2 * (max_history_len + 1)")
