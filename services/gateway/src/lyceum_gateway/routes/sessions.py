"""Native `/v1/sessions` routes: token-wheel sessions on the samplers. Create one, set its prompt, look at the
next-token distribution split at a threshold, append a token (by id, by text, or drawn from Other), undo.

Each session's calls go to the sampler replica that owns its id (its KV cache stays warm there); sessions
themselves live in the samplers' shared store, so a new one may be created on any replica.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from lyceum_fleet.sampler import SamplingParams
from lyceum_gateway.deps import Context, QuotaChecks, Samplers
from lyceum_gateway.routes import API_PREFIX
from lyceum_gateway.schemas.common import error_responses
from lyceum_gateway.schemas.sessions import (
    MAX_OTHER_TOP_K,
    AppendTokenRequest,
    AppendTokenResponse,
    CreateSessionRequest,
    DistributionOut,
    SessionOut,
    SetPromptRequest,
    UndoResponse,
)

router = APIRouter(
    prefix=f"{API_PREFIX}/sessions", tags=["sessions"], responses=error_responses(401, 422, 503)
)

SessionIdPath = Annotated[
    str,
    Path(
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="The session's id, as its creation returned it (1-64 characters of [A-Za-z0-9_-])",
    ),
]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create a session",
    response_description="The new session, with its `Location`",
    responses=error_responses(400, 404),
)
async def create_session(
    body: CreateSessionRequest, ctx: Context, samplers: Samplers, quotas: QuotaChecks, response: Response
) -> SessionOut:
    """Starts a session on a model (404 if the sampler does not serve it), with a prompt if given; 429
    naming `max_sessions` when the tenant has its quota of live sessions."""
    limit = await quotas.max_sessions(ctx.tenant)
    session = await samplers.any().create_session(
        ctx,
        body.model,
        body.prompt,
        max_live_sessions=limit,
        adapter=body.adapter or "",
        gate_signal=body.gate_signal,
        gating=body.gating.to_domain() if body.gating else None,
    )
    response.headers["Location"] = f"{router.prefix}/{session.session_id}"
    return SessionOut.from_domain(session)


@router.get("/{session_id}", summary="Get a session", responses=error_responses(404))
async def get_session(session_id: SessionIdPath, ctx: Context, samplers: Samplers) -> SessionOut:
    """The session's prompt, the tokens chosen so far (each with the probability, category and rank it had
    when chosen) and its text."""
    return SessionOut.from_domain(await samplers.for_session(ctx, session_id).get_session(ctx, session_id))


@router.delete(
    "/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a session",
    responses=error_responses(404),
)
async def delete_session(session_id: SessionIdPath, ctx: Context, samplers: Samplers) -> Response:
    """Deletes the session; its id is unknown afterwards (404)."""
    await samplers.for_session(ctx, session_id).delete_session(ctx, session_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put("/{session_id}/prompt", summary="Set the prompt", responses=error_responses(400, 404))
async def set_prompt(
    session_id: SessionIdPath, body: SetPromptRequest, ctx: Context, samplers: Samplers
) -> SessionOut:
    """Sets (or resets) the prompt; the generated tokens are cleared."""
    session = await samplers.for_session(ctx, session_id).set_prompt(ctx, session_id, body.prompt)
    return SessionOut.from_domain(session)


@router.get(
    "/{session_id}/distribution",
    summary="The next-token distribution",
    responses=error_responses(400, 404, 409),
)
async def get_distribution(
    session_id: SessionIdPath,
    ctx: Context,
    samplers: Samplers,
    threshold: Annotated[
        float | None,
        Query(
            ge=0.0,
            le=1.0,
            allow_inf_nan=False,
            description="Tokens at or above this probability are listed in `above`; default 0.01",
        ),
    ] = None,
    other_top_k: Annotated[
        int | None,
        Query(ge=0, le=MAX_OTHER_TOP_K, description="How many of the Other tokens to list; default 10"),
    ] = None,
    temperature: Annotated[
        float | None, Query(gt=0.0, allow_inf_nan=False, description="Softmax temperature; default 1")
    ] = None,
    top_k: Annotated[int | None, Query(ge=0, description="Keep only the k most likely; 0 = off")] = None,
    top_p: Annotated[
        float | None, Query(gt=0.0, le=1.0, allow_inf_nan=False, description="Nucleus mass; 1 = off")
    ] = None,
    repetition_penalty: Annotated[
        float | None, Query(ge=1.0, allow_inf_nan=False, description="Penalty on seen tokens; 1 = off")
    ] = None,
) -> DistributionOut:
    """The distribution of the next token after the session's text, shaped by the knobs and split at
    `threshold`: the tokens above it (most likely first) and the Other bucket (its mass, size and most likely
    members). Changes nothing. Pass the same settings to `POST .../tokens` so the appended token is recorded
    as shown. A gated session's distribution is shaped by its step's modulation instead (`gating`): give
    it no knobs."""
    params = SamplingParams(temperature, top_k, top_p, repetition_penalty)
    sampler = samplers.for_session(ctx, session_id)
    return DistributionOut.from_domain(
        await sampler.get_distribution(ctx, session_id, threshold, other_top_k, params)
    )


@router.post(
    "/{session_id}/tokens",
    summary="Append a token",
    responses=error_responses(400, 404, 409),
)
async def append_token(
    session_id: SessionIdPath, body: AppendTokenRequest, ctx: Context, samplers: Samplers
) -> AppendTokenResponse:
    """Appends one token: `token_id`, `token_text` (which must be exactly one token), `from_other: true` to
    draw one from the Other bucket in proportion to its probability, or `spin: true` to draw one from the
    whole distribution (a spin of the wheel); `seed` makes a draw reproducible.
    The token's probability, category and rank are computed under the given threshold and knobs: pass those
    the user was shown."""
    result = await samplers.for_session(ctx, session_id).append_token(
        ctx,
        session_id,
        body.choice(),
        body.threshold,
        body.sampling_params(),
        body.seed,
        expected_context_len=body.expected_context_len,
    )
    return AppendTokenResponse.from_domain(result)


@router.post("/{session_id}/undo", summary="Undo the last token", responses=error_responses(400, 404, 409))
async def undo(session_id: SessionIdPath, ctx: Context, samplers: Samplers) -> UndoResponse:
    """Removes the last generated token (never the prompt) and returns it."""
    return UndoResponse.from_domain(await samplers.for_session(ctx, session_id).undo(ctx, session_id))
