"""The gateway's settings: one `Settings` class, env prefix `LYCEUM_GATEWAY_`, built once in `__main__`."""

from __future__ import annotations

from pydantic import Field, field_validator

from lyceum_core.settings import (
    DEFAULT_BROKER_URL,
    DEFAULT_DATABASE_URL,
    CommaList,
    ServiceSettings,
    service_config,
)
from lyceum_gateway.membership import source_for


class Settings(ServiceSettings):
    """Everything the gateway reads from its environment."""

    model_config = service_config("gateway")

    host: str = Field("127.0.0.1", description="Interface to listen on")
    port: int = Field(8000, ge=0, le=65535, description="HTTP port")
    predictor_addresses: CommaList = Field(
        default_factory=lambda: ["127.0.0.1:50051"],
        min_length=1,
        description="The predictor replicas: host:port list (comma-separated; `{0..2}` expands to 0,1,2, "
        "e.g. a StatefulSet's pod names), or `dns:///name:port`, or `file:///path` (one per line, re-read)",
    )
    sampler_addresses: CommaList = Field(
        default_factory=lambda: ["127.0.0.1:50061"],
        min_length=1,
        description="The sampler replicas, in the same forms; with more than one they must share one "
        "session store",
    )
    membership_refresh_s: float = Field(
        5.0, gt=0, description="How often a dns:/// or file:// membership is re-resolved"
    )
    health_probe_interval_s: float = Field(
        1.0, gt=0, description="How often each replica must answer a health Check (a hung one does not)"
    )
    health_probe_misses: int = Field(
        3, ge=1, description="Unanswered health Checks in a row before a replica counts as down"
    )
    health_timeout_s: float = Field(2.0, gt=0, description="Deadline of one health Check")
    overflow_factor: float = Field(
        0.0,
        ge=0,
        description="Bounded-load routing: a replica takes at most this times the mean in-flight calls "
        "before its keys overflow to their next replica (0 = off; 1.25-2 are usual)",
    )
    overflow_min_inflight: int = Field(
        8, ge=1, description="A replica is never overloaded below this many in-flight calls"
    )
    api_keys: CommaList = Field(
        default_factory=list,
        description="Accepted API keys (comma-separated); empty turns authentication off",
    )
    request_timeout_s: float = Field(
        30.0, gt=0, description="Deadline of each call to a predictor or sampler (generation excepted)"
    )
    generate_timeout_s: float = Field(300.0, gt=0, description="Deadline of one whole generation")
    database_url: str = Field(
        DEFAULT_DATABASE_URL,
        description="The job table and model registry: sqlite:///path or postgresql://...",
    )
    broker_url: str = Field(
        DEFAULT_BROKER_URL,
        description="Where submitted jobs go: redis://host:port/db, or filesystem:///path when embedded",
    )
    events_poll_s: float = Field(
        0.5, gt=0, le=10, description="How often a job's event stream looks for new progress and metrics"
    )

    @field_validator("predictor_addresses", "sampler_addresses")
    @classmethod
    def _membership(cls, addresses: list[str]) -> list[str]:
        source_for(addresses)  # raises ValueError with the reason
        return addresses

    # Request size caps: the gateway refuses larger requests before they reach a predictor.
    max_tasks_per_request: int = Field(1024, ge=1)
    max_events_per_request: int = Field(4096, ge=1)
    max_forecast_sequences: int = Field(256, ge=1)
    max_forecast_length: int = Field(512, ge=1)
    max_learner_id_len: int = Field(128, ge=1)

    # The token-wheel compatibility mount.
    token_wheel_default_model: str | None = Field(
        None,
        description="The model of a `/token-wheel` session created without `model_name`; unset: the first "
        "model the sampler lists",
    )
    token_wheel_memo_size: int = Field(
        10_000,
        ge=1,
        description="Sessions whose original-API extras (timestamps, last-shown settings) this gateway keeps",
    )
