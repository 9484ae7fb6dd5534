"""The sampler's settings (env prefix LYCEUM_SAMPLER_), built once in the entrypoint."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from lyceum_core.settings import (
    DEFAULT_DATABASE_URL,
    DEFAULT_REGISTRY_URL,
    DEFAULT_STATE_DIR,
    CommaList,
    ServiceSettings,
    service_config,
)


class Settings(ServiceSettings):
    model_config = service_config("sampler")

    host: str = "127.0.0.1"
    port: int = Field(50061, ge=0, le=65535, description="gRPC port (0 = pick a free one)")
    metrics_port: int = Field(9301, ge=0, le=65535, description="Prometheus port (0 = off)")
    models: CommaList = Field(
        default_factory=list,
        description="models served: `name=/local/dir` (Lyceum LM or HF causal-LM) or registry `name@alias`",
    )
    database_url: str = Field(DEFAULT_DATABASE_URL, description="model registry (for `name@alias` models)")
    registry_url: str = Field(DEFAULT_REGISTRY_URL, description="artifact store root (path or fsspec URL)")
    model_cache_dir: Path = Field(DEFAULT_STATE_DIR / "sampler" / "models", description="downloaded models")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    dtype: str = Field("auto", description="auto (bf16 on CUDA, fp32 on CPU) | float32 | bfloat16 | float16")
    session_store_url: str = Field("memory://", description="memory:// (one process) or redis://host:port/db")
    session_key_prefix: str = Field(
        "lyceum:sampler:session:",
        min_length=1,
        description="Redis keys: this + `<tenant>:<id>` per session, this + `<tenant>` for its live set",
    )
    session_ttl_s: float = Field(3600.0, gt=0, description="idle lifetime of a session (refreshed on access)")
    cache_budget_bytes: int | None = Field(
        None,
        ge=0,
        description="KV memory for resident sessions (LRU beyond); default: cache_memory_fraction of the "
        "memory free once the model is loaded",
    )
    cache_memory_fraction: float | None = Field(
        None, gt=0, le=1, description="default budget's share of free memory (0.8 on CUDA, 0.25 on CPU)"
    )
    model_budget_bytes: int = Field(8 << 30, ge=0, description="memory for loaded models (LRU beyond)")
    max_prompt_tokens: int | None = Field(None, ge=1, description="default: the model's context")
    max_new_tokens: int = Field(4096, ge=1, description="cap on Generate's max_new_tokens")
    default_threshold: float = Field(0.01, ge=0, le=1, description="distribution threshold when unset")
    default_other_top_k: int = Field(10, ge=0, le=1000, description="Other-bucket tokens shown when unset")
    engine_max_rows: int = Field(32, ge=1, le=1024, description="rows (streams) decoding together per model")
    engine_step_tokens: int = Field(
        512, ge=1, description="tokens per forward pass: decode tokens first, then chunks of new prompts"
    )
    stream_buffer: int = Field(
        64, ge=1, description="tokens a stream may hold undelivered before its row waits (slow clients)"
    )
    serve_adapters: bool = Field(
        True, description="resolve registry adapters named in requests (needs the database)"
    )
    adapter_budget_bytes: int = Field(
        512 << 20, ge=0, description="memory for loaded LoRA adapters (LRU of unused ones beyond)"
    )
    serve_policies: bool = Field(
        True, description="resolve registry gating policies named in requests' `gating` (needs the database)"
    )
    policy_cache_size: int = Field(64, ge=1, description="gating policy versions kept loaded (LRU beyond)")
    completion_retention_days: float = Field(
        30.0, gt=0, description="recorded completions older than this are deleted (checked hourly)"
    )
    worker_threads: int = Field(4, ge=1, description="threads running model work off the event loop")
    torch_threads: int = Field(0, ge=0, description="intra-op threads (0 = torch default)")
    drain_delay_s: float = Field(
        2.0, ge=0, description="on SIGTERM: serve this long after reporting NOT_SERVING (gateways move away)"
    )
    drain_grace_s: float = Field(10.0, ge=0, description="then: how long in-flight calls may take to finish")
