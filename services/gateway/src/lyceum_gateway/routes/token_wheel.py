"""The AI Token Wheel backend's API, mounted at `/token-wheel` so its existing frontend works unchanged: same
paths, bodies, status codes and `{"detail": ...}` errors, served by the samplers instead of in-process GPT-2.

Where the original fell short, the wheel is now shown and recorded under the same settings: the original
append-token took no threshold or temperature and scored every appended token at temperature 1 and threshold
0.01, whatever the wheel had shown. Here an append scores the token (and draws from Other) under the settings
this session's wheel was last shown with (`next-token-probs`), kept in the sampler's session state (so any
gateway replica answers alike); `threshold` and `temperature` query parameters on append-token, a Lyceum
extension, override them.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, Request, status

from lyceum_core.context import RequestContext
from lyceum_core.errors import FailedPrecondition, InvalidArgument, LyceumError, NotFound, Unavailable
from lyceum_fleet import sampler as clients
from lyceum_gateway.deps import Context, ModelAliases, QuotaChecks, Samplers
from lyceum_gateway.schemas import token_wheel as s
from lyceum_gateway.schemas.compat import (
    CompatErrorResponse,
    CompatValidationErrorResponse,
    compat_error_responses,
)
from lyceum_gateway.schemas.sessions import MAX_OTHER_TOP_K

# A malformed request is FastAPI's default 422; any call that reaches a sampler may find none serving (503).
_ERRORS = {**compat_error_responses(422, model=CompatValidationErrorResponse), **compat_error_responses(503)}
router = APIRouter(prefix="/api/sessions", tags=["sessions"], responses=_ERRORS)
service_router = APIRouter(tags=["service"], responses=_ERRORS)

SESSION_GONE = "Session does not exist"


async def default_model(request: Request) -> str | None:
    return request.state.token_wheel_default_model


DefaultModel = Annotated[str | None, Depends(default_model)]


@contextmanager
def original_errors(*, checks_id: bool = False) -> Iterator[None]:
    """Words session errors as the original did; it answered only 400, 404, 422 and 503. With `checks_id`
    (the call is the first to see the id), an id the sampler could never have issued is unknown all the same.
    """
    try:
        yield
    except NotFound as err:
        raise NotFound(SESSION_GONE, field=err.field) from err
    except InvalidArgument as err:
        if checks_id and err.field == "session_id":
            raise NotFound(SESSION_GONE, field=err.field) from err
        raise
    except FailedPrecondition as err:
        raise InvalidArgument(err.message, field=err.field) from err


async def _session(ctx: RequestContext, sampler: clients.Sampler, session_id: str) -> clients.Session:
    with original_errors(checks_id=True):
        return await sampler.get_session(ctx, session_id)


def _check_settings(threshold: float | None, temperature: float | None) -> None:
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise InvalidArgument("Threshold must be between 0.0 and 1.0", field="threshold")
    if temperature is not None and not (temperature > 0 and math.isfinite(temperature)):
        raise InvalidArgument("Temperature must be greater than 0", field="temperature")


async def _model_names(ctx: RequestContext, sampler: clients.Sampler) -> list[str]:
    return [m.name for m in await sampler.list_models(ctx)]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create a session",
    responses=compat_error_responses(400),
)
async def create_session(
    body: s.CreateSessionRequest,
    ctx: Context,
    samplers: Samplers,
    configured: DefaultModel,
    aliases: ModelAliases,
    quotas: QuotaChecks,
) -> s.CreateSessionResponse:
    """A new session on `model_name` (400 naming the available models if the sampler does not serve it);
    a configured alias translates the name (the original frontend always asks for `gpt2`)."""
    sampler = samplers.any()
    model = body.model_name or configured or next(iter(await _model_names(ctx, sampler)), "")
    model = aliases.get(model, model)
    limit = await quotas.max_sessions(ctx.tenant)
    gating = body.gating.to_domain() if body.gating else None
    try:
        session = await sampler.create_session(ctx, model, max_live_sessions=limit, gating=gating)
    except (NotFound, InvalidArgument) as err:
        if err.field not in (None, "model"):
            raise
        names = await _model_names(ctx, sampler)
        raise InvalidArgument(f"Invalid model name. Available models: {names}", field="model_name") from err
    created_at = session.created_at or s.utcnow()
    return s.CreateSessionResponse(
        session_id=session.session_id, model_name=session.model, created_at=s.original_time(created_at)
    )


@router.get("/{session_id}", summary="Get a session's state", responses=compat_error_responses(404))
async def get_session_state(session_id: str, ctx: Context, samplers: Samplers) -> s.SessionStateResponse:
    """The prompt, the text so far and every token chosen."""
    session = await _session(ctx, samplers.for_session(ctx, session_id), session_id)
    return s.SessionStateResponse.from_domain(session, s.utcnow())


@router.post("/{session_id}/set-prompt", summary="Set the prompt", responses=compat_error_responses(400, 404))
async def set_prompt(
    session_id: str, body: s.SetPromptRequest, ctx: Context, samplers: Samplers
) -> s.SetPromptResponse:
    """Sets or resets the prompt; the chosen tokens are cleared."""
    sampler = samplers.for_session(ctx, session_id)
    if not body.prompt.strip():
        await _session(ctx, sampler, session_id)  # an unknown session is 404 first, as in the original
        raise InvalidArgument("Empty or invalid prompt", field="prompt")
    with original_errors(checks_id=True):
        session = await sampler.set_prompt(ctx, session_id, body.prompt)
    return s.SetPromptResponse(
        session_id=session.session_id,
        current_text=session.text,
        token_count=len(session.prompt_token_ids),
        message="Prompt set successfully",
    )


@router.get(
    "/{session_id}/next-token-probs",
    summary="Next-token probabilities (the wheel)",
    responses=compat_error_responses(400, 404),
    response_model_exclude_unset=True,  # every field is set but `gating`, an ungated session's answer lacks
)
async def get_next_token_probs(
    session_id: str,
    ctx: Context,
    samplers: Samplers,
    threshold: float = 0.01,
    other_top_k: int = 10,
    temperature: float = 1.0,
) -> s.NextTokenProbsResponse:
    """The tokens at or above `threshold` and the Other category, at `temperature`; `other_top_k` (clamped to
    0-1000) of the Other tokens are listed. The sampler keeps the settings for this session's next append."""
    sampler = samplers.for_session(ctx, session_id)
    session = await _session(ctx, sampler, session_id)
    if not session.prompt:
        raise InvalidArgument("No prompt set yet", field="prompt")
    _check_settings(threshold, temperature)
    # a gated session's step sets the parameters: the query's temperature does not apply
    params = None if session.gating else clients.SamplingParams(temperature=temperature)
    top_k = min(max(other_top_k, 0), MAX_OTHER_TOP_K)
    with original_errors():
        dist = await sampler.get_distribution(ctx, session_id, threshold, top_k, params, record_shown=True)
        # after: the distribution loaded the model, so its size is known
        models = await sampler.list_models(ctx)
    vocab = {m.name: m.vocab_size for m in models}.get(session.model) or len(dist.above) + dist.other.count
    gated = {"gating": s.GatingStepOut.from_domain(dist.gating)} if dist.gating else {}
    return s.NextTokenProbsResponse(
        session_id=session.session_id,
        current_text=session.text,
        threshold=threshold,
        temperature=dist.gating.temperature if dist.gating else temperature,
        above_threshold_tokens=[s.TokenData.from_domain(p) for p in dist.above],
        other_category=s.OtherCategoryInfo(
            total_probability=dist.other.probability,
            token_count=dist.other.count,
            sample_tokens=[s.TokenData.from_domain(p) for p in dist.other.top],
        ),
        total_above_threshold_probability=sum(p.probability for p in dist.above),
        vocabulary_size=vocab,
        **gated,
    )


@router.post(
    "/{session_id}/append-token", summary="Append a token", responses=compat_error_responses(400, 404)
)
async def append_token(
    session_id: str,
    body: s.AppendTokenRequest,
    ctx: Context,
    samplers: Samplers,
    threshold: float | None = None,
    temperature: float | None = None,
) -> s.AppendTokenResponse:
    """Appends `token_id`, or `token_text` (exactly one token), or with `category: "other"` a token drawn
    from the Other category. Scored under the settings the wheel was last shown with; the optional
    `threshold`/`temperature` query parameters (a Lyceum extension) override them."""
    sampler = samplers.for_session(ctx, session_id)
    session = await _session(ctx, sampler, session_id)
    if not session.prompt:
        raise InvalidArgument("No prompt set", field="prompt")
    _check_settings(threshold, temperature)
    shown = session.last_shown
    threshold = threshold if threshold is not None else (shown.threshold if shown else None)
    temperature = temperature if temperature is not None else (shown.params.temperature if shown else None)
    params = None if session.gating else clients.SamplingParams(temperature=temperature)

    other: clients.OtherBucket | None = None
    if body.category == "other":
        with original_errors():
            other = (await sampler.get_distribution(ctx, session_id, threshold, 0, params)).other
        if other.count == 0:
            raise InvalidArgument("No tokens available in 'Other' category", field="category")
        choice = clients.TokenChoice(from_other=True)
    elif body.token_id is not None:
        choice = clients.TokenChoice(token_id=body.token_id)
    elif body.token_text is not None:
        choice = clients.TokenChoice(token_text=body.token_text)
    else:
        raise InvalidArgument("Either token_id or token_text must be provided", field="token_id")

    try:
        with original_errors():
            result = await sampler.append_token(ctx, session_id, choice, threshold, params)
    except InvalidArgument as err:
        if err.field == "token_text":  # the sampler's words differ; the original's are what clients match
            raise InvalidArgument(
                "Token text must correspond to exactly one token", field="token_text"
            ) from err
        raise

    return s.AppendTokenResponse(
        session_id=session_id,
        previous_text=session.text,
        appended_token=s.AppendedTokenInfo.from_domain(result.appended),
        current_text=result.session.text,
        token_history=s.token_history(result.session),
        other_category_info=None
        if other is None
        else s.OtherCategorySelectionInfo(
            total_probability=other.probability,
            token_count=other.count,
            selected_token_rank=result.appended.rank + 1,
        ),
    )


@router.post("/{session_id}/undo", summary="Undo the last token", responses=compat_error_responses(400, 404))
async def undo_last_token(session_id: str, ctx: Context, samplers: Samplers) -> s.UndoTokenResponse:
    """Removes the last chosen token; never the prompt."""
    sampler = samplers.for_session(ctx, session_id)
    session = await _session(ctx, sampler, session_id)
    if not session.generated:
        raise InvalidArgument(
            "Cannot undo. No generated tokens to remove. Only initial prompt remains.", field="session_id"
        )
    with original_errors():
        result = await sampler.undo(ctx, session_id)
    return s.UndoTokenResponse(
        session_id=session_id,
        previous_text=session.text,
        removed_token=s.AppendedTokenInfo.from_domain(result.removed),
        current_text=result.session.text,
        token_history=s.token_history(result.session),
        message="Last token removed successfully",
    )


@router.delete("/{session_id}", summary="Delete a session", responses=compat_error_responses(404))
async def delete_session(session_id: str, ctx: Context, samplers: Samplers) -> s.DeleteSessionResponse:
    """Deletes the session."""
    with original_errors(checks_id=True):
        await samplers.for_session(ctx, session_id).delete_session(ctx, session_id)
    return s.DeleteSessionResponse(message="Session deleted successfully", session_id=session_id)


@service_router.get("/api/models", summary="List the models")
async def list_models(ctx: Context, samplers: Samplers, configured: DefaultModel) -> s.ModelsResponse:
    """The models sessions can be created on; `default` marks the one used without `model_name`."""
    models = await samplers.any().list_models(ctx)
    default = configured or (models[0].name if models else None)
    return s.ModelsResponse(
        models=[
            s.ModelInfo(
                id=m.name,
                name=m.name,
                description=_describe(m),
                parameters="unknown",  # the sampler does not report it
                default=m.name == default,
            )
            for m in models
        ]
    )


def _describe(model: clients.LanguageModel) -> str:
    if model.kind is None:
        return "not loaded yet"
    return f"{model.kind}: {model.vocab_size} tokens, context of {model.max_context_len}"


@service_router.get("/health", summary="Health")
async def health(ctx: Context, samplers: Samplers) -> s.HealthResponse:
    """Always `healthy` while the gateway runs; `model_loaded`: whether a sampler has a model in memory."""
    try:
        loaded = any(m.loaded for m in await samplers.any().list_models(ctx))
    except LyceumError:
        loaded = False
    return s.HealthResponse(status="healthy", model_loaded=loaded, timestamp=s.original_time(s.utcnow()))


@service_router.get(
    "/ready",
    summary="Readiness",
    responses={503: {"model": CompatErrorResponse, "description": "No sampler serves"}},
)
async def ready(samplers: Samplers) -> s.ReadyResponse:
    """200 once a sampler reports SERVING, else 503 `Models not loaded`."""
    if not any(await asyncio.gather(*(replica.health() for replica in samplers.serving()))):
        raise Unavailable("Models not loaded")
    return s.ReadyResponse(status="ready")
