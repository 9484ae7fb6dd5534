"""The LM's KV cache: keys and values of every layer for a batch of equal-length sequences, written in place
one decode call at a time and grown in fixed chunks instead of preallocating the whole context."""

from __future__ import annotations

import torch
from torch import Tensor


class KVCache:
    """Storage (n_layer, 2, B, n_kv_head, capacity, head_dim); `length` tokens are valid in every row.

    A decode call reserves room, each layer writes its new keys/values after `length`, then the model
    advances `length` once all layers are done. Setting `length` lower rewinds (e.g. a sampler backtracking).
    """

    def __init__(
        self,
        n_layer: int,
        n_kv_head: int,
        head_dim: int,
        *,
        batch: int = 1,
        capacity: int = 0,
        chunk: int = 256,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        self.chunk = chunk
        self.length = 0
        self.buf = torch.empty(n_layer, 2, batch, n_kv_head, capacity, head_dim, dtype=dtype, device=device)

    @property
    def batch(self) -> int:
        return self.buf.shape[2]

    @property
    def capacity(self) -> int:
        return self.buf.shape[4]

    def reserve(self, n: int) -> None:
        """Makes room for n more tokens, growing by whole chunks (amortised copy)."""
        need = self.length + n
        if need <= self.capacity:
            return
        cap = -(-need // self.chunk) * self.chunk
        grown = self.buf.new_empty(*self.buf.shape[:4], cap, self.buf.shape[5])
        grown[..., : self.length, :] = self.buf[..., : self.length, :]
        self.buf = grown

    def write(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Stores k, v (B, Hkv, n, hd) after `length`; returns views of all keys and values,
        each (B, Hkv, length + n, hd)."""
        end = self.length + k.shape[2]
        self.buf[layer, 0, :, :, self.length : end] = k
        self.buf[layer, 1, :, :, self.length : end] = v
        return self.buf[layer, 0, :, :, :end], self.buf[layer, 1, :, :, :end]

    def advance(self, n: int) -> None:
        self.length += n
