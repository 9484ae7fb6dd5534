"""Bodies of the AI Token Wheel compatibility API, field for field as the original backend had them
(cmmiller26/ai-fun-token-wheel-v2, `backend/app/models.py`), with their conversions from the sampler client's
dataclasses. What the original kept per session beyond the tokens (when it was created, when each token was
chosen and whether it was drawn from Other) is kept by the sampler, so every gateway replica answers alike.

Token texts are strings there: a token whose bytes are not valid UTF-8 on their own is shown as the original
showed it (its bytes decoded with U+FFFD replacement characters); the native API has the bytes themselves.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

from lyceum_fleet import sampler as clients
from lyceum_gateway.schemas.gating import GatingIn, GatingStepOut

ABOVE_THRESHOLD = "above_threshold"
OTHER = "other"


def utcnow() -> datetime:
    return datetime.now(UTC)


def original_time(moment: datetime) -> str:
    """The original's timestamps: naive UTC ISO 8601 with a `Z` appended."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"


def token_text(token: clients.Token) -> str:
    """What the original's `tokenizer.decode([id])` showed for a token."""
    return token.text if token.is_valid_utf8 else token.data.decode("utf-8", errors="replace")


def category(entry: clients.HistoryEntry) -> str:
    return ABOVE_THRESHOLD if entry.category is clients.Category.ABOVE else OTHER


# --- requests -------------------------------------------------------------------------------------------


class CreateSessionRequest(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_name: str | None = Field(
        None,
        description="A model the sampler serves (see `/api/models`); the deployment's default if omitted",
        examples=["tiny-lm"],
    )
    gating: GatingIn | None = Field(
        None,
        description="Lyceum extension: each step's wheel is shaped by that step's modulation (temperature "
        "is then set by it, not by the query), and each appended token carries its gate signal",
    )


class SetPromptRequest(BaseModel):
    prompt: str = Field(min_length=1, description="Initial text prompt", examples=["The cat sat on the"])


class AppendTokenRequest(BaseModel):
    token_id: int | None = Field(None, description="Token ID to append")
    token_text: str | None = Field(None, description="Token text to append (exactly one token)")
    category: str | None = Field(None, description="Set to 'other' for backend sampling")


# --- responses ------------------------------------------------------------------------------------------


class TokenData(BaseModel):
    token_id: int
    token_text: str
    probability: float
    log_probability: float | None = None

    @classmethod
    def from_domain(cls, p: clients.TokenProbability) -> TokenData:
        return cls(
            token_id=p.token.id,
            token_text=token_text(p.token),
            probability=p.probability,
            log_probability=p.logprob,
        )


class AppendedTokenInfo(BaseModel):
    token_id: int
    token_text: str
    probability: float
    category: str = Field(examples=[ABOVE_THRESHOLD, OTHER])
    sampled_from_other: bool | None = Field(None, description="true when drawn from Other, else null")

    @classmethod
    def from_domain(cls, entry: clients.HistoryEntry) -> AppendedTokenInfo:
        return cls(
            token_id=entry.token.id,
            token_text=token_text(entry.token),
            probability=entry.probability,
            category=category(entry),
            sampled_from_other=True if entry.from_other else None,
        )


class TokenHistoryItem(BaseModel):
    token_id: int
    token_text: str
    probability: float
    category: str
    selected_at: str
    sampled_from_other: bool | None = None

    @classmethod
    def from_entry(cls, entry: clients.HistoryEntry, session: clients.Session) -> TokenHistoryItem:
        info = AppendedTokenInfo.from_domain(entry)
        # (a sampler that does not say when: the earliest time known)
        selected_at = entry.chosen_at or session.created_at or utcnow()
        return cls(
            token_id=info.token_id,
            token_text=info.token_text,
            probability=info.probability,
            category=info.category,
            selected_at=original_time(selected_at),
            sampled_from_other=info.sampled_from_other,
        )


def token_history(session: clients.Session) -> list[TokenHistoryItem]:
    return [TokenHistoryItem.from_entry(e, session) for e in session.generated]


class OtherCategoryInfo(BaseModel):
    total_probability: float
    token_count: int
    sample_tokens: list[TokenData]


class OtherCategorySelectionInfo(BaseModel):
    total_probability: float
    token_count: int
    selected_token_rank: int = Field(description="1-based rank of the drawn token in the whole vocabulary")


class CreateSessionResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    session_id: str
    model_name: str
    created_at: str


class SessionStateResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    session_id: str
    model_name: str
    initial_prompt: str
    current_text: str
    token_history: list[TokenHistoryItem]
    generation_count: int
    created_at: str
    last_accessed: str

    @classmethod
    def from_domain(cls, session: clients.Session, accessed_at: datetime) -> SessionStateResponse:
        """`accessed_at`: this call (every access refreshes the session, as in the original)."""
        return cls(
            session_id=session.session_id,
            model_name=session.model,
            initial_prompt=session.prompt,
            current_text=session.text,
            token_history=token_history(session),
            generation_count=len(session.generated),
            created_at=original_time(session.created_at or accessed_at),
            last_accessed=original_time(accessed_at),
        )


class SetPromptResponse(BaseModel):
    session_id: str
    current_text: str
    token_count: int
    message: str


class NextTokenProbsResponse(BaseModel):
    session_id: str
    current_text: str
    threshold: float
    temperature: float
    above_threshold_tokens: list[TokenData]
    other_category: OtherCategoryInfo
    total_above_threshold_probability: float
    vocabulary_size: int
    gating: GatingStepOut | None = Field(
        None, description="Lyceum extension: gated sessions' step decision (absent for others)"
    )


class AppendTokenResponse(BaseModel):
    session_id: str
    previous_text: str
    appended_token: AppendedTokenInfo
    current_text: str
    token_history: list[TokenHistoryItem]
    other_category_info: OtherCategorySelectionInfo | None = None


class UndoTokenResponse(BaseModel):
    session_id: str
    previous_text: str
    removed_token: AppendedTokenInfo
    current_text: str
    token_history: list[TokenHistoryItem]
    message: str


class DeleteSessionResponse(BaseModel):
    message: str
    session_id: str


class ModelInfo(BaseModel):
    id: str
    name: str
    description: str
    parameters: str
    default: bool


class ModelsResponse(BaseModel):
    models: list[ModelInfo]


class HealthResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    status: str = Field(examples=["healthy"])
    model_loaded: bool
    timestamp: str


class ReadyResponse(BaseModel):
    status: str = Field(examples=["ready"])
