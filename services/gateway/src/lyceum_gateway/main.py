"""Builds the gateway app from its settings: the native `/v1` API, the DFM-Server, AI Token Wheel and
OpenAI-compatible mounts, probes and metrics; predictor and sampler channels, the database engine and the
broker producer are opened in the lifespan and closed on shutdown."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from typing import Any

from anyio import to_thread
from fastapi import FastAPI
from pydantic import BaseModel

from lyceum_core.storage import ArtifactStore
from lyceum_db.engine import create_engine
from lyceum_db.models.job import JobState
from lyceum_db.repositories import ApiKeyRepository, LearnerRepository, TenantRepository
from lyceum_db.repositories.jobs import JobRepository
from lyceum_db.repositories.registry import ModelRepository
from lyceum_fleet.membership import source_for
from lyceum_fleet.predictor import GrpcPredictor
from lyceum_fleet.routed import PredictorRouter, SamplerRouter
from lyceum_fleet.routing import RoutingMetrics
from lyceum_fleet.sampler import GrpcSampler
from lyceum_gateway import __version__
from lyceum_gateway.auth import AdminKeys, EdgeMiddleware, KeyStore, MountPolicy
from lyceum_gateway.claas import ClaasOptions
from lyceum_gateway.config import Settings
from lyceum_gateway.errors import (
    ErrorShape,
    install_compat_handlers,
    install_native_handlers,
    install_openai_handlers,
    install_token_wheel_handlers,
)
from lyceum_gateway.feedback import FeedbackService
from lyceum_gateway.jobs import JobService
from lyceum_gateway.limits import BodyLimitMiddleware, Limits
from lyceum_gateway.metrics import HttpMetrics, JobsCollector
from lyceum_gateway.quotas import LocalBuckets, QuotaBook, Quotas, RedisBuckets, TenantQuotas, TokenBuckets
from lyceum_gateway.registry import RegistryService
from lyceum_gateway.routes import (
    API_PREFIX,
    adapters,
    admin,
    catalog,
    claas,
    datasets,
    dfm_server,
    feedback,
    gating,
    generation,
    jobs,
    learners,
    models,
    openai,
    ops,
    predictions,
    preferences,
    sessions,
    token_wheel,
    ui,
)
from lyceum_gateway.schemas.common import ErrorResponse
from lyceum_gateway.schemas.compat import CompatErrorResponse
from lyceum_gateway.schemas.openai_responses import ChatCompletionChunk, OpenAIErrorResponse
from lyceum_jobs.kinds import KINDS
from lyceum_jobs.queue import make_celery

COMPAT_PREFIX = "/dfm-server"
TOKEN_WHEEL_PREFIX = "/token-wheel"
OPENAI_PREFIX = "/openai/v1"
CLAAS_PREFIX = "/claas"
ADMIN_PREFIX = admin.PREFIX

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
        "name": "adapters",
        "description": "LoRA adapters of language models in the registry: created empty, imported and "
        "exported in the PEFT layout (a .tar.gz or .zip of adapter_config.json + adapter_model.safetensors). "
        "Their aliases move and roll back on the models routes.",
    },
    {
        "name": "feedback",
        "description": "Feedback in words on recorded completions, distilled into your adapters by `sdpo` "
        "jobs (self-distillation; one job per adapter at a time, pending items coalesced); each item moves "
        "pending -> training -> applied | failed and records the adapter version it was trained into.",
    },
    {
        "name": "datasets",
        "description": "Uploaded datasets: checked row by row in their format, optionally cleaned "
        "(duplicates, PII, lengths), stored and described (rows, tokens, duplicate rate, lengths); job "
        'configs name them as `{"id": "ds-..."}` where they take a path.',
    },
    {
        "name": "sessions",
        "description": "Token-wheel sessions on a language model: the next-token distribution split at a "
        "probability threshold (with an Other bucket), and tokens appended by id, by text or drawn from "
        "Other, each recorded with the probability it had as shown. Tokens carry their raw bytes (base64).",
    },
    {
        "name": "generation",
        "description": "Stateless generation (greedy, sampled or beam search; from a prompt or chat "
        "messages; with a base model or an adapter), as one result or streamed per token (Server-Sent "
        "Events), gated by a modulation (fixed, random, or a learned gating policy) with its trajectory; "
        "the log-probabilities of a given completion (score); the language models the samplers serve.",
    },
    {"name": "operations", "description": "Liveness and readiness probes (never need an API key)."},
    {
        "name": "admin",
        "description": "Tenants and their API keys (an admin key: `LYCEUM_GATEWAY_ADMIN_KEYS`). A new key's "
        "plaintext is returned once, by the call that creates it.",
    },
]
DESCRIPTION = """Lyceum's public API: per-learner predictions from the Developmental Foundation Model, and
the training jobs and model registry behind it (`lyceum` is its command-line client).

Everything belongs to a tenant. When the deployment has API keys, every `/v1`, `/dfm-server` and
`/token-wheel` call needs `Authorization: Bearer <key>` or `X-API-Key: <key>`; the key names the tenant (and
may name a subject; else `X-Lyceum-Subject` does). Another tenant's learners, sessions, jobs and models answer
404, like missing ones. Each tenant has quotas (429 naming the quota; `Retry-After` for the request rate).
Every response carries `X-Request-Id` (yours, if plain, or a new one). Errors answer
`{"error": {"code", "message", "field", "request_id"}}`. The DFM-Server v0.1 API is served unchanged under
`/dfm-server` (its own docs at `/dfm-server/docs`), the AI Token Wheel backend's API under `/token-wheel`
(docs at `/token-wheel/docs`), and an OpenAI-compatible API under `/openai/v1` (chat and legacy completions,
models; docs at `/openai/v1/docs`): point any OpenAI client's base URL there, with your key as its API key.
CLaaS's (Continual Learning as a Service) API is served under `/claas` (docs at `/claas/docs`) for its clients
and its OpenClaw feedback plugin."""


def _lifespan(settings: Settings, clock: Callable[[], float]) -> Callable[[FastAPI], Any]:
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
            tenants, keys = TenantRepository(engine), ApiKeyRepository(engine)
            await to_thread.run_sync(partial(_bootstrap, settings, tenants, keys))
            buckets: TokenBuckets = (
                RedisBuckets(settings.quota_redis_url)
                if settings.quota_redis_url
                else LocalBuckets(clock=clock)
            )
            stack.push_async_callback(buckets.aclose)
            quota_book = QuotaBook(
                _default_quotas(settings),
                partial(_overrides, tenants),
                ttl_s=settings.quota_cache_s,
                clock=clock,
            )
            quotas = Quotas(
                quota_book,
                buckets,
                count_learners=LearnerRepository(engine).count,
                count_jobs=job_repository.active_count,
                on_refusal=app.state.metrics.refused,
            )
            prometheus = app.state.metrics.registry
            collector = JobsCollector(job_repository.counts, KINDS, [state.value for state in JobState])
            prometheus.register(collector)
            stack.callback(prometheus.unregister, collector)
            key_store = KeyStore(
                keys,
                configured=bool(settings.api_keys),
                admin_keys=settings.admin_keys,
                cache_s=settings.auth_cache_s,
                clock=clock,
            )
            # Lifespan state reaches every request, including those of the mounted compatibility app.
            yield {
                "predictors": predictors,
                "samplers": samplers,
                "token_wheel_default_model": settings.token_wheel_default_model,
                "limits": Limits.from_settings(settings),
                "auth": key_store,
                "quotas": quotas,
                "tenants": tenants,
                "api_keys": AdminKeys(engine, key_store),
                "token_wheel_model_aliases": settings.model_aliases(),
                "record_completions": settings.record_completions,
                "jobs": JobService(job_repository, celery, poll_s=settings.events_poll_s),
                "registry": RegistryService(ModelRepository(engine)),
                "store": ArtifactStore(settings.registry_url),
                "engine": engine,
                "feedback": FeedbackService.create(engine, celery, settings.feedback_policy()),
            }

    return lifespan


def _bootstrap(settings: Settings, tenants: TenantRepository, keys: ApiKeyRepository) -> None:
    """Creates the tenants and keys the settings name (idempotent; every replica may do it)."""
    for tenant, key in settings.static_keys():
        tenants.ensure(tenant)
        keys.ensure_static(tenant, key)
    if settings.anonymous_tenant_token_wheel:
        tenants.ensure(settings.anonymous_tenant_token_wheel)


def _default_quotas(settings: Settings) -> TenantQuotas:
    return TenantQuotas(
        rps=settings.quota_rps,
        burst=settings.quota_burst,
        max_learners=settings.quota_max_learners,
        max_sessions=settings.quota_max_sessions,
        max_jobs=settings.quota_max_jobs,
    )


def _overrides(tenants: TenantRepository, tenant: str) -> dict[str, Any] | None:
    record = tenants.get(tenant)
    return record.quotas if record is not None else None


def _dfm_server_app() -> FastAPI:
    compat = FastAPI(
        title="DFM-Server v0.1 (compatibility)",
        version="0.1.0",
        description="The original DFM inference server's API, served by Lyceum's predictors.",
    )
    install_compat_handlers(compat)
    compat.include_router(dfm_server.router)
    _document_security(compat, prefix="/", error=CompatErrorResponse)
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
    _document_security(compat, prefix="/", error=CompatErrorResponse)
    return compat


def _openai_app() -> FastAPI:
    compat = FastAPI(
        title="OpenAI-compatible API",
        version="1.0.0",
        description="OpenAI's chat completions, legacy completions and models endpoints, served by Lyceum's "
        "samplers: set an OpenAI client's base URL to `http://<host>/openai/v1` and its API key to your "
        "Lyceum key. `model` is a base model the samplers serve or an adapter of your tenant. Extensions: "
        "`top_k`, `repetition_penalty` and `gate_signal` in requests; `completion_id` in each choice (the "
        "id a completion is recorded under; a response's `id` is its first choice's). Errors answer "
        'OpenAI\'s `{"error": {"message", "type", "param", "code"}}`, a malformed request 400.',
    )
    install_openai_handlers(compat)
    compat.include_router(openai.router)
    _document_security(
        compat,
        prefix="/",
        error=OpenAIErrorResponse,
        malformed_is_400=True,
        streamed=(ChatCompletionChunk,),
    )
    return compat


def _claas_app(options: ClaasOptions) -> FastAPI:
    compat = FastAPI(
        title="CLaaS API (compatibility)",
        version="0.1.0",
        description="CLaaS's (Continual Learning as a Service) API, served by Lyceum: point CLaaS's clients "
        "and its OpenClaw feedback plugin at `http://<host>/claas`. A LoRA id is one of your adapters "
        "(`user/coder-v1` is the adapter `user-coder-v1`). `feedback` stores each item durably on the "
        "recorded completion its response names, distils them in one SDPO job and answers when it ends; "
        "serving never pauses, and the new version is served only past its quality gate. Errors answer "
        "CLaaS's `{\"detail\": ...}` (a malformed request FastAPI's 422 list).",
    )
    compat.state.claas = options
    # CLaaS is a plain FastAPI app, like the token wheel's original backend: the same error bodies.
    install_token_wheel_handlers(compat)
    compat.include_router(claas.router)
    _document_security(compat, prefix="/", error=CompatErrorResponse)
    return compat


# Answers any operation of `/v1` or of a compatibility mount may give whatever its own code does: the
# middleware's (key, body size, rate quota) and, for operations with a body, an unparsable one. Documented
# once per document (`_document_security`), not on every route; each in its API's error shape.
_EDGE_ERRORS = {
    "401": "Missing, unknown or revoked API key",
    "429": "A quota of the tenant is exhausted (rate: with Retry-After)",
}
_BODY_ERRORS = {"400": "The body is not valid JSON", "413": "The body is larger than the limit"}


def _error_response(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def _add_component(components: dict[str, Any], model: type[BaseModel]) -> str:
    """Puts `model`'s JSON schema (and those it refers to) among the document's schemas; returns its name."""
    schemas = components.setdefault("schemas", {})
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        schemas.setdefault(name, definition)
    schemas.setdefault(model.__name__, schema)
    return model.__name__


def _document_security(
    app: FastAPI,
    *,
    prefix: str,
    error: type[BaseModel],
    malformed_is_400: bool = False,
    streamed: tuple[type[BaseModel], ...] = (),
) -> None:
    """Declares the two accepted credentials, and the errors every operation under `prefix` may answer at the
    edge (with `error`'s body), in `app`'s OpenAPI document. With `malformed_is_400`, a malformed request is
    documented as the 400 it answers (`error`'s body) instead of FastAPI's 422. `streamed` adds the models of
    stream events' bodies as components, so that generated clients type them too."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        components = schema.setdefault("components", {})
        components["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        }
        name = _add_component(components, error)
        for model in streamed:  # the bodies of stream events, which no operation's schema names
            _add_component(components, model)
        for path, operations in schema.get("paths", {}).items():
            if path.startswith(prefix):
                for operation in operations.values():
                    operation["security"] = [{"bearer": []}, {"apiKey": []}]
                    errors = {**_EDGE_ERRORS, **(_BODY_ERRORS if "requestBody" in operation else {})}
                    responses = operation.setdefault("responses", {})
                    if malformed_is_400 and responses.pop("422", None) is not None:
                        responses.setdefault("400", _error_response("Invalid parameters", name))
                    for status, description in errors.items():
                        responses.setdefault(status, _error_response(description, name))
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(settings: Settings, *, clock: Callable[[], float] = time.monotonic) -> FastAPI:
    """The gateway app for `settings`; nothing is read from globals or the environment here. `clock` (seconds,
    monotonic) times the key cache, the quota cache and the in-process rate buckets."""
    app = FastAPI(
        title="Lyceum API",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=_lifespan(settings, clock),
    )
    app.state.metrics = HttpMetrics()
    app.state.routing_metrics = RoutingMetrics(app.state.metrics.registry)
    install_native_handlers(app)
    app.include_router(learners.router)
    app.include_router(predictions.router)
    app.include_router(catalog.router)
    app.include_router(jobs.router)
    app.include_router(datasets.router)
    app.include_router(models.router)
    app.include_router(adapters.router)
    app.include_router(feedback.router)
    app.include_router(preferences.router)
    app.include_router(sessions.router)
    app.include_router(generation.router)
    app.include_router(gating.router)
    app.include_router(ops.router)
    app.include_router(admin.router)
    app.mount(COMPAT_PREFIX, _dfm_server_app())
    app.mount(TOKEN_WHEEL_PREFIX, _token_wheel_app())
    app.mount(OPENAI_PREFIX, _openai_app())
    claas = ClaasOptions(
        base_model=settings.claas_base_model,
        lock_timeout_s=settings.claas_lock_timeout_s,
        distill_timeout_s=settings.claas_distill_timeout_s,
        poll_s=settings.events_poll_s,
        clock=clock,
    )
    app.mount(CLAAS_PREFIX, _claas_app(claas))
    ui.mount(app, settings.ui_dir)
    _document_security(app, prefix=API_PREFIX + "/", error=ErrorResponse)
    _install_middleware(app, settings)
    return app


def _install_middleware(app: FastAPI, settings: Settings) -> None:
    """Two pure ASGI layers, from the outside in: the edge (metrics: every request counted, refusals
    included; the request id; CORS per mount, preflights answered before authentication; authentication and
    the rate quota), then the body limit."""
    shapes = {
        COMPAT_PREFIX: ErrorShape.COMPAT,
        TOKEN_WHEEL_PREFIX: ErrorShape.COMPAT,
        OPENAI_PREFIX: ErrorShape.OPENAI,
        CLAAS_PREFIX: ErrorShape.COMPAT,
    }

    def shape(path: str) -> ErrorShape:
        prefix = next((p for p in shapes if path == p or path.startswith(p + "/")), None)
        return shapes[prefix] if prefix is not None else ErrorShape.NATIVE

    uploads = {
        f"{API_PREFIX}/datasets": settings.dataset_max_bytes,
        f"{API_PREFIX}/adapters:import": settings.adapter_max_bytes,
    }
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, shape=shape, routes=uploads)
    app.add_middleware(
        EdgeMiddleware,
        metrics=app.state.metrics,
        cors=[
            ("", settings.cors_origins),
            (COMPAT_PREFIX, settings.dfm_server_cors_origins),
            (TOKEN_WHEEL_PREFIX, settings.token_wheel_cors_origins),
        ],
        mounts=[
            MountPolicy(API_PREFIX),
            MountPolicy(COMPAT_PREFIX, shape=ErrorShape.COMPAT),
            MountPolicy(
                TOKEN_WHEEL_PREFIX,
                shape=ErrorShape.COMPAT,
                anonymous_tenant=settings.anonymous_tenant_token_wheel,
            ),
            MountPolicy(OPENAI_PREFIX, shape=ErrorShape.OPENAI),
            MountPolicy(CLAAS_PREFIX, shape=ErrorShape.COMPAT),
        ],
        admin_prefix=ADMIN_PREFIX,
        # The outer bound of the request; each gRPC call keeps its own, shorter deadline within it.
        timeout_s=max(settings.request_timeout_s, settings.generate_timeout_s),
    )
