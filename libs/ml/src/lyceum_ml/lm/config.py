"""The gated TransformerLM's hyperparameters: one dataclass, saved inside every LM checkpoint."""

from __future__ import annotations

from dataclasses import dataclass

from lyceum_ml.serialization import DictConfig


@dataclass(frozen=True)
class LMConfig(DictConfig):
    vocab_size: int  # rows of the embedding table (>= the tokenizer's vocabulary)
    d_model: int = 256
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int = 4  # grouped-query attention: n_kv_head divides n_head (1 = multi-query)
    mlp_ratio: int = 4
    max_seq_len: int = 1024  # longest context (rotary tables and KV caches stop here)
    rope_base: float = 10_000.0
    norm_eps: float = 1e-6
    init_std: float = 0.02
    tie_embeddings: bool = True  # the output head reuses the token embedding matrix
    gate_hidden: int = 32  # width of each DynamicGate's MLP; 0 = no gate modules at all (a plain LM)

    def __post_init__(self) -> None:
        if self.d_model % self.n_head:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_head={self.n_head}")
        if self.n_head % self.n_kv_head:
            raise ValueError(f"n_head={self.n_head} is not divisible by n_kv_head={self.n_kv_head}")
        if (self.d_model // self.n_head) % 2:
            raise ValueError("head dimension must be even for rotary embeddings")
        if self.vocab_size <= 0 or self.max_seq_len <= 0 or self.gate_hidden < 0:
            raise ValueError("vocab_size and max_seq_len must be positive, gate_hidden non-negative")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def gated(self) -> bool:
        return self.gate_hidden > 0
