"""Bodies of the native `/v1/sessions` API, the token and shaping-knob types the generation bodies share
(`schemas/generation.py`), and their conversions from the sampler client's dataclasses.

Tokens are shown faithfully: `text` is the decoded text when the token's bytes are valid UTF-8 on their own
(`is_valid_utf8`), else empty; `bytes` always holds the raw bytes, base64-encoded (RFC 4648 standard alphabet,
padded), so byte-level tokens that split a character are never lost or replaced.
"""

from __future__ import annotations

import base64
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lyceum_fleet import sampler as clients
from lyceum_gateway.schemas.common import MAX_MODEL_REF_LEN
from lyceum_gateway.schemas.gating import GatingIn, GatingOut, GatingStepOut

AdapterRef = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_MODEL_REF_LEN,
        description="A LoRA adapter of `model`: a registry adapter `name` (its latest version) or "
        "`name@alias`/`name@version` of your tenant (`model` may name the adapter itself instead)",
        examples=["tutor-style@production"],
    ),
]
GateSignal = Annotated[
    float,
    Field(
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="The gated model's gate signal for every token, in [0, 1]; a model without gates "
        "answers 400",
        examples=[0.5],
    ),
]


MAX_OTHER_TOP_K = 1000

# Shaping knobs, shared by bodies (here) and query strings (the routes); unset = the sampler's default (off).
Threshold = Annotated[
    float,
    Field(
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="Tokens at or above this probability get their own wedge; the rest form Other "
        "(default 0.01)",
        examples=[0.05],
    ),
]
Temperature = Annotated[
    float, Field(gt=0.0, allow_inf_nan=False, description="Softmax temperature (default 1)", examples=[0.8])
]
TopK = Annotated[int, Field(ge=0, description="Keep only the k most likely tokens; 0 = off", examples=[50])]
TopP = Annotated[
    float,
    Field(
        gt=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="Keep the smallest set of tokens whose probability reaches p; 1 = off",
        examples=[0.95],
    ),
]
RepetitionPenalty = Annotated[
    float,
    Field(
        ge=1.0,
        allow_inf_nan=False,
        description="CTRL-style penalty on tokens already in the context; 1 = off",
        examples=[1.2],
    ),
]
Seed = Annotated[int, Field(ge=0, lt=2**64, strict=True, description="Makes the draw reproducible")]


class TokenOut(BaseModel):
    id: int = Field(examples=[464])
    text: str = Field(
        description="The decoded text when the token's bytes are valid UTF-8 on their own; else empty",
        examples=[" The"],
    )
    bytes: str = Field(
        description="The token's raw bytes, base64 (RFC 4648, standard alphabet, padded)",
        examples=["IFRoZQ=="],
    )
    is_valid_utf8: bool = Field(description="Whether `bytes` decode as UTF-8 on their own")

    @classmethod
    def from_domain(cls, token: clients.Token) -> TokenOut:
        return cls(
            id=token.id,
            text=token.text,
            bytes=base64.b64encode(token.data).decode("ascii"),
            is_valid_utf8=token.is_valid_utf8,
        )


class TokenProbabilityOut(BaseModel):
    token: TokenOut
    probability: float = Field(examples=[0.21])
    logprob: float = Field(examples=[-1.56])

    @classmethod
    def from_domain(cls, p: clients.TokenProbability) -> TokenProbabilityOut:
        return cls(token=TokenOut.from_domain(p.token), probability=p.probability, logprob=p.logprob)


class OtherBucketOut(BaseModel):
    probability: float = Field(description="Total probability of the tokens below the threshold")
    count: int = Field(description="How many tokens that is (with non-zero probability)")
    top: list[TokenProbabilityOut] = Field(description="The `other_top_k` most likely of them")


class HistoryEntryOut(BaseModel):
    token: TokenOut
    probability: float = Field(description="Its probability under the settings shown when it was chosen")
    category: clients.Category = Field(description="`above` the threshold, or drawn from `other`")
    rank: int = Field(description="Its rank in the whole vocabulary under those settings (0 = most likely)")
    gating: GatingStepOut | None = Field(None, description="Gated sessions: the step it was chosen at")

    @classmethod
    def from_domain(cls, entry: clients.HistoryEntry) -> HistoryEntryOut:
        return cls(
            token=TokenOut.from_domain(entry.token),
            probability=entry.probability,
            category=entry.category,
            rank=entry.rank,
            gating=GatingStepOut.from_domain(entry.gating) if entry.gating else None,
        )


class SessionOut(BaseModel):
    session_id: str
    model: str = Field(examples=["tiny-lm"])
    prompt: str = Field(examples=["Once upon a time"])
    prompt_token_ids: list[int]
    generated: list[HistoryEntryOut] = Field(description="The tokens chosen so far, oldest first")
    text: str = Field(description="Prompt and generated tokens, decoded together")
    context_len: int = Field(description="Tokens in the context (prompt + generated)")
    max_context_len: int = Field(description="The model's context limit")
    adapter: str | None = Field(None, description="The adapter version it is served with, if any")
    gate_signal: float | None = Field(None, description="Its gate signal, if one was given")
    gating: GatingOut | None = Field(None, description="Its gating, if one was given (pinned)")

    @classmethod
    def from_domain(cls, session: clients.Session) -> SessionOut:
        return cls(
            session_id=session.session_id,
            model=session.model,
            prompt=session.prompt,
            prompt_token_ids=session.prompt_token_ids,
            generated=[HistoryEntryOut.from_domain(e) for e in session.generated],
            text=session.text,
            context_len=session.context_len,
            max_context_len=session.max_context_len,
            adapter=session.adapter or None,
            gate_signal=session.gate_signal,
            gating=GatingOut.from_domain(session.gating) if session.gating else None,
        )


class CreateSessionRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"model": "tiny-lm", "prompt": "Once upon a time"}]},
    )

    model: str = Field(
        min_length=1,
        max_length=256,
        description="A model the sampler serves (see `GET /v1/sampler/models`), or a registry `name@alias`",
    )
    prompt: str | None = Field(None, description="The prompt to start from; set it later if omitted")
    adapter: AdapterRef | None = None
    gate_signal: GateSignal | None = None
    gating: GatingIn | None = Field(
        None,
        description="Each step's distribution is shaped by that step's modulation (the distribution and "
        "append calls then take no sampling knobs), and each appended token carries its gate signal",
    )


class SetPromptRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"prompt": "The cat sat"}]})

    prompt: str = Field(description="The new prompt; the generated tokens are cleared")


class DistributionOut(BaseModel):
    session_id: str
    threshold: float = Field(description="The threshold the distribution was split at")
    above: list[TokenProbabilityOut] = Field(
        description="Tokens at or above the threshold, most likely first"
    )
    other: OtherBucketOut
    context_len: int
    gating: GatingStepOut | None = Field(None, description="Gated sessions: this step's decision")

    @classmethod
    def from_domain(cls, d: clients.Distribution) -> DistributionOut:
        return cls(
            session_id=d.session_id,
            threshold=d.threshold,
            above=[TokenProbabilityOut.from_domain(p) for p in d.above],
            other=OtherBucketOut(
                probability=d.other.probability,
                count=d.other.count,
                top=[TokenProbabilityOut.from_domain(p) for p in d.other.top],
            ),
            context_len=d.context_len,
            gating=GatingStepOut.from_domain(d.gating) if d.gating else None,
        )


class SamplingFields(BaseModel):
    """The shaping knobs of a body; each unset one is left at the sampler's default."""

    temperature: Temperature | None = None
    top_k: TopK | None = None
    top_p: TopP | None = None
    repetition_penalty: RepetitionPenalty | None = None

    def sampling_params(self) -> clients.SamplingParams:
        return clients.SamplingParams(
            temperature=self.temperature,
            top_k=self.top_k,
            top_p=self.top_p,
            repetition_penalty=self.repetition_penalty,
        )


class AppendTokenRequest(SamplingFields):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"token_id": 464, "threshold": 0.05, "temperature": 0.8},
                {"token_text": " cat"},
                {"from_other": True, "threshold": 0.05, "temperature": 0.8, "seed": 7},
                {"spin": True, "threshold": 0.05, "seed": 42},
            ]
        },
    )

    token_id: int | None = Field(None, ge=0, lt=2**31, strict=True, description="Append this token")
    token_text: str | None = Field(
        None, min_length=1, description="Append the token whose text this is; it must be exactly one token"
    )
    from_other: Literal[True] | None = Field(
        None, description="Draw a token from the Other bucket, in proportion to its probability"
    )
    spin: Literal[True] | None = Field(
        None,
        description="Spin the wheel: draw a token from the whole distribution shown (under the knobs below), "
        "in proportion to its probability",
    )
    threshold: Threshold | None = Field(
        None,
        description="The threshold the user was shown (with the knobs below), so the appended token's "
        "probability, category and rank, and the Other bucket drawn from, match what they saw",
    )
    seed: Seed | None = Field(
        None, description="Seed for `from_other` and `spin` (default: the session's own stream)"
    )
    expected_context_len: int | None = Field(
        None,
        ge=0,
        strict=True,
        description="Append only if the session holds exactly this many tokens (the `context_len` of the "
        "distribution shown), else 409: a retried append never lands twice",
    )

    @model_validator(mode="after")
    def _exactly_one_choice(self) -> AppendTokenRequest:
        given = [n for n in ("token_id", "token_text", "from_other", "spin") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of token_id, token_text, from_other or spin")
        return self

    def choice(self) -> clients.TokenChoice:
        return clients.TokenChoice(
            token_id=self.token_id,
            token_text=self.token_text,
            from_other=bool(self.from_other),
            spin=bool(self.spin),
        )


class AppendTokenResponse(BaseModel):
    session: SessionOut
    appended: HistoryEntryOut

    @classmethod
    def from_domain(cls, result: clients.AppendedToken) -> AppendTokenResponse:
        return cls(
            session=SessionOut.from_domain(result.session),
            appended=HistoryEntryOut.from_domain(result.appended),
        )


class UndoResponse(BaseModel):
    session: SessionOut
    removed: HistoryEntryOut

    @classmethod
    def from_domain(cls, result: clients.UndoneToken) -> UndoResponse:
        return cls(
            session=SessionOut.from_domain(result.session),
            removed=HistoryEntryOut.from_domain(result.removed),
        )
