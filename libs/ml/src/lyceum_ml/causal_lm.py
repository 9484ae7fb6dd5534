"""What the sampler needs of a causal language model: incremental steps over a per-session KV cache, and
token-level text. Implemented for Lyceum's gated TransformerLM and for Hugging Face causal LMs loaded from
local directories (see `lyceum_ml.causal_lm_impl`)."""

from __future__ import annotations

from typing import Any, Protocol

from torch import Tensor


class CausalLM(Protocol):
    name: str
    kind: str  # "lyceum-lm" | "hf-causal-lm"
    vocab_size: int  # size of the distribution (logits length)
    max_context: int  # longest context in tokens
    eos_id: int | None

    def new_cache(self) -> Any:
        """An empty per-sequence cache."""
        ...

    def cache_len(self, cache: Any) -> int:
        """Tokens the cache holds."""
        ...

    def cache_nbytes(self, cache: Any) -> int: ...

    def extend(self, cache: Any, token_ids: list[int]) -> Tensor:
        """Feeds token_ids after the cache's tokens (growing it) and returns the fp32 logits (vocab_size,)
        for the token after the last one. One forward pass over the new tokens only."""
        ...

    def truncate(self, cache: Any, length: int) -> None:
        """Drops cached tokens past `length` (undo)."""
        ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, token_ids: list[int]) -> str: ...

    def token_bytes(self, token_id: int) -> bytes:
        """The exact bytes a token stands for (byte-level BPE tokens may be partial UTF-8)."""
        ...
