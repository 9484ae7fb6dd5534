"""Collapse figures (CLaaS's three symptoms of a degenerating student): mean token entropy (a collapsed model
is near-certain of every token), self-ROUGE-L (its samples of one prompt are near-identical) and log-prob
drift (it no longer gives its parent's own samples the likelihood the parent did).

ROUGE-L here is CLaaS's: the F-measure of the longest common subsequence over whitespace-separated words,
case and punctuation kept (rouge-score's tokenizer drops non-alphanumerics, which would make two emoji-only
responses empty and equal), so the 0.85 threshold means what it means there. One difference: two empty texts
are identical (1.0) rather than unrelated, so a model that answers nothing at all does not look diverse."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import torch
from torch import Tensor


def token_entropy(logits: Tensor) -> Tensor:
    """Entropy in nats of softmax(logits) over the last dimension: (..., V) -> (...)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def mean_entropy(entropies: Sequence[Sequence[float]]) -> float:
    """Mean over every token of every response (token-weighted); 0.0 when there are no tokens."""
    tokens = [e for row in entropies for e in row]
    return sum(tokens) / len(tokens) if tokens else 0.0


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (O(len a * len b) time, O(len b) memory)."""
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, start=1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l(a: str, b: str) -> float:
    """ROUGE-L F-measure of two texts over whitespace words, in [0, 1]; symmetric."""
    wa, wb = a.split(), b.split()
    if not wa and not wb:
        return 1.0
    lcs = _lcs(wa, wb)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(wb), lcs / len(wa)
    return 2 * precision * recall / (precision + recall)


def self_rouge_l(texts: Sequence[str]) -> float:
    """Mean pairwise ROUGE-L over samples of one prompt (1.0: all identical). Needs at least two."""
    if len(texts) < 2:
        raise ValueError("self-ROUGE-L needs at least two samples")
    pairs = list(combinations(texts, 2))
    return sum(rouge_l(a, b) for a, b in pairs) / len(pairs)


def logprob_drift(parent: Sequence[Sequence[float]], child: Sequence[Sequence[float]]) -> float:
    """Mean over the parent's sampled tokens of parent log-prob - child log-prob, in nats/token: how much
    less likely the child finds what the parent said (negative: more likely). Rows pair up response by
    response; 0.0 when there are no tokens."""
    if len(parent) != len(child) or any(len(p) != len(c) for p, c in zip(parent, child, strict=True)):
        raise ValueError("parent and child log-probs must cover the same tokens")
    gaps = [p - c for prow, crow in zip(parent, child, strict=True) for p, c in zip(prow, crow, strict=True)]
    return sum(gaps) / len(gaps) if gaps else 0.0
