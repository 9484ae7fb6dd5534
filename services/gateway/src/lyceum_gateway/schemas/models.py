"""Bodies of the native `/v1/models` API (the model registry) and their conversions from registry views."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from lyceum_gateway.registry import AliasMoveResult, ModelView, VersionView


class ModelVersionOut(BaseModel):
    name: str = Field(examples=["dfm-demo"])
    version: int = Field(description="Counts from 1 per model name", examples=[3])
    kind: str = Field(description="What the artifact is (dfm, lm, adapter)", examples=["dfm"])
    base: str | None = Field(
        None,
        description="An adapter's base model version (`owner/name@version`); null for other kinds",
        examples=["default/lm-demo@3"],
    )
    uri: str = Field(
        description="Where the artifact lives", examples=["var/registry/models/dfm-demo/5d0c..."]
    )
    metrics: dict[str, Any] = Field(description="Evaluation metrics at export", examples=[{"auc": 0.78}])
    job_id: str | None = Field(None, description="The job that trained it", examples=["5d0c6a2e8f1b4c7a"])
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    aliases: list[str] = Field(description="Aliases pointing at this version", examples=[["latest", "prod"]])

    @classmethod
    def from_view(cls, view: VersionView) -> ModelVersionOut:
        r = view.record
        return cls(
            name=r.name,
            version=r.version,
            kind=r.kind,
            base=_base(r.metadata) if r.kind == "adapter" else None,
            uri=r.uri,
            metrics=r.metrics,
            job_id=r.job_id,
            metadata=r.metadata,
            created_at=r.created_at,
            aliases=view.aliases,
        )


def _base(metadata: dict[str, Any]) -> str | None:
    base = metadata.get("base")
    return base if isinstance(base, str) else None


class ModelVersionList(BaseModel):
    models: list[ModelVersionOut] = Field(description="Ordered by name, then version")


class ModelOut(BaseModel):
    name: str = Field(examples=["dfm-demo"])
    versions: list[ModelVersionOut] = Field(description="Oldest first")
    aliases: dict[str, int] = Field(
        description="Each alias and the version it points at", examples=[{"latest": 3, "prod": 2}]
    )

    @classmethod
    def from_view(cls, view: ModelView) -> ModelOut:
        return cls(
            name=view.name,
            versions=[ModelVersionOut.from_view(v) for v in view.versions],
            aliases=view.aliases,
        )


class SetAliasRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"version": 2}]})

    version: int = Field(ge=1, strict=True, description="The version the alias should point at")


class AliasOut(BaseModel):
    name: str = Field(examples=["dfm-demo"])
    alias: str = Field(examples=["prod"])
    version: int = Field(description="Where the alias points now", examples=[2])
    previous_version: int | None = Field(
        description="Where it pointed before (null if it is new)", examples=[3]
    )
    model: ModelVersionOut = Field(description="The version the alias points at now")

    @classmethod
    def from_result(cls, result: AliasMoveResult) -> AliasOut:
        return cls(
            name=result.name,
            alias=result.alias,
            version=result.version.record.version,
            previous_version=result.previous_version,
            model=ModelVersionOut.from_view(result.version),
        )
