"""The DKT baseline (Piech et al. 2015): an LSTM over (task, correct) interactions whose output layer gives
P(correct) for every task at the next step. It has the DFM's forward contract, so one harness
(`dfm.train`: same windows, batches, loss and metric code) trains and evaluates both."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class DKTConfig:
    n_tasks: int  # skills (or questions) the model tracks
    d_embed: int = 200  # an embedding row is the one-hot (task, correct) input times a weight matrix
    d_hidden: int = 200  # Piech et al. used 200 hidden units
    n_layer: int = 1
    dropout: float = 0.2  # on the LSTM output, before the per-task read-out

    def __post_init__(self) -> None:
        if min(self.n_tasks, self.d_embed, self.d_hidden, self.n_layer) <= 0:
            raise ValueError("n_tasks, d_embed, d_hidden and n_layer must be positive")


class DKT(nn.Module):
    def __init__(self, cfg: DKTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.interaction = nn.Embedding(2 * cfg.n_tasks, cfg.d_embed)  # row t: t wrong, n_tasks + t: t right
        self.start = nn.Parameter(torch.zeros(cfg.d_embed))  # the input before event 0 (as the DFM's BOS)
        self.lstm = nn.LSTM(
            cfg.d_embed,
            cfg.d_hidden,
            cfg.n_layer,
            batch_first=True,
            dropout=cfg.dropout if cfg.n_layer > 1 else 0.0,
        )
        self.drop = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(cfg.d_hidden, cfg.n_tasks)  # one logit per task: the next step's P(correct)

    @property
    def device(self) -> torch.device:
        return self.start.device

    def forward(self, task_idx: Tensor, outcomes: Tensor) -> Tensor:
        """(B, N) tasks and outcomes in [0, 1] -> (B, N) logits, event i predicted from events 0..i-1."""
        B = task_idx.shape[0]
        o = outcomes.to(self.start.dtype).unsqueeze(-1)  # (B, N, 1); a fractional outcome mixes the two rows
        wrong, right = self.interaction(task_idx), self.interaction(task_idx + self.cfg.n_tasks)  # (B, N, E)
        x = (1 - o) * wrong + o * right
        x = torch.cat([self.start.expand(B, 1, -1), x[:, :-1]], dim=1)  # shift right: step i sees events < i
        h, _ = self.lstm(x)  # (B, N, H); right padding only follows real events, so it changes nothing
        h = self.drop(h)
        # out(h)[b, i, task_idx[b, i]] without materialising the (B, N, n_tasks) tensor
        return (h * self.out.weight[task_idx]).sum(-1) + self.out.bias[task_idx]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
