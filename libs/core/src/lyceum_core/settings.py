"""Settings conventions shared by every service: each service defines ONE `Settings(ServiceSettings)` class
with its own env prefix (`LYCEUM_<SERVICE>_`), builds it once in its entrypoint and passes it down."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# The embedded default keeps all state under one folder of the working directory.
DEFAULT_STATE_DIR = Path("var")
DEFAULT_DATABASE_URL = f"sqlite:///{DEFAULT_STATE_DIR / 'lyceum.db'}"
DEFAULT_BROKER_URL = f"filesystem://{DEFAULT_STATE_DIR / 'broker'}"  # redis://... in deployments
DEFAULT_REGISTRY_URL = str(DEFAULT_STATE_DIR / "registry")  # model artifacts; s3://... in deployments


class ServiceSettings(BaseSettings):
    """Fields every service has. Subclasses set `model_config = service_config("NAME")`."""

    model_config = SettingsConfigDict(extra="ignore")

    log_level: str = Field("INFO", description="Python logging level")
    log_json: bool = Field(False, description="Emit one JSON object per log line")


def service_config(service: str) -> SettingsConfigDict:
    """The pydantic-settings config for a service: env prefix LYCEUM_<SERVICE>_, optional .env file."""
    return SettingsConfigDict(env_prefix=f"LYCEUM_{service.upper()}_", env_file=".env", extra="ignore")


def split_list(value: Any) -> Any:
    """Accepts a list, a JSON list or a comma-separated string (the form env vars usually take)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        return json.loads(text)
    return [item.strip() for item in text.split(",") if item.strip()]


# A list-of-strings setting that reads `a,b,c` (or a JSON list) from the environment.
CommaList = Annotated[list[str], NoDecode, BeforeValidator(split_list)]
