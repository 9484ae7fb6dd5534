"""A row's token choice from its logits: the shaped distribution (penalties, temperature, top-k/p), greedy
or a draw from the row's own RNG stream, or the step hook's pick; with its log-probability and the top
alternatives under the same distribution."""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor

from lyceum_ml import sampling
from lyceum_ml.engine.request import Request, StepView
from lyceum_ml.sampling import SamplingParams

GREEDY_SHAPE = {"temperature": 1.0, "top_k": 0, "top_p": 1.0}  # greedy reports temperature-1 log-probs


def distribution(
    logits: Tensor, request: Request, generated: list[int], params: SamplingParams | None = None
) -> Tensor:
    """fp64 probabilities (V,) the row chooses from (under `params` when a controller gave them)."""
    params = params or request.params
    if request.greedy:
        params = dataclasses.replace(params, **GREEDY_SHAPE)
    return sampling.shape(logits, params, [*request.prompt_ids, *generated], generated)


def choose(
    logits: Tensor,
    request: Request,
    generated: list[int],
    generator: torch.Generator,
    params: SamplingParams | None = None,
) -> tuple[int, float, float, tuple[tuple[int, float], ...]]:
    """(token, its log-prob, its probability, top alternatives as (id, log-prob))."""
    probs = distribution(logits, request, generated, params)
    token = None
    if request.hook is not None:
        view = StepView(logits, probs, request.prompt_ids, tuple(generated), len(generated))
        token = request.hook(view)
        if token is not None and not 0 <= token < probs.numel():
            raise ValueError(f"the step hook chose token {token}, outside the vocabulary")
    if token is None:
        if request.greedy:
            token = int(torch.argmax(probs))
        else:
            token = int(torch.multinomial(probs, 1, generator=generator))
    p = float(probs[token])
    top: tuple[tuple[int, float], ...] = ()
    if request.top_logprobs:
        top = tuple((i, log_prob(q)) for i, q in sampling.top(probs, request.top_logprobs))
    return token, log_prob(p), p, top


def log_prob(p: float) -> float:
    """log(p), -inf for 0 (a token the hook chose outside the distribution)."""
    return math.log(p) if p > 0 else -math.inf
