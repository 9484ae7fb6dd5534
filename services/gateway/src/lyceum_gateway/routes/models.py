"""Native `/v1/models` routes over the model registry: list versions, read a model or one version, move an
alias and roll it back. A tenant sees its own models and the platform's published ones, and moves aliases of
its own only. Plain `def` routes: the registry repository is synchronous (FastAPI's threadpool)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from lyceum_gateway.deps import Context, Registry
from lyceum_gateway.routes import API_PREFIX
from lyceum_gateway.schemas.common import error_responses
from lyceum_gateway.schemas.models import (
    AliasOut,
    ModelOut,
    ModelVersionList,
    ModelVersionOut,
    SetAliasRequest,
)

router = APIRouter(prefix=f"{API_PREFIX}/models", tags=["models"], responses=error_responses(401, 422))

ModelName = Annotated[
    str, Path(min_length=1, max_length=128, description="The model's name", examples=["dfm"])
]
AliasName = Annotated[
    str, Path(min_length=1, max_length=64, description="An alias (not all digits)", examples=["prod"])
]


@router.get("", summary="List model versions")
def list_models(
    registry: Registry,
    ctx: Context,
    name: Annotated[str | None, Query(min_length=1, max_length=128, description="Only this model")] = None,
) -> ModelVersionList:
    """Every registered version, ordered by name and version, each with the aliases that point at it."""
    versions = registry.versions(ctx.tenant, name)
    return ModelVersionList(models=[ModelVersionOut.from_view(v) for v in versions])


@router.get("/{name}", summary="Get a model", responses=error_responses(404))
def get_model(name: ModelName, registry: Registry, ctx: Context) -> ModelOut:
    """The model's versions, oldest first, and its aliases."""
    return ModelOut.from_view(registry.model(ctx.tenant, name))


@router.get("/{name}/versions/{version}", summary="Get a model version", responses=error_responses(404))
def get_model_version(
    name: ModelName,
    version: Annotated[
        str, Path(min_length=1, max_length=64, description="A version number, or an alias", examples=["3"])
    ],
    registry: Registry,
    ctx: Context,
) -> ModelVersionOut:
    """One version, named by its number (`3`) or by an alias pointing at it (`prod`)."""
    return ModelVersionOut.from_view(registry.version(ctx.tenant, name, version))


@router.put("/{name}/aliases/{alias}", summary="Move an alias", responses=error_responses(400, 404, 409))
def set_alias(
    name: ModelName, alias: AliasName, body: SetAliasRequest, registry: Registry, ctx: Context
) -> AliasOut:
    """Points the alias at `version` (404 if there is no such version), creating the alias if needed; the
    move is recorded, so it can be rolled back."""
    return AliasOut.from_result(registry.set_alias(ctx.tenant, name, alias, body.version))


@router.post(
    "/{name}/aliases/{alias}/rollback", summary="Roll an alias back", responses=error_responses(404, 409)
)
def rollback_alias(name: ModelName, alias: AliasName, registry: Registry, ctx: Context) -> AliasOut:
    """Moves the alias back to the version it pointed at before its last move; repeated rollbacks walk
    further back. 409 when it has no earlier version."""
    return AliasOut.from_result(registry.rollback(ctx.tenant, name, alias))
