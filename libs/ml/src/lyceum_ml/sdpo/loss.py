"""The SDPO per-token loss (Hübotter et al. 2026, as CLaaS pins it): the student (adapter on) is pulled
towards the teacher (the base shown the feedback in hindsight) on the tokens the student actually produced,
each token weighted by a clipped importance ratio against the rollout, plus an optional k3 KL to the base.

Shapes: every per-token input has the same leading shape `[...]` (one response `[T]`, or a padded batch
`[B, T]`), the logits `[..., V]`; means are over the tokens where `mask` is set, across the whole input.
TRL's `trl.experimental.sdpo.loss_utils` supplies the divergence and the importance clipping, so the maths is
the reference's, not a copy of it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

# A token outside the teacher's top-K counts as this log-prob in the sampled-token (alpha = 1) form, and the
# clamp of every log-ratio before it is exponentiated (TRL's bound).
OUTSIDE_TOP_K_LOGPROB = -20.0
LOG_RATIO_BOUND = 20.0


@dataclass(frozen=True)
class SDPOFigures:
    """What one loss evaluation reports: masked means over `tokens` response tokens."""

    distill_loss: float  # the importance-weighted distillation term (what is optimised, before kl_reg)
    kl_reg: float  # mean k3 estimate of the KL to the base, unweighted
    is_ratio_mean: float  # mean importance ratio as applied (after the is_clip cap)
    clip_fraction: float  # share of tokens whose unclipped ratio exceeded is_clip
    tokens: int


def _loss_utils() -> Any:
    """TRL's SDPO helpers, imported on first use: TRL is slow to import and warns about its experimental
    package unless told not to."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl.experimental.sdpo import loss_utils

    return loss_utils


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of `values` where `mask` is set (0 when nothing is)."""
    return (values * mask).sum() / mask.sum().clamp(min=1)


def sdpo_token_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    base_logprobs: Tensor,
    rollout_logprobs: Tensor,
    response_ids: Tensor,
    mask: Tensor,
    *,
    alpha: float,
    is_clip: float,
    kl_reg_weight: float,
    top_k: int,
) -> tuple[Tensor, SDPOFigures]:
    """(scalar loss, figures). student_logits / teacher_logits [..., V] predict response_ids [...];
    base_logprobs [...] is the base's (adapter off) log-prob of each chosen token, rollout_logprobs [...] the
    one recorded when it was sampled. Only student_logits should carry a gradient."""
    utils = _loss_utils()
    mask = mask.to(torch.float32)
    ids = torch.where(mask > 0, response_ids, torch.zeros_like(response_ids)).long()  # padding may be any id
    student = torch.log_softmax(student_logits.float(), dim=-1)  # [..., V]
    teacher = torch.log_softmax(teacher_logits.float().detach(), dim=-1)  # invariant to a per-row constant
    s_y = student.gather(-1, ids.unsqueeze(-1)).squeeze(-1)  # [...]
    k = min(top_k, teacher.shape[-1])
    top = teacher.topk(k, dim=-1).indices  # [..., K]: the teacher's support

    if alpha < 1.0:
        # Both distributions renormalised on the teacher's top-K, then TRL's alpha-mixture divergence.
        s_k = student.gather(-1, top)
        t_k = teacher.gather(-1, top)
        s_k = s_k - torch.logsumexp(s_k, dim=-1, keepdim=True)
        t_k = t_k - torch.logsumexp(t_k, dim=-1, keepdim=True)
        per_token = utils.compute_divergence(s_k, t_k, alpha)  # [...]
    else:
        # Sampled-token reverse KL: stopgrad(s_y - t_y) * s_y, the teacher's log-prob floored off its top-K.
        t_y = teacher.gather(-1, ids.unsqueeze(-1)).squeeze(-1)
        in_top = (top == ids.unsqueeze(-1)).any(-1)
        t_y = torch.where(in_top, t_y, torch.full_like(t_y, OUTSIDE_TOP_K_LOGPROB))
        per_token = (s_y - t_y).detach() * s_y

    rollout = rollout_logprobs.to(s_y.dtype)
    weighted = utils.apply_importance_sampling_clipping(per_token, s_y, rollout, is_clip)
    with torch.no_grad():
        raw = torch.exp((s_y - rollout).clamp(-LOG_RATIO_BOUND, LOG_RATIO_BOUND))
        applied = raw.clamp(max=is_clip)
        clipped = (raw > is_clip).to(torch.float32)

    delta = (s_y - base_logprobs.to(s_y.dtype)).clamp(-LOG_RATIO_BOUND, LOG_RATIO_BOUND)
    k3 = torch.exp(delta) - 1.0 - delta  # Schulman's k3: >= 0, 0 iff the student agrees with the base

    distill = masked_mean(weighted, mask)
    kl_reg = masked_mean(k3, mask)
    loss = distill + kl_reg_weight * kl_reg
    figures = SDPOFigures(
        distill_loss=distill.item(),
        kl_reg=kl_reg.item(),
        is_ratio_mean=masked_mean(applied, mask).item(),
        clip_fraction=masked_mean(clipped, mask).item(),
        tokens=int(mask.sum().item()),
    )
    return loss, figures
