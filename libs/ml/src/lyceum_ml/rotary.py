"""Rotary position embeddings, shared by Lyceum's transformers."""

from __future__ import annotations

import torch
from torch import Tensor


def rotary_tables(head_dim: int, max_len: int, base: float) -> tuple[Tensor, Tensor]:
    """cos, sin of shape (max_len, head_dim // 2)."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    angles = torch.outer(torch.arange(max_len, dtype=torch.float64), inv_freq)
    return angles.cos().float(), angles.sin().float()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """x: (B, H, n, hd); cos/sin: (n, hd/2) for the tokens' positions."""
    x1, x2 = x.chunk(2, dim=-1)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
