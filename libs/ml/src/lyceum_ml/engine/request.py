"""What a caller asks of the engine (a `Request`: one row of a batch) and what it gets back, token by token
(`TokenEvent`s, then one `Finish`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import Tensor

from lyceum_ml.engine.control import Control, Controller
from lyceum_ml.sampling import SamplingParams

MAX_TOP_LOGPROBS = 20
FINISH_REASONS = ("eos", "stop", "length", "cancelled", "error")


@dataclass(frozen=True)
class StepView:
    """What a step hook sees of a row: its raw logits (V,), the shaped probabilities it would sample from,
    the tokens so far and the step index (0 = the first new token)."""

    logits: Tensor
    probs: Tensor
    prompt_ids: tuple[int, ...]
    generated_ids: tuple[int, ...]
    step: int


# A per-step hook: sees the row's logits and may choose the token (return its id) or leave it (None).
Hook = Callable[[StepView], int | None]


@dataclass(frozen=True)
class Request:
    """One sequence to continue. `seed` starts the row's own RNG stream (sampling never depends on other
    rows); `stop_ids` end it like EOS (a chat template's end of turn); `adapter` is an adapter loaded into
    the engine's model, `gate` the gate signal of every token (gated models only). A `control`ler decides
    each step's sampling parameters and gate signal instead (`gate` is then the prompt's, until the first
    decision); `hook` may still pick the token."""

    prompt_ids: tuple[int, ...]
    max_new_tokens: int
    params: SamplingParams = field(default_factory=SamplingParams)
    greedy: bool = False
    seed: int = 0
    stop: tuple[str, ...] = ()
    stop_ids: frozenset[int] = frozenset()
    adapter: str | None = None
    gate: float | None = None
    top_logprobs: int = 0
    hook: Hook | None = None
    control: Controller | None = None

    def validate(self, max_context: int) -> None:
        if not self.prompt_ids:
            raise ValueError("prompt_ids is empty")
        if len(self.prompt_ids) > max_context:
            raise ValueError(f"prompt of {len(self.prompt_ids)} tokens exceeds the context of {max_context}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not 0 <= self.top_logprobs <= MAX_TOP_LOGPROBS:
            raise ValueError(f"top_logprobs must be in [0, {MAX_TOP_LOGPROBS}]")
        if self.gate is not None and not 0 <= self.gate <= 1:
            raise ValueError(f"gate signal must be in [0, 1], got {self.gate}")
        self.params.validate()


@dataclass(frozen=True)
class TokenEvent:
    """A chosen token: its log-probability (and probability) under the distribution it was chosen from, the
    `top_logprobs` most likely (id, log-prob) of that distribution, and the visible text so far."""

    token_id: int
    logprob: float
    probability: float
    top: tuple[tuple[int, float], ...]
    text: str
    control: Control | None = None  # the controller's decision this token was chosen under


@dataclass(frozen=True)
class Finish:
    """The end of a row: the whole continuation's text, why it ended, every chosen token and log-prob."""

    text: str
    reason: str
    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    prompt_tokens: int
    error: BaseException | None = None


Event = TokenEvent | Finish
