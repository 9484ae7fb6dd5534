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

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from lyceum_ml import sampling
from lyceum_ml.gating.observation import WINDOW
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


def shaped_entropies(
    logits: Tensor, params: SamplingParams, context: Sequence[int], generated: Sequence[int]
) -> tuple[float, float]:
    """(H, H_s): entropies of the penalised, temperature-scaled distribution and of its renormalised top-k."""
    full = sampling.shape(logits, dataclasses.replace(params, top_k=0, top_p=1.0), context, generated)
    topk = sampling.shape(logits, dataclasses.replace(params, top_p=1.0), context, generated)
    return _entropy_of(full), _entropy_of(topk)


def _entropy_of(probs: Tensor) -> float:
    p = probs[probs > 0]
    return float(-(p * p.log()).sum())


def step_reward(
    logits: Tensor, params: SamplingParams, context: Sequence[int], generated: Sequence[int], token: int
) -> StepReward:
    """The components of choosing `token` after `context` (prompt + generated) from raw logits (V,) under
    `params` (penalties over the context, presence/frequency over `generated`)."""
    logprob = float(torch.log_softmax(logits.to(torch.float64), dim=-1)[token])
    h, h_s = shaped_entropies(logits, params, context, generated)
    return StepReward(
        ppl=r_ppl(logprob),
        div=r_div(h),
        rep=p_rep(token, context),
        coh=r_coh(token, context),
        samp=r_samp(h_s),
    )
