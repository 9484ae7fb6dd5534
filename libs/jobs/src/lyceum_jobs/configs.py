"""Validated configs for each job kind. The gateway rejects a bad config (422, field named) before any job
row exists; the worker parses the stored config with the same models.

Model and training sections mirror lyceum_ml's dataclasses field for field (DFMModel: DFMConfig, DFMTrain:
dfm.train.TrainConfig, LMModel: LMConfig, LMTrain: LMTrainConfig), with the same defaults: the job modules
build the dataclasses straight from `model_dump()`, and tests/unit/test_job_configs.py fails if a name or
default drifts. They are not imported here because the gateway, which validates configs, has no torch."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lyceum_core.identity import MODEL_NAME_PATTERN

RegistryName = Annotated[str, Field(pattern=MODEL_NAME_PATTERN)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunSettings(Strict):
    """How the runner drives any training loop."""

    checkpoint_every: int = Field(200, ge=1, le=10_000_000, description="steps between checkpoints")
    eval_every: int = Field(0, ge=0, le=10_000_000, description="steps between evaluations (0 = at the end)")
    log_every: int = Field(10, ge=1, le=1_000_000, description="steps between recorded training metrics")


# --- DFM pretraining --------------------------------------------------------------------------------------
class DFMDataset(Strict):
    format: Literal["kt3", "pykt", "jsonl", "simulated"]
    train_path: str | None = Field(None, min_length=1, max_length=4096)
    valid_path: str | None = Field(None, min_length=1, max_length=4096)
    test_path: str | None = Field(None, min_length=1, max_length=4096)
    valid_fraction: float = Field(0.1, gt=0.0, le=0.5)
    valid_fold: int | None = Field(None, ge=0, le=100, description="pyKT fold held out for validation")
    seed: int = Field(0, ge=0)
    n_learners: int = Field(2000, ge=10, le=1_000_000, description="simulated learners (format=simulated)")

    @model_validator(mode="after")
    def _paths(self) -> DFMDataset:
        if self.format != "simulated" and not self.train_path:
            raise ValueError(f"train_path is required for format {self.format!r}")
        return self


class DFMModel(Strict):
    """lyceum_ml.dfm.DFMConfig, less what the data decides (n_tasks) and the fixed internals."""

    d_model: int = Field(64, ge=8, le=4096)
    n_layer: int = Field(2, ge=1, le=64)
    n_head: int = Field(4, ge=1, le=64)
    n_kv_head: int = Field(2, ge=1, le=64)
    max_len: int = Field(4096, ge=16, le=131_072, description="interleaved tokens")
    outcome_embedding: Literal["scalar", "task"] = Field("task", description="outcome tokens carry a task")
    dropout: float = Field(0.2, ge=0.0, lt=1.0, description="training-only dropout")

    @model_validator(mode="after")
    def _heads(self) -> DFMModel:
        if self.d_model % self.n_head or self.n_head % self.n_kv_head or (self.d_model // self.n_head) % 2:
            raise ValueError("need d_model % n_head == 0, n_head % n_kv_head == 0 and an even head dimension")
        return self


class DFMTrain(Strict):
    """lyceum_ml.dfm.train.TrainConfig, less what RunSettings drives (eval_every) and eval_batch_size."""

    steps: int = Field(1000, ge=1, le=10_000_000)
    batch_size: int = Field(32, ge=1, le=8192)
    window: int = Field(200, ge=2, le=65_536, description="events per training window")
    lr: float = Field(3e-3, gt=0.0, le=1.0)
    min_lr_ratio: float = Field(0.1, ge=0.0, le=1.0)
    warmup_steps: int = Field(50, ge=0)
    weight_decay: float = Field(0.05, ge=0.0, le=1.0)
    grad_clip: float = Field(1.0, gt=0.0)
    seed: int = Field(0, ge=0)


class DFMPretrainConfig(Strict):
    dataset: DFMDataset
    model: DFMModel = DFMModel()
    train: DFMTrain = DFMTrain()
    run: RunSettings = RunSettings()
    register_as: RegistryName = "dfm"

    @model_validator(mode="after")
    def _window(self) -> DFMPretrainConfig:
        if 2 * self.train.window + 3 > self.model.max_len:
            raise ValueError(
                f"train.window={self.train.window} does not fit model.max_len={self.model.max_len}"
            )
        return self


# --- LM pretraining ---------------------------------------------------------------------------------------
class LMCorpus(Strict):
    paths: list[Annotated[str, Field(min_length=1, max_length=4096)]] = Field(min_length=1, max_length=1000)
    separator: Literal["auto", "eot", "blank_lines"] = "auto"
    val_fraction: float = Field(0.05, gt=0.0, le=0.5)


class LMTokenizer(Strict):
    kind: Literal["gpt2", "bpe"] = "bpe"
    path: str | None = Field(None, min_length=1, max_length=4096, description="GPT-2 vocab.json + merges.txt")
    vocab_size: int = Field(2048, ge=260, le=262_144, description="for kind=bpe")

    @model_validator(mode="after")
    def _path(self) -> LMTokenizer:
        if self.kind == "gpt2" and not self.path:
            raise ValueError("path is required for kind 'gpt2'")
        return self


class LMModel(Strict):
    """lyceum_ml.lm.LMConfig, less what the tokenizer decides (vocab_size) and the fixed internals."""

    d_model: int = Field(256, ge=8, le=16_384)
    n_layer: int = Field(4, ge=1, le=128)
    n_head: int = Field(4, ge=1, le=128)
    n_kv_head: int = Field(4, ge=1, le=128)
    max_seq_len: int = Field(1024, ge=8, le=131_072)

    @model_validator(mode="after")
    def _heads(self) -> LMModel:
        if self.d_model % self.n_head or self.n_head % self.n_kv_head or (self.d_model // self.n_head) % 2:
            raise ValueError("need d_model % n_head == 0, n_head % n_kv_head == 0 and an even head dimension")
        return self


class LMTrain(Strict):
    """lyceum_ml.lm.train.LMTrainConfig, less what RunSettings drives (eval_every) and betas."""

    steps: int = Field(1000, ge=1, le=100_000_000)
    batch_size: int = Field(16, ge=1, le=8192)
    seq_len: int = Field(256, ge=8, le=131_072)
    grad_accum: int = Field(1, ge=1, le=1024)
    lr: float = Field(1e-3, gt=0.0, le=1.0)
    min_lr_ratio: float = Field(0.1, ge=0.0, le=1.0)
    warmup_steps: int = Field(50, ge=0)
    weight_decay: float = Field(0.1, ge=0.0, le=1.0)
    grad_clip: float = Field(1.0, gt=0.0)
    eval_batches: int = Field(8, ge=1, le=10_000)
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    compile: bool = False
    seed: int = Field(0, ge=0)


class LMPretrainConfig(Strict):
    corpus: LMCorpus
    tokenizer: LMTokenizer = LMTokenizer()
    model: LMModel = LMModel()
    train: LMTrain = LMTrain()
    run: RunSettings = RunSettings()
    register_as: RegistryName = "lm"

    @model_validator(mode="after")
    def _seq(self) -> LMPretrainConfig:
        if self.train.seq_len > self.model.max_seq_len:
            raise ValueError(f"train.seq_len={self.train.seq_len} exceeds model.max_seq_len")
        return self
