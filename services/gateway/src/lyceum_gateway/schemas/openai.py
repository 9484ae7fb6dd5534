"""Request bodies of the OpenAI-compatible API (`/openai/v1`): chat and legacy completions, with their
conversion to the sampler client's `GenerateSpec`s. Names, defaults and limits follow OpenAI's API reference;
Lyceum's extensions (`top_k`, `repetition_penalty`, `gate_signal`, `gating`) are marked as such. Unknown
parameters are refused (400 naming them), as OpenAI does. The responses are in
`schemas/openai_responses.py`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from lyceum_core.errors import InvalidArgument
from lyceum_core.identity import SUBJECT_PATTERN, SUBJECT_RULE
from lyceum_fleet import sampler as clients
from lyceum_fleet.gating import GatingMode
from lyceum_gateway.schemas.gating import GatingIn
from lyceum_gateway.schemas.generation import (
    MAX_NEW_TOKENS,
    MAX_STOP_STRINGS,
    GateSignal,
    ModelRef,
    TokenId,
    TopLogprobs,
)
from lyceum_gateway.schemas.sessions import RepetitionPenalty, TopK, TopP

MAX_CHOICES = 8  # n
MAX_PROMPTS = 8  # prompts of one legacy request (each with n choices)
LEGACY_MAX_TOKENS = 16  # OpenAI's default for /completions
SEED_SPACE = 2**64  # the sampler's seeds are uint64: the n choices use seed, seed+1, ... modulo this

Penalty = Annotated[float, Field(ge=-2.0, le=2.0, allow_inf_nan=False)]
MaxTokens = Annotated[int, Field(ge=1, le=MAX_NEW_TOKENS, strict=True)]
Stop = Annotated[
    str | list[Annotated[str, Field(min_length=1)]] | None,
    Field(
        description=f"Up to {MAX_STOP_STRINGS} strings: generation stops before the first one it would "
        "produce (the text is cut before it)",
    ),
]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: bool = Field(
        False, description="Send one more chunk before `[DONE]`: the usage, with no choices"
    )


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text"] = Field(description="Only plain text is produced")


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text"]
    text: str


class ChatMessageIn(BaseModel):
    """A chat turn. `developer` is read as `system` (OpenAI's newer name for it); `name` is accepted and not
    used; `content` may be a string or a list of text parts (joined)."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    def to_domain(self) -> clients.ChatMessage:
        role = "system" if self.role == "developer" else self.role
        content = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return clients.ChatMessage(role, content)


class CommonFields(BaseModel):
    """The parameters chat and legacy completions share."""

    model_config = ConfigDict(extra="forbid")

    model: ModelRef = Field(
        description="A base model the samplers serve or an adapter of your tenant (see `GET /models`)",
        examples=["lm-demo@production"],
    )
    temperature: float | None = Field(
        None,
        ge=0.0,
        le=2.0,
        allow_inf_nan=False,
        description="0-2 (default 1); 0 is greedy decoding (deterministic)",
    )
    top_p: TopP | None = Field(None, description="Nucleus sampling: (0, 1], 1 = off")
    n: int | None = Field(None, ge=1, le=MAX_CHOICES, strict=True, description="Choices to generate (1-8)")
    stream: bool | None = Field(None, description="Stream the tokens as Server-Sent Events as they come")
    stream_options: StreamOptions | None = None
    stop: Stop = None
    seed: int | None = Field(
        None,
        ge=-(2**63),
        lt=SEED_SPACE,
        strict=True,
        description="Makes sampling reproducible: the same seed and parameters give the same choices "
        "(choice i uses seed + i)",
    )
    presence_penalty: Penalty | None = Field(
        None, description="-2 to 2: lowers the logit of every token already generated, once"
    )
    frequency_penalty: Penalty | None = Field(
        None, description="-2 to 2: lowers the logit of a token already generated, per time it was"
    )
    user: Annotated[str, StringConstraints(pattern=SUBJECT_PATTERN)] | None = Field(
        None,
        description=f"Who the end user is ({SUBJECT_RULE}): recorded with the completion as its subject, "
        "unless the API key (or the X-Lyceum-Subject header) names one",
    )
    logit_bias: dict[str, float] | None = Field(None, description="Not supported: only empty or null")
    top_k: TopK | None = Field(None, description="Lyceum extension: keep only the k most likely tokens")
    repetition_penalty: RepetitionPenalty | None = Field(
        None, description="Lyceum extension: CTRL-style penalty (>= 1) on tokens already in the context"
    )
    gate_signal: GateSignal | None = Field(None, description="Lyceum extension: the gated LM's gate signal")
    gating: GatingIn | None = Field(
        None,
        description="Lyceum extension: gated generation (each step's modulation sets the sampling "
        "parameters, so `temperature`, `top_p`, `top_k`, the penalties and `gate_signal` are left out); "
        "each choice then reports its `gating` (not in streamed chunks)",
    )

    @property
    def choices(self) -> int:
        return self.n or 1

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    def stop_strings(self) -> list[str]:
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or ())
        if len(stop) > MAX_STOP_STRINGS or any(not s for s in stop):
            raise InvalidArgument(f"stop: at most {MAX_STOP_STRINGS} non-empty strings", field="stop")
        return stop

    def check(self) -> None:
        """What the field types cannot say."""
        if self.stream_options is not None and not self.stream:
            raise InvalidArgument(
                "stream_options is only allowed when stream is true", field="stream_options"
            )
        if self.logit_bias:
            raise InvalidArgument("logit_bias is not supported", field="logit_bias")
        if self.gating is not None and self.gating.mode is not GatingMode.NONE and self.temperature == 0:
            raise InvalidArgument("gating samples: leave temperature out", field="temperature")
        self.stop_strings()

    def generations(
        self,
        max_new_tokens: int,
        record: bool,
        top_logprobs: int,
        *,
        prompt: str = "",
        messages: list[clients.ChatMessage] | None = None,
        prompt_token_ids: list[int] | None = None,
    ) -> list[clients.GenerateSpec]:
        """The `n` generations of one context: temperature 0 decodes greedily, else samples with choice i
        seeded `seed + i`."""
        greedy = self.temperature == 0
        params = clients.SamplingParams(
            temperature=None if greedy else self.temperature,
            top_k=self.top_k,
            top_p=self.top_p,
            repetition_penalty=self.repetition_penalty,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
        )
        strategy = clients.DecodingStrategy.GREEDY if greedy else clients.DecodingStrategy.SAMPLE
        return [
            clients.GenerateSpec(
                model=self.model,
                prompt=prompt,
                messages=list(messages or ()),
                prompt_token_ids=list(prompt_token_ids or ()),
                max_new_tokens=max_new_tokens,
                strategy=strategy,
                params=params,
                stop=self.stop_strings(),
                seed=None if self.seed is None else (self.seed + i) % SEED_SPACE,
                gate_signal=self.gate_signal,
                top_logprobs=top_logprobs,
                record=record,
                subject=self.user,
                gating=self.gating.to_domain() if self.gating else None,
            )
            for i in range(self.choices)
        ]


class ChatCompletionRequest(CommonFields):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "model": "lm-demo@production",
                    "messages": [
                        {"role": "system", "content": "You are a patient tutor."},
                        {"role": "user", "content": "What is a fraction?"},
                    ],
                    "max_tokens": 64,
                },
                {
                    "model": "lm-demo@production",
                    "messages": [{"role": "user", "content": "Once upon a time"}],
                    "temperature": 0,
                    "logprobs": True,
                    "top_logprobs": 3,
                    "stream": True,
                    "stream_options": {"include_usage": True},
                },
            ]
        },
    )

    messages: list[ChatMessageIn] = Field(min_length=1, description="The conversation so far")
    max_tokens: MaxTokens | None = Field(
        None, description="Most tokens to generate (default: as many as the context holds)"
    )
    max_completion_tokens: MaxTokens | None = Field(None, description="The same as `max_tokens`")
    logprobs: bool | None = Field(None, description="Return each token's log-probability")
    top_logprobs: TopLogprobs | None = Field(None, description="With `logprobs`: alternatives per token")
    store: bool | None = Field(
        None,
        description="Record the completion durably and answer its id (default: the deployment's setting, on "
        "unless turned off)",
    )
    response_format: ResponseFormat | None = None

    def to_specs(self, *, record_by_default: bool) -> list[clients.GenerateSpec]:
        self.check()
        if self.top_logprobs and not self.logprobs:
            raise InvalidArgument("top_logprobs requires logprobs to be true", field="top_logprobs")
        if (
            self.max_tokens is not None
            and self.max_completion_tokens is not None
            and self.max_tokens != self.max_completion_tokens
        ):
            raise InvalidArgument(
                "max_tokens and max_completion_tokens differ; give one", field="max_completion_tokens"
            )
        max_new_tokens = self.max_completion_tokens or self.max_tokens or MAX_NEW_TOKENS
        record = record_by_default if self.store is None else self.store
        top = (self.top_logprobs or 0) if self.logprobs else 0
        messages = [m.to_domain() for m in self.messages]
        return self.generations(max_new_tokens, record, top, messages=messages)


Prompt = str | list[str] | list[TokenId] | list[list[TokenId]]


class CompletionRequest(CommonFields):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"model": "lm-demo@production", "prompt": "Once upon a time", "max_tokens": 32, "seed": 7},
                {"model": "lm-demo@production", "prompt": "The cat", "temperature": 0, "logprobs": 3},
            ]
        },
    )

    prompt: Prompt = Field(
        description=f"The text to continue; or up to {MAX_PROMPTS} texts, or token ids (one list, or a list "
        "per prompt)",
    )
    max_tokens: MaxTokens | None = Field(
        None, description=f"Most tokens to generate (default {LEGACY_MAX_TOKENS})"
    )
    logprobs: TopLogprobs | None = Field(
        None, description="Return each token's log-probability, and this many alternatives (0-20)"
    )
    echo: bool | None = Field(None, description="Not supported: only false")
    best_of: int | None = Field(None, ge=1, le=MAX_CHOICES, strict=True, description="Only equal to `n`")
    suffix: str | None = Field(None, description="Not supported: only null")
    store: bool | None = Field(
        None, description="Lyceum extension: record the completion (default: the deployment's setting)"
    )

    def prompts(self) -> list[str | list[int]]:
        """Each prompt: a text or token ids."""
        prompt = self.prompt
        if isinstance(prompt, str):
            items: list[str | list[int]] = [prompt]
        elif prompt and all(isinstance(p, int) for p in prompt):
            items = [list(prompt)]  # type: ignore[arg-type]
        else:
            items = list(prompt)  # type: ignore[arg-type]
        if not items or len(items) > MAX_PROMPTS:
            raise InvalidArgument(f"prompt: give 1 to {MAX_PROMPTS} prompts", field="prompt")
        if not all(items):
            raise InvalidArgument("prompt must not be empty", field="prompt")
        return items

    def to_specs(self, *, record_by_default: bool) -> list[clients.GenerateSpec]:
        """`n` specs per prompt, prompt by prompt (choice index = prompt index * n + i)."""
        self.check()
        if self.echo:
            raise InvalidArgument("echo is not supported", field="echo")
        if self.suffix:
            raise InvalidArgument("suffix is not supported", field="suffix")
        if self.best_of is not None and self.best_of != self.choices:
            raise InvalidArgument("best_of must equal n (choices are not ranked)", field="best_of")
        record = record_by_default if self.store is None else self.store
        max_new_tokens = self.max_tokens or LEGACY_MAX_TOKENS
        top = self.logprobs or 0
        specs = []
        for prompt in self.prompts():
            if isinstance(prompt, str):
                specs += self.generations(max_new_tokens, record, top, prompt=prompt)
            else:
                specs += self.generations(max_new_tokens, record, top, prompt_token_ids=prompt)
        return specs
