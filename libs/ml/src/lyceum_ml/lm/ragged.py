"""One forward pass of the TransformerLM over many sequences at once (the sampler's engine steps).

A batch is ragged: each row is some new tokens after its own KV cache (a one-token decode step, a prompt
prefill, a chunk of one), so rows never wait for each other's lengths. The tokens of all rows are packed into
one (N, d) matrix for everything that acts token by token (embeddings, norms, projections, gates, MLPs, the
read-out), so the weights are read once per step for the whole batch, the way vLLM packs a batch. Only
attention needs the rows apart: each row attends over its own cache in place (no copy, no padding).

Per-token inputs ride along the packing: positions (each row continues its own cache), the gate signal (rows
without one are exactly ungated) and LoRA adapter names (peft's mixed-batch forward indexes the first
dimension, which here is tokens). A row's logits equal running it alone (float rounding: 1e-5 in fp32).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from lyceum_ml.causal_lm import Feed
from lyceum_ml.lm.model import DynamicGate, TransformerLM
from lyceum_ml.rotary import apply_rotary


def past(feed: Feed) -> int:
    """Tokens before a row's new ones: its prefix's and its cache's."""
    return feed.cache.length + (feed.prefix.length if feed.prefix is not None else 0)


def token_adapters(feeds: Sequence[Feed]) -> list[str | None]:
    """The adapter of every packed token, in packing order."""
    return [f.adapter for f in feeds for _ in f.token_ids]


def _gate_scales(model: TransformerLM, feeds: Sequence[Feed], n_tokens: int) -> Tensor | None:
    """(N, 1) gate signal of every token, or None when no row has one; rows without one get NaN, which
    `_gated` replaces by an exact 1."""
    if all(f.gate is None for f in feeds):
        return None
    if not model.cfg.gated:
        raise ValueError("this model has no gates (gate_hidden=0) but a gate signal was given")
    g = torch.full((n_tokens, 1), float("nan"), dtype=model.dtype, device=model.device)
    at = 0
    for f in feeds:
        n = len(f.token_ids)
        if f.gate is not None:
            g[at : at + n] = f.gate
        at += n
    return g


def _gated(out: Tensor, gate: DynamicGate | None, g: Tensor | None) -> Tensor:
    if g is None or gate is None:
        return out
    on = ~torch.isnan(g[:, 0])
    scale = torch.ones_like(out)
    scale[on] = gate(g[on]).to(out.dtype)
    return out * scale


@torch.no_grad()
def forward_rows(model: TransformerLM, feeds: Sequence[Feed]) -> list[Tensor]:
    """Runs every row's new tokens, appends their keys/values to the rows' caches and returns per row the
    fp32 logits (V,) after its last token, or (n, V) for every new token when `all_logits`; rows that
    `want_hidden` get their last token's final-norm hidden state in `Feed.hidden`.

    Adapters are applied by the caller's peft hooks (see `lyceum_ml.adapters`); this only packs."""
    cfg = model.cfg
    lens = [len(f.token_ids) for f in feeds]
    if not feeds or min(lens) == 0:
        raise ValueError("every row needs at least one new token")
    for f, n in zip(feeds, lens, strict=True):
        if past(f) + n > cfg.max_seq_len:
            raise ValueError(f"context of {past(f) + n} tokens exceeds max_seq_len={cfg.max_seq_len}")
    bounds = [0]
    for n in lens:
        bounds.append(bounds[-1] + n)
    device = model.device
    ids = torch.tensor([t for f in feeds for t in f.token_ids], device=device)
    positions = torch.cat(
        [torch.arange(past(f), past(f) + n, device=device) for f, n in zip(feeds, lens, strict=True)]
    )
    cos, sin = model.rope_cos[positions][:, None], model.rope_sin[positions][:, None]  # (N, 1, hd/2)
    g = _gate_scales(model, feeds, bounds[-1])
    for f, n in zip(feeds, lens, strict=True):
        f.cache.reserve(n)
    N, H, Hkv, hd = bounds[-1], cfg.n_head, cfg.n_kv_head, cfg.head_dim
    gqa = H != Hkv
    x = model.tok_emb(ids)  # (N, d)
    for layer, blk in enumerate(model.blocks):
        attn = blk.attn
        h = blk.attn_norm(x)
        q = apply_rotary(attn.q_proj(h).view(N, H, hd), cos, sin)
        k, v = attn.kv_proj(h).view(N, 2, Hkv, hd).unbind(1)
        k = apply_rotary(k, cos, sin)
        y = x.new_empty(N, H * hd)
        for f, a, b in zip(feeds, bounds, bounds[1:], strict=False):
            keys, values = f.cache.write(layer, k[a:b].transpose(0, 1)[None], v[a:b].transpose(0, 1)[None])
            if f.prefix is not None:
                pk, pv = f.prefix.layer(layer)
                keys, values = torch.cat([pk, keys], dim=2), torch.cat([pv, values], dim=2)
            y[a:b] = _attend(q[a:b].transpose(0, 1)[None], keys, values, past(f), gqa)
        x = x + _gated(attn.o_proj(y), blk.attn_gate, g)
        x = x + _gated(blk.mlp(blk.mlp_norm(x)), blk.mlp_gate, g)
    for f, n in zip(feeds, lens, strict=True):
        f.cache.advance(n)
    last = torch.tensor([b - 1 for b in bounds[1:]], device=device)
    heads = model.logits(x[last]).float()  # (B, V): one read-out for every row's last token
    if any(f.want_hidden for f in feeds):
        normed = model.norm(x[last]).float()  # (B, d): what the read-out reads
        for f, h in zip(feeds, normed, strict=True):
            f.hidden = h if f.want_hidden else None
    out = []
    for i, (f, a, b) in enumerate(zip(feeds, bounds, bounds[1:], strict=False)):
        out.append(model.logits(x[a:b]).float() if f.all_logits else heads[i])
    return out


def _attend(q: Tensor, keys: Tensor, values: Tensor, past: int, gqa: bool) -> Tensor:
    """q (1, H, n, hd) of tokens at positions past.. over keys/values (1, Hkv, past + n, hd) -> (n, H*hd)."""
    n = q.shape[2]
    if past == 0:
        y = F.scaled_dot_product_attention(q, keys, values, is_causal=True, enable_gqa=gqa)
    elif n == 1:
        y = F.scaled_dot_product_attention(q, keys, values, enable_gqa=gqa)
    else:
        mask = torch.arange(past + n, device=q.device) <= past + torch.arange(n, device=q.device)[:, None]
        y = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, enable_gqa=gqa)
    return y[0].transpose(0, 1).flatten(1)
