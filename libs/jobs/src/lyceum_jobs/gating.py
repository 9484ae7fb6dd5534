"""The `gating_ppo` job's config: PPO training of a gating policy over a frozen registered language model,
then the ablation on held-out prompts.

The reward, ppo and policy sections mirror lyceum_ml.gating's RewardWeights, PPOSettings and PolicyConfig
(less the fixed observation width) field for field, with the same defaults: the job builds the dataclasses
from `model_dump()`, and tests/unit/test_gating_ppo_config.py fails if a name or default drifts. They are
not imported here because the gateway, which validates configs, has no torch."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from lyceum_core.errors import InvalidArgument
from lyceum_core.lora import LYCEUM_ARCHITECTURE
from lyceum_jobs.configs import ModelRefText, RegistryName, RunSettings, Source, Strict

GATE_MODULES = ("attn_gate", "mlp_gate")  # the TransformerLM's DynamicGates, as `describe()` names them


class GatingReward(Strict):
    """lyceum_ml.gating.reward.RewardWeights: Tidal's Experiment-3 weights by default."""

    ppl: float = Field(0.4375, ge=0.0, le=10.0, description="weight of the perplexity term R_ppl")
    div: float = Field(0.1875, ge=0.0, le=10.0, description="weight of the diversity reward R_div")
    rep: float = Field(0.1875, ge=0.0, le=10.0, description="weight of the repetition penalty P_rep")
    coh: float = Field(0.0, ge=0.0, le=10.0, description="weight of the bigram coherence R_coh")
    samp: float = Field(0.1875, ge=0.0, le=10.0, description="weight of the sampling-entropy reward R_samp")


class GatingPPO(Strict):
    """lyceum_ml.gating.ppo.PPOSettings: the clipped update, and the homeostases that keep exploring."""

    gamma: float = Field(0.99, gt=0.0, le=1.0, description="discount")
    lam: float = Field(0.95, ge=0.0, le=1.0, description="GAE lambda")
    clip: float = Field(0.2, gt=0.0, le=1.0, description="PPO ratio clip")
    value_coef: float = Field(0.5, ge=0.0, le=100.0)
    epochs: int = Field(4, ge=1, le=100, description="passes over each iteration's transitions")
    minibatch: int = Field(32, ge=1, le=65_536, description="transitions per minibatch")
    max_grad_norm: float = Field(0.5, gt=0.0, le=1e6)
    lr: float = Field(3e-4, gt=0.0, le=1.0, description="Adam learning rate at the first iteration")
    lr_final_ratio: float = Field(0.1, ge=0.0, le=1.0, description="linear decay to lr * this at the last")
    entropy_coef: float = Field(0.01, ge=0.0, le=10.0, description="the entropy bonus's initial coefficient")
    entropy_homeostasis: bool = Field(True, description="move the coefficient to hold the entropy target")
    entropy_target: float = Field(-0.35, ge=-20.0, le=0.0, description="the Beta's differential entropy")
    entropy_rate: float = Field(0.1, ge=0.0, le=10.0)
    entropy_coef_min: float = Field(1e-4, ge=0.0, le=10.0)
    entropy_coef_max: float = Field(0.1, ge=0.0, le=10.0)
    diversity: Literal["none", "homeostasis", "lagrangian"] = Field(
        "homeostasis",
        description="homeostasis: raise the diversity weight while mean R_div is under the target (never "
        "below reward.div); lagrangian: E[R_div] >= target as a constraint (PPO-Lagrangian)",
    )
    diversity_target: float = Field(0.55, ge=0.0, le=1.0, description="the mean R_div to hold")
    diversity_rate: float = Field(0.05, ge=0.0, le=10.0, description="homeostasis: weight step per shortfall")
    diversity_weight_max: float = Field(1.0, ge=0.0, le=100.0)
    lagrange_rate: float = Field(0.5, ge=0.0, le=100.0, description="lagrangian: lambda step per shortfall")
    lagrange_max: float = Field(10.0, ge=0.0, le=1000.0)

    @model_validator(mode="after")
    def _coef_range(self) -> GatingPPO:
        if self.entropy_coef_min > self.entropy_coef_max:
            raise ValueError("entropy_coef_min must not exceed entropy_coef_max")
        return self


class GatingPolicySettings(Strict):
    """lyceum_ml.gating.policy.PolicyConfig, less the observation's width (fixed at 64)."""

    hidden: int = Field(128, ge=4, le=4096, description="the trunk's first layer")
    features: int = Field(64, ge=4, le=4096, description="the trunk's output")
    head: int = Field(32, ge=2, le=4096, description="the actor's and critic's hidden layer")
    max_concentration: float = Field(15.0, gt=1.0, le=1000.0, description="cap on the Beta's alpha, beta")
    action: Literal["mean", "mode"] = Field("mean", description="the deterministic action served")
    action_eps: float = Field(0.001, gt=0.0, lt=0.5, description="actions are taken in [eps, 1 - eps]")


class GatingAblation(Strict):
    """The arms compared at the end on the held-out prompts: random, fixed, neutral (no gating), learned."""

    episodes: int = Field(32, ge=1, le=4096, description="episodes per arm and seed")
    seeds: list[Annotated[int, Field(ge=0)]] = Field([0, 1, 2], min_length=1, max_length=32)
    modulation: float = Field(0.5, ge=0.0, le=1.0, description="the fixed arm's m")


class GatingRunSettings(RunSettings):
    """RunSettings with a gating run's defaults: an iteration is many LM steps, so every one is logged."""

    checkpoint_every: int = Field(10, ge=1, le=10_000_000, description="iterations between checkpoints")
    log_every: int = Field(1, ge=1, le=1_000_000, description="iterations between recorded metrics")


class GatingPPOConfig(Strict):
    lm: ModelRefText = Field(
        description="the frozen language model (kind lm), name@alias; one without gates is modulated "
        "through sampling only"
    )
    prompts: Source = Field(
        description="text whose documents (stories separated by blank lines or <|endoftext|>; a `text` "
        "dataset: one per row) begin the episodes"
    )
    prompt_tokens: int = Field(8, ge=1, le=1024, description="each prompt: a document's first tokens")
    held_out: float = Field(0.2, gt=0.0, lt=1.0, description="fraction of documents kept for the ablation")
    iterations: int = Field(200, ge=1, le=1_000_000, description="PPO iterations (the job's steps)")
    envs: int = Field(16, ge=1, le=1024, description="episodes rolled out together per iteration")
    episode_length: int = Field(50, ge=1, le=4096, description="tokens generated per episode")
    gate_signal: bool | None = Field(
        None, description="m drives the LM's DynamicGates too; null: on for a gated LM, off otherwise"
    )
    reward: GatingReward = GatingReward()
    ppo: GatingPPO = GatingPPO()
    policy: GatingPolicySettings = GatingPolicySettings()
    ablation: GatingAblation = GatingAblation()
    seed: int = Field(0, ge=0, description="prompts split, rollouts, policy init and minibatch order")
    run: GatingRunSettings = GatingRunSettings()
    register_as: RegistryName = Field("gating", description="the policy's registry name (kind gating_policy)")

    def model_references(self) -> list[tuple[str, str, str]]:
        return [("config.lm", self.lm, "lm")]

    def check_models(self, metadata: dict[str, dict[str, Any]]) -> None:
        """A gate signal asked of an LM whose registry metadata says it has no gates is refused."""
        if self.gate_signal and lm_is_gated(metadata.get("config.lm", {})) is False:
            raise InvalidArgument(
                f"config.gate_signal: {self.lm} has no gates; leave gate_signal null or false "
                "(sampling only)",
                field="config.gate_signal",
            )

    @model_validator(mode="after")
    def _one_process(self) -> GatingPPOConfig:
        if self.run.processes > 1:
            raise ValueError("run.processes: gating_ppo runs in one process")
        return self


def lm_is_gated(metadata: dict[str, Any]) -> bool | None:
    """Whether a registered LM takes a gate signal, from its `describe()` metadata; None if it does not say.
    Only Lyceum's TransformerLM has gates, and only when built with them (gate_hidden > 0)."""
    architecture, modules = metadata.get("architecture"), metadata.get("linear_modules")
    if not isinstance(architecture, str):
        return None
    if architecture != LYCEUM_ARCHITECTURE:
        return False
    if not isinstance(modules, dict):
        return None
    return any(part in GATE_MODULES for name in modules for part in str(name).split("."))
