"""Native read-only catalog routes: the task vocabulary and the served model."""

from __future__ import annotations

from fastapi import APIRouter

from lyceum_gateway.deps import Context, Predictors
from lyceum_gateway.routes import API_PREFIX
from lyceum_gateway.schemas.catalog import ModelInfoResponse, TasksResponse
from lyceum_gateway.schemas.common import error_responses

router = APIRouter(prefix=API_PREFIX, tags=["catalog"], responses=error_responses(401, 503))


@router.get("/tasks", summary="List the known tasks")
async def list_tasks(ctx: Context, predictors: Predictors) -> TasksResponse:
    """The task ids the served model knows, in vocabulary order."""
    tasks = await predictors.any().list_tasks(ctx)
    return TasksResponse(tasks=tasks, count=len(tasks))


@router.get("/model", summary="Describe the served model")
async def get_model(ctx: Context, predictors: Predictors) -> ModelInfoResponse:
    """Architecture, vocabulary size, history limit and runtime of the served model."""
    return ModelInfoResponse.from_domain(await predictors.any().get_model_info(ctx))
