"""The SAKT baseline (Pandey & Karypis 2019, "A Self-Attentive model for Knowledge Tracing"): the next task's
embedding attends over the past (task, correct) interactions. It has the DFM's forward contract, so the
same harness (`dfm.train`) trains and evaluates it next to the DFM and DKT."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class SAKTConfig:
    n_tasks: int
    d_model: int = 64
    n_head: int = 4
    n_block: int = 1  # the paper uses one attention block
    max_len: int = 200  # learned positions: the longest window
    dropout: float = 0.2

    def __post_init__(self) -> None:
        if min(self.n_tasks, self.d_model, self.n_head, self.n_block, self.max_len) <= 0:
            raise ValueError("n_tasks, d_model, n_head, n_block and max_len must be positive")
        if self.d_model % self.n_head:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_head={self.n_head}")


class SAKTBlock(nn.Module):
    """Causal attention from task queries to interaction keys/values, then a feed-forward layer; post-norm."""

    def __init__(self, cfg: SAKTConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.q, self.k, self.v = (nn.Linear(cfg.d_model, cfg.d_model) for _ in range(3))
        self.o = nn.Linear(cfg.d_model, cfg.d_model)
        self.norm1, self.norm2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.ffn = nn.Sequential(
            nn.Linear(cfg.d_model, cfg.d_model), nn.ReLU(), nn.Linear(cfg.d_model, cfg.d_model)
        )
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, query: Tensor, memory: Tensor) -> Tensor:
        B, N, d = query.shape
        q, k, v = (
            x.view(B, N, self.n_head, -1).transpose(1, 2)
            for x in (self.q(query), self.k(memory), self.v(memory))
        )
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, N, hd): query i sees keys <= i
        x = self.norm1(query + self.drop(self.o(y.transpose(1, 2).reshape(B, N, d))))
        return self.norm2(x + self.drop(self.ffn(x)))


class SAKT(nn.Module):
    def __init__(self, cfg: SAKTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.task = nn.Embedding(cfg.n_tasks, cfg.d_model)
        self.interaction = nn.Embedding(2 * cfg.n_tasks, cfg.d_model)  # row t: t wrong, n_tasks + t: t right
        self.position = nn.Embedding(cfg.max_len, cfg.d_model)
        self.start = nn.Parameter(torch.zeros(cfg.d_model))  # the interaction before event 0
        self.blocks = nn.ModuleList(SAKTBlock(cfg) for _ in range(cfg.n_block))
        self.drop = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(cfg.d_model, 1)

    def forward(self, task_idx: Tensor, outcomes: Tensor) -> Tensor:
        """(B, N) tasks and outcomes in [0, 1] -> (B, N) logits, event i predicted from events 0..i-1."""
        B, N = task_idx.shape
        if N > self.cfg.max_len:
            raise ValueError(f"{N} events exceed max_len={self.cfg.max_len}")
        o = outcomes.to(self.start.dtype).unsqueeze(-1)  # (B, N, 1)
        inter = (1 - o) * self.interaction(task_idx) + o * self.interaction(task_idx + self.cfg.n_tasks)
        memory = torch.cat([self.start.expand(B, 1, -1), inter[:, :-1]], dim=1)  # key i: interaction i - 1
        memory = self.drop(memory + self.position.weight[:N])
        x = self.task(task_idx)  # (B, N, d): query i is event i's task
        for block in self.blocks:
            x = block(x, memory)
        return self.out(x).squeeze(-1)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
