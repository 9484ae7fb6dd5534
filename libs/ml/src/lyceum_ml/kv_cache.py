"""The KV cache shared by Lyceum's transformers: keys and values of every layer for a batch of equal-length
sequences, grown in fixed chunks with the sequence instead of preallocating the whole context."""

from __future__ import annotations

import torch
from torch import Tensor


class KVCache:
    """Storage (n_layer, 2, B, n_kv_head, capacity, head_dim); `length` tokens are valid in every row.

    Capacity grows in multiples of `chunk` tokens, so a sequence holds at most chunk - 1 unused slots.
    Two ways to add tokens: `append(new_kv)` with every layer's new keys/values at once (the DFM computes
    them first and commits after its database write), or `write(layer, k, v)` per layer, then `advance(n)`
    (the LM's decode). Setting `length` lower rewinds (a sampler backtracking).
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

    def snapshot(self) -> KVCache:
        """A read-only view of the tokens cached now, sharing storage: later appends to this cache write past
        them (or into a new buffer), so the view never changes. Readers use it outside the writer's lock."""
        view = object.__new__(KVCache)
        view.chunk, view.length, view.buf = self.chunk, self.length, self.buf
        return view

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
            self.write(i, k, v)
        self.advance(n)

    def write(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Stores k, v (B, Hkv, n, hd) after `length` (room must be reserved); returns views of all keys and
        values, each (B, Hkv, length + n, hd). `advance` once every layer is written."""
        end = self.length + k.shape[2]
        self.buf[layer, 0, :, :, self.length : end] = k
        self.buf[layer, 1, :, :, self.length : end] = v
        return self.buf[layer, 0, :, :, :end], self.buf[layer, 1, :, :, :end]

    def advance(self, n: int) -> None:
        self.length += n
