"""The dense per-step reward, as Tidal defines it (Experiment-3 weights by default):

    r = w_ppl R_ppl + w_div R_div - w_rep P_rep + w_coh R_coh + w_samp R_samp

- R_ppl = -ln(min(e^{-log p}, 100)) / ln 100: log p of the chosen token under the LM's raw softmax; in [-1, 0]
- R_div = exp(-1/2 ((H - 5) / 2.5)^2): H the entropy of the penalised, temperature-scaled logits
- R_samp = exp(-1/2 ((H_s - 2.5) / 1.25)^2): H_s the entropy of the renormalised top-k sampling distribution
- P_rep: c = count of the new token among the context's last 10 -> 0, 0.25, 0.5, then min(0.75 + 0.05 (c - 3),
  1); + 0.3 (capped at 1) when it repeats the previous token
- R_coh: add-one bigram / unigram statistics of the context: tanh(ln P(token | previous) - ln P(token)), with
  P(t | p) = (c(p, t) + 1) / (c(p) + U) and P(t) = (c(t) + 1) / (n + U), U = distinct tokens + 1
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from lyceum_ml.gating.observation import WINDOW, entropy
from lyceum_ml.sampling import SamplingParams
from lyceum_ml.serialization import DictConfig

PPL_CAP = 100.0
COMPONENTS = ("ppl", "div", "rep", "coh", "samp")


@dataclass(frozen=True)
class RewardWeights(DictConfig):
    ppl: float = 0.4375
    div: float = 0.1875
    rep: float = 0.1875
    coh: float = 0.0
    samp: float = 0.1875


@dataclass(frozen=True)
class StepReward:
    """One step's components (P_rep as the penalty, positive) and their weighted total."""

    ppl: float
    div: float
    rep: float
    coh: float
    samp: float

    def total(self, w: RewardWeights) -> float:
        return w.ppl * self.ppl + w.div * self.div - w.rep * self.rep + w.coh * self.coh + w.samp * self.samp


def r_ppl(logprob: float) -> float:
    """-ln(min(e^{-log p}, cap)) / ln cap, computed without overflow: max(log p, -ln cap) / ln cap."""
    return max(logprob, -math.log(PPL_CAP)) / math.log(PPL_CAP)


def gaussian(x: float, mean: float, width: float) -> float:
    return math.exp(-0.5 * ((x - mean) / width) ** 2)


def r_div(entropy_nats: float) -> float:
    return gaussian(entropy_nats, 5.0, 2.5)


def r_samp(entropy_nats: float) -> float:
    return gaussian(entropy_nats, 2.5, 1.25)


def p_rep(token: int, context: Sequence[int]) -> float:
    c = list(context[-WINDOW:]).count(token)
    penalty = (0.0, 0.25, 0.5)[c] if c < 3 else min(0.75 + 0.05 * (c - 3), 1.0)
    if context and context[-1] == token:
        penalty = min(penalty + 0.3, 1.0)
    return penalty


def r_coh(token: int, context: Sequence[int]) -> float:
    if not context:
        return 0.0
    prev, n = context[-1], len(context)
    unique = len(set(context)) + 1
    bigrams = sum(1 for a, b in zip(context, context[1:], strict=False) if a == prev and b == token)
    prev_count = context[:-1].count(prev)  # occurrences of prev that have a follower
    p_bigram = (bigrams + 1) / (prev_count + unique)
    p_unigram = (context.count(token) + 1) / (n + unique)
    return math.tanh(math.log(p_bigram) - math.log(p_unigram))


def step_reward(
    logits: Tensor, params: SamplingParams, context: Sequence[int], generated: Sequence[int], token: int
) -> StepReward:
    """The components of choosing `token` after `context` (prompt + generated) from raw logits (V,) under
    `params` (penalties over the context, presence/frequency over `generated`)."""
    return step_rewards(logits[None], [params], [context], [generated], [token])[0]


def step_rewards(
    logits: Tensor,
    params: Sequence[SamplingParams],
    contexts: Sequence[Sequence[int]],
    generated: Sequence[Sequence[int]],
    tokens: Sequence[int],
) -> list[StepReward]:
    """`step_reward` of B rows in one pass over their logits (B, V): the shaping is `sampling.shape`'s
    (repetition penalty, presence/frequency penalties, temperature, top-k), row by row in one tensor."""
    B, V = logits.shape
    x = logits.detach().to(torch.float64, copy=True)
    rows = torch.arange(B)
    logprobs = torch.log_softmax(x, dim=-1)[rows, torch.tensor(list(tokens))].tolist()
    penalty = torch.tensor([p.repetition_penalty for p in params], dtype=torch.float64)[:, None]
    seen = torch.zeros(B, V, dtype=torch.bool)
    for i, context in enumerate(contexts):
        if context and params[i].repetition_penalty != 1:
            seen[i, torch.tensor(sorted(set(context)))] = True
    x = torch.where(seen, torch.where(x > 0, x / penalty, x * penalty), x)
    for i, p in enumerate(params):
        if (p.presence_penalty or p.frequency_penalty) and generated[i]:
            ids, counts = torch.tensor(list(generated[i])).unique(return_counts=True)
            x[i, ids] -= p.presence_penalty + p.frequency_penalty * counts.to(x.dtype)
    x = x / torch.tensor([p.temperature for p in params], dtype=torch.float64)[:, None]
    h = entropy(x).tolist()  # the penalised, temperature-scaled distribution
    ks = torch.tensor([p.top_k if 0 < p.top_k < V else V for p in params])
    kth = torch.topk(x, int(ks.max())).values[rows, ks - 1]  # each row's k-th largest (ties kept, as shape)
    h_s = entropy(x.masked_fill(x < kth[:, None], -math.inf)).tolist()  # its renormalised top-k
    return [
        StepReward(
            ppl=r_ppl(logprobs[i]),
            div=r_div(h[i]),
            rep=p_rep(tokens[i], contexts[i]),
            coh=r_coh(tokens[i], contexts[i]),
            samp=r_samp(h_s[i]),
        )
        for i in range(B)
    ]
