"""The predictor's settings (env prefix LYCEUM_PREDICTOR_), built once in the entrypoint."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from lyceum_core.identity import PLATFORM_TENANT, TENANT_ID_PATTERN
from lyceum_core.settings import (
    DEFAULT_DATABASE_URL,
    DEFAULT_REGISTRY_URL,
    DEFAULT_STATE_DIR,
    ServiceSettings,
    service_config,
)


class Settings(ServiceSettings):
    model_config = service_config("predictor")

    host: str = "127.0.0.1"
    port: int = Field(50051, ge=0, le=65535, description="gRPC port (0 = pick a free one)")
    metrics_port: int = Field(9101, ge=0, le=65535, description="Prometheus port (0 = off)")
    database_url: str = DEFAULT_DATABASE_URL
    migrate_on_start: bool = True
    model_path: Path = Field(DEFAULT_STATE_DIR / "models" / "dfm-demo", description="checkpoint directory")
    model: str | None = Field(None, description="registry reference name@alias (wins over model_path)")
    model_tenant: str = Field(
        PLATFORM_TENANT,
        pattern=TENANT_ID_PATTERN,
        description="the tenant `model` is resolved as (its own models, then public ones)",
    )
    registry_url: str = Field(DEFAULT_REGISTRY_URL, description="artifact store root (path or fsspec URL)")
    model_cache_dir: Path = Field(DEFAULT_STATE_DIR / "predictor" / "models", description="downloaded models")
    model_poll_s: float = Field(10.0, ge=0, description="how often the registry alias is checked (0 = never)")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    dtype: str = Field("auto", description="auto (bf16 on CUDA, fp32 on CPU) | float32 | bfloat16 | float16")
    max_history_len: int | None = Field(
        None, ge=1, description="events the model conditions on at most; default: the model's limit"
    )
    context_policy: Literal["sliding_window", "reject"] = Field(
        "sliding_window",
        description="a history longer than the context: condition on the most recent events "
        "(sliding_window; every event stays stored) or refuse the append (reject)",
    )
    context_window: int | None = Field(
        None, ge=1, description="events in context at most; default: 7/8 of max_history_len (reject: all)"
    )
    context_stride: int | None = Field(
        None, ge=1, description="events the window moves by at a time; default: 1/8 of the window"
    )
    cache_budget_bytes: int | None = Field(
        None,
        ge=0,
        description="KV memory for resident learners (LRU beyond); default: cache_memory_fraction of the "
        "memory free once the model is loaded",
    )
    cache_memory_fraction: float | None = Field(
        None, gt=0, le=1, description="default budget's share of free memory (0.8 on CUDA, 0.25 on CPU)"
    )
    cache_chunk_tokens: int = Field(128, ge=2, description="KV caches grow by this many tokens at a time")
    max_tasks_per_request: int = Field(1024, ge=1)
    max_events_per_request: int = Field(4096, ge=1)
    max_forecast_sequences: int = Field(4096, ge=1)
    max_forecast_length: int = Field(512, ge=1)
    forecast_memory_bytes: int = Field(
        512 * 2**20, ge=1, description="a forecast's roll-out cache and attention scores at most (else 400)"
    )
    batch_max_rows: int = Field(32, ge=1, description="calls run together in one forward (1 = no batching)")
    batch_max_delay_ms: float = Field(
        0.0, ge=0, description="how long a batch waits for more calls (0: takes what queued meanwhile)"
    )
    lease_s: float = Field(
        3.0,
        ge=0,
        description="how long this process's lease on a learner runs: while it holds one it answers from "
        "its cache without a database read, and another predictor must wait this long (at most) to "
        "take the learner over from a process that vanished (0: read the database on every call)",
    )
    worker_threads: int = Field(4, ge=1, description="threads for database reads off the event loop")
    rollout_threads: int = Field(
        1,
        ge=1,
        description="forecasts and curriculum searches rolled out at once (beside the batch thread); more "
        "than the cores left over only interleaves them: at 64 clients on 2 cores, 4 cost 100 ms of CPU "
        "per forecast against 41 ms alone",
    )
    torch_threads: int = Field(0, ge=0, description="intra-op threads (0 = torch default)")
    drain_delay_s: float = Field(
        2.0, ge=0, description="on SIGTERM: serve this long after reporting NOT_SERVING (gateways move away)"
    )
    drain_grace_s: float = Field(10.0, ge=0, description="then: how long in-flight calls may take to finish")
