"""The OpenAI-compatible API, mounted at `/openai/v1` so that OpenAI's clients, SDKs and tools work unchanged:
`POST /chat/completions`, `POST /completions` (legacy), `GET /models`. Thin: a body becomes `GenerateSpec`s
(`schemas/openai.py`), `completions.Generations` runs them concurrently, `schemas/openai_responses.py` shapes
the answer, whole or as Server-Sent Events per token. Errors are mapped once, for the whole mount
(`errors.install_openai_handlers`); those before the first token are plain error responses, streaming or not.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from lyceum_core.errors import Code, LyceumError, NotFound, clip
from lyceum_fleet.sampler import GenerateSpec, GenerationStep
from lyceum_gateway import sse
from lyceum_gateway.completions import Completion, Generations
from lyceum_gateway.deps import Context, RecordCompletions, Samplers
from lyceum_gateway.errors import openai_body, openai_error_body
from lyceum_gateway.schemas.openai import ChatCompletionRequest, CompletionRequest
from lyceum_gateway.schemas.openai_responses import (
    ChatCompletion,
    ChatCompletionChunk,
    ChoiceLogprobs,
    ChunkChoice,
    ChunkDelta,
    CompletionChoice,
    CompletionLogprobs,
    ModelList,
    ModelOut,
    OpenAIErrorResponse,
    TextCompletion,
    TokenLogprob,
    Usage,
    finish_reason,
    gating_of,
)

log = logging.getLogger(__name__)


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": OpenAIErrorResponse} for status in statuses}


router = APIRouter(responses=_errors(500, 503))

DONE = sse.data("[DONE]")
CHAT_STREAM_EXAMPLE = (
    'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"lm-demo@production",'
    '"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}'
    '\n\ndata: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"lm-demo@production",'
    '"choices":[{"index":0,"delta":{"content":" Once"},"logprobs":null,"finish_reason":null}]}\n\n'
    'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"lm-demo@production",'
    '"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop",'
    '"completion_id":"cmpl-0123456789abcdef0123456789abcdef"}]}\n\ndata: [DONE]\n\n'
)
TEXT_STREAM_EXAMPLE = (
    'data: {"id":"cmpl-1","object":"text_completion","created":1,"model":"lm-demo@production",'
    '"choices":[{"index":0,"text":" there","logprobs":null,"finish_reason":null,"completion_id":null}]}\n\n'
    'data: {"id":"cmpl-1","object":"text_completion","created":1,"model":"lm-demo@production",'
    '"choices":[{"index":0,"text":"","logprobs":null,"finish_reason":"length",'
    '"completion_id":"cmpl-0123456789abcdef0123456789abcdef"}]}\n\ndata: [DONE]\n\n'
)

# Each event of a stream, as OpenAPI describes a `text/event-stream` (one schema per event): its `data` is a
# JSON chunk, or `[DONE]`.
_EVENT_SCHEMA = {
    "type": "object",
    "required": ["data"],
    "properties": {"data": {"type": "string", "description": "A chunk (JSON), or `[DONE]` last"}},
}


def _stream_doc(schema: str, example: str) -> dict[str, Any]:
    return {
        "description": f"The completion; with `stream`, Server-Sent Events: `data: <{schema}>` per chunk, "
        'then `data: [DONE]` (an error after the first chunk arrives as `data: {"error": ...}`)',
        "content": {sse.MEDIA_TYPE: {"schema": _EVENT_SCHEMA, "example": example}},
    }


def _response_id(completions: list[Completion], prefix: str) -> str:
    """The first choice's completion id when recorded (feedback refers to it), else a fresh id."""
    recorded = completions[0].final.completion_id if completions else None
    return recorded or prefix + uuid.uuid4().hex


def _served_model(completions: list[Completion], requested: str) -> str:
    return (completions[0].final.model if completions else None) or requested


@router.get("/models", summary="List models")
async def list_models(ctx: Context, samplers: Samplers) -> ModelList:
    """The base models the samplers serve and the adapters of your tenant (`id` is what `model` takes)."""
    models = await samplers.any().list_models(ctx)
    return ModelList(data=[ModelOut.from_domain(m, ctx.tenant) for m in models])


@router.get("/models/{model}", summary="Retrieve a model", responses=_errors(404))
async def retrieve_model(model: str, ctx: Context, samplers: Samplers) -> ModelOut:
    """One model of the list (404 `model_not_found` if it is not there)."""
    for m in await samplers.any().list_models(ctx):
        if m.name == model:
            return ModelOut.from_domain(m, ctx.tenant)
    raise NotFound(f"The model '{clip(model)}' does not exist", field="model")


@router.post(
    "/chat/completions",
    summary="Create a chat completion",
    response_model=ChatCompletion,
    responses={200: _stream_doc("chat.completion.chunk", CHAT_STREAM_EXAMPLE), **_errors(400, 404)},
)
async def create_chat_completion(
    body: ChatCompletionRequest,
    ctx: Context,
    samplers: Samplers,
    record: RecordCompletions,
    request: Request,
) -> ChatCompletion | StreamingResponse:
    """The assistant's next turn after `messages` (rendered with the model's chat template), `n` times:
    sampled (reproducible by `seed`), or greedy at `temperature` 0; with each token's log-probability on
    request; recorded (`store`) under the returned ids."""
    specs = body.to_specs(record_by_default=record)
    generations = await Generations.start(samplers, ctx, specs)
    created = int(time.time())
    if body.stream:
        chunks = _ChatChunks(body.model, created, logprobs=bool(body.logprobs))
        stream = _stream(chunks, generations, specs, request, body.include_usage, per_prompt=len(specs))
        return StreamingResponse(stream, media_type=sse.MEDIA_TYPE, headers=sse.HEADERS)
    async with generations:
        completions = await generations.gather()
    return ChatCompletion.build(
        _response_id(completions, "chatcmpl-"),
        created,
        _served_model(completions, body.model),
        completions,
        logprobs=bool(body.logprobs),
    )


@router.post(
    "/completions",
    summary="Create a completion (legacy)",
    response_model=TextCompletion,
    responses={200: _stream_doc("text_completion", TEXT_STREAM_EXAMPLE), **_errors(400, 404)},
)
async def create_completion(
    body: CompletionRequest,
    ctx: Context,
    samplers: Samplers,
    record: RecordCompletions,
    request: Request,
) -> TextCompletion | StreamingResponse:
    """Continues each `prompt` (text or token ids) `n` times; choice `p * n + i` is prompt p's i-th. With
    `logprobs`: each token's log-probability and that many alternatives."""
    specs = body.to_specs(record_by_default=record)
    generations = await Generations.start(samplers, ctx, specs)
    created = int(time.time())
    logprobs = body.logprobs is not None
    if body.stream:
        chunks = _TextChunks(body.model, created, logprobs=logprobs)
        stream = _stream(chunks, generations, specs, request, body.include_usage, per_prompt=body.choices)
        return StreamingResponse(stream, media_type=sse.MEDIA_TYPE, headers=sse.HEADERS)
    async with generations:
        completions = await generations.gather()
    choices = [
        CompletionChoice(
            index=c.index,
            text=c.final.text,
            logprobs=CompletionLogprobs.from_steps(c.steps, len(specs[c.index].prompt)) if logprobs else None,
            finish_reason=finish_reason(c.final.finish_reason),
            completion_id=c.final.completion_id,
            gating=gating_of(c.final),
        )
        for c in completions
    ]
    return TextCompletion(
        id=_response_id(completions, "cmpl-"),
        created=created,
        model=_served_model(completions, body.model),
        choices=choices,
        usage=Usage.of(completions, per_prompt=body.choices),
    )


# --- streaming -------------------------------------------------------------------------------------------


class _ChatChunks:
    """`chat.completion.chunk`s: a choice opens with the role, then one chunk per token, then its end."""

    def __init__(self, model: str, created: int, *, logprobs: bool) -> None:
        self.chunk = ChatCompletionChunk(
            id="chatcmpl-" + uuid.uuid4().hex, created=created, model=model, choices=[]
        )
        self.logprobs = logprobs

    def _data(self, choice: ChunkChoice) -> str:
        return sse.data(self.chunk.model_copy(update={"choices": [choice]}).model_dump_json())

    def start(self, index: int) -> str | None:
        return self._data(ChunkChoice(index=index, delta=ChunkDelta(role="assistant", content="")))

    def token(self, index: int, text: str, step: GenerationStep, offset: int) -> str:
        logprobs = ChoiceLogprobs(content=[TokenLogprob.from_step(step)]) if self.logprobs else None
        return self._data(ChunkChoice(index=index, delta=ChunkDelta(content=text), logprobs=logprobs))

    def end(self, index: int, text: str, final: GenerationStep) -> str:
        delta = ChunkDelta(content=text or None)
        reason = finish_reason(final.finish_reason)
        choice = ChunkChoice(
            index=index, delta=delta, finish_reason=reason, completion_id=final.completion_id
        )
        return self._data(choice)

    def usage(self, usage: Usage) -> str:
        return sse.data(self.chunk.model_copy(update={"usage": usage}).model_dump_json())


class _TextChunks:
    """`text_completion` chunks: one per token with its text, then the choice's end."""

    def __init__(self, model: str, created: int, *, logprobs: bool) -> None:
        self.chunk = TextCompletion(id="cmpl-" + uuid.uuid4().hex, created=created, model=model, choices=[])
        self.logprobs = logprobs

    def _data(self, choice: CompletionChoice) -> str:
        return sse.data(self.chunk.model_copy(update={"choices": [choice]}).model_dump_json())

    def start(self, index: int) -> str | None:
        return None

    def token(self, index: int, text: str, step: GenerationStep, offset: int) -> str:
        logprobs = CompletionLogprobs.from_steps([step], offset) if self.logprobs else None
        return self._data(CompletionChoice(index=index, text=text, logprobs=logprobs))

    def end(self, index: int, text: str, final: GenerationStep) -> str:
        reason = finish_reason(final.finish_reason)
        choice = CompletionChoice(
            index=index, text=text, finish_reason=reason, completion_id=final.completion_id
        )
        return self._data(choice)

    def usage(self, usage: Usage) -> str:
        return sse.data(self.chunk.model_copy(update={"usage": usage}).model_dump_json())


async def _stream(
    chunks: _ChatChunks | _TextChunks,
    generations: Generations,
    specs: list[GenerateSpec],
    request: Request,
    include_usage: bool,
    per_prompt: int,
) -> AsyncIterator[str]:
    """The chunks of every choice as their tokens arrive, each token's text the continuation's growth (a
    tail that may still become a stop string is sent when it no longer can, at the latest in the end chunk).
    """
    sent = [""] * len(specs)
    offsets = [len(spec.prompt) for spec in specs]
    counts = [0] * len(specs)
    finals: dict[int, GenerationStep] = {}
    try:
        async with generations:
            for index in range(len(specs)):
                opening = chunks.start(index)
                if opening is not None:
                    yield opening
            async for index, step in generations.merged():
                growth = _growth(sent, index, step.text)
                if step.token is None:
                    finals[index] = step
                    yield chunks.end(index, growth, step)
                else:
                    counts[index] += 1
                    yield chunks.token(index, growth, step, offsets[index])
                    offsets[index] += len(step.token.text)
                if await request.is_disconnected():
                    return  # leaving `generations` cancels the samplers' work
        if include_usage:
            prompt = sum(finals[i].prompt_tokens for i in range(0, len(specs), per_prompt))
            completion = sum(finals[i].completion_tokens or counts[i] for i in range(len(specs)))
            yield chunks.usage(
                Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)
            )
        yield DONE
    except LyceumError as err:
        yield sse.data(json.dumps(openai_error_body(err)))
    except Exception:  # noqa: BLE001 - the status line is long sent; tell the client, then end the stream
        log.exception("completion stream for model %s failed", specs[0].model)
        yield sse.data(json.dumps(openai_body("internal error", "server_error", None, Code.INTERNAL.lower())))


def _growth(sent: list[str], index: int, text: str) -> str:
    """What `text` (a choice's continuation so far) adds to what was sent of it."""
    before = sent[index]
    if not text.startswith(before):
        return ""  # never happens with the sampler's growing texts; never re-send or contradict
    sent[index] = text
    return text[len(before) :]
