"""The DFM's hyperparameters: one dataclass, saved inside every checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lyceum_ml.serialization import DictConfig


@dataclass(frozen=True)
class DFMConfig(DictConfig):
    n_tasks: int  # rows of the task table / number of fixed task vectors
    d_model: int = 128
    n_layer: int = 4
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

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def max_events(self) -> int:
        """Longest history after which one more task can still be predicted: 2 * (events + 1) < max_len."""
        return (self.max_len - 3) // 2
