"""Per-step control of rows, batched: a `Controller` sees every row it controls that is about to choose a
token in this engine step at once (its logits and, if it asks, the final-norm hidden state at the last
position), and returns per row the sampling parameters to choose with and the gate signal from the chosen
token on. After the tokens are chosen it is told which (`chosen`), so it can score them.

One controller object may drive many rows (a learned gating policy shared by every request that names it:
its network runs once per step for all of them); rows of different controllers are decided separately."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from torch import Tensor

from lyceum_ml.sampling import SamplingParams

if TYPE_CHECKING:
    from lyceum_ml.engine.request import Request


@dataclass(frozen=True)
class Control:
    """A controller's decision for one row and step: the parameters its token is chosen with, the gate
    signal of the chosen token's forward and every later one until the next decision (None: ungated), and
    whatever the controller wants to keep of the step (`info`: it rides on the row's TokenEvent)."""

    params: SamplingParams
    gate: float | None = None
    info: Any = None


@dataclass(frozen=True)
class ControlView:
    """A row about to choose: `row_id` (the engine's, also its Stream's), its request, the raw fp32 logits
    (V,), the final-norm hidden state (d,) at its last position (when the controller `needs_hidden`), the
    tokens generated so far, and the previous decision (None at the first step)."""

    row_id: int
    request: Request
    logits: Tensor
    hidden: Tensor | None
    generated_ids: tuple[int, ...]
    previous: Control | None

    @property
    def context_ids(self) -> tuple[int, ...]:
        """Prompt and generated tokens: everything the row's next token follows."""
        return (*self.request.prompt_ids, *self.generated_ids)

    @property
    def step(self) -> int:
        return len(self.generated_ids)


class Controller(Protocol):
    needs_hidden: bool  # the views carry hidden states (a little extra work in the forward)

    def decide(self, views: Sequence[ControlView]) -> Sequence[Control]:
        """One decision per view, in order."""
        ...

    def chosen(
        self, views: Sequence[ControlView], controls: Sequence[Control], tokens: Sequence[int]
    ) -> None:
        """The tokens chosen under `decide`'s controls (EOS included: the row then ends)."""
        ...
