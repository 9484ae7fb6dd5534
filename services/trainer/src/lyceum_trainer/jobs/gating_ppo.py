"""PPO training of a gating policy (`gating_ppo`): a frozen registered LM, episodes begun by the first tokens
of the configured documents, one PPO iteration per job step (lyceum_ml.gating.train.GatingTrainer); at the end
the ablation on the held-out documents' prompts, and the policy registered as kind `gating_policy` pinned to
the LM version it was trained on (metadata `lm`, which serving checks).

The LM version is resolved once, by the first slice, and kept in every checkpoint: a job resumed after the
alias moved trains on the same weights. The LM runs on the CPU: the policy and the observation do."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from lyceum_core.errors import FailedPrecondition, InvalidArgument
from lyceum_db.repositories.registry import ModelRecord
from lyceum_jobs.gating import GatingPPOConfig
from lyceum_ml.causal_lm_impl import load_causal_lm
from lyceum_ml.gating.policy import KIND, PolicyConfig
from lyceum_ml.gating.ppo import PPOSettings
from lyceum_ml.gating.reward import RewardWeights
from lyceum_ml.gating.train import GatingTrainer, prompts_from_texts
from lyceum_ml.lm.data import read_documents, train_val_split
from lyceum_ml.training import Export
from lyceum_trainer.jobs import Built, JobContext, registry_key

PIN_FILE = "gating_lm.json"  # in a checkpoint: the registry key of the LM version trained on


class GatingPPOJob:
    """The runner's view of the PPO run: GatingTrainer's steps, then the ablation and the export. Figures that
    are not finite (the explained variance of constant returns) are left out: the job's JSON holds none."""

    def __init__(
        self, trainer: GatingTrainer, config: GatingPPOConfig, lm: ModelRecord, held_out: list[list[int]]
    ) -> None:
        self.trainer, self.config, self.lm, self.held_out = trainer, config, lm, held_out
        self.ablation: dict[str, Any] = {}

    @property
    def step(self) -> int:
        return self.trainer.step

    @property
    def total_steps(self) -> int:
        return self.trainer.total_steps

    def run(self, n_steps: int) -> dict[str, float]:
        return _finite(self.trainer.run(n_steps))

    def evaluate(self) -> dict[str, float]:
        return _finite(self.trainer.evaluate())

    def save(self, directory: Path) -> None:
        self.trainer.save(directory)
        (Path(directory) / PIN_FILE).write_text(json.dumps({"lm": registry_key(self.lm)}))

    def load(self, directory: Path) -> None:
        self.trainer.load(directory)

    def exports(self, directory: Path) -> list[Export]:
        """The ablation on the held-out prompts, then the policy, its metadata pinning the LM version."""
        a = self.config.ablation
        self.ablation = _json_safe(self.trainer.ablation(self.held_out, a.episodes, a.seeds, a.modulation))
        metadata = self.trainer.export(Path(directory)) | {"ablation": self.ablation}
        return [Export(Path(directory), KIND, self.config.register_as, _json_safe(metadata))]

    def finish(self, ctx: JobContext, registered: list[dict[str, Any]]) -> dict[str, Any]:
        """The ablation, the LM version trained on, and whether m drove its gates (else sampling only)."""
        gate_signal = self.trainer.gate_signal
        return {"ablation": self.ablation, "lm": registry_key(self.lm), "gate_signal": gate_signal}


def build(config: GatingPPOConfig, ctx: JobContext) -> Built:
    record, lm_dir = _lm_version(config, ctx)
    key = registry_key(record)
    lm = load_causal_lm(lm_dir, name=key, device="cpu")
    gate_signal = lm.gated if config.gate_signal is None else config.gate_signal
    if gate_signal and not lm.gated:
        raise InvalidArgument(
            f"config.gate_signal: {key} has no gates; leave gate_signal null or false (sampling only)",
            field="config.gate_signal",
        )
    if config.prompt_tokens + config.episode_length > lm.max_context:
        raise InvalidArgument(
            f"config.episode_length: prompt_tokens + episode_length exceed {key}'s context of "
            f"{lm.max_context} tokens",
            field="config.episode_length",
        )
    texts = read_documents([config.prompts])
    train_texts, held_texts = train_val_split(texts, config.held_out, config.seed)
    train = prompts_from_texts(lm, train_texts, config.prompt_tokens)
    held_out = prompts_from_texts(lm, held_texts, config.prompt_tokens)
    if not train or not held_out:
        raise InvalidArgument(
            f"config.prompts: {len(texts)} documents give {len(train)} training and {len(held_out)} held-out "
            f"prompts of {config.prompt_tokens} tokens; both need at least one",
            field="config.prompts",
        )
    trainer = GatingTrainer(
        lm,
        train,
        iterations=config.iterations,
        envs=config.envs,
        episode_length=config.episode_length,
        seed=config.seed,
        gate_signal=gate_signal,
        weights=RewardWeights(**config.reward.model_dump()),
        ppo=PPOSettings(**config.ppo.model_dump()),
        policy=PolicyConfig(**config.policy.model_dump()),
        metadata={"lm": key, "lm_ref": config.lm},
    )
    return GatingPPOJob(trainer, config, record, held_out), dict  # type: ignore[return-value]


def _lm_version(config: GatingPPOConfig, ctx: JobContext) -> tuple[ModelRecord, Path]:
    """The LM version `config.lm` names now, or on a resumed run the one its checkpoint pinned."""
    pin = ctx.resume / PIN_FILE if ctx.resume is not None else None
    if pin is None or not pin.exists():
        return ctx.model(config.lm, "lm", "config.lm")
    pinned = json.loads(pin.read_text())["lm"]
    record, path = ctx.model(pinned.split("/", 1)[1], "lm", "config.lm")
    if registry_key(record) != pinned:
        raise FailedPrecondition(f"the LM {pinned} this job trains on is not visible", field="config.lm")
    return record, path


def _finite(figures: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in figures.items() if not isinstance(v, float) or math.isfinite(v)}


def _json_safe(value: Any) -> Any:
    """`value` with every non-finite float as None (JSON has no NaN; the job table refuses it)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value
