"""The resumable PPO trainer of a gating policy (one `step` = one PPO iteration: `envs` episodes rolled out
together through the engine, then the update) and the ablation that compares it with the baselines.

Determinism: iteration i seeds everything it draws (the prompts, the rows' sampling, the policy's actions,
the minibatch order) from (seed, i), so a run resumed from a checkpoint continues exactly as an uninterrupted
one: the checkpoint holds the policy, the optimizer, the homeostasis and the figures so far."""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from lyceum_ml.causal_lm import CausalLM
from lyceum_ml.engine import Engine
from lyceum_ml.gating.policy import GatingPolicy, PolicyConfig, save_policy
from lyceum_ml.gating.ppo import Homeostasis, PPOSettings, explained_variance, gae, ppo_update
from lyceum_ml.gating.reward import COMPONENTS, RewardWeights
from lyceum_ml.gating.rollout import Episode, run_episodes
from lyceum_ml.training import load_train_state, save_train_state

STATE_FILE = "gating_state.json"
ARMS = ("random", "fixed", "neutral", "learned")  # the ablation's arms; neutral = no gating at all
ARM_MODE = {"random": "random", "fixed": "fixed", "neutral": "none", "learned": "learned"}


def prompts_from_texts(lm: CausalLM, texts: Sequence[str], n_tokens: int) -> list[list[int]]:
    """The first `n_tokens` tokens of every text that has that many."""
    out = []
    for text in texts:
        ids = lm.encode(text)
        if len(ids) >= n_tokens:
            out.append(ids[:n_tokens])
    return out


class GatingTrainer:
    def __init__(
        self,
        lm: CausalLM,
        prompts: Sequence[Sequence[int]],
        *,
        iterations: int = 200,
        envs: int = 16,
        episode_length: int = 50,
        seed: int = 0,
        gate_signal: bool = True,
        weights: RewardWeights | None = None,
        ppo: PPOSettings | None = None,
        policy: PolicyConfig | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if not prompts:
            raise ValueError("no training prompts")
        if gate_signal and not lm.gated:
            raise ValueError(f"{lm.name} has no gates: train with gate_signal off (sampling only)")
        self.lm, self.prompts = lm, [list(p) for p in prompts]
        self.total_steps, self.step = iterations, 0
        self.envs, self.length, self.seed, self.gate_signal = envs, episode_length, seed, gate_signal
        self.weights, self.ppo = weights or RewardWeights(), ppo or PPOSettings()
        self.metadata = metadata or {}
        torch.manual_seed(seed)
        self.policy = GatingPolicy(policy).eval()
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=self.ppo.lr)
        self.homeostasis = Homeostasis(self.ppo.entropy_coef, self.weights.div)
        self.engine = Engine(lm, max_rows=envs, step_tokens=max(512, envs * 64))
        self.history: list[dict[str, float]] = []

    # --- the runner's protocol -------------------------------------------------------------------------
    def run(self, n_steps: int) -> dict[str, float]:
        figures: dict[str, float] = {}
        for _ in range(min(n_steps, self.total_steps - self.step)):
            figures = self._iteration()
            self.history.append(figures)
            self.step += 1
        return figures

    def evaluate(self) -> dict[str, float]:
        return dict(self.history[-1]) if self.history else {}

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        save_train_state(
            directory, {"policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict()}
        )
        state = {"step": self.step, "homeostasis": vars(self.homeostasis), "history": self.history}
        (directory / STATE_FILE).write_text(json.dumps(state))

    def load(self, directory: Path) -> None:
        directory = Path(directory)
        tensors = load_train_state(directory)
        self.policy.load_state_dict(tensors["policy"])
        self.optimizer.load_state_dict(tensors["optimizer"])
        state = json.loads((directory / STATE_FILE).read_text())
        self.step, self.history = state["step"], state["history"]
        self.homeostasis = Homeostasis(**state["homeostasis"])

    def export(self, directory: Path) -> dict[str, Any]:
        metadata = {
            **self.metadata,
            "gate_signal": self.gate_signal,
            "episode_length": self.length,
            "weights": self.weights.to_dict(),
            "ppo": self.ppo.to_dict(),
            "iterations": self.step,
        }
        save_policy(directory, self.policy, metadata)
        return metadata

    # --- one PPO iteration -----------------------------------------------------------------------------
    def _iteration(self) -> dict[str, float]:
        it, ppo = self.step, self.ppo
        start = time.perf_counter()
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + it)
        torch.manual_seed(self.seed * 1_000_003 + it)  # the policy's Beta draws
        picks = torch.randint(len(self.prompts), (self.envs,), generator=g).tolist()
        episodes = run_episodes(
            self.engine,
            [self.prompts[i] for i in picks],
            "learned",
            length=self.length,
            seed=self.seed * 1_000_003 + it,
            policy=self.policy,
            sample=True,
            gate_signal=self.gate_signal,
        )
        rollout_s = time.perf_counter() - start
        batch = self._batch(episodes)
        for group in self.optimizer.param_groups:
            progress = it / max(self.total_steps - 1, 1)
            group["lr"] = ppo.lr * (1 - (1 - ppo.lr_final_ratio) * progress)
        stats = ppo_update(self.policy, self.optimizer, batch, ppo, self.homeostasis.entropy_coef, g)
        steps = sum(len(e) for e in episodes)
        figures = {
            "reward": _mean([r for e in episodes for r in e.rewards(self.weights)]),
            **{
                f"reward_{c}": _mean([getattr(s, c) for e in episodes for s in e.components])
                for c in COMPONENTS
            },
            **stats,
            "entropy_coef": self.homeostasis.entropy_coef,
            "modulation": float(batch["actions"].mean()),
            "explained_variance": explained_variance(batch["values"], batch["returns"]),
            "diversity_weight": self.homeostasis.diversity_weight,
            "lambda": self.homeostasis.lagrange,
            "lr": self.optimizer.param_groups[0]["lr"],
            "episode_steps": float(steps),
            "throughput": steps / max(rollout_s, 1e-9),  # environment steps per second of rollout
        }
        figures["loss"] = stats["policy_loss"] + ppo.value_coef * stats["value_loss"]
        self.homeostasis.update(stats["entropy"], figures["reward_div"], self.weights.div, ppo)
        return figures

    def _batch(self, episodes: list[Episode]) -> dict[str, torch.Tensor]:
        advantages, returns = [], []
        for e in episodes:
            rewards = [
                self.homeostasis.training_reward(c.total(self.weights), c.div, self.weights.div, self.ppo)
                for c in e.components
            ]
            adv, ret = gae(rewards, e.values, self.ppo.gamma, self.ppo.lam)
            advantages.append(adv)
            returns.append(ret)
        return {
            "obs": torch.stack([o for e in episodes for o in e.obs]),
            "actions": torch.tensor([a for e in episodes for a in e.actions]),
            "logprobs": torch.tensor([lp for e in episodes for lp in e.logprobs]),
            "values": torch.tensor([v for e in episodes for v in e.values]),
            "advantages": torch.cat(advantages),
            "returns": torch.cat(returns),
        }

    # --- the ablation ----------------------------------------------------------------------------------
    def ablation(
        self, prompts: Sequence[Sequence[int]], episodes: int, seeds: Sequence[int], modulation: float = 0.5
    ) -> dict[str, Any]:
        """Every arm (random, fixed `modulation`, neutral, the learned policy's deterministic action) on the
        same `episodes` prompts (cycled if fewer) with each seed; per arm the mean ± std over episodes of the
        episode's mean reward (the configured weights), diversity reward and perplexity term."""
        if not prompts:
            raise ValueError("no held-out prompts for the ablation")
        chosen = [list(prompts[i % len(prompts)]) for i in range(episodes)]
        arms: dict[str, Any] = {}
        for arm in ARMS:
            per_episode: dict[str, list[float]] = {"reward": [], "diversity": [], "ppl": []}
            per_seed = []
            for seed in seeds:
                eps = run_episodes(
                    self.engine,
                    chosen,
                    ARM_MODE[arm],  # type: ignore[arg-type]
                    length=self.length,
                    seed=seed,
                    policy=self.policy if arm == "learned" else None,
                    modulation=modulation,
                    gate_signal=self.gate_signal,
                )
                rewards = [_mean(e.rewards(self.weights)) for e in eps]
                per_episode["reward"] += rewards
                per_episode["diversity"] += [e.mean("div") for e in eps]
                per_episode["ppl"] += [e.mean("ppl") for e in eps]
                per_seed.append({"seed": seed, "reward": _mean(rewards)})
            arms[arm] = {k: _summary(v) for k, v in per_episode.items()} | {"per_seed": per_seed}
        fixed, learned = arms["fixed"]["reward"]["mean"], arms["learned"]["reward"]["mean"]
        return {
            "episodes": episodes,
            "seeds": list(seeds),
            "episode_length": self.length,
            "fixed_modulation": modulation,
            "arms": arms,
            "learned_vs_fixed": (learned - fixed) / abs(fixed) if fixed else math.nan,
        }


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan


def _summary(xs: Sequence[float]) -> dict[str, float]:
    return {"mean": _mean(xs), "std": statistics.pstdev(xs) if xs else math.nan}
