"""The gateway's settings: one `Settings` class, env prefix `LYCEUM_GATEWAY_`, built once in `__main__`."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from lyceum_core.settings import ServiceSettings, service_config


def _split_list(value: Any) -> Any:
    """Accepts a list, a JSON list or a comma-separated string (the form env vars usually take)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        return json.loads(text)
    return [item.strip() for item in text.split(",") if item.strip()]


class Settings(ServiceSettings):
    """Everything the gateway reads from its environment."""

    model_config = service_config("gateway")

    host: str = Field("127.0.0.1", description="Interface to listen on")
    port: int = Field(8000, ge=0, le=65535, description="HTTP port")
    predictor_addresses: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["127.0.0.1:50051"],
        min_length=1,
        description="host:port of each predictor replica (comma-separated in the environment)",
    )
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Accepted API keys (comma-separated); empty turns authentication off",
    )
    request_timeout_s: float = Field(30.0, gt=0, description="Deadline of each call to a predictor")

    # Request size caps: the gateway refuses larger requests before they reach a predictor.
    max_tasks_per_request: int = Field(1024, ge=1)
    max_events_per_request: int = Field(4096, ge=1)
    max_forecast_sequences: int = Field(256, ge=1)
    max_forecast_length: int = Field(512, ge=1)
    max_learner_id_len: int = Field(128, ge=1)

    @field_validator("predictor_addresses", "api_keys", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return _split_list(value)
