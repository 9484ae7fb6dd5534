"""The values a sampler call takes and returns, as plain dataclasses (token-wheel sessions, next-token
distributions, streamed generation, scoring, served models): what `lyceum_fleet.sampler`'s Protocol speaks,
with no proto in sight."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from lyceum_fleet.gating import Gating, GatingReport, GatingStep


@dataclass(frozen=True, slots=True)
class Token:
    """A token as shown to a person: `text` is its decoded text when `data` (its raw bytes) is valid UTF-8 on
    its own, else empty."""

    id: int
    text: str
    data: bytes
    is_valid_utf8: bool


@dataclass(frozen=True, slots=True)
class TokenProbability:
    token: Token
    probability: float
    logprob: float


@dataclass(frozen=True, slots=True)
class OtherBucket:
    """The tokens below the threshold: their total probability, how many, and the most likely of them."""

    probability: float
    count: int
    top: list[TokenProbability]


class Category(enum.StrEnum):
    """Where a chosen token was when it was chosen: above the threshold, or in the Other bucket."""

    ABOVE = "above"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One generated token, with the probability, category and rank (0 = most likely) it had under the
    settings shown when it was chosen; when it was chosen, and whether it was drawn from Other."""

    token: Token
    probability: float
    category: Category
    rank: int
    chosen_at: datetime | None = None  # None from a sampler that does not say
    from_other: bool = False
    gating: GatingStep | None = None  # gated sessions: the decision it was chosen under


@dataclass(frozen=True, slots=True)
class ShownSettings:
    """The settings a session's distribution was last shown with (kept by the sampler, so every gateway
    replica sees them)."""

    threshold: float
    params: SamplingParams
    shown_at: datetime


@dataclass(frozen=True, slots=True)
class Session:
    session_id: str
    model: str
    prompt: str
    prompt_token_ids: list[int]
    generated: list[HistoryEntry]
    text: str
    context_len: int
    max_context_len: int
    created_at: datetime | None = None  # None from a sampler that does not say
    updated_at: datetime | None = None
    last_shown: ShownSettings | None = None
    adapter: str = ""  # the adapter version it is served with ("" = none)
    gate_signal: float | None = None
    gating: GatingReport | None = None  # the gating it was created with, pinned


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How the next-token distribution is shaped; None leaves a knob at the sampler's default (off).
    `presence_penalty` / `frequency_penalty` are OpenAI's, in [-2, 2], over the generated tokens only."""

    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None


@dataclass(frozen=True, slots=True)
class Distribution:
    """The next-token distribution split at `threshold`: `above` (most likely first) and the Other bucket."""

    session_id: str
    above: list[TokenProbability]
    other: OtherBucket
    threshold: float
    context_len: int
    gating: GatingStep | None = None  # gated sessions: the step's decision that shaped it


@dataclass(frozen=True, slots=True)
class TokenChoice:
    """Which token to append: exactly one of an id, an exact single-token text, a draw from Other, or a spin
    (a draw from the whole distribution)."""

    token_id: int | None = None
    token_text: str | None = None
    from_other: bool = False
    spin: bool = False


@dataclass(frozen=True, slots=True)
class AppendedToken:
    session: Session
    appended: HistoryEntry


@dataclass(frozen=True, slots=True)
class UndoneToken:
    session: Session
    removed: HistoryEntry


class DecodingStrategy(enum.StrEnum):
    GREEDY = "greedy"
    SAMPLE = "sample"
    BEAM = "beam"


class ChatMessage(NamedTuple):
    """A chat turn, `(role, content)`: role "system", "user" or "assistant" (the sampler renders the turns
    with the model's chat template)."""

    role: str
    content: str


@dataclass(frozen=True, slots=True)
class GenerateSpec:
    """One stateless generation. The context is exactly one of `prompt` (text), `messages` (chat turns; the
    generation then also stops at the template's end of turn) or `prompt_token_ids`. `model` may name an
    adapter, or `adapter` one of `model`'s. `top_logprobs` alternatives come with each token; `record` has the
    sampler store the completion (with `subject`, else the caller's) and name it in the final step."""

    model: str
    prompt: str
    max_new_tokens: int
    strategy: DecodingStrategy = DecodingStrategy.SAMPLE
    params: SamplingParams = field(default_factory=SamplingParams)
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    num_beams: int = 0
    messages: list[ChatMessage] = field(default_factory=list)
    prompt_token_ids: list[int] = field(default_factory=list)
    adapter: str | None = None
    gate_signal: float | None = None
    top_logprobs: int = 0
    record: bool = False
    subject: str | None = None
    gating: Gating | None = None


@dataclass(frozen=True, slots=True)
class GenerationStep:
    """A streamed generation message: a chosen `token` (None in the final message) with its probability and
    log-probability under the distribution it was drawn from and the `top_logprobs` alternatives, the
    continuation so far as `text`, and in the final message only: `finish_reason` ("eos", "stop" or
    "length"), the prompt's and the completion's token counts, the `completion_id` when recorded, and the
    `model` that served it (resolved, with versions; None from a sampler that does not say)."""

    token: Token | None
    probability: float
    text: str
    finish_reason: str
    logprob: float = 0.0
    top_logprobs: list[TokenProbability] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    completion_id: str | None = None
    model: str | None = None
    gating_step: GatingStep | None = None  # gated tokens: the decision the token was chosen under
    gating: GatingReport | None = None  # the final message of a request with gating


@dataclass(frozen=True, slots=True)
class ScoreSpec:
    """The log-probabilities of a given completion after a context, under `model` (or an adapter). The
    context is exactly one of `prompt`, `messages` (the assistant turn opened) or `prompt_token_ids`; the
    completion is exactly one of `completion` (text, tokenized as a continuation) or its token ids."""

    model: str
    prompt: str = ""
    messages: list[ChatMessage] = field(default_factory=list)
    prompt_token_ids: list[int] = field(default_factory=list)
    completion: str = ""
    completion_token_ids: list[int] = field(default_factory=list)
    adapter: str | None = None
    gate_signal: float | None = None


@dataclass(frozen=True, slots=True)
class ScoreResult:
    """Each completion token with its log-probability under the raw model (temperature 1, no shaping)."""

    tokens: list[TokenProbability]
    prompt_tokens: int
    completion_tokens: int
    sum_logprob: float
    model: str


@dataclass(frozen=True, slots=True)
class LanguageModel:
    """A model a sampler serves, or an adapter of the caller's tenant (kind "adapter", with the `base` model
    it applies to); what it is (kind, sizes) is None until a replica has loaded it. `gated`: it takes a gate
    signal."""

    name: str
    kind: str | None
    vocab_size: int | None
    max_context_len: int | None
    loaded: bool
    base: str | None = None
    gated: bool = False
