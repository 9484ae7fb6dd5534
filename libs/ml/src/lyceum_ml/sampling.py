"""Next-token distributions: shaping logits into probabilities (the engine's and the token wheel's), splitting
them at a threshold into shown tokens and an "Other" bucket, and sampling from that bucket. Generation itself
is `lyceum_ml.engine`'s."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    repetition_penalty: float = 1.0  # 1 = off; CTRL-style over previous tokens
    presence_penalty: float = 0.0  # OpenAI-style, over generated tokens: once per token present
    frequency_penalty: float = 0.0  # ... and per occurrence

    def validate(self) -> None:
        """Raises ValueError naming the first field out of range."""
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be finite and > 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not self.repetition_penalty >= 1:  # also rejects NaN
            raise ValueError(f"repetition_penalty must be >= 1, got {self.repetition_penalty}")
        for name in ("presence_penalty", "frequency_penalty"):
            if not -2 <= getattr(self, name) <= 2:
                raise ValueError(f"{name} must be in [-2, 2], got {getattr(self, name)}")


def shape(
    logits: Tensor,
    params: SamplingParams,
    previous_ids: Sequence[int] = (),
    generated_ids: Sequence[int] = (),
) -> Tensor:
    """Logits (V,) -> fp64 probabilities (V,): repetition penalty (over `previous_ids`: prompt and output),
    presence and frequency penalties (over `generated_ids`, the output only, as OpenAI's), temperature,
    top-k, top-p; renormalised.

    Top-k and top-p cut by value, so tokens tied with the last one kept are kept too (as in transformers)."""
    params.validate()
    x = logits.detach().to(torch.float64, copy=True)  # (V,); the caller's logits stay untouched
    if params.repetition_penalty != 1 and len(previous_ids):
        ids = torch.tensor(sorted(set(previous_ids)), device=x.device)
        seen = x[ids]
        x[ids] = torch.where(seen > 0, seen / params.repetition_penalty, seen * params.repetition_penalty)
    if (params.presence_penalty or params.frequency_penalty) and len(generated_ids):
        ids, counts = torch.tensor(list(generated_ids), device=x.device).unique(return_counts=True)
        x[ids] -= params.presence_penalty + params.frequency_penalty * counts.to(x.dtype)
    x = x / params.temperature
    if 0 < params.top_k < x.numel():
        kth = torch.topk(x, params.top_k).values[-1]
        x = x.masked_fill(x < kth, -math.inf)
    probs = torch.softmax(x, dim=0)
    if params.top_p < 1:
        cutoff = _nucleus_cutoff(probs, params.top_p)
        probs = torch.softmax(x.masked_fill(probs < cutoff, -math.inf), dim=0)
    return probs


def _nucleus_cutoff(probs: Tensor, top_p: float) -> Tensor:
    """The probability of the last token (most likely first) needed for a cumulative mass >= top_p.

    Looks at a growing head of the distribution: sorting 50k values costs ~20 ms on CPU, topk far less."""
    m = 64
    while True:
        head = torch.topk(probs, min(m, probs.numel())).values  # (m,) descending
        mass = torch.cumsum(head, dim=0)
        if mass[-1] >= top_p or head.numel() == probs.numel():
            i = int(torch.searchsorted(mass, torch.tensor([top_p], dtype=mass.dtype, device=mass.device)))
            return head[min(i, head.numel() - 1)]
        m *= 8


@dataclass(frozen=True)
class Split:
    above: list[tuple[int, float]]  # (id, p) with p >= threshold, most likely first (ties by id)
    other_total: float  # total probability of the tokens below the threshold
    other_count: int  # how many of them have p > 0
    other_top: list[tuple[int, float]]  # the other_top_k most likely of them


class EmptyOther(ValueError):
    """No token with non-zero probability lies below the threshold."""


def _ranked(ids: Tensor, p: Tensor) -> list[tuple[int, float]]:
    """Pairs sorted by p descending, then id ascending."""
    return sorted(zip(ids.tolist(), p.tolist(), strict=True), key=lambda t: (-t[1], t[0]))


def top(p: Tensor, k: int) -> list[tuple[int, float]]:
    """The k most likely (id, p) with p > 0, most likely first; ties (at the cut too) go to the lower id."""
    k = min(k, int(torch.count_nonzero(p)))
    if k == 0:
        return []
    kth = torch.topk(p, k).values[-1]
    ids = torch.nonzero(p >= kth).flatten()  # (>= k,) ascending ids
    return _ranked(ids, p[ids])[:k]


def _other_mask(probs: Tensor, threshold: float) -> Tensor:
    return (probs < threshold) & (probs > 0)


def split(probs: Tensor, threshold: float, other_top_k: int = 10) -> Split:
    """Probabilities (V,) -> tokens at or above `threshold` and the Other bucket of the rest (p > 0)."""
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    if other_top_k < 0:
        raise ValueError(f"other_top_k must be >= 0, got {other_top_k}")
    probs = probs.detach().cpu().to(torch.float64)
    above_ids = torch.nonzero((probs >= threshold) & (probs > 0)).flatten()
    other = _other_mask(probs, threshold)
    other_p = probs.where(other, torch.zeros((), dtype=probs.dtype))
    return Split(
        above=_ranked(above_ids, probs[above_ids]),
        other_total=float(other_p.sum()),
        other_count=int(other.sum()),
        other_top=top(other_p, other_top_k),
    )


def sample_other(probs: Tensor, threshold: float, generator: torch.Generator) -> tuple[int, float]:
    """A token drawn from the Other bucket renormalised -> (id, its probability in the full distribution)."""
    probs = probs.detach().cpu().to(torch.float64)
    other = _other_mask(probs, threshold)
    if not other.any():
        raise EmptyOther(f"no token with non-zero probability lies below threshold {threshold}")
    weights = probs.where(other, torch.zeros((), dtype=probs.dtype))  # multinomial renormalises
    token = int(torch.multinomial(weights, 1, generator=generator))
    return token, float(probs[token])


def spin(probs: Tensor, generator: torch.Generator) -> tuple[int, float]:
    """A token drawn from the whole distribution (a spin of the wheel) -> (id, its probability)."""
    probs = probs.detach().cpu().to(torch.float64)
    token = int(torch.multinomial(probs, 1, generator=generator))
    return token, float(probs[token])


def rank_of(probs: Tensor, token_id: int) -> int:
    """Rank of a token in the distribution: 0 = most likely, ties broken by id."""
    p = probs[token_id]
    ids = torch.arange(probs.numel(), device=probs.device)
    return int(((probs > p) | ((probs == p) & (ids < token_id))).sum())


def category(probs: Tensor, token_id: int, threshold: float) -> str:
    """Where a token falls at this threshold: "above" (shown) or "other"; p = 0 is always "other"."""
    p = float(probs[token_id])
    return "above" if p >= threshold and p > 0 else "other"
