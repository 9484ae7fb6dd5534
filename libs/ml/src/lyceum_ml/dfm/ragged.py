"""One forward pass over many learners' calls at once (the predictor's dynamic batches).

A batch is ragged: each row is some new tokens after its own cache, of any length. The tokens of all rows are
packed into one sequence for everything that acts token by token (norms, projections, MLPs, read-outs: one
matmul each for the whole batch, no padding), the way vLLM packs a batch. Only attention needs the rows
apart:

- short rows (a few tokens: predictions, appends) attend together in ONE scaled-dot-product call, their
  caches copied into a padded block with a mask, when that copy is small (small models, short histories);
- long rows (prefills) and rows whose caches are too big to copy cheaply attend one by one over their caches
  in place (no copy).

A row's result equals running it alone through `DFM.decode` (up to float rounding, 1e-5 in fp32).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from lyceum_ml.dfm.model import DFM, Attention
from lyceum_ml.kv_cache import KVCache

SHORT_ROW_TOKENS = 64  # rows up to this long attend in the padded block
GATHER_LIMIT_BYTES = 32 * 2**20  # copy at most this much cache into the padded block per forward


@dataclass(frozen=True)
class Row:
    """One sequence of a ragged batch: new tokens x (n, d) at positions (n,) after the cache `past` (None:
    nothing before them), under mask (n, n) (True = may attend; None = causal)."""

    x: Tensor
    positions: Tensor
    mask: Tensor | None
    past: KVCache | None


def decode_ragged(
    model: DFM, rows: Sequence[Row], *, gather_limit_bytes: int = GATHER_LIMIT_BYTES
) -> list[tuple[Tensor, list[tuple[Tensor, Tensor]]]]:
    """Runs the rows; returns per row its hidden states (n_r, d) and each layer's new (k, v), each
    (1, Hkv, n_r, hd). Nothing is written to the caches."""
    lens = [r.x.shape[0] for r in rows]
    bounds = [0]
    for n in lens:
        bounds.append(bounds[-1] + n)
    x = torch.cat([r.x for r in rows])[None]  # (1, N, d): every token of the batch, packed
    positions = torch.cat([r.positions for r in rows])
    cos, sin = model.rope_cos[positions], model.rope_sin[positions]
    block = _Block.plan(model, rows, lens, bounds, gather_limit_bytes)
    new_kv: list[list[tuple[Tensor, Tensor]]] = [[] for _ in rows]
    for layer, blk in enumerate(model.blocks):
        attn = blk.attn
        q, k, v = attn.qkv(blk.attn_norm(x), cos, sin)  # (1, H or Hkv, N, hd)
        y = x.new_empty(1, x.shape[1], attn.n_head * attn.head_dim)
        if block is not None:
            y[0, block.token_index] = block.attend(layer, attn, q, k, v)
        for i, r in enumerate(rows):
            a, b = bounds[i], bounds[i + 1]
            new_kv[i].append((k[:, :, a:b], v[:, :, a:b]))
            if block is None or i not in block.members:
                past = [] if r.past is None else [r.past.layer(layer)]
                y[:, a:b] = attn.attend(q[:, :, a:b], k[:, :, a:b], v[:, :, a:b], r.positions, r.mask, past)
        x = x + blk.drop(attn.o_proj(y))
        x = x + blk.drop(blk.mlp(blk.mlp_norm(x)))
    return [(x[0, bounds[i] : bounds[i + 1]], new_kv[i]) for i in range(len(rows))]


class _Block:
    """The short rows of a batch, padded into one block: (B, n) queries over (B, T + n) keys (their caches,
    copied once for every layer, then their own new keys) under one mask."""

    def __init__(self, model: DFM, members: list[int], rows: Sequence[Row], bounds: list[int]) -> None:
        cfg = model.cfg
        self.members = set(members)
        B = len(members)
        lens = [bounds[i + 1] - bounds[i] for i in members]
        pasts = [rows[i].past.length if rows[i].past is not None else 0 for i in members]
        n, T = max(lens), max(pasts)
        device = model.device
        self.n, self.T = n, T
        # packed index of each (row, slot); padding slots point at the row's first token (masked out)
        starts = torch.tensor([bounds[i] for i in members], device=device)[:, None]
        length = torch.tensor(lens, device=device)[:, None]
        slots = torch.arange(n, device=device)[None]
        index = starts + torch.minimum(slots, length - 1)  # (B, n)
        valid = slots < length
        self.index, self.valid = index, valid
        self.token_index = index[valid]  # packed positions of the real tokens, in block order
        # (n_layer, 2, B, Hkv, T, hd): the members' caches, copied once for all layers
        self.past = model.bos.new_zeros(cfg.n_layer, 2, B, cfg.n_kv_head, T, cfg.head_dim)
        for b, (i, t) in enumerate(zip(members, pasts, strict=True)):
            if t:
                self.past[:, :, b, :, :t] = rows[i].past.buf[:, :, 0, :, :t]
        mask = torch.zeros(B, n, T + n, dtype=torch.bool, device=device)
        mask[:, :, :T] = (
            torch.arange(T, device=device)[None, None] < torch.tensor(pasts, device=device)[:, None, None]
        )
        for b, (i, ln) in enumerate(zip(members, lens, strict=True)):
            own = rows[i].mask
            mask[b, :ln, T : T + ln] = own if own is not None else torch.ones(ln, ln, dtype=torch.bool).tril()
            mask[b, ln:, T] = True  # padding queries attend somewhere (their output is dropped)
        self.mask = mask[:, None]  # (B, 1, n, T + n)
        # positions of the queries (B, n) and keys (B, T + n): the cache's 0 .. T - 1, then the row's own
        self.q_pos = torch.cat([r.positions for r in rows])[index]
        self.k_pos = torch.cat([torch.arange(T, device=device).expand(B, T), self.q_pos], dim=1)
        self.gqa = cfg.n_head != cfg.n_kv_head

    @classmethod
    def plan(
        cls, model: DFM, rows: Sequence[Row], lens: list[int], bounds: list[int], limit: int
    ) -> _Block | None:
        members = [i for i, n in enumerate(lens) if n <= SHORT_ROW_TOKENS]
        if len(members) < 2:
            return None
        cfg = model.cfg
        T = max((rows[i].past.length if rows[i].past is not None else 0) for i in members)
        item = model.bos.element_size()
        if len(members) * cfg.n_layer * 2 * cfg.n_kv_head * T * cfg.head_dim * item > limit:
            return None
        return cls(model, members, rows, bounds)

    def attend(self, layer: int, attn: Attention, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """The members' attention output for one layer, (real tokens, H * hd) in block order."""

        def rows_of(t: Tensor) -> Tensor:  # (1, heads, N, hd) -> (B, heads, n, hd)
            return t[0][:, self.index].transpose(0, 1)

        keys = torch.cat([self.past[layer, 0], rows_of(k)], dim=2)
        values = torch.cat([self.past[layer, 1], rows_of(v)], dim=2)
        bias = attn.bias(self.q_pos, self.k_pos)  # (B, H, n, T + n)
        mask = self.mask if bias is None else bias.to(q.dtype).masked_fill(~self.mask, float("-inf"))
        y = F.scaled_dot_product_attention(
            rows_of(q), keys, values, attn_mask=mask, enable_gqa=self.gqa
        )  # (B, H, n, hd)
        return y.transpose(1, 2).flatten(2)[self.valid]
