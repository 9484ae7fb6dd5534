"""Bodies of the native `/v1/adapters` API (LoRA adapters in the model registry) and their conversions from
registry views."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from lyceum_core.identity import MODEL_NAME_PATTERN, MODEL_NAME_RULE, MODEL_REF_PATTERN, MODEL_REF_RULE
from lyceum_core.lora import DEFAULT_ALPHA, DEFAULT_DROPOUT, DEFAULT_R, MAX_R
from lyceum_gateway.registry import ModelView, VersionView

AdapterName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, pattern=MODEL_NAME_PATTERN),
    Field(description=MODEL_NAME_RULE, examples=["tutor-lora"]),
]
BaseRef = Annotated[
    str,
    StringConstraints(min_length=3, max_length=193, pattern=MODEL_REF_PATTERN),
    Field(description=f"The base language model (kind lm): {MODEL_REF_RULE}", examples=["lm-demo@latest"]),
]
ModuleName = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.]+$")]


class CreateAdapterRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "tutor-lora", "base": "lm-demo@latest", "r": 8}]},
    )

    name: AdapterName
    base: BaseRef
    r: int = Field(DEFAULT_R, ge=1, le=MAX_R, strict=True, description="The LoRA's rank")
    alpha: int = Field(DEFAULT_ALPHA, ge=1, strict=True, description="LoRA's alpha (scale = alpha / r)")
    dropout: float = Field(DEFAULT_DROPOUT, ge=0.0, lt=1.0, description="Dropout on the LoRA's input")
    target_modules: list[ModuleName] | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="The linear layers to adapt, matched as peft does (a layer's qualified name equals it or "
        "ends with `.` + it); default: by the base's architecture (required where it has none)",
        examples=[["q_proj", "kv_proj"]],
    )
    seed: int = Field(0, ge=0, le=2**63 - 1, strict=True, description="Seeds the A matrices' initialisation")


class LoraOut(BaseModel):
    """An adapter's LoRA as its registration records it (a field it does not record is null)."""

    r: int | None = Field(None, examples=[8])
    alpha: float | None = Field(None, examples=[16])
    dropout: float | None = Field(None, examples=[0.05])
    target_modules: list[str] | str | None = Field(
        None,
        description="Module names, or one regular expression (imported adapters may use one)",
        examples=[["q_proj", "kv_proj", "o_proj", "up", "down"]],
    )


class AdapterVersionOut(BaseModel):
    name: str = Field(examples=["tutor-lora"])
    version: int = Field(description="Counts from 1 per adapter name", examples=[2])
    base: str | None = Field(
        description="The base model version it adapts (`owner/name@version`)", examples=["default/lm-demo@3"]
    )
    lora: LoraOut | None
    source: str | None = Field(
        description="How it came to be: `empty` (created), `import` (uploaded), `sft` (trained)",
        examples=["empty"],
    )
    uri: str = Field(description="Where its PEFT files live")
    metrics: dict[str, Any] = Field(default_factory=dict)
    job_id: str | None = Field(None, description="The job that trained it")
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    aliases: list[str] = Field(description="Aliases pointing at this version", examples=[["latest"]])

    @classmethod
    def from_view(cls, view: VersionView) -> AdapterVersionOut:
        r = view.record
        lora = r.metadata.get("lora")
        return cls(
            name=r.name,
            version=r.version,
            base=r.metadata.get("base"),
            lora=LoraOut.model_validate(lora) if isinstance(lora, dict) else None,
            source=r.metadata.get("source"),
            uri=r.uri,
            metrics=r.metrics,
            job_id=r.job_id,
            metadata=r.metadata,
            created_at=r.created_at,
            aliases=view.aliases,
        )


class AdapterOut(BaseModel):
    name: str = Field(examples=["tutor-lora"])
    versions: list[AdapterVersionOut] = Field(description="Oldest first")
    aliases: dict[str, int] = Field(
        description="Each alias and the version it points at", examples=[{"latest": 2, "prod": 1}]
    )

    @classmethod
    def from_view(cls, view: ModelView) -> AdapterOut:
        return cls(
            name=view.name,
            versions=[AdapterVersionOut.from_view(v) for v in view.versions],
            aliases=view.aliases,
        )


class AdapterList(BaseModel):
    adapters: list[AdapterOut] = Field(description="Ordered by name")
