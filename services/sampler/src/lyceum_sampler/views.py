"""What the engine returns: plain dataclasses for sessions, tokens, distributions and generation events
(the servicer turns them into protos), and how a token is shown (text if valid UTF-8, else its bytes)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from lyceum_ml.causal_lm import CausalLM
from lyceum_sampler.gating import Decision, Gating, replayed
from lyceum_sampler.sessions import SessionState, Shown


@dataclass(frozen=True)
class Token:
    id: int
    text: str  # "" unless the token's bytes are valid UTF-8 on their own
    raw: bytes
    is_valid_utf8: bool


@dataclass(frozen=True)
class TokenProb:
    token: Token
    probability: float

    @property
    def logprob(self) -> float:
        return math.log(self.probability) if self.probability > 0 else -math.inf


@dataclass(frozen=True)
class HistoryItem:
    token: Token
    probability: float
    category: str  # "above" | "other"
    rank: int
    chosen_at: float  # time.time() seconds
    from_other: bool
    gating: Decision | None = None  # gated sessions: the step's decision it was chosen under


@dataclass(frozen=True)
class SessionView:
    session_id: str
    model: str
    prompt: str
    prompt_ids: list[int]
    generated: list[HistoryItem]
    text: str  # prompt + generated, decoded (an incomplete UTF-8 tail shows as U+FFFD)
    context_len: int
    max_context_len: int
    created_at: float  # time.time() seconds
    updated_at: float
    shown: Shown | None  # the settings a distribution was last recorded as shown with
    adapter: str = ""  # the adapter version it is served with ("" = none)
    gate: float | None = None
    gating: Gating | None = None


@dataclass(frozen=True)
class Distribution:
    session_id: str
    above: list[TokenProb]  # most likely first
    other_probability: float
    other_count: int
    other_top: list[TokenProb]
    threshold: float
    context_len: int
    gating: Decision | None = None  # gated sessions: the decision that shaped it


@dataclass(frozen=True)
class GenEvent:
    token: Token | None  # None in the final event
    probability: float
    text: str  # the continuation so far
    finish_reason: str  # "" until the final event: "eos" | "stop" | "length"
    logprob: float = 0.0
    top: list[TokenProb] = field(default_factory=list)  # the most likely alternatives
    # the final event only
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = ""  # what served it, versions resolved
    gating_step: Decision | None = None  # gated tokens: the decision the token was chosen under
    gating: Gating | None = None  # the final event of a request with gating


def token_info(lm: CausalLM, token_id: int) -> Token:
    raw = lm.token_bytes(token_id)
    try:
        return Token(token_id, raw.decode("utf-8"), raw, True)
    except UnicodeDecodeError:
        return Token(token_id, "", raw, False)


class Tokens:
    """How one model's tokens are shown, memoised as they are first shown (a vocabulary never changes;
    a threshold-0 distribution of a 50k vocabulary would otherwise spend most of its time here)."""

    def __init__(self, lm: CausalLM) -> None:
        self.lm = lm
        self._memo: dict[int, Token] = {}

    def __call__(self, token_id: int) -> Token:
        token = self._memo.get(token_id)
        if token is None:
            token = self._memo[token_id] = token_info(self.lm, token_id)
        return token


def view(state: SessionState, tokens: Tokens) -> SessionView:
    lm = tokens.lm
    generated = [
        HistoryItem(
            tokens(g.token_id),
            g.probability,
            g.category,
            g.rank,
            g.chosen_at,
            g.from_other,
            replayed(state.gating, g.modulation) if state.gating else None,
        )
        for g in state.generated
    ]
    continuation = b"".join(item.token.raw for item in generated).decode("utf-8", errors="replace")
    return SessionView(
        session_id=state.session_id,
        model=state.model,
        prompt=state.prompt,
        prompt_ids=list(state.prompt_ids),
        generated=generated,
        text=state.prompt + continuation,
        context_len=len(state.prompt_ids) + len(state.generated),
        max_context_len=lm.max_context,
        created_at=state.created_at,
        updated_at=state.updated_at,
        shown=state.shown,
        adapter=state.adapter,
        gate=state.gate,
        gating=state.gating,
    )
