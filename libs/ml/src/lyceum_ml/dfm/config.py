"""The DFM's hyperparameters: one dataclass, saved inside every checkpoint."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar, Literal, Self

from lyceum_ml.serialization import DictConfig


@dataclass(frozen=True)
class DFMConfig(DictConfig):
    n_tasks: int  # rows of the task table / number of fixed task vectors
    # The defaults are what `dfm_pretrain` jobs train and what bench/dfm_quality.py measures against DKT on
    # three public benchmarks. Shape probes, ASSIST2009 validation AUC (seed 0, 500 steps), these defaults
    # 0.8252: d_model 128 0.8242 (peaks at step 248, then overfits; 2.4x the CPU time), n_head 2 (head_dim
    # 32) 0.8248, n_kv_head 4 0.8234, n_kv_head 1 0.8247, n_layer 1 0.8232,
    # mlp_ratio 2 0.8253 (seeds 0-2: +0.0006 ± 0.0024 over these defaults, noise; ~13% faster per step).
    d_model: int = 64
    n_layer: int = 2
    n_head: int = 4
    n_kv_head: int = 2  # grouped-query attention: n_kv_head divides n_head (1 = multi-query)
    mlp_ratio: int = 4
    max_len: int = 4096  # interleaved tokens: BOS pair + 2 per event + the token being predicted
    rope_base: float = 10_000.0
    softcap: float = 15.0
    task_encoder: Literal["table", "vectors"] = "table"
    task_vector_dim: int = 0  # width of the fixed task vectors when task_encoder == "vectors"
    norm_eps: float = 1e-6
    init_std: float = 0.02
    # "task": an outcome token also carries its task (DKT's (skill, correct) input): the task vector through a
    # right and a wrong projection, mixed by the outcome. "scalar": the outcome value alone (checkpoints
    # written before this field existed).
    outcome_embedding: Literal["scalar", "task"] = "task"
    # A task-specific read-out beside the shared head: logit += <W task_vec, norm(h)> + w . task_vec (DKT's
    # per-task output row and bias, Rasch difficulty), computed from the task vector so "vectors" works too.
    task_readout: bool = True
    dropout: float = 0.1  # embeddings and residual branches, in training only (no weights: serving unchanged)
    # A learned per-head recency bias on attention scores, -slope_h * (events between query and key), ALiBi
    # with learned slopes (AKT's monotonic decay, linear): DKT's recurrence favours recent events, causal
    # attention with rotary positions alone does not. False: checkpoints written before this field existed.
    recency_bias: bool = True

    # What a checkpoint written before a field existed was trained with (`from_dict` fills these in).
    LEGACY: ClassVar[dict[str, Any]] = {
        "outcome_embedding": "scalar",
        "task_readout": False,
        "dropout": 0.0,
        "recency_bias": False,
    }

    def __post_init__(self) -> None:
        if self.d_model % self.n_head:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_head={self.n_head}")
        if self.n_head % self.n_kv_head:
            raise ValueError(f"n_head={self.n_head} is not divisible by n_kv_head={self.n_kv_head}")
        if (self.d_model // self.n_head) % 2:
            raise ValueError("head dimension must be even for rotary embeddings")
        if self.task_encoder == "vectors" and self.task_vector_dim <= 0:
            raise ValueError("task_encoder='vectors' needs task_vector_dim > 0")
        if self.n_tasks <= 0 or self.max_len < 4:
            raise ValueError("n_tasks must be positive and max_len at least 4")
        if self.outcome_embedding not in ("scalar", "task"):
            raise ValueError(f"unknown outcome_embedding {self.outcome_embedding!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """As `DictConfig.from_dict`, and a field the dict lacks takes its `LEGACY` value, so an older
        checkpoint rebuilds the architecture it was trained with."""
        known = {f.name for f in fields(cls)}
        return cls(**{**cls.LEGACY, **{k: v for k, v in data.items() if k in known}})

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def max_events(self) -> int:
        """Longest history after which one more task can still be predicted: 2 * (events + 1) < max_len."""
        return (self.max_len - 3) // 2
