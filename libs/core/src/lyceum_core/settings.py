"""Settings conventions shared by every service: each service defines ONE `Settings(ServiceSettings)` class
with its own env prefix (`LYCEUM_<SERVICE>_`), builds it once in its entrypoint and passes it down."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# The embedded default keeps all state under one folder of the working directory.
DEFAULT_STATE_DIR = Path("var")
DEFAULT_DATABASE_URL = f"sqlite:///{DEFAULT_STATE_DIR / 'lyceum.db'}"


class ServiceSettings(BaseSettings):
    """Fields every service has. Subclasses set `model_config = service_config("NAME")`."""

    model_config = SettingsConfigDict(extra="ignore")

    log_level: str = Field("INFO", description="Python logging level")
    log_json: bool = Field(False, description="Emit one JSON object per log line")


def service_config(service: str) -> SettingsConfigDict:
    """The pydantic-settings config for a service: env prefix LYCEUM_<SERVICE>_, optional .env file."""
    return SettingsConfigDict(env_prefix=f"LYCEUM_{service.upper()}_", env_file=".env", extra="ignore")
