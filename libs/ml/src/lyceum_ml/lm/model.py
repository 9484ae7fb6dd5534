"""The gated TransformerLM: a decoder-only transformer (RoPE, pre-norm RMSNorm blocks, causal GQA attention,
ReLU² MLP) whose attention and MLP outputs can be scaled per channel by a DynamicGate driven by one float per
sequence or per token. Without a gate signal the computation is exactly the plain, ungated LM."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lyceum_ml.kv_cache import KVCache
from lyceum_ml.lm.config import LMConfig
from lyceum_ml.rotary import apply_rotary, rotary_tables


class Attention(nn.Module):
    """Causal grouped-query self-attention with rotary positions, optionally over a KV cache."""

    def __init__(self, cfg: LMConfig) -> None:
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, cfg.n_kv_head, cfg.head_dim
        self.q_proj = nn.Linear(cfg.d_model, cfg.n_head * cfg.head_dim, bias=False)
        self.kv_proj = nn.Linear(cfg.d_model, 2 * cfg.n_kv_head * cfg.head_dim, bias=False)
        self.o_proj = nn.Linear(cfg.n_head * cfg.head_dim, cfg.d_model, bias=False)

    def forward(
        self,
        x: Tensor,
        cos: Tensor,
        sin: Tensor,
        cache: KVCache | None = None,
        layer: int = 0,
        mask: Tensor | None = None,
    ) -> Tensor:
        """x: (B, n, d) -> (B, n, d). With a cache, x's tokens follow the cache's `length` cached tokens and
        their keys/values are written into it. `mask` (B, 1, n, n), True = may attend, replaces the causal
        mask of a cache-less forward (packed rows: causal within each example only)."""
        B, n, _ = x.shape
        q = self.q_proj(x).view(B, n, self.n_head, self.head_dim).transpose(1, 2)  # (B, H, n, hd)
        k, v = self.kv_proj(x).view(B, n, 2, self.n_kv_head, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)  # k, v: (B, Hkv, n, hd)
        gqa = self.n_kv_head != self.n_head
        past = 0 if cache is None else cache.length
        if cache is not None:
            k, v = cache.write(layer, k, v)  # (B, Hkv, past + n, hd)
        if mask is not None and past == 0:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)
        elif past == 0:  # training, or a prefill: plain causal attention (fused kernels apply)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        else:  # new token i sees every cached token and new tokens up to itself; one token needs no mask
            mask = None
            if n > 1:
                mask = (
                    torch.arange(past + n, device=x.device)
                    <= past + torch.arange(n, device=x.device)[:, None]
                )
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)
        return self.o_proj(y.transpose(1, 2).flatten(2))  # (B, n, H*hd) -> (B, n, d)


class MLP(nn.Module):
    def __init__(self, cfg: LMConfig) -> None:
        super().__init__()
        self.up = nn.Linear(cfg.d_model, cfg.mlp_ratio * cfg.d_model, bias=False)
        self.down = nn.Linear(cfg.mlp_ratio * cfg.d_model, cfg.d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(F.relu(self.up(x)).square())  # ReLU²


class DynamicGate(nn.Module):
    """Gate signal (B, 1 or n, 1) -> per-channel scale 2·sigmoid(MLP(g)) in (0, 2) of shape (B, 1 or n, d).

    (0, 2) rather than (0, 1]: the signal may amplify a sublayer as well as damp it, and identity sits at
    sigmoid's midpoint where its gradient is largest. The output layer starts at zero, so a fresh gate is
    exactly 1 whatever the signal (like LoRA's zero B), and training moves it away from identity smoothly.
    """

    def __init__(self, cfg: LMConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(1, cfg.gate_hidden)
        self.out = nn.Linear(cfg.gate_hidden, cfg.d_model)

    def reset_parameters(self) -> None:
        self.fc.reset_parameters()  # U(-1, 1) for a one-input layer: features of the signal's scale
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, g: Tensor) -> Tensor:
        return 2 * torch.sigmoid(self.out(F.silu(self.fc(g))))


class Block(nn.Module):
    """Pre-norm transformer block; with a gate signal each sublayer's output is scaled by its DynamicGate."""

    def __init__(self, cfg: LMConfig) -> None:
        super().__init__()
        self.attn_norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.attn = Attention(cfg)
        self.mlp_norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.mlp = MLP(cfg)
        self.attn_gate = DynamicGate(cfg) if cfg.gated else None
        self.mlp_gate = DynamicGate(cfg) if cfg.gated else None

    def forward(
        self,
        x: Tensor,
        cos: Tensor,
        sin: Tensor,
        g: Tensor | None,
        cache: KVCache | None = None,
        layer: int = 0,
        mask: Tensor | None = None,
    ) -> Tensor:
        a = self.attn(self.attn_norm(x), cos, sin, cache, layer, mask)
        if g is not None and self.attn_gate is not None:
            a = a * self.attn_gate(g)
        x = x + a
        m = self.mlp(self.mlp_norm(x))
        if g is not None and self.mlp_gate is not None:
            m = m * self.mlp_gate(g)
        return x + m


class TransformerLM(nn.Module):
    def __init__(self, cfg: LMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.lm_head = None if cfg.tie_embeddings else nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        cos, sin = rotary_tables(cfg.head_dim, cfg.max_seq_len, cfg.rope_base)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        std = self.cfg.init_std
        for name, p in self.named_parameters():
            if p.dim() < 2 or "norm" in name or "gate" in name:
                continue
            residual = name.endswith(("o_proj.weight", "down.weight"))
            nn.init.normal_(p, std=std / math.sqrt(2 * self.cfg.n_layer) if residual else std)
        for module in self.modules():
            if isinstance(module, DynamicGate):
                module.reset_parameters()

    @property
    def device(self) -> torch.device:
        return self.tok_emb.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.tok_emb.weight.dtype

    def gate_signal(self, gate: Tensor | float | None, batch: int, n: int) -> Tensor | None:
        """A float, (B,) per sequence or (B, n) per token -> (B, 1 or n, 1) in the model's dtype."""
        if gate is None:
            return None
        if not self.cfg.gated:
            raise ValueError("this model has no gates (gate_hidden=0) but a gate signal was given")
        g = torch.as_tensor(gate, dtype=self.dtype, device=self.device)
        if g.dim() == 0:
            return g.expand(batch, 1, 1)
        if g.shape == (batch,):
            return g.view(batch, 1, 1)
        if g.shape == (batch, n):
            return g.unsqueeze(-1)
        raise ValueError(f"gate of shape {tuple(g.shape)}; expected a float, ({batch},) or ({batch}, {n})")

    def logits(self, h: Tensor) -> Tensor:
        """Final hidden states (B, n, d) -> logits (B, n, vocab_size)."""
        h = self.norm(h)
        return self.lm_head(h) if self.lm_head is not None else F.linear(h, self.tok_emb.weight)

    def forward(
        self,
        idx: Tensor,
        gate: Tensor | float | None = None,
        targets: Tensor | None = None,
        positions: Tensor | None = None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """idx (B, T) -> logits (B, T, V); with targets (B, T), -1 = ignored: (logits, mean fp32 loss).

        `positions` (B, T) packs several examples into a row: each example's positions count up from 0, and
        a token attends only to earlier tokens of its own example (packed_mask)."""
        B, T = idx.shape
        if T > self.cfg.max_seq_len:
            raise ValueError(f"sequence of {T} tokens exceeds max_seq_len={self.cfg.max_seq_len}")
        g = self.gate_signal(gate, B, T)
        x = self.tok_emb(idx)  # (B, T, d)
        mask = None
        if positions is None:
            cos, sin = self.rope_cos[:T], self.rope_sin[:T]
        else:
            cos, sin = self.rope_cos[positions].unsqueeze(1), self.rope_sin[positions].unsqueeze(1)
            mask = packed_mask(positions)
        for block in self.blocks:
            x = block(x, cos, sin, g, mask=mask)
        logits = self.logits(x)
        if targets is None:
            return logits
        loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=-1)
        return logits, loss

    @torch.no_grad()
    def decode(self, idx: Tensor, cache: KVCache, gate: Tensor | float | None = None) -> Tensor:
        """Runs new tokens idx (B, n) after the cache's tokens, appends their keys/values to the cache and
        returns fp32 logits (B, n, V). n = 1 is the sampling step; a longer idx on an empty cache is the
        prefill. The gate signal is a float, (B,) or (B, n) for the new tokens."""
        B, n = idx.shape
        start = cache.length
        if start + n > self.cfg.max_seq_len:
            raise ValueError(f"context of {start + n} tokens exceeds max_seq_len={self.cfg.max_seq_len}")
        g = self.gate_signal(gate, B, n)
        cache.reserve(n)
        x = self.tok_emb(idx)  # (B, n, d)
        cos, sin = self.rope_cos[start : start + n], self.rope_sin[start : start + n]
        for i, block in enumerate(self.blocks):
            x = block(x, cos, sin, g, cache, i)
        cache.advance(n)
        return self.logits(x).float()

    def new_cache(self, *, batch: int = 1, capacity: int = 0, chunk: int = 256) -> KVCache:
        cfg = self.cfg
        return KVCache(
            cfg.n_layer,
            cfg.n_kv_head,
            cfg.head_dim,
            batch=batch,
            capacity=capacity,
            chunk=chunk,
            dtype=self.dtype,
            device=self.device,
        )

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def packed_mask(positions: Tensor) -> Tensor:
    """Positions (B, T) of packed examples (each restarting at 0) -> the attention mask (B, 1, T, T): causal
    and within one example."""
    example = (positions == 0).cumsum(-1)  # (B, T): which example each token belongs to
    T = positions.shape[-1]
    causal = torch.ones(T, T, dtype=torch.bool, device=positions.device).tril()
    return (causal & (example[:, :, None] == example[:, None, :])).unsqueeze(1)
