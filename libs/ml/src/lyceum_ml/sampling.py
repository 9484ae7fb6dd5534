"""Next-token distributions for the token wheel: shaping logits into probabilities, splitting them at a
threshold into shown tokens and an "Other" bucket, sampling from that bucket, and greedy/sampled/beam
generation over a CausalLM."""

from __future__ import annotations

import codecs
import math
from collections.abc import Iterator, Sequence
from copy import deepcopy
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from lyceum_ml.causal_lm import CausalLM


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    repetition_penalty: float = 1.0  # 1 = off; CTRL-style over previous tokens

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


def shape(logits: Tensor, params: SamplingParams, previous_ids: Sequence[int] = ()) -> Tensor:
    """Logits (V,) -> fp64 probabilities (V,): repetition penalty, temperature, top-k, top-p; renormalised.

    Top-k and top-p cut by value, so tokens tied with the last one kept are kept too (as in transformers)."""
    params.validate()
    x = logits.detach().to(torch.float64, copy=True)  # (V,); the caller's logits stay untouched
    if params.repetition_penalty != 1 and len(previous_ids):
        ids = torch.tensor(sorted(set(previous_ids)), device=x.device)
        seen = x[ids]
        x[ids] = torch.where(seen > 0, seen / params.repetition_penalty, seen * params.repetition_penalty)
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


def _top(p: Tensor, k: int) -> list[tuple[int, float]]:
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
        other_top=_top(other_p, other_top_k),
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


def rank_of(probs: Tensor, token_id: int) -> int:
    """Rank of a token in the distribution: 0 = most likely, ties broken by id."""
    p = probs[token_id]
    ids = torch.arange(probs.numel(), device=probs.device)
    return int(((probs > p) | ((probs == p) & (ids < token_id))).sum())


def category(probs: Tensor, token_id: int, threshold: float) -> str:
    """Where a token falls at this threshold: "above" (shown) or "other"; p = 0 is always "other"."""
    p = float(probs[token_id])
    return "above" if p >= threshold and p > 0 else "other"


# --- generation over a CausalLM ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GenStep:
    """A chosen token with its (shaped) probability, or, last, the end: token_id None and a finish_reason."""

    token_id: int | None
    probability: float
    text_so_far: str  # the continuation's text, less any tail that may still become a stop string
    finish_reason: str = ""  # "" | "eos" | "stop" | "length"


class _Text:
    """The continuation's text as tokens arrive: bytes decoded incrementally (a partial UTF-8 character waits
    for its next bytes) and cut before the first stop string."""

    def __init__(self, lm: CausalLM, stop: Sequence[str]) -> None:
        self.lm, self.stop = lm, [s for s in stop if s]
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.text = ""
        self.stopped = False

    def add(self, token_id: int) -> None:
        start = max(0, len(self.text) - max((len(s) for s in self.stop), default=0))
        self.text += self.decoder.decode(self.lm.token_bytes(token_id))
        hits = [i for s in self.stop if (i := self.text.find(s, start)) >= 0]
        if hits:
            self.text, self.stopped = self.text[: min(hits)], True

    def visible(self) -> str:
        """The text less its longest tail that begins some stop string (it may yet complete one)."""
        if self.stopped:
            return self.text
        hold = max((n for s in self.stop for n in range(1, len(s)) if self.text.endswith(s[:n])), default=0)
        return self.text[: len(self.text) - hold]

    def fork(self) -> _Text:
        twin = _Text(self.lm, self.stop)
        twin.text, twin.stopped = self.text, self.stopped
        twin.decoder.setstate(self.decoder.getstate())
        return twin

    def final(self) -> str:
        return self.text if self.stopped else self.text + self.decoder.decode(b"", final=True)


def generate(
    lm: CausalLM,
    prompt_ids: Sequence[int],
    strategy: str = "sample",
    params: SamplingParams | None = None,
    max_new_tokens: int = 64,
    stop: Sequence[str] = (),
    seed: int | None = None,
    num_beams: int = 4,
) -> Iterator[GenStep]:
    """Continues a prompt, yielding each chosen token, then a last step with token_id None, the whole
    continuation and the finish reason. EOS ends generation without being yielded; a stop string ends it with
    the text cut before it. Probabilities are under the shaped distribution; penalties see prompt + output."""
    params = params or SamplingParams()
    params.validate()
    if strategy not in ("greedy", "sample", "beam"):
        raise ValueError(f"strategy must be 'greedy', 'sample' or 'beam', got {strategy!r}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if not prompt_ids:
        raise ValueError("prompt_ids is empty")
    if strategy == "beam":
        yield from _beam_search(lm, list(prompt_ids), params, max_new_tokens, stop, num_beams)
        return
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    cache = lm.new_cache()
    logits = lm.extend(cache, list(prompt_ids))
    ids: list[int] = []
    text = _Text(lm, stop)
    reason = "length"
    for step in range(max_new_tokens):
        probs = shape(logits, params, [*prompt_ids, *ids])
        if strategy == "greedy":
            token = int(torch.argmax(probs))
        else:
            token = int(torch.multinomial(probs, 1, generator=generator))
        if token == lm.eos_id:
            reason = "eos"
            break
        ids.append(token)
        text.add(token)
        yield GenStep(token, float(probs[token]), text.visible())
        if text.stopped:
            reason = "stop"
            break
        if step + 1 == max_new_tokens or lm.cache_len(cache) >= lm.max_context:
            break
        logits = lm.extend(cache, [token])
    yield GenStep(None, 0.0, text.final(), reason)


@dataclass
class _Beam:
    ids: list[int]  # generated tokens, a final EOS excluded
    probs: list[float]
    logprob: float  # total, EOS included
    text: _Text
    cache: Any = None
    logits: Tensor | None = None  # next-token logits (alive beams)
    reason: str = ""

    def score(self) -> float:
        return self.logprob / (len(self.ids) + (self.reason == "eos"))  # mean per token (length penalty 1)


def _beam_search(
    lm: CausalLM,
    prompt: list[int],
    params: SamplingParams,
    max_new_tokens: int,
    stop: Sequence[str],
    num_beams: int,
) -> Iterator[GenStep]:
    """Beam search as in transformers (length penalty 1, early_stopping=False): the num_beams most likely
    unfinished continuations go on, each with its own cache; a candidate ending in EOS or a stop string
    finishes if it ranks among the num_beams best, and the num_beams best finished (by mean log-probability
    per token) are kept. Search ends once no running beam's mean beats the worst kept one, or at
    max_new_tokens (the running beams then finish by length). Yields the best finished hypothesis."""
    if num_beams < 1:
        raise ValueError(f"num_beams must be >= 1, got {num_beams}")
    root = _Beam([], [], 0.0, _Text(lm, stop), lm.new_cache())
    root.logits = lm.extend(root.cache, prompt)
    alive: list[_Beam] = [root]
    finished: list[_Beam] = []
    for step in range(max_new_tokens):
        candidates = []  # (total logprob, beam index, token, p)
        for b, beam in enumerate(alive):
            probs = shape(beam.logits, params, prompt + beam.ids)
            candidates += [(beam.logprob + math.log(p), b, t, p) for t, p in _top(probs, 2 * num_beams)]
        candidates.sort(key=lambda c: (-c[0], c[1], c[2]))
        children: list[tuple[int, _Beam]] = []  # (parent index, child)
        for rank, (logprob, b, token, p) in enumerate(candidates):
            parent = alive[b]
            if token == lm.eos_id:
                if rank < num_beams:
                    finished.append(_Beam(parent.ids, parent.probs, logprob, parent.text, reason="eos"))
                continue
            text = parent.text.fork()
            text.add(token)
            child = _Beam(parent.ids + [token], parent.probs + [p], logprob, text, reason="stop")
            if text.stopped:
                if rank < num_beams:
                    finished.append(child)
            elif len(children) < num_beams:
                child.reason = ""
                children.append((b, child))
        finished = sorted(finished, key=_Beam.score, reverse=True)[:num_beams]
        if not children:
            break
        if step + 1 == max_new_tokens or lm.cache_len(alive[0].cache) >= lm.max_context:
            for _, child in children:
                child.reason = "length"
            finished = sorted(finished + [c for _, c in children], key=_Beam.score, reverse=True)
            break
        best_running = max(c.logprob for _, c in children) / (step + 1)
        if len(finished) == num_beams and finished[-1].score() >= best_running:
            break
        alive = _advance(lm, alive, children)
    best = finished[0]
    text = _Text(lm, stop)
    for token, p in zip(best.ids, best.probs, strict=True):
        text.add(token)
        yield GenStep(token, p, text.visible())
    yield GenStep(None, 0.0, text.final(), best.reason)


def _advance(lm: CausalLM, alive: list[_Beam], children: list[tuple[int, _Beam]]) -> list[_Beam]:
    """Gives each child a cache (its parent's for the last child, copies for the others) and runs its new
    token through it."""
    last_child = {b: i for i, (b, _) in enumerate(children)}
    for i, (b, child) in enumerate(children):
        child.cache = alive[b].cache if last_child[b] == i else deepcopy(alive[b].cache)
    for _, child in children:
        child.logits = lm.extend(child.cache, child.ids[-1:])
    return [child for _, child in children]
