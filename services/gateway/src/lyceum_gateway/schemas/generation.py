"""Bodies of the native `/v1/generate`, `/v1/score` and `/v1/sampler/models` API, with their conversions to
and from the sampler client's dataclasses. Tokens are shown as in sessions (`TokenOut`: text, raw bytes)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lyceum_core.errors import InvalidArgument
from lyceum_fleet import sampler as clients
from lyceum_fleet.gating import GatingMode
from lyceum_gateway.schemas.gating import GatingIn, GatingOut, TrajectoryStep
from lyceum_gateway.schemas.sessions import (
    MAX_MODEL_REF_LEN,
    AdapterRef,
    GateSignal,
    SamplingFields,
    Seed,
    TokenOut,
    TokenProbabilityOut,
)

# The sampler's own limits (`GenerateRequest` in sampler.proto), refused here before a call is made.
MAX_NEW_TOKENS = 4096
MAX_STOP_STRINGS = 16
MAX_TOP_LOGPROBS = 20

ModelRef = Annotated[str, Field(min_length=1, max_length=MAX_MODEL_REF_LEN)]
TopLogprobs = Annotated[
    int,
    Field(
        ge=0,
        le=MAX_TOP_LOGPROBS,
        strict=True,
        description="How many of the most likely alternatives to report with each token (0-20)",
    ),
]
TokenId = Annotated[int, Field(ge=0, lt=2**31, strict=True)]
StopStrings = Annotated[
    list[Annotated[str, Field(min_length=1)]],
    Field(
        max_length=MAX_STOP_STRINGS,
        description="Stop when the continuation contains one of these; the text is cut before it",
    ),
]


class ChatMessageIn(BaseModel):
    """A chat turn, rendered with the model's chat template (its tokenizer's own, else Lyceum's ChatML)."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str

    def to_domain(self) -> clients.ChatMessage:
        return clients.ChatMessage(self.role, self.content)


Messages = Annotated[
    list[ChatMessageIn],
    Field(
        min_length=1,
        description="Instead of `prompt`: chat turns; the continuation is the assistant's next turn (it also "
        "stops at the template's end of turn)",
    ),
]


class GenerateRequest(SamplingFields):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"model": "tiny-lm", "prompt": "Once upon a time", "max_new_tokens": 32, "seed": 7},
                {"model": "tiny-lm", "prompt": "The", "strategy": "greedy", "stop": ["."]},
                {"model": "tiny-lm", "prompt": "The", "strategy": "beam", "num_beams": 3},
                {
                    "model": "tiny-lm",
                    "messages": [{"role": "user", "content": "Tell me a story"}],
                    "top_logprobs": 3,
                    "record": True,
                },
                {
                    "model": "lm-demo@production",
                    "prompt": "Once upon a time",
                    "gating": {"mode": "learned", "policy": "gating@latest"},
                    "return_trajectory": True,
                },
            ]
        },
    )

    model: ModelRef = Field(description="A model the sampler serves, or an adapter of your tenant")
    prompt: str | None = Field(None, min_length=1, description="The text to continue")
    messages: Messages | None = None
    strategy: clients.DecodingStrategy = Field(
        clients.DecodingStrategy.SAMPLE,
        description="`sample` (shaped by the knobs), `greedy` (most likely token) or `beam` search",
    )
    max_new_tokens: int = Field(64, ge=1, le=MAX_NEW_TOKENS, strict=True)
    stop: StopStrings = Field(default_factory=list)
    seed: Seed | None = None
    num_beams: int | None = Field(
        None, ge=2, le=16, strict=True, description="Beams, with `beam` only (the sampler's default is 4)"
    )
    adapter: AdapterRef | None = None
    gate_signal: GateSignal | None = None
    top_logprobs: TopLogprobs = 0
    record: bool = Field(
        False,
        description="Record the completion durably (prompt and sampled token ids, their log-probs, the "
        "parameters; with your subject) and answer its `completion_id`",
    )
    gating: GatingIn | None = None
    return_trajectory: bool = Field(
        False,
        description="With `gating` (not `none`): answer `trajectory`, each generated token with its "
        "modulation and the sampling parameters it set (also in the `end` event when streaming)",
    )

    @model_validator(mode="after")
    def _check(self) -> GenerateRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of prompt or messages")
        if self.num_beams is not None and self.strategy is not clients.DecodingStrategy.BEAM:
            raise ValueError("num_beams applies to strategy beam only")
        return self

    def to_domain(self) -> clients.GenerateSpec:
        if self.return_trajectory and (self.gating is None or self.gating.mode is GatingMode.NONE):
            raise InvalidArgument(
                "return_trajectory needs gating (mode fixed, random or learned)", field="return_trajectory"
            )
        return clients.GenerateSpec(
            model=self.model,
            prompt=self.prompt or "",
            messages=[m.to_domain() for m in self.messages or ()],
            max_new_tokens=self.max_new_tokens,
            strategy=self.strategy,
            params=self.sampling_params(),
            stop=list(self.stop),
            seed=self.seed,
            num_beams=self.num_beams or 0,
            adapter=self.adapter,
            gate_signal=self.gate_signal,
            top_logprobs=self.top_logprobs,
            record=self.record,
            gating=self.gating.to_domain() if self.gating else None,
        )


class GeneratedToken(BaseModel):
    """One streamed token (also the data of each `token` event)."""

    index: int = Field(description="0-based position in the continuation")
    token: TokenOut
    probability: float = Field(description="Its probability under the distribution it was drawn from")
    logprob: float = Field(description="The natural log of `probability`")
    text: str = Field(
        description="The continuation so far, less any tail that may still become a stop string"
    )
    top_logprobs: list[TokenProbabilityOut] | None = Field(
        None, description="With `top_logprobs`: the most likely alternatives, most likely first"
    )

    @classmethod
    def from_domain(cls, index: int, step: clients.GenerationStep, token: clients.Token) -> GeneratedToken:
        return cls(
            index=index,
            token=TokenOut.from_domain(token),
            probability=step.probability,
            logprob=step.logprob,
            text=step.text,
            top_logprobs=[TokenProbabilityOut.from_domain(p) for p in step.top_logprobs] or None,
        )


class GenerateResponse(BaseModel):
    """A whole generation (also the data of the final `end` event, there without `tokens`)."""

    model: str
    text: str = Field(description="The whole continuation (the prompt excluded; cut before a stop string)")
    finish_reason: str = Field(description="`eos`, `stop` or `length`", examples=["length"])
    tokens: list[GeneratedToken] | None = Field(None, description="Each chosen token, in order")
    completion_id: str | None = Field(None, description="With `record`: the recorded completion's id")
    gating: GatingOut | None = Field(None, description="With `gating`: how it was served")
    trajectory: list[TrajectoryStep] | None = Field(
        None, description="With `return_trajectory`: each generated token and the decision it was made under"
    )


class ScoreRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"model": "tiny-lm", "prompt": "Once upon a time", "completion": " there was a cat"},
                {
                    "model": "tiny-lm",
                    "messages": [{"role": "user", "content": "Hi"}],
                    "completion_token_ids": [72, 105],
                },
            ]
        },
    )

    model: ModelRef = Field(description="A model the sampler serves, or an adapter of your tenant")
    adapter: AdapterRef | None = None
    prompt: str | None = Field(None, min_length=1, description="The context, as text")
    messages: Messages | None = Field(
        None, description="Or the context as chat turns (the assistant's turn is opened)"
    )
    prompt_token_ids: list[TokenId] | None = Field(
        None, min_length=1, description="Or the context as token ids"
    )
    completion: str | None = Field(
        None, min_length=1, description="The completion to score, as text (tokenized as a continuation)"
    )
    completion_token_ids: list[TokenId] | None = Field(
        None, min_length=1, description="Or the completion as the token ids that were sampled"
    )
    gate_signal: GateSignal | None = None

    @model_validator(mode="after")
    def _exactly_one_of_each(self) -> ScoreRequest:
        contexts = [self.prompt, self.messages, self.prompt_token_ids]
        if sum(c is not None for c in contexts) != 1:
            raise ValueError("give exactly one of prompt, messages or prompt_token_ids")
        if (self.completion is None) == (self.completion_token_ids is None):
            raise ValueError("give exactly one of completion or completion_token_ids")
        return self

    def to_domain(self) -> clients.ScoreSpec:
        return clients.ScoreSpec(
            model=self.model,
            adapter=self.adapter,
            prompt=self.prompt or "",
            messages=[m.to_domain() for m in self.messages or ()],
            prompt_token_ids=list(self.prompt_token_ids or ()),
            completion=self.completion or "",
            completion_token_ids=list(self.completion_token_ids or ()),
            gate_signal=self.gate_signal,
        )


class ScoredToken(BaseModel):
    index: int = Field(description="0-based position in the completion")
    token: TokenOut
    logprob: float = Field(description="Its log-probability under the model (temperature 1, no shaping)")
    probability: float


class ScoreResponse(BaseModel):
    """The completion's tokens with their log-probabilities after the context."""

    model: str = Field(description="What scored it: the model (and adapter) as resolved, with versions")
    tokens: list[ScoredToken]
    prompt_tokens: int = Field(description="Tokens in the context (after the chat template, if any)")
    completion_tokens: int
    sum_logprob: float = Field(description="The completion's log-probability: the sum of `tokens[].logprob`")

    @classmethod
    def from_domain(cls, result: clients.ScoreResult) -> ScoreResponse:
        return cls(
            model=result.model,
            tokens=[
                ScoredToken(
                    index=i, token=TokenOut.from_domain(p.token), logprob=p.logprob, probability=p.probability
                )
                for i, p in enumerate(result.tokens)
            ],
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            sum_logprob=result.sum_logprob,
        )


class LanguageModelOut(BaseModel):
    """A served model; `kind` and the sizes are null until the answering replica has loaded it."""

    name: str = Field(examples=["tiny-lm"])
    kind: str | None = Field(description="`lyceum-lm` or `hf-causal-lm`", examples=["lyceum-lm"])
    vocab_size: int | None = Field(examples=[384])
    max_context_len: int | None = Field(examples=[96])
    loaded: bool = Field(description="Whether the answering replica has it in memory")


class SamplerModelsResponse(BaseModel):
    models: list[LanguageModelOut]

    @classmethod
    def from_domain(cls, models: list[clients.LanguageModel]) -> SamplerModelsResponse:
        return cls(
            models=[
                LanguageModelOut(
                    name=m.name,
                    kind=m.kind,
                    vocab_size=m.vocab_size,
                    max_context_len=m.max_context_len,
                    loaded=m.loaded,
                )
                for m in models
            ]
        )
