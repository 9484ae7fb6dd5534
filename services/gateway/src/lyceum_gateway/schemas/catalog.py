"""Bodies of the native API's read-only catalog: the task vocabulary and the served model."""

from __future__ import annotations

import dataclasses

from pydantic import BaseModel, Field

from lyceum_fleet import predictor as clients


class TasksResponse(BaseModel):
    tasks: list[str] = Field(examples=[["t00", "t01"]])
    count: int = Field(examples=[2])


class ModelInfoResponse(BaseModel):
    name: str
    version: str
    n_layer: int
    n_head: int
    n_kv_head: int
    d_model: int
    n_tasks: int
    task_encoder: str
    max_history_len: int = Field(
        description="Most events the model conditions on, roll-outs (forecasts, searches) included"
    )
    dtype: str
    device: str
    n_parameters: int
    context_policy: str = Field(
        description="sliding_window: a history longer than context_window events keeps every event stored "
        "and conditions on the most recent ones; reject: appends past context_window events are refused (400)"
    )
    context_window: int = Field(description="Events the model conditions on at most")
    resident_learners: int = Field(
        description="The caller's learners with a resident KV cache on the answering replica"
    )

    @classmethod
    def from_domain(cls, info: clients.ModelInfo) -> ModelInfoResponse:
        return cls(**dataclasses.asdict(info))
