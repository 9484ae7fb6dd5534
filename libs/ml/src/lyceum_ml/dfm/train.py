"""Training and evaluation of the DFM on learner histories: windowed batches, masked BCE on task positions,
AdamW with warmup + cosine decay, gradient clipping, held-out AUC/accuracy/BCE/calibration."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from lyceum_ml.dfm.model import DFM
from lyceum_ml.metrics import binary_metrics

History = tuple[Sequence[int], Sequence[float]]


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000
    batch_size: int = 32
    window: int = 200  # events per training window
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 50
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    eval_every: int = 0  # 0 = only at the end
    seed: int = 0


def windows(histories: Sequence[History], window: int) -> list[History]:
    """Cuts every history into consecutive windows of at most `window` events (each starts fresh at BOS)."""
    out = []
    for tasks, outcomes in histories:
        for s in range(0, len(tasks), window):
            if len(tasks[s : s + window]) > 0:
                out.append((tasks[s : s + window], outcomes[s : s + window]))
    return out


def collate(
    batch: Sequence[History], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded (B, N) task rows, outcomes and a validity mask."""
    n = max(len(t) for t, _ in batch)
    tasks = torch.zeros(len(batch), n, dtype=torch.long)
    outcomes = torch.zeros(len(batch), n)
    mask = torch.zeros(len(batch), n, dtype=torch.bool)
    for i, (t, o) in enumerate(batch):
        tasks[i, : len(t)] = torch.as_tensor(t)
        outcomes[i, : len(o)] = torch.as_tensor(o, dtype=torch.float32)
        mask[i, : len(t)] = True
    return tasks.to(device), outcomes.to(device), mask.to(device)


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def evaluate(model: DFM, histories: Sequence[History], window: int, batch_size: int = 64) -> dict[str, float]:
    """Held-out metrics over every event of every history (in windows of `window` events)."""
    model.eval()
    ys, ps = [], []
    chunks = windows(histories, window)
    for i in range(0, len(chunks), batch_size):
        tasks, outcomes, mask = collate(chunks[i : i + batch_size], model.device)
        p = torch.sigmoid(model(tasks, outcomes))
        ys.append(outcomes[mask].cpu().numpy())
        ps.append(p[mask].cpu().numpy())
    return binary_metrics(np.concatenate(ys), np.concatenate(ps))


def train_dfm(
    model: DFM,
    train: Sequence[History],
    valid: Sequence[History] = (),
    cfg: TrainConfig = TrainConfig(),
    on_log: Callable[[dict[str, float]], None] | None = None,
) -> dict[str, float]:
    """Trains in place; returns the final validation metrics (or the last training loss without valid)."""
    if cfg.window > model.cfg.max_events:
        raise ValueError(f"window={cfg.window} exceeds the model's {model.cfg.max_events} events")
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    chunks = windows(train, cfg.window)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "norm" not in n]
    other = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "norm" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": other, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.98),
    )
    result: dict[str, float] = {}
    start, seen = time.perf_counter(), 0
    for step in range(cfg.steps):
        model.train()
        batch = [chunks[i] for i in rng.integers(len(chunks), size=cfg.batch_size)]
        tasks, outcomes, mask = collate(batch, model.device)
        logits = model(tasks, outcomes)
        loss = F.binary_cross_entropy_with_logits(logits[mask], outcomes[mask])
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        seen += int(mask.sum())
        result = {"step": step + 1, "loss": loss.item(), "events_per_s": seen / (time.perf_counter() - start)}
        last = step + 1 == cfg.steps
        if valid and (last or (cfg.eval_every and (step + 1) % cfg.eval_every == 0)):
            result |= {f"valid_{k}": v for k, v in evaluate(model, valid, cfg.window).items()}
        if on_log and (last or (cfg.eval_every and (step + 1) % cfg.eval_every == 0)):
            on_log(result)
    model.eval()
    return result
