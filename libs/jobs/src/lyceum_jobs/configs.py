"""Validated configs for each job kind. The gateway rejects a bad config (422, field named) before any job
row exists; the worker parses the stored config with the same models.

Model and training sections mirror lyceum_ml's dataclasses field for field (DFMModel: DFMConfig, DFMTrain:
dfm.train.TrainConfig, LMModel: LMConfig, LMTrain: LMTrainConfig), with the same defaults: the job modules
build the dataclasses straight from `model_dump()`, and tests/unit/test_job_configs.py fails if a name or
default drifts. They are not imported here because the gateway, which validates configs, has no torch."""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lyceum_core.identity import (
    DATASET_ID_PATTERN,
    FEEDBACK_ID_PATTERN,
    MODEL_NAME_PATTERN,
    MODEL_REF_PATTERN,
)
from lyceum_core.lora import DEFAULT_ALPHA, DEFAULT_DROPOUT, DEFAULT_R, MAX_R

RegistryName = Annotated[str, Field(pattern=MODEL_NAME_PATTERN)]
ModelRefText = Annotated[str, Field(pattern=MODEL_REF_PATTERN, description="name@alias or name@version")]
MAX_PROCESSES = 64
C = TypeVar("C", bound=BaseModel)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetRef(Strict):
    """An uploaded dataset of the job's tenant (`POST /v1/datasets`), in place of a path on the worker."""

    id: str = Field(pattern=DATASET_ID_PATTERN, description="the dataset's id, ds-...")


FilePath = Annotated[str, Field(min_length=1, max_length=4096)]
# Wherever a job reads a file: a path on the worker's disk, or an uploaded dataset of the tenant.
Source = FilePath | DatasetRef


def referenced_datasets(config: BaseModel) -> list[str]:
    """The ids of every uploaded dataset a parsed config reads, in order, each once."""
    found: dict[str, None] = {}

    def walk(value: object) -> None:
        if isinstance(value, DatasetRef):
            found[value.id] = None
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(config)
    return list(found)


def referenced_models(config: BaseModel) -> list[tuple[str, str, str]]:
    """(field, name@ref, registry kind) of every registered model a parsed config starts from."""
    references = getattr(config, "model_references", None)
    return references() if callable(references) else []


def check_models(config: BaseModel, metadata: dict[str, dict[str, Any]]) -> None:
    """The config's own checks against the registry metadata of the models it names (by field, as
    `referenced_models` lists them), e.g. a gate signal for an LM without gates; InvalidArgument if not."""
    check = getattr(config, "check_models", None)
    if callable(check):
        check(metadata)


def with_local_paths(config: C, paths: dict[str, str]) -> C:
    """The config with every DatasetRef replaced by the local path `paths` maps its id to (the worker's
    copy of the dataset); KeyError for an id missing from `paths`."""

    def swap(value: object) -> object:
        if isinstance(value, DatasetRef):
            return paths[value.id]
        if isinstance(value, BaseModel):
            changes = {name: swap(getattr(value, name)) for name in type(value).model_fields}
            return value.model_copy(update=changes)
        if isinstance(value, list):
            return [swap(item) for item in value]
        return value

    return swap(config)  # type: ignore[return-value]


class RunSettings(Strict):
    """How the runner drives any training loop."""

    checkpoint_every: int = Field(200, ge=1, le=10_000_000, description="steps between checkpoints")
    eval_every: int = Field(0, ge=0, le=10_000_000, description="steps between evaluations (0 = at the end)")
    log_every: int = Field(10, ge=1, le=1_000_000, description="steps between recorded training metrics")
    processes: int = Field(
        1,
        ge=1,
        le=MAX_PROCESSES,
        description="training processes (ranks): >1 launches the job under torchrun, DDP over NCCL on GPUs "
        "and gloo on CPUs",
    )


# --- DFM pretraining --------------------------------------------------------------------------------------
class DFMDataset(Strict):
    format: Literal["kt3", "pykt", "jsonl", "simulated"]
    train_path: Source | None = None
    valid_path: Source | None = None
    test_path: Source | None = None
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
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="training-only dropout")
    recency_bias: bool = Field(True, description="learned per-head attention bias towards recent events")

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
    distill: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="weight of a DKT teacher's probabilities in the targets; 0: no teacher",
    )


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
        if self.run.processes > 1:
            raise ValueError("run.processes: DFM pretraining runs in one process")
        return self


# --- LM pretraining ---------------------------------------------------------------------------------------
class LMCorpus(Strict):
    paths: list[Source] = Field(min_length=1, max_length=1000)
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


# --- supervised fine-tuning -------------------------------------------------------------------------------
class SFTBase(Strict):
    """The model to fine-tune: a registered language model, or a local Hugging Face model directory."""

    model: ModelRefText | None = Field(None, description="a registered language model, name@alias")
    path: FilePath | None = Field(None, description="a Hugging Face model directory on the worker")
    gguf_file: str | None = Field(
        None, min_length=1, max_length=255, description="a GGUF file inside `path`, loaded dequantised"
    )

    @model_validator(mode="after")
    def _one(self) -> SFTBase:
        if (self.model is None) == (self.path is None):
            raise ValueError("give exactly one of model (name@alias) and path")
        if self.gguf_file is not None and self.path is None:
            raise ValueError("gguf_file needs path")
        return self


class SFTData(Strict):
    format: Literal["alpaca", "chat", "completion"] = Field(
        description="alpaca: instruction, input?, output; chat: messages; completion: prompt, completion"
    )
    train: Source = Field(description="JSON/JSONL rows of the format")
    valid: Source | None = Field(None, description="held-out rows; else val_fraction of train")
    val_fraction: float = Field(0.05, ge=0.0, le=0.5)
    template: Literal["auto", "alpaca", "chatml", "llama2", "tokenizer"] = Field(
        "auto",
        description="how rows become text: auto = the tokenizer's chat template when it has one, else chatml "
        "(alpaca rows: the alpaca template); completion rows are prompt + completion as they are",
    )
    max_seq_length: int = Field(1024, ge=8, le=131_072, description="tokens per example (or packed row)")
    packing: bool = Field(False, description="pack examples into rows; no example attends to another")
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _template(self) -> SFTData:
        if self.format == "completion" and self.template not in ("auto",):
            raise ValueError("template: completion rows are used as they are; leave template 'auto'")
        return self


class LoRASettings(Strict):
    r: int = Field(DEFAULT_R, ge=1, le=MAX_R)
    alpha: float = Field(DEFAULT_ALPHA, gt=0, le=65_536)
    dropout: float = Field(DEFAULT_DROPOUT, ge=0.0, lt=1.0)
    target_modules: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.]{1,128}$")]] | None = Field(
        None, min_length=1, max_length=64, description="default: by architecture (lyceum_jobs.lora)"
    )


class SFTTrain(Strict):
    method: Literal["lora", "qlora", "full"] = Field(
        "lora", description="qlora: LoRA over the base quantised to 4-bit NF4 (bitsandbytes)"
    )
    epochs: int = Field(1, ge=1, le=1000)
    max_steps: int = Field(0, ge=0, le=100_000_000, description="optimizer steps; 0 = what epochs make")
    batch_size: int = Field(4, ge=1, le=4096, description="examples per micro-batch per process")
    grad_accum: int = Field(1, ge=1, le=1024)
    lr: float = Field(2e-4, gt=0.0, le=1.0)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = Field(0.03, ge=0.0, le=1.0)
    min_lr_ratio: float = Field(0.0, ge=0.0, le=1.0)
    weight_decay: float = Field(0.0, ge=0.0, le=1.0)
    grad_clip: float = Field(1.0, ge=0.0, description="max global grad norm; 0 = off")
    eval_batches: int = Field(16, ge=1, le=100_000, description="validation micro-batches (at most)")
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    seed: int = Field(0, ge=0)


class SFTConfig(Strict):
    base: SFTBase
    data: SFTData
    lora: LoRASettings = LoRASettings()
    train: SFTTrain = SFTTrain()
    run: RunSettings = RunSettings()
    init_adapter: ModelRefText | None = Field(
        None, description="continue an adapter of this base (e.g. an empty one from POST /v1/adapters)"
    )
    register_as: RegistryName = Field("sft", description="the adapter's name (the model's, for method full)")
    merged_as: RegistryName | None = Field(
        None, description="also register the base with the adapter merged in, as a full model of this name"
    )

    def model_references(self) -> list[tuple[str, str, str]]:
        refs = [("config.base.model", self.base.model, "lm")] if self.base.model else []
        if self.init_adapter:
            refs.append(("config.init_adapter", self.init_adapter, "adapter"))
        return refs

    @model_validator(mode="after")
    def _method(self) -> SFTConfig:
        if self.train.method == "full" and (self.init_adapter or self.merged_as):
            raise ValueError("train.method 'full' trains no adapter: init_adapter and merged_as do not apply")
        return self


# --- self-distillation from feedback (SDPO) --------------------------------------------------------------
MAX_FEEDBACK_PER_JOB = 256
PREFERENCES = ("no_emoji", "concise", "identity")  # lyceum_jobs.preferences defines each
Preference = Literal["no_emoji", "concise", "identity"]


class SDPOTrain(Strict):
    """One SDPO step per job batch (Hübotter et al. 2026): the adapter (student) learns the frozen base shown
    the feedback as hindsight context (teacher), on the tokens it actually produced. Defaults are CLaaS's."""

    lr: float = Field(3e-5, gt=0.0, le=1.0, description="AdamW learning rate")
    weight_decay: float = Field(0.01, ge=0.0, le=1.0)
    alpha: float = Field(
        0.5, ge=0.0, le=1.0, description="<1: mixture divergence on the teacher's top-K; 1: reverse KL"
    )
    is_clip: float = Field(5.0, ge=1.0, le=20.0, description="cap on the importance weight vs the rollout")
    max_grad_norm: float = Field(1.0, ge=0.0, le=1e6, description="gradient-norm clip (0 = off)")
    kl_reg_weight: float = Field(0.0, ge=0.0, le=1.0, description="weight of the k3 KL to the base model")
    teacher_top_k: int = Field(100, ge=10, le=100, description="the teacher's top-K support per token")
    steps: int = Field(1, ge=1, le=64, description="optimizer steps over the job's batch")
    seed: int = Field(0, ge=0)


class GateSettings(Strict):
    """A new version is served only if it passes: collapse probes against its parent on fixed prompts, and
    the capability probe not below a fraction of the parent's."""

    enabled: bool = True
    min_entropy_ratio: float = Field(0.6, ge=0.0, le=10.0, description="mean token entropy, child / parent")
    max_self_rouge_l: float = Field(0.85, ge=0.0, le=1.0, description="self-ROUGE-L over the samples")
    max_logprob_drift: float = Field(2.0, ge=0.0, le=100.0, description="nats/token, parent's samples")
    min_capability_fraction: float = Field(0.9, ge=0.0, le=1.0, description="capability, child / parent")
    samples: int = Field(3, ge=2, le=8, description="samples per probe prompt")
    probes: int = Field(4, ge=1, le=64, description="probe prompts used (from the fixed set)")
    max_new_tokens: int = Field(48, ge=4, le=512)
    seed: int = Field(0, ge=0)


class SDPOConfig(Strict):
    """Distil the tenant's adapter on feedback items (created by the feedback dispatcher, or by hand)."""

    adapter: RegistryName = Field(description="the tenant's adapter (kind adapter) to train")
    parent: int = Field(ge=1, description="the version trained from (pinned when the job is made)")
    feedback: list[Annotated[str, Field(pattern=FEEDBACK_ID_PATTERN)]] = Field(
        min_length=1, max_length=MAX_FEEDBACK_PER_JOB, description="the feedback items trained on, once each"
    )
    train: SDPOTrain = SDPOTrain()
    gate: GateSettings = GateSettings()
    run: RunSettings = RunSettings()

    def model_references(self) -> list[tuple[str, str, str]]:
        return [("config.parent", f"{self.adapter}@{self.parent}", "adapter")]


# --- evaluation ----------------------------------------------------------------------------------------
class EvalConfig(Strict):
    """Evaluates language models or adapters (a series of versions, say) on preferences with verifiers,
    capability probes and collapse probes; metrics per model, plots as artifacts."""

    models: list[ModelRefText] = Field(
        min_length=1, max_length=32, description="name@alias|version of each lm or adapter, in plot order"
    )
    preferences: list[Preference] = Field(list(PREFERENCES), min_length=1, max_length=len(PREFERENCES))
    prompts: int = Field(8, ge=1, le=256, description="probe prompts per preference (from the fixed set)")
    samples: int = Field(1, ge=1, le=16, description="responses per prompt")
    max_new_tokens: int = Field(64, ge=4, le=1024)
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="0 = greedy")
    capability: bool = Field(True, description="score the general capability probes")
    collapse: bool = Field(True, description="entropy, self-ROUGE-L and drift against the first model")
    seed: int = Field(0, ge=0)
    run: RunSettings = RunSettings()

    def model_references(self) -> list[tuple[str, str, str]]:
        return [(f"config.models[{i}]", ref, "lm|adapter") for i, ref in enumerate(self.models)]
