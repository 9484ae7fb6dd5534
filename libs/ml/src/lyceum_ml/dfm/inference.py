"""The DFM's serving operations over KV caches: prefill, predict, extend and forecast.

Pure functions of (model, cache, inputs): no storage, no transport. Callers decide when a cache may change;
`predict` and `forecast` never change it, `extend` returns the new keys/values for the caller to append.
"""

from __future__ import annotations

from enum import Enum

import torch
from torch import Tensor

from lyceum_ml.dfm.model import DFM
from lyceum_ml.dfm.ragged import Row
from lyceum_ml.kv_cache import KVCache


class Feedback(Enum):
    EXPECTED = "expected"  # feed the predicted probability back as the outcome
    SAMPLE = "sample"  # feed back a Bernoulli(p) draw from a seeded generator


@torch.no_grad()
def prefill(model: DFM, task_idx: Tensor, outcomes: Tensor, *, chunk: int = 128) -> KVCache:
    """A new cache holding BOS + the N events (task_idx, outcomes: (N,)) in one forward pass."""
    x = torch.cat([model.embed_bos(1), model.embed_events(task_idx[None], outcomes[None])], dim=1)
    positions = torch.arange(x.shape[1], device=model.device)
    _, new_kv = model.decode(x, positions, None, [])
    cache = model.new_cache(chunk=chunk)
    cache.append(new_kv)
    return cache


@torch.no_grad()
def predict(model: DFM, cache: KVCache, task_idx: Tensor) -> Tensor:
    """P(success) for each of k candidate tasks (k,), each conditioned only on the cached history: all k
    tokens sit at the next position and see the cache and themselves, never each other."""
    k = task_idx.shape[0]
    x = model.embed_tasks(task_idx)[None]  # (1, k, d)
    positions = torch.full((k,), cache.length, device=model.device)
    mask = torch.eye(k, dtype=torch.bool, device=model.device)
    h, _ = model.decode(x, positions, mask, [cache])
    return torch.sigmoid(model.logits(h[0], task_idx))


@torch.no_grad()
def extend(
    model: DFM, cache: KVCache, task_idx: Tensor, outcomes: Tensor
) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
    """Runs N new events after the cache. Returns the prior P(success) of each event's task and the new
    keys/values; the cache itself is untouched until the caller appends them."""
    x = model.embed_events(task_idx[None], outcomes[None])  # (1, 2N, d)
    positions = torch.arange(cache.length, cache.length + x.shape[1], device=model.device)
    h, new_kv = model.decode(x, positions, None, [cache])
    return torch.sigmoid(model.logits(h[0, 0::2], task_idx)), new_kv


# --- rows of a ragged batch (ragged.decode_ragged): many learners' calls in one forward ---------------
def prefill_row(model: DFM, task_idx: Tensor, outcomes: Tensor) -> Row:
    """BOS + N events from nothing; `cache_of` turns the result into the learner's cache, `event_priors`
    reads each event's prior P(success)."""
    x = torch.cat([model.embed_bos(1)[0], model.embed_events(task_idx[None], outcomes[None])[0]])
    return Row(x, torch.arange(x.shape[0], device=model.device), None, None)


def predict_row(model: DFM, cache: KVCache, task_idx: Tensor) -> Row:
    """k candidate tasks at the next position, each seeing the cache and itself (as `predict`)."""
    k = task_idx.shape[0]
    mask = torch.eye(k, dtype=torch.bool, device=model.device)
    return Row(model.embed_tasks(task_idx), torch.full((k,), cache.length, device=model.device), mask, cache)


def extend_row(model: DFM, cache: KVCache, task_idx: Tensor, outcomes: Tensor) -> Row:
    """N new events after the cache (as `extend`)."""
    x = model.embed_events(task_idx[None], outcomes[None])[0]
    return Row(x, torch.arange(cache.length, cache.length + x.shape[0], device=model.device), None, cache)


def probabilities(model: DFM, h: Tensor, task_idx: Tensor) -> Tensor:
    """P(success) on tasks (n,) read from hidden states (n, d) at their positions."""
    return torch.sigmoid(model.logits(h, task_idx))


def event_priors(model: DFM, h: Tensor, task_idx: Tensor, *, prefilled: bool) -> Tensor:
    """Each event's prior P(success) from an extend row's (or, `prefilled`, a prefill row's) hidden states:
    read at its task token, which sees only the events before it."""
    return probabilities(model, h[2::2] if prefilled else h[0::2], task_idx)


def cache_of(model: DFM, new_kv: list[tuple[Tensor, Tensor]], *, chunk: int = 128) -> KVCache:
    """A new cache holding a prefill row's keys and values."""
    cache = model.new_cache(chunk=chunk)
    cache.append(new_kv)
    return cache


def forecast_bytes(model: DFM, context_tokens: int, sequences: int, length: int) -> int:
    """Memory a forecast of S x L steps needs beyond the model and the learner's cache: the roll-outs' side
    cache and one step's attention scores (the largest transient)."""
    cfg = model.cfg
    item = torch.finfo(model.dtype).bits // 8
    side = sequences * 2 * length * cfg.n_layer * 2 * cfg.n_kv_head * cfg.head_dim * item
    scores = sequences * cfg.n_head * 2 * (context_tokens + 2 * length) * 4  # fp32 softmax
    return side + scores


@torch.no_grad()
def forecast(
    model: DFM,
    cache: KVCache,
    task_idx: Tensor,
    feedback: Feedback = Feedback.EXPECTED,
    seed: int = 0,
) -> Tensor:
    """Rolls S task sequences (S, L) forward from the cached state; returns (S, L) probabilities.

    The learner's cache is shared read-only by all S rows (never copied); each row's roll-out lives in a
    small (S, 2L) side cache. Step j feeds [outcome_{j-1}, task_j] and reads task_j's prediction.
    """
    S, L = task_idx.shape
    out = torch.empty(S, L, device=model.device)
    if S == 0 or L == 0:
        return out
    rollout = model.new_cache(batch=S, capacity=2 * L)
    generator = torch.Generator(device=model.device).manual_seed(seed)
    x = model.embed_tasks(task_idx[:, :1])  # (S, 1, d)
    for j in range(L):
        start = cache.length + rollout.length
        positions = torch.arange(start, start + x.shape[1], device=model.device)
        h, new_kv = model.decode(x, positions, None, [cache, rollout])
        p = torch.sigmoid(model.logits(h[:, -1], task_idx[:, j]))  # (S,)
        out[:, j] = p
        if j == L - 1:
            break
        rollout.append(new_kv)
        fed = p if feedback is Feedback.EXPECTED else torch.bernoulli(p, generator=generator)
        x = torch.stack(
            [model.embed_outcomes(fed, task_idx[:, j]), model.embed_tasks(task_idx[:, j + 1])], dim=1
        )  # (S, 2, d)
    return out
