"""PPO for the gating policy: GAE advantages per episode, the clipped surrogate with a value loss and an
entropy bonus, and the two homeostases Tidal uses to keep exploration alive:

- entropy-coefficient homeostasis: the bonus's coefficient c moves multiplicatively toward keeping the
  policy's (differential, Beta) entropy at a target: c <- clip(c * exp(rate * (target - H)), c_min, c_max);
- diversity homeostasis: the training reward's diversity weight rises while the mean diversity reward is
  below a target and relaxes back once it is above: w <- clip(w + rate * (target - mean R_div), w_0, w_max),
  never below the configured weight w_0 (a floor on diversity, not a pull down to the target: a diversity
  above the target costs nothing);
- or, as the PPO-Lagrangian variant, diversity as a constraint E[R_div] >= target: the training reward is
  r + lambda R_div with lambda <- max(0, lambda + rate * (target - mean R_div)).

The ablation scores every arm with the configured weights, not the homeostatic ones."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from lyceum_ml.gating.policy import GatingPolicy
from lyceum_ml.serialization import DictConfig

Diversity = Literal["none", "homeostasis", "lagrangian"]


@dataclass(frozen=True)
class PPOSettings(DictConfig):
    gamma: float = 0.99
    lam: float = 0.95
    clip: float = 0.2
    value_coef: float = 0.5
    epochs: int = 4
    minibatch: int = 32
    max_grad_norm: float = 0.5
    lr: float = 3e-4
    lr_final_ratio: float = 0.1  # linear decay to lr * this at the last iteration
    entropy_coef: float = 0.01  # the initial coefficient
    entropy_homeostasis: bool = True
    entropy_target: float = -0.35
    entropy_rate: float = 0.1
    entropy_coef_min: float = 1e-4
    entropy_coef_max: float = 0.1
    diversity: Diversity = "homeostasis"
    diversity_target: float = 0.55
    diversity_rate: float = 0.05  # homeostasis: the weight's step per unit of shortfall
    diversity_weight_max: float = 1.0
    lagrange_rate: float = 0.5
    lagrange_max: float = 10.0

    def __post_init__(self) -> None:
        if self.diversity not in ("none", "homeostasis", "lagrangian"):
            raise ValueError(f"diversity must be none, homeostasis or lagrangian; got {self.diversity!r}")
        if self.epochs < 1 or self.minibatch < 1:
            raise ValueError("epochs and minibatch must be >= 1")


def gae(rewards: Sequence[float], values: Sequence[float], gamma: float, lam: float) -> tuple[Tensor, Tensor]:
    """(advantages, returns) of one episode that ends after its last step (no bootstrap)."""
    n = len(rewards)
    adv = torch.zeros(n, dtype=torch.float64)
    running = 0.0
    for t in reversed(range(n)):
        next_value = values[t + 1] if t + 1 < n else 0.0
        delta = rewards[t] + gamma * next_value - values[t]
        running = delta + gamma * lam * running
        adv[t] = running
    return adv.float(), (adv + torch.tensor(values, dtype=torch.float64)).float()


def explained_variance(values: Tensor, returns: Tensor) -> float:
    var = float(returns.var(correction=0))
    return float("nan") if var == 0 else 1 - float((returns - values).var(correction=0)) / var


@dataclass
class Homeostasis:
    """The adaptive coefficients, part of the trainer's resumable state."""

    entropy_coef: float
    diversity_weight: float
    lagrange: float = 0.0

    def training_reward(
        self, total: float, div: float, base_div_weight: float, settings: PPOSettings
    ) -> float:
        """A step's training reward from its configured-weight total and its diversity component."""
        if settings.diversity == "homeostasis":
            return total + (self.diversity_weight - base_div_weight) * div
        if settings.diversity == "lagrangian":
            return total + self.lagrange * div
        return total

    def update(self, entropy: float, diversity: float, base_div_weight: float, settings: PPOSettings) -> None:
        s = settings
        if s.entropy_homeostasis:
            c = self.entropy_coef * math.exp(s.entropy_rate * (s.entropy_target - entropy))
            self.entropy_coef = min(max(c, s.entropy_coef_min), s.entropy_coef_max)
        shortfall = s.diversity_target - diversity
        if s.diversity == "homeostasis":
            w = self.diversity_weight + s.diversity_rate * shortfall
            self.diversity_weight = min(max(w, base_div_weight), max(s.diversity_weight_max, base_div_weight))
        elif s.diversity == "lagrangian":
            self.lagrange = min(max(self.lagrange + s.lagrange_rate * shortfall, 0.0), s.lagrange_max)


def ppo_update(
    policy: GatingPolicy,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, Tensor],
    settings: PPOSettings,
    entropy_coef: float,
    generator: torch.Generator,
) -> dict[str, float]:
    """`epochs` passes of shuffled minibatches over `batch` (obs, actions, logprobs, advantages, returns);
    the mean losses, entropy, approximate KL and clip fraction."""
    n = batch["actions"].numel()
    adv = batch["advantages"]
    adv = (adv - adv.mean()) / (adv.std() + 1e-8) if n > 1 else adv * 0
    sums = dict.fromkeys(("policy_loss", "value_loss", "entropy", "approx_kl", "clip_frac"), 0.0)
    count = 0
    policy.train()
    for _ in range(settings.epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, settings.minibatch):
            idx = order[start : start + settings.minibatch]
            logp, entropy, value = policy.evaluate(batch["obs"][idx], batch["actions"][idx])
            ratio = (logp - batch["logprobs"][idx]).exp()
            a = adv[idx]
            clipped = ratio.clamp(1 - settings.clip, 1 + settings.clip)
            policy_loss = -torch.min(ratio * a, clipped * a).mean()
            value_loss = 0.5 * (value - batch["returns"][idx]).square().mean()
            loss = policy_loss + settings.value_coef * value_loss - entropy_coef * entropy.mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), settings.max_grad_norm)
            optimizer.step()
            with torch.no_grad():
                log_ratio = logp - batch["logprobs"][idx]
                sums["policy_loss"] += float(policy_loss)
                sums["value_loss"] += float(value_loss)
                sums["entropy"] += float(entropy.mean())
                sums["approx_kl"] += float(((ratio - 1) - log_ratio).mean())
                sums["clip_frac"] += float(((ratio - 1).abs() > settings.clip).float().mean())
            count += 1
    policy.eval()
    return {k: v / max(count, 1) for k, v in sums.items()}
