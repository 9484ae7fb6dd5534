"""KV caches for the DFM: per-learner storage that grows in fixed chunks with the history, instead of
preallocating the maximum length for every learner."""

from __future__ import annotations

import torch
from torch import Tensor


class KVCache:
    """Keys and values of every layer for a batch of sequences of equal length.

    Storage is one tensor (n_layer, 2, B, n_kv_head, capacity, head_dim); capacity grows in multiples of
    `chunk` tokens, so a learner holds at most chunk - 1 unused slots. Writes append after `length`.
    """

    def __init__(
        self,
        n_layer: int,
        n_kv_head: int,
        head_dim: int,
        *,
        batch: int = 1,
        chunk: int = 128,
        capacity: int = 0,
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

    @property
    def nbytes(self) -> int:
        return self.buf.numel() * self.buf.element_size()

    def layer(self, i: int) -> tuple[Tensor, Tensor]:
        """Views of layer i's keys and values, each (B, n_kv_head, length, head_dim)."""
        return self.buf[i, 0, :, :, : self.length], self.buf[i, 1, :, :, : self.length]

    def reserve(self, n: int) -> None:
        """Makes room for n more tokens, growing by whole chunks (amortised copy)."""
        need = self.length + n
        if need <= self.capacity:
            return
        cap = -(-need // self.chunk) * self.chunk
        grown = self.buf.new_empty(*self.buf.shape[:4], cap, self.buf.shape[5])
        grown[:, :, :, :, : self.length] = self.buf[:, :, :, :, : self.length]
        self.buf = grown

    def append(self, new_kv: list[tuple[Tensor, Tensor]]) -> None:
        """Appends one (k, v) pair per layer, each (B, n_kv_head, n, head_dim)."""
        n = new_kv[0][0].shape[2]
        self.reserve(n)
        for i, (k, v) in enumerate(new_kv):
            self.buf[i, 0, :, :, self.length : self.length + n] = k
            self.buf[i, 1, :, :, self.length : self.length + n] = v
        self.length += n
