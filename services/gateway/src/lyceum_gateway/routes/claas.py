"""The CLaaS compatibility API, mounted at `/claas` so that CLaaS's clients and its OpenClaw feedback plugin
switch by changing their base URL to `http://<host>/claas`: chat and legacy completions (recorded, the model
being a LoRA id) and models; `feedback` (CLaaS's batch: stored, distilled now, answered when its job ends);
LoRAs (`lora/init`, list, delete, `lora/export`); `score` and `health`. Thin: `lyceum_gateway.claas` does the
work; errors answer CLaaS's `{"detail": ...}` (installed once for the mount, in `main`)."""

from __future__ import annotations

import shutil
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import FileResponse, StreamingResponse
from starlette.background import BackgroundTask

from lyceum_gateway import claas
from lyceum_gateway.claas import ClaasOptions, Distillation, Loras
from lyceum_gateway.deps import Context, DatabaseEngine, Jobs, Registry, Samplers, Store
from lyceum_gateway.errors import request_id_of
from lyceum_gateway.feedback import FeedbackService
from lyceum_gateway.routes import openai
from lyceum_gateway.schemas.claas import (
    MAX_LORA_ID_LEN,
    ChatRequest,
    FeedbackBatchRequest,
    FeedbackResponse,
    HealthResponse,
    LoraDeleteResponse,
    LoraInitRequest,
    LoraInitResponse,
    LoraListResponse,
    ScoreRequest,
    ScoreResponse,
    TextRequest,
)
from lyceum_gateway.schemas.compat import CompatValidationErrorResponse, compat_error_responses
from lyceum_gateway.schemas.openai_responses import ChatCompletion, ModelList, TextCompletion

PREFIX = "/v1"
# A malformed request is FastAPI's default 422 (CLaaS is a plain FastAPI app); any call may fail inside (500).
router = APIRouter(
    prefix=PREFIX,
    responses={
        **compat_error_responses(422, model=CompatValidationErrorResponse),
        **compat_error_responses(500),
    },
)

LoraId = Annotated[str, Query(min_length=1, max_length=MAX_LORA_ID_LEN, description="The LoRA's id")]


async def options(request: Request) -> ClaasOptions:
    """The mount's settings (`main` builds the mount with them)."""
    return request.app.state.claas


async def loras(registry: Registry, store: Store) -> Loras:
    return Loras(registry, store)


async def distillation(
    request: Request, jobs: Jobs, opts: Annotated[ClaasOptions, Depends(options)]
) -> Distillation:
    feedback: FeedbackService = request.state.feedback
    return Distillation(feedback, jobs.jobs, opts)


Options = Annotated[ClaasOptions, Depends(options)]
LoraService = Annotated[Loras, Depends(loras)]
Distillations = Annotated[Distillation, Depends(distillation)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        min_length=1,
        max_length=200,
        description="Lyceum extension: a retry with the same key (after a timeout, say) stores nothing twice "
        "and answers the same distillation",
    ),
]


@router.post(
    "/chat/completions",
    summary="Create a chat completion",
    response_model=ChatCompletion,
    responses=compat_error_responses(400, 404),
)
async def chat_completions(
    body: ChatRequest, ctx: Context, samplers: Samplers, request: Request
) -> ChatCompletion | StreamingResponse:
    """OpenAI's chat completion with `model` = a LoRA id (its served version) or a model; always recorded,
    so that `feedback` can name its response."""
    body = body.model_copy(update={"model": claas.served_model(body.model), "store": True})
    return await openai.create_chat_completion(body, ctx, samplers, True, request)


@router.post(
    "/completions",
    summary="Create a completion (legacy)",
    response_model=TextCompletion,
    responses=compat_error_responses(400, 404),
)
async def completions(
    body: TextRequest, ctx: Context, samplers: Samplers, request: Request
) -> TextCompletion | StreamingResponse:
    """OpenAI's legacy completion with `model` = a LoRA id or a model; always recorded."""
    body = body.model_copy(update={"model": claas.served_model(body.model), "store": True})
    return await openai.create_completion(body, ctx, samplers, True, request)


@router.get("/models", summary="List models")
async def list_models(ctx: Context, samplers: Samplers) -> ModelList:
    """The base models the samplers serve and your adapters (OpenAI's list: `id` is what `model` takes)."""
    return await openai.list_models(ctx, samplers)


@router.post(
    "/feedback",
    summary="Learn from feedback",
    responses=compat_error_responses(400, 404, 409, 504),
)
async def feedback(
    body: FeedbackBatchRequest,
    ctx: Context,
    service: Distillations,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> FeedbackResponse:
    """CLaaS's batch of feedback on one LoRA: each item's `response` names one of your recorded completions
    (the SHA-256 of its whitespace-normalised text; `prompt` picks among equal texts), its `feedback` is
    stored durably, and the batch is distilled into a new version of the LoRA by one SDPO job; the answer
    comes when the job ends, with its figures (`distill_result.metadata`) and `timing_ms`. Serving never
    pauses, and the new version is served only if it passes its quality gate (`metadata.serving`). 400: mixed
    `lora_id`s or `training` configs, a completion of another base; 404: an unknown LoRA or response; 409: the
    LoRA was still training another batch after the lock timeout; 422: an invalid `training` config; 500: the
    job failed; 504: it did not end in time (the items stay queued)."""
    rid = request_id_of(request) or ctx.request_id
    return await service.run(ctx.tenant, body, request_id=rid, idempotency_key=idempotency_key)


@router.post("/lora/init", summary="Initialize a LoRA", responses=compat_error_responses(400, 409))
def init_lora(body: LoraInitRequest, ctx: Context, service: LoraService, opts: Options) -> LoraInitResponse:
    """Registers an empty LoRA (B = 0: the base's outputs) over `base_model` (default: the gateway's CLaaS
    base model). An existing LoRA is re-initialised: a new, empty version is served from now on. 400 if the
    base is not a language model you see; 409 if the id names a model of another kind."""
    return LoraInitResponse(lora_id=service.init(ctx.tenant, body, opts.base_model))


@router.get("/lora", summary="List LoRAs")
def list_loras(
    ctx: Context,
    service: LoraService,
    prefix: Annotated[str, Query(max_length=MAX_LORA_ID_LEN, description="Only ids starting so")] = "",
) -> LoraListResponse:
    """The ids of your LoRAs (your own adapters), sorted."""
    return LoraListResponse(loras=service.names(ctx.tenant, prefix))


@router.delete("/lora", summary="Delete a LoRA")
def delete_lora(lora_id: LoraId, ctx: Context, service: LoraService) -> LoraDeleteResponse:
    """Deletes the LoRA: every version, its aliases and files. Idempotent: `deleted` is false if there was
    none (never 404)."""
    return LoraDeleteResponse(deleted=service.delete(ctx.tenant, lora_id))


@router.get(
    "/lora/export",
    summary="Export a LoRA",
    response_class=FileResponse,
    responses={
        **compat_error_responses(404),
        200: {"content": {"application/zip": {}}, "description": "The zip"},
    },
)
def export_lora(lora_id: LoraId, ctx: Context, service: LoraService) -> FileResponse:
    """The served version of the LoRA as a zip of its PEFT directory (`adapter_config.json`,
    `adapter_model.safetensors`); 404 if there is no such LoRA."""
    packed = service.export(ctx.tenant, lora_id)
    return FileResponse(
        packed.path,
        media_type="application/zip",
        filename=packed.filename,
        background=BackgroundTask(shutil.rmtree, packed.workdir, ignore_errors=True),
    )


@router.post("/score", summary="Score a completion", responses=compat_error_responses(400, 404))
async def score(body: ScoreRequest, ctx: Context, samplers: Samplers, opts: Options) -> ScoreResponse:
    """The log-probability of each token of `completion` after `prompt` (or the chat `messages`, rendered
    with the model's template) under the LoRA `model` names (or a model), and their sum."""
    return await claas.score(ctx, samplers, body, opts.base_model)


@router.get("/health", summary="Health check")
async def health(engine: DatabaseEngine) -> HealthResponse:
    """`healthy` when the database distillations go through answers, else `degraded`."""
    return await claas.health(engine)
