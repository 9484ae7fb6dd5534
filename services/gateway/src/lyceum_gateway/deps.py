"""FastAPI dependencies: what a route needs from the app's lifespan state (predictors, samplers, limits, jobs,
registry, the token-wheel and OpenAI mounts' settings).

All of them are `async def`: FastAPI runs a plain `def` dependency in its thread pool, a thread hand-off per
dependency per request (most of the gateway's own CPU per call, measured), for what is a dictionary read."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request
from sqlalchemy import Engine

from lyceum_core.context import RequestContext
from lyceum_core.storage import ArtifactStore
from lyceum_fleet.routed import PredictorRouter, SamplerRouter
from lyceum_gateway.jobs import JobService
from lyceum_gateway.limits import Limits
from lyceum_gateway.quotas import Quotas
from lyceum_gateway.registry import RegistryService
from lyceum_gateway.schemas.common import LEARNER_ID_PATTERN, LEARNER_ID_RULE


async def request_context(request: Request) -> RequestContext:
    """The request's context, built once by the gateway's auth middleware (`scope["state"]["context"]`) for
    every request; there is no fallback tenant, so a request that bypassed authentication cannot act."""
    return request.state.context


async def get_predictors(request: Request) -> PredictorRouter:
    return request.state.predictors


async def get_samplers(request: Request) -> SamplerRouter:
    return request.state.samplers


async def get_limits(request: Request) -> Limits:
    return request.state.limits


async def get_jobs(request: Request) -> JobService:
    return request.state.jobs


async def get_registry(request: Request) -> RegistryService:
    return request.state.registry


async def get_store(request: Request) -> ArtifactStore:
    """The artifact store shared with the trainers and samplers (datasets, adapters)."""
    return request.state.store


async def get_engine(request: Request) -> Engine:
    """The database engine, for routes whose repositories have no service of their own."""
    return request.state.engine


async def get_quotas(request: Request) -> Quotas:
    return request.state.quotas


async def get_record_completions(request: Request) -> bool:
    """Whether OpenAI-compatible completions are recorded unless a request says otherwise (`store`)."""
    return request.state.record_completions


async def get_model_aliases(request: Request) -> dict[str, str]:
    """The token-wheel mount's model-name aliases (`gpt2` -> `lm-demo@production`)."""
    return request.state.token_wheel_model_aliases


async def learner_id_path(
    request: Request,
    learner_id: Annotated[str, Path(min_length=1, pattern=LEARNER_ID_PATTERN, description=LEARNER_ID_RULE)],
) -> str:
    """The `{learner_id}` path parameter, checked against the pattern and the configured length cap."""
    return (await get_limits(request)).learner_id(learner_id)


Context = Annotated[RequestContext, Depends(request_context)]
Predictors = Annotated[PredictorRouter, Depends(get_predictors)]
Samplers = Annotated[SamplerRouter, Depends(get_samplers)]
RequestLimits = Annotated[Limits, Depends(get_limits)]
LearnerIdPath = Annotated[str, Depends(learner_id_path)]
Jobs = Annotated[JobService, Depends(get_jobs)]
Registry = Annotated[RegistryService, Depends(get_registry)]
QuotaChecks = Annotated[Quotas, Depends(get_quotas)]
Store = Annotated[ArtifactStore, Depends(get_store)]
DatabaseEngine = Annotated[Engine, Depends(get_engine)]
ModelAliases = Annotated[dict[str, str], Depends(get_model_aliases)]
RecordCompletions = Annotated[bool, Depends(get_record_completions)]
