"""The SDPO per-token loss from its properties (differentiable, invariant to how the teacher's logits are
normalised, on-policy ratio 1, clipping monotone, k3 >= 0, alpha and the mask matter) and from tiny cases
worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from lyceum_ml.sdpo.loss import OUTSIDE_TOP_K_LOGPROB, SDPOFigures, sdpo_token_loss

T, V, K = 6, 32, 10
DEFAULTS = {"alpha": 0.5, "is_clip": 5.0, "kl_reg_weight": 0.0, "top_k": K}


def make(seed: int = 0, scale: float = 3.0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    student = (torch.randn(T, V, generator=g) * scale).requires_grad_()
    teacher = torch.randn(T, V, generator=g) * scale
    ids = torch.randint(0, V, (T,), generator=g)
    s_y = torch.log_softmax(student.detach(), -1).gather(-1, ids[:, None]).squeeze(-1)
    return {
        "student_logits": student,
        "teacher_logits": teacher,
        "base_logprobs": s_y + 0.3 * torch.randn(T, generator=g),
        "rollout_logprobs": s_y + torch.randn(T, generator=g),
        "response_ids": ids,
        "mask": torch.ones(T),
    }


def run(inputs: dict[str, torch.Tensor], **options: float) -> tuple[torch.Tensor, SDPOFigures]:
    return sdpo_token_loss(**inputs, **{**DEFAULTS, **options})  # type: ignore[arg-type]


# --- properties -------------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("scale", [1.0, 60.0])
def test_differentiable_without_nan_and_the_teacher_gets_no_gradient(alpha: float, scale: float) -> None:
    inputs = make(scale=scale)
    inputs["teacher_logits"].requires_grad_()
    loss, figures = run(inputs, alpha=alpha, kl_reg_weight=0.5)
    loss.backward()
    grad = inputs["student_logits"].grad
    assert torch.isfinite(loss) and grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert inputs["teacher_logits"].grad is None
    assert all(math.isfinite(v) for v in vars(figures).values())


@pytest.mark.parametrize("alpha", [0.5, 1.0])
def test_invariant_to_the_teachers_normalisation(alpha: float) -> None:
    inputs = make()
    loss, figures = run(inputs, alpha=alpha)
    shifted = {**inputs, "teacher_logits": inputs["teacher_logits"] + torch.randn(T, 1) * 100}
    loss2, figures2 = run(shifted, alpha=alpha)
    torch.testing.assert_close(loss2, loss)
    assert vars(figures2) == pytest.approx(vars(figures))


def test_on_policy_ratio_is_one_and_nothing_is_clipped() -> None:
    inputs = make()
    s_y = torch.log_softmax(inputs["student_logits"].detach(), -1)
    inputs["rollout_logprobs"] = s_y.gather(-1, inputs["response_ids"][:, None]).squeeze(-1)
    _, figures = run(inputs, is_clip=1.0)
    assert figures.is_ratio_mean == pytest.approx(1.0, abs=1e-6)
    assert figures.clip_fraction == 0.0


def test_a_lower_is_clip_never_lowers_the_clip_fraction() -> None:
    inputs = make(seed=3)
    inputs["rollout_logprobs"] = inputs["rollout_logprobs"] - 2 * torch.rand(T)  # ratios spread over ~1..20
    fractions = [run(inputs, is_clip=c)[1].clip_fraction for c in (20.0, 10.0, 5.0, 3.0, 2.0, 1.5, 1.0)]
    assert fractions == sorted(fractions) and fractions[-1] > fractions[0]
    ratios = [run(inputs, is_clip=c)[1].is_ratio_mean for c in (20.0, 5.0, 1.0)]
    assert ratios == sorted(ratios, reverse=True) and ratios[-1] <= 1.0


def test_k3_is_non_negative_and_zero_at_the_base() -> None:
    for seed in range(5):
        inputs = make(seed=seed)
        inputs["base_logprobs"] = inputs["base_logprobs"] + 5 * torch.randn(T)
        assert run(inputs)[1].kl_reg >= 0.0
    inputs = make()
    s_y = torch.log_softmax(inputs["student_logits"].detach(), -1)
    inputs["base_logprobs"] = s_y.gather(-1, inputs["response_ids"][:, None]).squeeze(-1)
    assert run(inputs)[1].kl_reg == pytest.approx(0.0, abs=1e-6)


def test_kl_reg_weight_adds_the_k3_term() -> None:
    inputs = make()
    plain, figures = run(inputs, kl_reg_weight=0.0)
    weighted, _ = run(inputs, kl_reg_weight=0.25)
    assert figures.kl_reg > 0
    assert weighted.item() == pytest.approx(plain.item() + 0.25 * figures.kl_reg, rel=1e-4)


def test_alpha_changes_the_loss() -> None:
    inputs = make()
    losses = [run(inputs, alpha=a)[0].item() for a in (0.0, 0.5, 1.0)]
    assert len({round(v, 6) for v in losses}) == 3


def test_the_mask_matters_and_masked_tokens_are_ignored() -> None:
    inputs = make()
    full, _ = run(inputs)
    mask = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    half, figures = run({**inputs, "mask": mask})
    assert figures.tokens == 3 and half.item() != pytest.approx(full.item())
    # anything at masked positions (logits, ids, log-probs) changes nothing
    noisy = {k: v.detach().clone() for k, v in inputs.items()}
    noisy["student_logits"][3:] = torch.randn(3, V) * 50
    noisy["teacher_logits"][3:] = torch.randn(3, V) * 50
    noisy["rollout_logprobs"][3:] = -100.0
    noisy["response_ids"][3:] = -100  # padding ids are never looked up
    torch.testing.assert_close(run({**noisy, "mask": mask})[0], half.detach())


def test_a_batch_equals_its_flattened_tokens() -> None:
    a, b = make(seed=1), make(seed=2)
    mask = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 0.0])
    flat = {k: torch.cat([a[k], b[k] if k != "mask" else mask]) for k in a}
    stacked = {k: torch.stack([a[k], b[k] if k != "mask" else mask]) for k in a}
    loss_flat, fig_flat = run(flat)
    loss_stacked, fig_stacked = run(stacked)
    torch.testing.assert_close(loss_stacked, loss_flat)
    assert fig_stacked.tokens == fig_flat.tokens == 10


# --- worked by hand ---------------------------------------------------------------------------------
STUDENT = [1.0, 0.0, -1.0, 2.0]
TEACHER = [0.0, 2.0, 0.5, -1.0]  # top-2 support: tokens 1 and 2


def log_softmax(xs: list[float]) -> list[float]:
    z = math.log(sum(math.exp(x) for x in xs))
    return [x - z for x in xs]


def tiny(y: int, rollout_offset: float = 0.0) -> dict[str, torch.Tensor]:
    s_y = log_softmax(STUDENT)[y]
    return {
        "student_logits": torch.tensor([STUDENT], requires_grad=True),
        "teacher_logits": torch.tensor([TEACHER]),
        "base_logprobs": torch.tensor([s_y]),
        "rollout_logprobs": torch.tensor([s_y - rollout_offset]),
        "response_ids": torch.tensor([y]),
        "mask": torch.ones(1),
    }


def test_mixture_divergence_on_the_teachers_top_k_by_hand() -> None:
    p_s = [math.exp(v) for v in log_softmax([STUDENT[1], STUDENT[2]])]
    p_t = [math.exp(v) for v in log_softmax([TEACHER[1], TEACHER[2]])]
    m = [0.5 * s + 0.5 * t for s, t in zip(p_s, p_t, strict=True)]
    kl_s = sum(s * math.log(s / mm) for s, mm in zip(p_s, m, strict=True))
    kl_t = sum(t * math.log(t / mm) for t, mm in zip(p_t, m, strict=True))
    expected = 0.5 * kl_s + 0.5 * kl_t
    loss, figures = run(tiny(y=0), alpha=0.5, top_k=2)
    assert loss.item() == pytest.approx(expected, rel=1e-4)
    assert (figures.is_ratio_mean, figures.clip_fraction, figures.kl_reg, figures.tokens) == (
        1.0,
        0.0,
        0.0,
        1,
    )
    # alpha 0.25: M = 0.75 p_S + 0.25 p_T, loss = 0.75 KL(S||M) + 0.25 KL(T||M)
    m = [0.75 * s + 0.25 * t for s, t in zip(p_s, p_t, strict=True)]
    expected = 0.75 * sum(s * math.log(s / mm) for s, mm in zip(p_s, m, strict=True)) + 0.25 * sum(
        t * math.log(t / mm) for t, mm in zip(p_t, m, strict=True)
    )
    assert run(tiny(y=0), alpha=0.25, top_k=2)[0].item() == pytest.approx(expected, rel=1e-4)


def test_sampled_token_reverse_kl_by_hand_inside_and_outside_the_top_k() -> None:
    s, t = log_softmax(STUDENT), log_softmax(TEACHER)
    inside, _ = run(tiny(y=1), alpha=1.0, top_k=2)
    assert inside.item() == pytest.approx((s[1] - t[1]) * s[1], rel=1e-4)
    outside, _ = run(tiny(y=3), alpha=1.0, top_k=2)  # token 3 is not in the teacher's top-2
    assert outside.item() == pytest.approx((s[3] - OUTSIDE_TOP_K_LOGPROB) * s[3], rel=1e-4)
    # its gradient is stopgrad(s_y - t_y) * d s_y / d logits = (s_y + 20) * (onehot - p_S)
    inputs = tiny(y=3)
    run(inputs, alpha=1.0, top_k=2)[0].backward()
    p = [math.exp(v) for v in s]
    expected = [(s[3] + 20) * ((1.0 if i == 3 else 0.0) - p[i]) for i in range(4)]
    assert inputs["student_logits"].grad[0].tolist() == pytest.approx(expected, rel=1e-4)


def test_importance_ratio_is_capped_at_is_clip_by_hand() -> None:
    s, t = log_softmax(STUDENT), log_softmax(TEACHER)
    per_token = (s[1] - t[1]) * s[1]
    loss, figures = run(tiny(y=1, rollout_offset=math.log(10.0)), alpha=1.0, top_k=2, is_clip=5.0)
    assert loss.item() == pytest.approx(5.0 * per_token, rel=1e-4)
    assert (figures.is_ratio_mean, figures.clip_fraction) == (pytest.approx(5.0), 1.0)
    loss, figures = run(tiny(y=1, rollout_offset=math.log(2.0)), alpha=1.0, top_k=2, is_clip=5.0)
    assert loss.item() == pytest.approx(2.0 * per_token, rel=1e-4)
    assert (figures.is_ratio_mean, figures.clip_fraction) == (pytest.approx(2.0), 0.0)
