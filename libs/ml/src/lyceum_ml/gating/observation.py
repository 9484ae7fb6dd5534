"""The policy's observation of a row about to choose its next token: 64 numbers, computed by this one
function in training and in serving (the previous modulation included), from the row's context (prompt and
generated tokens), its raw logits and the final-norm hidden state at its last position.

    [0:10]  token statistics over the context: repetition ratio (1 - distinct / n), entropy of the raw softmax
            / 10, distinct-bigram ratio, distinct-trigram ratio (1 when too short), distinct ratio of the
            last 10, share of the most common of the last 10, min(n / 100, 1), 0, 0, 0
    [10:58] the hidden state cut into 24 contiguous chunks: their 24 means, then their 24 standard deviations
    [58:64] step / max_steps, 1.0, the previous modulation, 0, 0, 0
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch
from torch import Tensor

OBS_DIM = 64
HIDDEN_CHUNKS = 24
WINDOW = 10  # the "last 10" of the token statistics (and of the repetition penalty's reward)


def token_stats(context: Sequence[int]) -> list[float]:
    """The 10 token statistics, the entropy slot left 0 (it needs the logits: `observations` fills it)."""
    n = len(context)
    last = context[-WINDOW:]
    counts = Counter(last)
    return [
        1 - len(set(context)) / n if n else 0.0,
        0.0,
        _distinct_ratio(context, 2),
        _distinct_ratio(context, 3),
        len(counts) / len(last) if last else 1.0,
        max(counts.values()) / len(last) if last else 0.0,
        min(n / 100, 1.0),
        0.0,
        0.0,
        0.0,
    ]


def _distinct_ratio(context: Sequence[int], k: int) -> float:
    """Distinct k-grams / k-grams; 1 when there is none."""
    grams = [tuple(context[i : i + k]) for i in range(len(context) - k + 1)]
    return len(set(grams)) / len(grams) if grams else 1.0


def entropy(logits: Tensor) -> Tensor:
    """Entropy in nats of softmax(logits) along the last dimension (fp64 for the log of tiny masses)."""
    logp = torch.log_softmax(logits.to(torch.float64), dim=-1)
    return -(logp.exp() * logp).nan_to_num().sum(-1)  # masked (-inf) entries contribute 0


def hidden_stats(hidden: Tensor) -> Tensor:
    """(B, d) final-norm hidden states -> (B, 48): per chunk means, then per chunk standard deviations."""
    if hidden.shape[-1] < HIDDEN_CHUNKS:
        raise ValueError(f"hidden size {hidden.shape[-1]} is below the {HIDDEN_CHUNKS} chunks")
    chunks = torch.tensor_split(hidden.float(), HIDDEN_CHUNKS, dim=-1)
    means = torch.stack([c.mean(-1) for c in chunks], dim=-1)
    stds = torch.stack([c.std(-1, correction=0) for c in chunks], dim=-1)
    return torch.cat([means, stds], dim=-1)


def observations(
    contexts: Sequence[Sequence[int]],
    logits: Tensor,
    hidden: Tensor,
    steps: Sequence[int],
    max_steps: Sequence[int],
    previous: Sequence[float],
) -> Tensor:
    """(B, 64) float32 observations of B rows: contexts (prompt + generated), raw logits (B, V), hidden
    (B, d), each row's step (tokens generated so far), its episode length and its previous modulation."""
    B = len(contexts)
    stats = torch.tensor([token_stats(c) for c in contexts], dtype=torch.float32).view(B, 10)
    stats[:, 1] = (entropy(logits) / 10).float()
    context = torch.zeros(B, 6)
    context[:, 0] = torch.tensor([s / max(m, 1) for s, m in zip(steps, max_steps, strict=True)])
    context[:, 1] = 1.0
    context[:, 2] = torch.tensor(list(previous), dtype=torch.float32)
    obs = torch.cat([stats, hidden_stats(hidden), context], dim=-1)
    return obs[:, :OBS_DIM]
