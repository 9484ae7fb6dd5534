"""The gating policy: a small actor-critic over the 64-D observation. A LayerNorm(64) -> 128 -> 64 tanh trunk;
the actor (64 -> 32 -> 2) gives Beta concentrations alpha, beta = softplus + 1 (so the density is unimodal),
clamped to at most 15; the critic (64 -> 32 -> 1) the state value. Orthogonal init (gain sqrt 2, the actor's
output 0.01: a fresh policy is close to Beta(1.7, 1.7), centred on m = 0.5).

Saved as a checkpoint directory (`config.json` of kind "gating_policy" + `model.safetensors`), the registry
artifact of a `gating_ppo` job."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn
from torch.distributions import Beta

from lyceum_ml.checkpoint import CONFIG_FILE, WEIGHTS_FILE, write_checkpoint
from lyceum_ml.gating.observation import OBS_DIM
from lyceum_ml.serialization import DictConfig

KIND = "gating_policy"


@dataclass(frozen=True)
class PolicyConfig(DictConfig):
    obs_dim: int = OBS_DIM
    hidden: int = 128
    features: int = 64
    head: int = 32
    max_concentration: float = 15.0
    action: Literal["mean", "mode"] = "mean"  # the deterministic action: the Beta's mean or its mode
    action_eps: float = 0.001  # actions (and log-probs) are taken at [eps, 1 - eps]

    def __post_init__(self) -> None:
        if self.action not in ("mean", "mode"):
            raise ValueError(f"action must be 'mean' or 'mode', got {self.action!r}")
        if not 0 < self.action_eps < 0.5 or self.max_concentration <= 1:
            raise ValueError("action_eps must be in (0, 0.5) and max_concentration > 1")


def _init(layer: nn.Linear, gain: float) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class GatingPolicy(nn.Module):
    def __init__(self, cfg: PolicyConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or PolicyConfig()
        root2 = math.sqrt(2)
        self.trunk = nn.Sequential(
            nn.LayerNorm(cfg.obs_dim),
            _init(nn.Linear(cfg.obs_dim, cfg.hidden), root2),
            nn.Tanh(),
            _init(nn.Linear(cfg.hidden, cfg.features), root2),
            nn.Tanh(),
        )
        self.actor = nn.Sequential(
            _init(nn.Linear(cfg.features, cfg.head), root2), nn.Tanh(), _init(nn.Linear(cfg.head, 2), 0.01)
        )
        self.critic = nn.Sequential(
            _init(nn.Linear(cfg.features, cfg.head), root2), nn.Tanh(), _init(nn.Linear(cfg.head, 1), 1.0)
        )

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """obs (B, 64) -> alpha (B,), beta (B,), value (B,)."""
        z = self.trunk(obs)
        ab = (F.softplus(self.actor(z)) + 1).clamp(max=self.cfg.max_concentration)
        return ab[:, 0], ab[:, 1], self.critic(z)[:, 0]

    def clip(self, actions: Tensor) -> Tensor:
        eps = self.cfg.action_eps
        return actions.clamp(eps, 1 - eps)

    def deterministic(self, alpha: Tensor, beta: Tensor) -> Tensor:
        mean = alpha / (alpha + beta)
        if self.cfg.action == "mode":  # interior for alpha, beta > 1; the flat Beta(1, 1) has none: its mean
            spread = alpha + beta - 2
            return torch.where(spread > 1e-6, (alpha - 1) / spread.clamp(min=1e-6), mean)
        return mean

    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """(actions, their log-probs, values), each (B,): sampled from Beta(alpha, beta) (torch's global
        RNG), or its mean / mode when `deterministic`; actions are clipped to [eps, 1 - eps]."""
        alpha, beta, value = self(obs)
        dist = Beta(alpha, beta)
        actions = self.clip(self.deterministic(alpha, beta) if deterministic else dist.sample())
        return actions, dist.log_prob(actions), value

    def evaluate(self, obs: Tensor, actions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(log-probs of `actions` (clipped), entropies, values), each (B,), with gradients."""
        alpha, beta, value = self(obs)
        dist = Beta(alpha, beta)
        return dist.log_prob(self.clip(actions)), dist.entropy(), value


def save_policy(path: str | Path, policy: GatingPolicy, metadata: dict[str, Any] | None = None) -> Path:
    doc = {"kind": KIND, "config": policy.cfg.to_dict(), "metadata": metadata or {}}
    return write_checkpoint(path, policy, doc)


def load_policy(path: str | Path) -> tuple[GatingPolicy, dict[str, Any]]:
    """(the policy in eval mode, its metadata); ValueError for a directory that is not a gating policy."""
    path = Path(path)
    doc = json.loads((path / CONFIG_FILE).read_text())
    if doc.get("kind") != KIND:
        raise ValueError(f"{path} is not a gating policy checkpoint (kind={doc.get('kind')!r})")
    policy = GatingPolicy(PolicyConfig.from_dict(doc["config"]))
    policy.load_state_dict(load_file(path / WEIGHTS_FILE))
    return policy.eval(), doc.get("metadata", {})
