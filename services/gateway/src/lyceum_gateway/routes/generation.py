"""Native generation routes: `POST /v1/generate` (stateless; one JSON result, or Server-Sent Events per token
with `Accept: text/event-stream`), `POST /v1/score` (the log-probabilities of a given completion) and
`GET /v1/sampler/models`, the language models the samplers serve."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from lyceum_core.errors import Code, Internal, LyceumError
from lyceum_fleet.sampler import GenerateSpec, GenerationStep
from lyceum_gateway import sse
from lyceum_gateway.deps import Context, Samplers
from lyceum_gateway.errors import error_body
from lyceum_gateway.routes import API_PREFIX
from lyceum_gateway.schemas.common import error_responses
from lyceum_gateway.schemas.gating import GatingOut, TrajectoryStep
from lyceum_gateway.schemas.generation import (
    GeneratedToken,
    GenerateRequest,
    GenerateResponse,
    SamplerModelsResponse,
    ScoreRequest,
    ScoreResponse,
)

log = logging.getLogger(__name__)

router = APIRouter(prefix=API_PREFIX, tags=["generation"], responses=error_responses(401, 503))

SSE_EXAMPLE = (
    'event: token\nid: 0\ndata: {"index": 0, "token": {"id": 262, "text": " the", "bytes": "IHRoZQ==", '
    '"is_valid_utf8": true}, "probability": 0.31, "text": " the"}\n\n'
    'event: end\ndata: {"model": "tiny-lm", "text": " the cat", "finish_reason": "length"}\n\n'
)
STREAM_DOC = (
    "one `token` event per chosen token (`id` is its index), then one `end` event with the whole "
    "continuation and its `finish_reason`; an `error` event (the error envelope) if generation fails midway"
)


@router.post(
    "/generate",
    summary="Generate a continuation",
    response_model=GenerateResponse,
    responses={
        200: {
            "description": "The continuation and each chosen token; with `Accept: text/event-stream`, an "
            "event stream: " + STREAM_DOC,
            "content": {sse.MEDIA_TYPE: {"schema": {"type": "string"}, "example": SSE_EXAMPLE}},
        },
        **error_responses(400, 404, 422),
    },
)
async def generate(
    body: GenerateRequest, ctx: Context, samplers: Samplers, request: Request
) -> GenerateResponse | StreamingResponse:
    """Continues `prompt` (or the chat `messages`) with `model` or an adapter (stateless: no session is
    created): `sample` shaped by the knobs and reproducible by `seed`, `greedy`, or `beam` search; stops at
    `max_new_tokens`, the end-of-sequence token or a `stop` string. Each token comes with its log-probability
    (and `top_logprobs` alternatives); with `record`, the completion is stored and its `completion_id`
    answered. With `gating`, each step's modulation sets the sampling parameters (and a gated model's gate
    signal); `return_trajectory` answers them per token. Errors before the first token are plain error
    responses, streaming or not."""
    spec = body.to_domain()
    steps = samplers.spread().generate(ctx, spec)
    try:
        first = await anext(steps)  # a bad model or argument fails here, before any status line is sent
    except StopAsyncIteration:
        raise Internal("the sampler ended the generation without a result") from None
    except BaseException:
        await steps.aclose()
        raise
    if sse.accepts_event_stream(request.headers.get("accept", "")):
        stream = _event_stream(spec, first, steps, request, body.return_trajectory)
        return StreamingResponse(stream, media_type=sse.MEDIA_TYPE, headers=sse.HEADERS)
    tokens: list[GeneratedToken] = []
    trajectory = _Trajectory(body.return_trajectory)
    async with aclosing(steps):
        step: GenerationStep | None = first
        while step is not None:
            if step.token is None:
                return _end(spec, step, tokens, trajectory.steps)
            tokens.append(GeneratedToken.from_domain(len(tokens), step, step.token))
            trajectory.add(step)
            step = await anext(steps, None)
    raise Internal("the sampler ended the generation without a final message")


class _Trajectory:
    """The trajectory entries of a generation's token steps, when asked for (else None)."""

    def __init__(self, wanted: bool) -> None:
        self.steps: list[TrajectoryStep] | None = [] if wanted else None

    def add(self, step: GenerationStep) -> None:
        if self.steps is not None and (entry := TrajectoryStep.from_step(step)) is not None:
            self.steps.append(entry)


def _end(
    spec: GenerateSpec,
    final: GenerationStep,
    tokens: list[GeneratedToken] | None,
    trajectory: list[TrajectoryStep] | None,
) -> GenerateResponse:
    return GenerateResponse(
        model=spec.model,
        text=final.text,
        finish_reason=final.finish_reason,
        tokens=tokens,
        completion_id=final.completion_id,
        gating=GatingOut.from_domain(final.gating) if final.gating is not None else None,
        trajectory=trajectory,
    )


async def _event_stream(
    spec: GenerateSpec,
    first: GenerationStep,
    steps: AsyncGenerator[GenerationStep, None],
    request: Request,
    return_trajectory: bool,
) -> AsyncIterator[str]:
    index = 0
    trajectory = _Trajectory(return_trajectory)
    try:
        async with aclosing(steps):
            step: GenerationStep | None = first
            while step is not None:
                if step.token is None:
                    end = _end(spec, step, None, trajectory.steps)
                    yield sse.event("end", end.model_dump_json(exclude_none=True))
                    return
                trajectory.add(step)
                data = GeneratedToken.from_domain(index, step, step.token).model_dump_json()
                yield sse.event("token", data, event_id=str(index))
                index += 1
                if await request.is_disconnected():
                    return  # closing `steps` cancels the sampler's work
                step = await anext(steps, None)
        raise Internal("the sampler ended the generation without a final message")
    except LyceumError as err:
        yield sse.event("error", json.dumps(error_body(err.code.value, err.message, err.field)))
    except Exception:  # noqa: BLE001 - the status line is long sent; tell the client, then end the stream
        log.exception("generation stream for model %s failed", spec.model)
        yield sse.event("error", json.dumps(error_body(Code.INTERNAL.value, "internal error")))


@router.post("/score", summary="Score a completion", responses=error_responses(400, 404, 422))
async def score(body: ScoreRequest, ctx: Context, samplers: Samplers) -> ScoreResponse:
    """The log-probability of each token of a given completion (its text, or the token ids that were
    sampled) after a context (a prompt, chat messages or token ids), under `model` or an adapter at
    temperature 1: the tokens, the prompt's and completion's token counts, and their sum."""
    spec = body.to_domain()
    # Scoring changes nothing: safe to re-send past a replica that broke mid-call.
    result = await samplers.any().score(ctx, spec)
    return ScoreResponse.from_domain(result)


@router.get("/sampler/models", summary="List the language models")
async def list_sampler_models(ctx: Context, samplers: Samplers) -> SamplerModelsResponse:
    """The language models the samplers serve (sessions and generation accept these names)."""
    return SamplerModelsResponse.from_domain(await samplers.any().list_models(ctx))
