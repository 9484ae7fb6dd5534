"""What the predictor does when a learner's history outgrows the model's context.

Every event stays stored; the policy decides which of them the model conditions on.

- `sliding_window` (the default): the most recent events, at most `window`. When an append would exceed it,
  the window moves forward by whole `stride`s of events and the learner's cache is rebuilt over the new
  window with positions re-based to 0 (the learned BOS pair stays at the front as an attention sink). Where a
  window starts is a function of the history length alone, so every process that rebuilds a learner builds
  the same cache, and a prediction equals a fresh prefill of the window. The stride amortises the rebuild:
  a hot learner is re-prefilled once per `stride` events, not on every append.
- `reject`: appends and registrations past `window` events fail with INVALID_ARGUMENT.

`window` stays below the model's limit by a reserve, so forecasts and curriculum searches still have room to
roll out past a full window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Policy = Literal["sliding_window", "reject"]


@dataclass(frozen=True)
class ContextPolicy:
    kind: Policy
    window: int  # events the model conditions on at most
    stride: int = 1  # events the window moves by (sliding_window)

    def __post_init__(self) -> None:
        if self.window < 1 or not 1 <= self.stride <= self.window:
            raise ValueError(f"need window >= 1 and 1 <= stride <= window, got {self.window}, {self.stride}")

    @classmethod
    def build(
        cls, kind: Policy, limit: int, window: int | None = None, stride: int | None = None
    ) -> ContextPolicy:
        """The policy for a model that can condition on `limit` events: under `reject` the window is the
        limit; under `sliding_window` it defaults to 7/8 of it (the rest is room for roll-outs), moving by
        1/8 of the window at a time."""
        if kind == "reject":
            return cls("reject", min(window or limit, limit))
        window = min(window or max(1, limit - limit // 8), limit)
        return cls("sliding_window", window, min(stride or max(1, window // 8), window))

    @property
    def slides(self) -> bool:
        return self.kind == "sliding_window"

    def start(self, history_len: int) -> int:
        """Index of the first event in context for a history of `history_len` events."""
        if not self.slides or history_len <= self.window:
            return 0
        return -(-(history_len - self.window) // self.stride) * self.stride

    def context_len(self, history_len: int) -> int:
        return history_len - self.start(history_len)
