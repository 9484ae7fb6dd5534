"""Beam search over the engine's forward passes, the prompt's cache shared by every beam."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from lyceum_ml.causal_lm import CausalLM, Feed
from lyceum_ml.engine.text import TextStream
from lyceum_ml.sampling import SamplingParams, shape, top

Forward = Callable[[Sequence[Feed]], Sequence[Tensor]]


@dataclass(frozen=True)
class GenStep:
    """A chosen token with its (shaped) probability, or, last, the end: token_id None and a finish_reason."""

    token_id: int | None
    probability: float
    text_so_far: str  # the continuation's text, less any tail that may still become a stop string
    finish_reason: str = ""  # "" | "eos" | "stop" | "length"


@dataclass
class _Beam:
    ids: list[int]  # generated tokens, a final EOS excluded
    probs: list[float]
    logprob: float  # total, EOS included
    text: TextStream
    cache: Any = None
    logits: Tensor | None = None  # next-token logits (alive beams)
    reason: str = ""

    def score(self) -> float:
        return self.logprob / (len(self.ids) + (self.reason == "eos"))  # mean per token (length penalty 1)


def beam_search(
    lm: CausalLM,
    forward: Forward,
    prompt: list[int],
    params: SamplingParams,
    max_new_tokens: int,
    stop: Sequence[str],
    num_beams: int,
    adapter: str | None = None,
    gate: float | None = None,
) -> Iterator[GenStep]:
    """Beam search as in transformers (length penalty 1, early_stopping=False): the num_beams most likely
    unfinished continuations go on; a candidate ending in EOS or a stop string
    finishes if it ranks among the num_beams best, and the num_beams best finished (by mean log-probability
    per token) are kept. Search ends once no running beam's mean beats the worst kept one, or at
    max_new_tokens (the running beams then finish by length). Yields the best finished hypothesis.

    The prompt's cache is built once and shared by every beam (models that `shares_prefix`: each beam keeps
    only its own continuation's cache, copied when a beam forks; other models copy whole caches). Each step
    runs every beam's token through `forward` at once (the engine's batch, with other requests' rows)."""
    if num_beams < 1:
        raise ValueError(f"num_beams must be >= 1, got {num_beams}")
    prompt_cache = lm.new_cache()
    [root_logits] = forward([Feed(prompt_cache, prompt, gate=gate, adapter=adapter)])
    shared = prompt_cache if lm.shares_prefix else None
    root = _Beam([], [], 0.0, TextStream(lm.token_bytes, stop), lm.new_cache() if shared else prompt_cache)
    root.logits = root_logits
    alive: list[_Beam] = [root]
    finished: list[_Beam] = []
    for step in range(max_new_tokens):
        candidates = []  # (total logprob, beam index, token, p)
        for b, beam in enumerate(alive):
            probs = shape(beam.logits, params, prompt + beam.ids, beam.ids)
            candidates += [(beam.logprob + math.log(p), b, t, p) for t, p in top(probs, 2 * num_beams)]
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
        if step + 1 == max_new_tokens or len(prompt) + step + 1 >= lm.max_context:
            for _, child in children:
                child.reason = "length"
            finished = sorted(finished + [c for _, c in children], key=_Beam.score, reverse=True)
            break
        best_running = max(c.logprob for _, c in children) / (step + 1)
        if len(finished) == num_beams and finished[-1].score() >= best_running:
            break
        alive = _advance(lm, forward, alive, children, shared, adapter, gate)
    best = finished[0]
    text = TextStream(lm.token_bytes, stop)
    for token, p in zip(best.ids, best.probs, strict=True):
        text.add(token)
        yield GenStep(token, p, text.visible())
    yield GenStep(None, 0.0, text.final(), best.reason)


def _advance(
    lm: CausalLM,
    forward: Forward,
    alive: list[_Beam],
    children: list[tuple[int, _Beam]],
    shared: Any,
    adapter: str | None,
    gate: float | None,
) -> list[_Beam]:
    """Gives each child a cache (its parent's for the last child, copies for the others: of the beam's own
    continuation only when the prompt is shared) and runs every child's new token in one forward."""
    last_child = {b: i for i, (b, _) in enumerate(children)}
    for i, (b, child) in enumerate(children):
        parent = alive[b].cache
        child.cache = parent if last_child[b] == i else lm.copy_cache(parent)
    feeds = [Feed(c.cache, c.ids[-1:], gate=gate, adapter=adapter, prefix=shared) for _, c in children]
    for (_, child), logits in zip(children, forward(feeds), strict=True):
        child.logits = logits
    return [child for _, child in children]
