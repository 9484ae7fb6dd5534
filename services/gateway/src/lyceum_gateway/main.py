"""Builds the gateway app from its settings: the native `/v1` API, the DFM-Server and AI Token Wheel
compatibility mounts, probes and metrics; predictor and sampler channels, the database engine and the broker
producer are opened in the lifespan and closed on shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from typing import Any

from fastapi import FastAPI

from lyceum_db.engine import create_engine
from lyceum_db.models.job import JobState
from lyceum_db.repositories.jobs import JobRepository
from lyceum_db.repositories.registry import ModelRepository
from lyceum_gateway import __version__
from lyceum_gateway.auth import ApiKeyMiddleware
from lyceum_gateway.clients import GrpcPredictor, GrpcSampler
from lyceum_gateway.config import Settings
from lyceum_gateway.errors import (
    install_compat_handlers,
    install_native_handlers,
    install_token_wheel_handlers,
)
from lyceum_gateway.jobs import JobService
from lyceum_gateway.limits import Limits
from lyceum_gateway.membership import source_for
from lyceum_gateway.metrics import HttpMetrics, JobsCollector, MetricsMiddleware
from lyceum_gateway.registry import RegistryService
from lyceum_gateway.routes import (
    API_PREFIX,
    catalog,
    dfm_server,
    generation,
    jobs,
    learners,
    models,
    ops,
    sessions,
    token_wheel,
)
from lyceum_gateway.routing import PredictorRouter, RoutingMetrics, SamplerRouter
from lyceum_gateway.token_wheel import WheelMemo
from lyceum_jobs.kinds import KINDS
from lyceum_jobs.queue import make_celery

COMPAT_PREFIX = "/dfm-server"
TOKEN_WHEEL_PREFIX = "/token-wheel"

TAGS = [
    {"name": "learners", "description": "Learners, their histories, predictions and forecasts."},
    {"name": "catalog", "description": "The task vocabulary and the served model."},
    {
        "name": "jobs",
        "description": "Training jobs: submit (idempotently), list, follow live (Server-Sent Events), cancel "
        "and resume. Workers run them; the job table is the truth.",
    },
    {"name": "models", "description": "The model registry: trained versions and the aliases that name them."},
    {
        "name": "sessions",
        "description": "Token-wheel sessions on a language model: the next-token distribution split at a "
        "probability threshold (with an Other bucket), and tokens appended by id, by text or drawn from "
        "Other, each recorded with the probability it had as shown. Tokens carry their raw bytes (base64).",
    },
    {
        "name": "generation",
        "description": "Stateless generation (greedy, sampled or beam search), as one result or streamed per "
        "token (Server-Sent Events), and the language models the samplers serve.",
    },
    {"name": "operations", "description": "Liveness and readiness probes (never need an API key)."},
]
DESCRIPTION = """Lyceum's public API: per-learner predictions from the Developmental Foundation Model, and
the training jobs and model registry behind it (`lyceum` is its command-line client).

When the deployment configures API keys, every `/v1`, `/dfm-server` and `/token-wheel` call needs
`Authorization: Bearer <key>` or `X-API-Key: <key>`. Errors answer
`{"error": {"code", "message", "field"}}`. The DFM-Server v0.1 API is served unchanged under
`/dfm-server` (its own docs at `/dfm-server/docs`), and the AI Token Wheel backend's API under `/token-wheel`
(docs at `/token-wheel/docs`)."""


def _lifespan(settings: Settings) -> Callable[[FastAPI], Any]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with AsyncExitStack() as stack:
            routing = {
                "metrics": app.state.routing_metrics,
                "refresh_s": settings.membership_refresh_s,
                "overflow_factor": settings.overflow_factor,
                "overflow_min_inflight": settings.overflow_min_inflight,
                "probe_interval_s": settings.health_probe_interval_s,
                "probe_misses": settings.health_probe_misses,
            }
            predictors = PredictorRouter(
                source_for(settings.predictor_addresses),
                partial(
                    GrpcPredictor,
                    timeout_s=settings.request_timeout_s,
                    health_timeout_s=settings.health_timeout_s,
                ),
                **routing,
            )
            samplers = SamplerRouter(
                source_for(settings.sampler_addresses),
                partial(
                    GrpcSampler,
                    timeout_s=settings.request_timeout_s,
                    health_timeout_s=settings.health_timeout_s,
                    generate_timeout_s=settings.generate_timeout_s,
                ),
                **routing,
            )
            await stack.enter_async_context(predictors)
            await stack.enter_async_context(samplers)
            # Engines and Celery apps connect lazily: a database or broker that is down fails the requests
            # that need it (jobs, models), not the start of the whole gateway.
            engine = create_engine(settings.database_url)
            stack.callback(engine.dispose)
            celery = make_celery(settings.broker_url, name="lyceum-gateway")
            stack.callback(celery.close)
            job_repository = JobRepository(engine)
            prometheus = app.state.metrics.registry
            collector = JobsCollector(job_repository.counts, KINDS, [state.value for state in JobState])
            prometheus.register(collector)
            stack.callback(prometheus.unregister, collector)
            # Lifespan state reaches every request, including those of the mounted compatibility app.
            yield {
                "predictors": predictors,
                "samplers": samplers,
                "wheel_memo": WheelMemo(settings.token_wheel_memo_size),
                "token_wheel_default_model": settings.token_wheel_default_model,
                "limits": Limits.from_settings(settings),
                "jobs": JobService(job_repository, celery, poll_s=settings.events_poll_s),
                "registry": RegistryService(ModelRepository(engine)),
            }

    return lifespan


def _dfm_server_app() -> FastAPI:
    compat = FastAPI(
        title="DFM-Server v0.1 (compatibility)",
        version="0.1.0",
        description="The original DFM inference server's API, served by Lyceum's predictors.",
    )
    install_compat_handlers(compat)
    compat.include_router(dfm_server.router)
    return compat


def _token_wheel_app() -> FastAPI:
    compat = FastAPI(
        title="AI Token Wheel API (compatibility)",
        version="1.0.0",
        description="The AI Token Wheel backend's API, served by Lyceum's samplers. An append is scored "
        "under the settings the session's wheel was last shown with (the original used threshold 0.01 and "
        "temperature 1 whatever it had shown); `threshold`/`temperature` query parameters on append-token "
        "override them.",
    )
    install_token_wheel_handlers(compat)
    compat.include_router(token_wheel.router)
    compat.include_router(token_wheel.service_router)
    return compat


def _document_security(app: FastAPI) -> None:
    """Declares the two accepted credentials in the OpenAPI document, for the `/v1` operations."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        schema.setdefault("components", {})["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        }
        for path, operations in schema.get("paths", {}).items():
            if path.startswith(API_PREFIX + "/"):
                for operation in operations.values():
                    operation["security"] = [{"bearer": []}, {"apiKey": []}]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(settings: Settings) -> FastAPI:
    """The gateway app for `settings`; nothing is read from globals or the environment here."""
    app = FastAPI(
        title="Lyceum API",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=_lifespan(settings),
    )
    app.state.metrics = HttpMetrics()
    app.state.routing_metrics = RoutingMetrics(app.state.metrics.registry)
    install_native_handlers(app)
    app.include_router(learners.router)
    app.include_router(catalog.router)
    app.include_router(jobs.router)
    app.include_router(models.router)
    app.include_router(sessions.router)
    app.include_router(generation.router)
    app.include_router(ops.router)
    app.mount(COMPAT_PREFIX, _dfm_server_app())
    app.mount(TOKEN_WHEEL_PREFIX, _token_wheel_app())
    if settings.api_keys:
        _document_security(app)
    # Added last = outermost: metrics see every request, 401s included.
    app.add_middleware(
        ApiKeyMiddleware,
        api_keys=settings.api_keys,
        protected_prefixes=(API_PREFIX, COMPAT_PREFIX, TOKEN_WHEEL_PREFIX),
        compat_prefixes=(COMPAT_PREFIX, TOKEN_WHEEL_PREFIX),
    )
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app
