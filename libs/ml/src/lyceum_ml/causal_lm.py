"""What the sampler needs of a causal language model: incremental steps over a per-session KV cache, and
token-level text. Implemented for Lyceum's gated TransformerLM and for Hugging Face causal LMs loaded from
local directories (see `lyceum_ml.causal_lm_impl`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from torch import Tensor

from lyceum_ml.adapters import AdapterHost


@dataclass
class Feed:
    """New tokens for one sequence of a batched forward, fed after `prefix` (a shared, read-only cache of
    tokens before `cache`'s, e.g. beams' common prompt; None = nothing; only where `shares_prefix`) and
    `cache`'s own tokens, which they extend.

    `gate` is these tokens' gate signal (None: ungated), `adapter` the loaded adapter's name (None: the base
    model), `all_logits` asks for every new token's logits rather than the last one's. `want_hidden` asks for
    the final-norm hidden state (d,) at the last new token, which the forward leaves in `hidden`."""

    cache: Any
    token_ids: Sequence[int]
    gate: float | None = None
    adapter: str | None = None
    all_logits: bool = False
    prefix: Any = None
    want_hidden: bool = False
    hidden: Tensor | None = None  # set by forward_rows when want_hidden


class CausalLM(Protocol):
    name: str
    kind: str  # "lyceum-lm" | "hf-causal-lm"
    vocab_size: int  # size of the distribution (logits length)
    max_context: int  # longest context in tokens
    eos_id: int | None
    gated: bool  # takes a gate signal
    shares_prefix: bool  # Feed.prefix is supported (else beams copy caches)
    adapters: AdapterHost  # LoRA adapters loaded into this model

    def new_cache(self) -> Any:
        """An empty per-sequence cache."""
        ...

    def cache_len(self, cache: Any) -> int:
        """Tokens the cache holds."""
        ...

    def cache_nbytes(self, cache: Any) -> int: ...

    def forward_rows(self, feeds: Sequence[Feed]) -> list[Tensor]:
        """One batched forward: feeds each row's tokens after its cache (growing it) and returns per row the
        fp32 logits (vocab_size,) after its last token, or (n, vocab_size) with `all_logits`. A row's result
        does not depend on the other rows (float rounding aside). Runs on the model's own thread."""
        ...

    def extend(self, cache: Any, token_ids: list[int]) -> Tensor:
        """`forward_rows` of one row without adapter or gate: the logits (vocab_size,) after token_ids."""
        ...

    def copy_cache(self, cache: Any) -> Any:
        """An independent copy of a cache (beams of models that cannot share a prefix)."""
        ...

    def truncate(self, cache: Any, length: int) -> None:
        """Drops cached tokens past `length` (undo)."""
        ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, token_ids: list[int]) -> str: ...

    def token_bytes(self, token_id: int) -> bytes:
        """The exact bytes a token stands for (byte-level BPE tokens may be partial UTF-8)."""
        ...
