"""The Developmental Foundation Model: a decoder over interleaved (task, outcome) tokens that predicts the
outcome of each task from the learner's history before it.

Sequence: [BOS_task, BOS_outcome, task_0, outcome_0, task_1, outcome_1, ...]. The logit for event i is read
at task_i's position, so P(success on task | history) costs one token on top of the cached history. An
outcome token embeds the outcome together with its task (`DFMConfig.outcome_embedding`), the logit adds a
task-specific read-out of the hidden state (`DFMConfig.task_readout`), and attention scores carry a learned
per-head bias towards recent events (`DFMConfig.recency_bias`), the same in every attention path: training,
prefill, cached segments, and the ragged batch's padded block (`ragged.py`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lyceum_ml.dfm.config import DFMConfig
from lyceum_ml.kv_cache import KVCache
from lyceum_ml.rotary import apply_rotary, rotary_tables

TASK, OUTCOME = 0, 1  # token types


class Attention(nn.Module):
    """Grouped-query self-attention with QK-norm and rotary positions, able to attend over cached segments."""

    def __init__(self, cfg: DFMConfig) -> None:
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, cfg.n_kv_head, cfg.head_dim
        self.q_proj = nn.Linear(cfg.d_model, cfg.n_head * cfg.head_dim, bias=False)
        self.kv_proj = nn.Linear(cfg.d_model, 2 * cfg.n_kv_head * cfg.head_dim, bias=False)
        self.o_proj = nn.Linear(cfg.n_head * cfg.head_dim, cfg.d_model, bias=False)
        self.q_norm = nn.RMSNorm(cfg.head_dim, eps=cfg.norm_eps)
        self.k_norm = nn.RMSNorm(cfg.head_dim, eps=cfg.norm_eps)
        # log of each head's recency slope per event: ALiBi's geometric spread, 1/2 (recent events only) to
        # 1/2^(2H-1) (nearly the whole window)
        self.recency = (
            nn.Parameter(-math.log(2) * torch.arange(1, 2 * cfg.n_head, 2, dtype=torch.float32))
            if cfg.recency_bias
            else None
        )

    def bias(self, q_pos: Tensor, k_pos: Tensor) -> Tensor | None:
        """Additive scores (..., H, n_q, n_k) for queries at q_pos (..., n_q) over keys at k_pos (..., n_k):
        minus each head's slope times the events (two tokens each) from key to query; None without a recency
        bias."""
        if self.recency is None:
            return None
        events = (q_pos[..., :, None] - k_pos[..., None, :]).clamp(min=0).to(self.recency.dtype) / 2
        return -self.recency.exp()[:, None, None] * events.unsqueeze(-3)

    def qkv(self, x: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        B, n, _ = x.shape
        q = self.q_proj(x).view(B, n, self.n_head, self.head_dim).transpose(1, 2)  # (B, H, n, hd)
        k, v = self.kv_proj(x).view(B, n, 2, self.n_kv_head, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = self.q_norm(q), self.k_norm(k)
        return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin), v  # k, v: (B, Hkv, n, hd)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        """Training / full-sequence path: causal attention over x alone."""
        q, k, v = self.qkv(x, cos, sin)
        return self.o_proj(self.causal(q, k, v, torch.arange(x.shape[1], device=x.device)))

    def causal(self, q: Tensor, k: Tensor, v: Tensor, positions: Tensor) -> Tensor:
        """Causal attention of tokens at `positions` (n,) over each other alone; (B, n, H * hd)."""
        gqa = self.n_kv_head != self.n_head
        if self.recency is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        elif q.dtype == torch.float32:
            y = self._causal_folded(q, k, v, positions)
        else:  # an explicit (H, n, n) bias: the math kernel, exact in any precision
            n = positions.shape[0]
            causal = torch.ones(n, n, dtype=torch.bool, device=q.device).tril()
            bias = self.bias(positions, positions).to(q.dtype).masked_fill(~causal, float("-inf"))
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, enable_gqa=gqa)
        return y.transpose(1, 2).flatten(2)

    def _causal_folded(self, q: Tensor, k: Tensor, v: Tensor, positions: Tensor) -> Tensor:
        """The recency bias inside the fused causal kernel (training: 4x faster than an explicit bias on CPU).
        Under the causal mask -slope * (q_pos - k_pos) / 2 differs from +slope * k_pos / 2 by a constant per
        query, which softmax ignores, so the bias rides in one extra dimension: q gains a 1, k the key's
        scaled bias, v a 0 (the fused kernel needs equal q/k/v widths). The key term grows with position,
        so this is used in fp32 only."""
        B, H, n, hd = q.shape
        scale = hd**-0.5
        g = H // self.n_kv_head
        events = (positions - positions[0]).to(q.dtype) / 2
        key_bias = (self.recency.exp()[:, None] * events / scale)[None, :, :, None].expand(B, H, n, 1)
        q = torch.cat([q, q.new_ones(B, H, n, 1)], dim=-1)
        k = torch.cat([k.repeat_interleave(g, dim=1), key_bias], dim=-1)
        v = torch.cat([v.repeat_interleave(g, dim=1), v.new_zeros(B, H, n, 1)], dim=-1)
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)[..., :hd]

    def decode(
        self,
        x: Tensor,
        cos: Tensor,
        sin: Tensor,
        positions: Tensor,
        mask: Tensor | None,
        past: Sequence[tuple[Tensor, Tensor]],
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Incremental path: x's tokens, at `positions` (n,), attend to every cached token in `past` and to
        each other under `mask`.

        past: (k, v) segments of shape (1 or B, Hkv, T_s, hd), one after another from position 0 (the cached
        tokens sit at positions 0 .. T - 1); a batch-1 segment is shared by all B rows without being copied
        (the query batch is folded into rows instead). mask: (n, n), True = may attend; None = causal.
        Returns the output and this call's (k, v) for the caller to append to a cache.
        """
        q, k, v = self.qkv(x, cos, sin)
        return self.o_proj(self.attend(q, k, v, positions, mask, past)), (k, v)

    def attend(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        positions: Tensor,
        mask: Tensor | None,
        past: Sequence[tuple[Tensor, Tensor]],
    ) -> Tensor:
        """Attention of the new tokens' q (B, H, n, hd) at `positions` over the cached segments and their own
        k, v (B, Hkv, n, hd) under `mask`; returns (B, n, H * hd), before the output projection."""
        B, _, n, _ = q.shape
        segments = [(pk, pv) for pk, pv in past if pk.shape[2] > 0]
        if not segments and mask is None:  # prefill: plain causal attention
            return self.causal(q, k, v, positions)
        if mask is None:
            mask = torch.ones(n, n, dtype=torch.bool, device=q.device).tril()
        g = self.n_head // self.n_kv_head
        q = q.reshape(B, self.n_kv_head, g * n, self.head_dim) / math.sqrt(
            self.head_dim
        )  # rows: (group, token)

        scores = [self._scores(q, pk) for pk, _ in segments]
        own = (q @ k.transpose(-1, -2)).view(B, self.n_kv_head, g, n, n)  # (B, Hkv, g, n, n)
        own = own.masked_fill(~mask, float("-inf")).view(B, self.n_kv_head, g * n, n)
        scores_all = torch.cat([*scores, own], dim=-1)  # (B, Hkv, g*n, T + n)
        cached = torch.arange(scores_all.shape[-1] - n, device=q.device)
        bias = self.bias(positions, torch.cat([cached, positions]))  # (H, n, T + n)
        if bias is not None:
            scores_all = scores_all + bias.view(self.n_kv_head, g * n, -1).to(q.dtype)
        probs = scores_all.float().softmax(dim=-1).to(q.dtype)

        y = probs[..., -n:] @ v  # (B, Hkv, g*n, hd)
        offset = 0
        for (_, pv), s in zip(segments, scores, strict=True):
            y = y + self._weighted(probs[..., offset : offset + s.shape[-1]], pv)
            offset += s.shape[-1]
        return y.view(B, self.n_head, n, self.head_dim).transpose(1, 2).flatten(2)

    @staticmethod
    def _scores(q: Tensor, pk: Tensor) -> Tensor:
        """q: (B, Hkv, r, hd) against keys (1 or B, Hkv, T, hd) -> (B, Hkv, r, T)."""
        B, Hkv, r, hd = q.shape
        if pk.shape[0] == B:
            return q @ pk.transpose(-1, -2)
        folded = q.transpose(0, 1).reshape(Hkv, B * r, hd)  # (Hkv, B*r, hd): one matmul, keys not expanded
        return (folded @ pk[0].transpose(-1, -2)).view(Hkv, B, r, -1).transpose(0, 1)

    @staticmethod
    def _weighted(p: Tensor, pv: Tensor) -> Tensor:
        """p: (B, Hkv, r, T) weights over values (1 or B, Hkv, T, hd) -> (B, Hkv, r, hd)."""
        B, Hkv, r, T = p.shape
        if pv.shape[0] == B:
            return p @ pv
        folded = p.transpose(0, 1).reshape(Hkv, B * r, T)
        return (folded @ pv[0]).view(Hkv, B, r, -1).transpose(0, 1)


class MLP(nn.Module):
    def __init__(self, cfg: DFMConfig) -> None:
        super().__init__()
        self.up = nn.Linear(cfg.d_model, cfg.mlp_ratio * cfg.d_model, bias=False)
        self.down = nn.Linear(cfg.mlp_ratio * cfg.d_model, cfg.d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(F.relu(self.up(x)).square())  # ReLU²


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, cfg: DFMConfig) -> None:
        super().__init__()
        self.attn_norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.attn = Attention(cfg)
        self.mlp_norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.mlp = MLP(cfg)
        self.drop = nn.Dropout(cfg.dropout)  # residual-branch dropout; the identity in eval mode (serving)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        x = x + self.drop(self.attn(self.attn_norm(x), cos, sin))
        return x + self.drop(self.mlp(self.mlp_norm(x)))

    def decode(
        self,
        x: Tensor,
        cos: Tensor,
        sin: Tensor,
        positions: Tensor,
        mask: Tensor | None,
        past: Sequence[tuple[Tensor, Tensor]],
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        a, kv = self.attn.decode(self.attn_norm(x), cos, sin, positions, mask, past)
        x = x + self.drop(a)
        return x + self.drop(self.mlp(self.mlp_norm(x))), kv


class TaskEncoder(nn.Module):
    """Task id -> d_model vector: a learned table, or fixed task vectors (e.g. text embeddings) via an MLP."""

    def __init__(self, cfg: DFMConfig) -> None:
        super().__init__()
        self.kind = cfg.task_encoder
        if self.kind == "table":
            self.table = nn.Embedding(cfg.n_tasks, cfg.d_model)
        else:
            self.register_buffer("vectors", torch.zeros(cfg.n_tasks, cfg.task_vector_dim))
            self.mlp = nn.Sequential(
                nn.Linear(cfg.task_vector_dim, cfg.d_model), nn.GELU(), nn.Linear(cfg.d_model, cfg.d_model)
            )

    def forward(self, task_idx: Tensor) -> Tensor:
        if self.kind == "table":
            return self.table(task_idx)
        return self.mlp(self.vectors[task_idx].to(self.mlp[0].weight.dtype))


class DFM(nn.Module):
    def __init__(self, cfg: DFMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.task_encoder = TaskEncoder(cfg)
        self.outcome_proj = nn.Linear(1, cfg.d_model)
        if cfg.outcome_embedding == "task":  # task vector -> its (wrong, right) outcome embeddings
            self.outcome_task = nn.Linear(cfg.d_model, 2 * cfg.d_model, bias=False)
        self.drop = nn.Dropout(cfg.dropout)
        self.type_emb = nn.Embedding(2, cfg.d_model)
        self.bos = nn.Parameter(torch.zeros(2, cfg.d_model))  # the learned BOS (task, outcome) pair
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.head = nn.Linear(cfg.d_model, 1)
        if cfg.task_readout:  # task vector -> (read-out row (d), difficulty (1))
            self.readout = nn.Linear(cfg.d_model, cfg.d_model + 1, bias=False)
        cos, sin = rotary_tables(cfg.head_dim, cfg.max_len, cfg.rope_base)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        std = self.cfg.init_std
        for name, p in self.named_parameters():
            if p.dim() < 2 or "norm" in name:
                continue
            scale = (
                1 / math.sqrt(2 * self.cfg.n_layer) if name.endswith(("o_proj.weight", "down.weight")) else 1
            )
            nn.init.normal_(p, std=std * scale)
        nn.init.normal_(self.bos, std=std)
        if self.cfg.outcome_embedding == "task":  # a random rotation: task-carrying outcomes start at the
            nn.init.normal_(self.outcome_task.weight, std=self.cfg.d_model**-0.5)  # task embeddings' scale
        if self.cfg.task_readout:  # starts small next to the shared head (a logit of ~init_std**2)
            nn.init.normal_(self.readout.weight, std=std * self.cfg.d_model**-0.5)
        nn.init.zeros_(self.head.bias)
        nn.init.zeros_(self.outcome_proj.bias)

    @property
    def device(self) -> torch.device:
        return self.bos.device

    @property
    def dtype(self) -> torch.dtype:
        return self.bos.dtype

    # --- embeddings -------------------------------------------------------------------------------
    def embed_tasks(self, task_idx: Tensor) -> Tensor:
        """(...,) long -> (..., d)."""
        return self.task_encoder(task_idx) + self.type_emb.weight[TASK]

    def embed_outcomes(self, outcomes: Tensor, task_idx: Tensor) -> Tensor:
        """(...,) outcomes in [0, 1] of the (...,) tasks -> (..., d)."""
        return self._outcomes(outcomes, task_idx, None)

    def _outcomes(self, outcomes: Tensor, task_idx: Tensor, task_vec: Tensor | None) -> Tensor:
        o = outcomes.to(self.dtype).unsqueeze(-1)  # (..., 1)
        x = self.outcome_proj(o) + self.type_emb.weight[OUTCOME]
        if self.cfg.outcome_embedding == "scalar":
            return x
        if task_vec is None:
            task_vec = self.task_encoder(task_idx)
        wrong, right = self.outcome_task(task_vec).chunk(2, dim=-1)  # (..., d) each
        return x + (1 - o) * wrong + o * right  # a fractional outcome mixes the two

    def embed_bos(self, batch: int = 1) -> Tensor:
        """(B, 2, d)."""
        bos = self.bos + self.type_emb.weight  # row 0 typed TASK, row 1 typed OUTCOME
        return bos.unsqueeze(0).expand(batch, -1, -1)

    def embed_events(self, task_idx: Tensor, outcomes: Tensor) -> Tensor:
        """(B, N) tasks and outcomes -> interleaved (B, 2N, d): task_0, outcome_0, task_1, ..."""
        B, N = task_idx.shape
        task_vec = self.task_encoder(task_idx)  # (B, N, d)
        tasks = task_vec + self.type_emb.weight[TASK]
        pair = torch.stack([tasks, self._outcomes(outcomes, task_idx, task_vec)], dim=2)  # (B, N, 2, d)
        return pair.view(B, 2 * N, self.cfg.d_model)

    def logits(self, h: Tensor, task_idx: Tensor) -> Tensor:
        """Hidden states (..., d) at the positions of tasks (...,) -> soft-capped logits (fp32)."""
        h = self.norm(h)
        x = self.head(h).squeeze(-1)
        if self.cfg.task_readout:
            row = self.readout(self.task_encoder(task_idx))  # (..., d + 1)
            x = x + (row[..., :-1] * h).sum(-1) + row[..., -1]
        x = x.float()
        return self.cfg.softcap * torch.tanh(x / self.cfg.softcap)

    # --- full-sequence path (training, evaluation) ------------------------------------------------
    def forward(self, task_idx: Tensor, outcomes: Tensor) -> Tensor:
        """(B, N) events (right-padded is fine: attention is causal) -> (B, N) logits for each event."""
        x = torch.cat([self.embed_bos(task_idx.shape[0]), self.embed_events(task_idx, outcomes)], dim=1)
        x = self.drop(x)
        n = x.shape[1]
        if n > self.cfg.max_len:
            raise ValueError(f"sequence of {n} tokens exceeds max_len={self.cfg.max_len}")
        cos, sin = self.rope_cos[:n], self.rope_sin[:n]
        for block in self.blocks:
            x = block(x, cos, sin)
        return self.logits(x[:, 2::2], task_idx)  # task positions 2, 4, ...

    # --- incremental path (serving) ---------------------------------------------------------------
    def decode(
        self, x: Tensor, positions: Tensor, mask: Tensor | None, past: Sequence[KVCache]
    ) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        """Runs new tokens x (B, n, d) at `positions` (n,) against cached segments (mask None = causal);
        returns hidden states and each layer's new (k, v). Nothing is written to the caches: the caller
        appends when it commits."""
        cos, sin = self.rope_cos[positions], self.rope_sin[positions]
        new_kv = []
        for i, block in enumerate(self.blocks):
            x, kv = block.decode(x, cos, sin, positions, mask, [c.layer(i) for c in past])
            new_kv.append(kv)
        return x, new_kv

    def new_cache(self, *, batch: int = 1, capacity: int = 0, chunk: int = 128) -> KVCache:
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
