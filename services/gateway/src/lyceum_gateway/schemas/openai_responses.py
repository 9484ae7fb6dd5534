"""Response bodies of the OpenAI-compatible API: chat completions and their streamed chunks, legacy text
completions, the model list and OpenAI's error envelope, built from the sampler client's dataclasses.

Lyceum adds one field to each choice, `completion_id`: the id under which the completion was recorded (null
when it was not), by which feedback refers to it; a response's `id` is its first choice's `completion_id`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_serializer

from lyceum_fleet import sampler as clients
from lyceum_gateway.completions import Completion
from lyceum_gateway.schemas.gating import GatingOut

FinishReason = Literal["stop", "length"]
_FINISH = {"eos": "stop", "stop": "stop", "length": "length"}


def finish_reason(reason: str) -> FinishReason:
    """The sampler's reason as OpenAI names it: end of sequence or a stop string is `stop`."""
    return "length" if _FINISH.get(reason) == "length" else "stop"


def token_text(token: clients.Token) -> str:
    """A token's text as OpenAI shows it: its text, or `bytes:\\xNN...` when its bytes are not UTF-8 alone."""
    return token.text if token.is_valid_utf8 else "bytes:" + "".join(f"\\x{b:02x}" for b in token.data)


def gating_of(final: clients.GenerationStep) -> GatingOut | None:
    """A choice's gating report (Lyceum extension), when it had gating."""
    return GatingOut.from_domain(final.gating) if final.gating is not None else None


def completion_tokens(completion: Completion) -> int:
    return completion.final.completion_tokens or len(completion.steps)


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, completions: list[Completion], per_prompt: int) -> Usage:
        """Each prompt counted once (its `per_prompt` choices share it), every choice's tokens."""
        prompt = sum(c.final.prompt_tokens for c in completions[::per_prompt])
        completion = sum(completion_tokens(c) for c in completions)
        return cls(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


# --- chat completions ------------------------------------------------------------------------------------


class TopLogprob(BaseModel):
    token: str = Field(description="The token's text (`bytes:\\xNN...` when its bytes are not UTF-8 alone)")
    logprob: float
    bytes: list[int] | None = Field(description="The token's raw bytes")

    @classmethod
    def from_domain(cls, p: clients.TokenProbability) -> TopLogprob:
        return cls(token=token_text(p.token), logprob=p.logprob, bytes=list(p.token.data))


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob] = Field(description="The most likely alternatives, most likely first")

    @classmethod
    def from_step(cls, step: clients.GenerationStep) -> TokenLogprob:
        assert step.token is not None
        return cls(
            token=token_text(step.token),
            logprob=step.logprob,
            bytes=list(step.token.data),
            top_logprobs=[TopLogprob.from_domain(p) for p in step.top_logprobs],
        )


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprob] | None
    refusal: list[TokenLogprob] | None = None

    @classmethod
    def from_steps(cls, steps: list[clients.GenerationStep]) -> ChoiceLogprobs:
        return cls(content=[TokenLogprob.from_step(s) for s in steps if s.token is not None])


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: str | None = None


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: ChoiceLogprobs | None
    finish_reason: FinishReason
    completion_id: str | None = Field(description="Lyceum extension: the recorded completion's id")
    gating: GatingOut | None = Field(None, description="Lyceum extension: with `gating`, how it was served")


class ChatCompletion(BaseModel):
    id: str = Field(description="The first choice's `completion_id` when recorded, else a fresh id")
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(description="Unix time (seconds)")
    model: str = Field(description="What served it: the model (and adapter) as resolved")
    choices: list[ChatChoice]
    usage: Usage
    system_fingerprint: str | None = None

    @classmethod
    def build(
        cls, response_id: str, created: int, model: str, completions: list[Completion], logprobs: bool
    ) -> ChatCompletion:
        choices = [
            ChatChoice(
                index=c.index,
                message=AssistantMessage(content=c.final.text),
                logprobs=ChoiceLogprobs.from_steps(c.steps) if logprobs else None,
                finish_reason=finish_reason(c.final.finish_reason),
                completion_id=c.final.completion_id,
                gating=gating_of(c.final),
            )
            for c in completions
        ]
        usage = Usage.of(completions, per_prompt=len(completions))
        return cls(id=response_id, created=created, model=model, choices=choices, usage=usage)


class ChunkDelta(BaseModel):
    """What a chunk adds to its choice: the role (its first chunk), then content; absent keys left out."""

    role: Literal["assistant"] | None = None
    content: str | None = None

    @model_serializer(mode="wrap")
    def _without_nulls(self, handler: Any) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


class ChunkChoice(BaseModel):
    index: int
    delta: ChunkDelta
    logprobs: ChoiceLogprobs | None = None
    finish_reason: FinishReason | None = None
    completion_id: str | None = Field(None, description="Lyceum extension, in the choice's last chunk")


class ChatCompletionChunk(BaseModel):
    """One Server-Sent Event of a streamed chat completion (`data: <chunk>`; the stream ends `data: [DONE]`).
    Each choice's first chunk carries the role, then one chunk per token with its text (and log-prob), then
    one with the `finish_reason`; with `stream_options.include_usage`, a last chunk with the usage and no
    choices."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None


# --- legacy completions ----------------------------------------------------------------------------------


class CompletionLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]] = Field(description="Per token: the alternatives' log-probs")
    text_offset: list[int] = Field(description="Where each token starts in the prompt text + completion")

    @classmethod
    def from_steps(cls, steps: list[clients.GenerationStep], offset: int) -> CompletionLogprobs:
        tokens = [token_text(s.token) for s in steps if s.token is not None]
        offsets = []
        for s in steps:
            if s.token is not None:
                offsets.append(offset)
                offset += len(s.token.text)
        return cls(
            tokens=tokens,
            token_logprobs=[s.logprob for s in steps if s.token is not None],
            top_logprobs=[
                {token_text(p.token): p.logprob for p in s.top_logprobs} for s in steps if s.token is not None
            ],
            text_offset=offsets,
        )


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: FinishReason | None = None
    completion_id: str | None = Field(None, description="Lyceum extension: the recorded completion's id")
    gating: GatingOut | None = Field(None, description="Lyceum extension: with `gating`, how it was served")


class TextCompletion(BaseModel):
    """A legacy completion; streamed, each chunk is one of these (`data: <chunk>`, then `data: [DONE]`)."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None


# --- models and errors -----------------------------------------------------------------------------------


class ModelOut(BaseModel):
    id: str = Field(examples=["lm-demo@production"])
    object: Literal["model"] = "model"
    created: int = Field(0, description="Unix time; 0 where the samplers do not say")
    owned_by: str = Field(description="`lyceum` for the served base models, your tenant for its adapters")
    kind: str | None = Field(
        None, description="Lyceum extension: `lyceum-lm`, `hf-causal-lm` or `adapter` (null until loaded)"
    )
    base: str | None = Field(None, description="Lyceum extension: an adapter's base model")
    gated: bool = Field(False, description="Lyceum extension: the model takes a `gate_signal`")

    @classmethod
    def from_domain(cls, model: clients.LanguageModel, tenant: str) -> ModelOut:
        owner = tenant if model.kind == "adapter" else "lyceum"
        return cls(id=model.name, owned_by=owner, kind=model.kind, base=model.base, gated=model.gated)


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelOut]


class OpenAIError(BaseModel):
    message: str
    type: str = Field(examples=["invalid_request_error"])
    param: str | None = Field(description="The offending parameter", examples=["temperature"])
    code: str | None = Field(examples=["model_not_found"])


class OpenAIErrorResponse(BaseModel):
    """Every error of the OpenAI-compatible API, in OpenAI's shape (the request id is the `X-Request-Id`
    header)."""

    error: OpenAIError
