"""Training and evaluation of the DFM (and of any model with its contract, e.g. the DKT baseline) on learner
histories: `DFMTrainer` (a resumable loop of windowed batches, masked BCE, AdamW with warmup + cosine decay,
gradient clipping, optionally against a teacher's probabilities: `dfm.distill`), held-out
AUC/accuracy/BCE/calibration, and `train_dfm` as a one-call convenience."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lyceum_ml.checkpoint import save_dfm
from lyceum_ml.dfm.model import DFM
from lyceum_ml.dfm.vocab import TaskVocab
from lyceum_ml.metrics import binary_metrics
from lyceum_ml.training import (
    load_train_state,
    rng_state,
    save_train_state,
    set_rng_state,
    warmup_cosine,
)

History = tuple[Sequence[int], Sequence[float]]
# Which events of held-out data are scored. "all": every event of every window (each window starts from an
# empty history), as the DKVMN paper's code does. "pykt": pyKT's test_sequences protocol (Liu et al. 2022):
# the same windows, but windows of fewer than 3 events are dropped and a window's first event is not scored.
Protocol = Literal["all", "pykt"]
PYKT_MIN_WINDOW = 3


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000
    batch_size: int = 32  # a batch holds at most batch_size * window padded events (see DFMTrainer)
    window: int = 200  # events per training / evaluation window
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 50
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    eval_every: int = 0  # train_dfm only: 0 = evaluate at the end
    eval_batch_size: int = 64
    seed: int = 0
    # Knowledge distillation (Hinton et al. 2015): with a teacher, each event's target is
    # (1 - distill) * outcome + distill * P_teacher(success). What `dfm_pretrain` jobs do by default: a DKT
    # teacher (`dfm.distill`, same data and schedule) gives the DFM what an LSTM's running state knows.
    # ASSIST2009 validation AUC, 500 steps, seeds 0/1: 0.8251/0.8251 without, 0.8274/0.8268 at 0.5
    # (0.8267 at 0.3, 0.8274 at 0.7 on seed 0); the teachers 0.8267/0.8255. 0: no teacher is trained.
    distill: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.distill <= 1.0:
            raise ValueError(f"distill must be in [0, 1], got {self.distill}")


def windows(histories: Sequence[History], window: int) -> list[History]:
    """Cuts every history into consecutive, non-overlapping windows of at most `window` events.

    Each window starts fresh at BOS (the model sees no earlier context), in training and in evaluation alike,
    so every event is predicted exactly once from at most `window - 1` events before it. This is the usual
    knowledge-tracing protocol (DKT/DKVMN/pyKT cut sequences the same way)."""
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
    return warmup_cosine(
        step, lr=cfg.lr, warmup_steps=cfg.warmup_steps, total_steps=cfg.steps, min_lr_ratio=cfg.min_lr_ratio
    )


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def earlier_attempts(tasks: Sequence[int]) -> np.ndarray:
    """For each event of one window, how many events before it in the window had the same task (0: the
    learner's first attempt at it the model can see)."""
    seen: dict[int, int] = {}
    out = np.empty(len(tasks), dtype=np.int64)
    for i, task in enumerate(tasks):
        out[i] = seen.get(task, 0)
        seen[task] = out[i] + 1
    return out


@dataclass(frozen=True)
class Predictions:
    """The scored events of a held-out split, in one order: outcome, predicted P(success), and the event's
    `earlier_attempts` in its window (what a per-event breakdown groups by)."""

    y: np.ndarray
    p: np.ndarray
    attempts: np.ndarray

    def metrics(self) -> dict[str, float]:
        return binary_metrics(self.y, self.p)


@torch.no_grad()
def predict_split(
    model: nn.Module,
    histories: Sequence[History],
    window: int,
    batch_size: int = 64,
    protocol: Protocol = "all",
) -> Predictions:
    """The model's predictions for the events of `histories` (cut by `windows`) that `protocol` scores, in
    the order of the windows; works for any model mapping (B, N) tasks and outcomes to (B, N) logits where
    event i is predicted from events before it."""
    if protocol not in ("all", "pykt"):
        raise ValueError(f"unknown evaluation protocol {protocol!r}")
    was_training = model.training
    model.eval()
    ys, ps, attempts = [], [], []
    chunks = windows(histories, window)
    if protocol == "pykt":
        chunks = [c for c in chunks if len(c[0]) >= PYKT_MIN_WINDOW]
    order = sorted(range(len(chunks)), key=lambda i: len(chunks[i][0]))  # similar lengths: less padding
    p_of: list[np.ndarray] = [np.empty(0)] * len(chunks)
    for s in range(0, len(order), batch_size):
        batch = [chunks[i] for i in order[s : s + batch_size]]
        tasks, outcomes, _ = collate(batch, _device(model))
        p = torch.sigmoid(model(tasks, outcomes).float()).cpu().numpy()
        for row, i in enumerate(order[s : s + batch_size]):
            p_of[i] = p[row, : len(chunks[i][0])]
    first = 1 if protocol == "pykt" else 0  # pyKT leaves each window's first event unscored
    for (tasks_, outcomes_), p in zip(chunks, p_of, strict=True):
        ys.append(np.asarray(outcomes_, dtype=np.float64)[first:])
        ps.append(p[first:].astype(np.float64))
        attempts.append(earlier_attempts(tasks_)[first:])
    model.train(was_training)
    return Predictions(np.concatenate(ys), np.concatenate(ps), np.concatenate(attempts))


def evaluate_split(
    model: nn.Module,
    histories: Sequence[History],
    window: int,
    batch_size: int = 64,
    protocol: Protocol = "all",
) -> dict[str, float]:
    """AUC, accuracy, BCE, ECE and n over the events of `histories` that `protocol` scores
    (`predict_split`)."""
    return predict_split(model, histories, window, batch_size, protocol).metrics()


evaluate = evaluate_split  # the earlier name


class DFMTrainer:
    """A `lyceum_ml.training.ResumableTrainer` for the DFM (or the DKT baseline: any model with the DFM's
    forward contract). Each seeded epoch visits every training window once, in batches of similar-length
    windows packed up to batch_size * window padded events: short windows cost no padding, and every event
    weighs about the same in the loss. `save`/`load` capture weights, AdamW state, step, torch RNG and the
    sampler, so a resumed run continues bit-for-bit. `export` needs a DFM and its `vocab`."""

    POOL = 20  # windows are length-sorted within pools of POOL * batch_size, so batches stay random

    def __init__(
        self,
        model: nn.Module,
        train: Sequence[History],
        valid: Sequence[History] = (),
        cfg: TrainConfig = TrainConfig(),
        *,
        vocab: TaskVocab | None = None,
        metadata: dict[str, Any] | None = None,
        teacher: nn.Module | None = None,
    ) -> None:
        if teacher is not None and cfg.distill == 0.0:
            raise ValueError(
                "a teacher needs cfg.distill > 0 (the weight of its probabilities in the targets)"
            )
        if isinstance(model, DFM) and cfg.window > model.cfg.max_events:
            raise ValueError(f"window={cfg.window} exceeds the model's {model.cfg.max_events} events")
        n_tasks = getattr(getattr(model, "cfg", None), "n_tasks", None)
        top = max((max(t) for t, _ in (*train, *valid) if len(t)), default=-1)
        if n_tasks is not None and top >= n_tasks:
            raise ValueError(f"task row {top} is out of range for a model of {n_tasks} tasks")
        if vocab is not None and n_tasks is not None and len(vocab) != n_tasks:
            raise ValueError(f"vocabulary of {len(vocab)} tasks for a model of {n_tasks}")
        self.model, self.valid, self.cfg, self.vocab = model, valid, cfg, vocab
        self.teacher = teacher.eval().requires_grad_(False) if teacher is not None else None
        self.metadata = dict(metadata or {})
        self.total_steps, self.step = cfg.steps, 0
        self.chunks = windows(train, cfg.window)
        if not self.chunks:
            raise ValueError("no training events")
        self.last_eval: dict[str, float] = {}
        torch.manual_seed(cfg.seed)
        self._lengths = np.array([len(t) for t, _ in self.chunks])
        self._rng = np.random.default_rng(cfg.seed)
        self._epoch = 0
        self._order, self._bounds = self._plan_epoch()
        self._cursor = 0  # batches of the current epoch already drawn
        decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "norm" not in n]
        other = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "norm" not in n)]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": other, "weight_decay": 0.0}],
            lr=cfg.lr,
            betas=(0.9, 0.98),
        )

    def _plan_epoch(self) -> tuple[np.ndarray, np.ndarray]:
        """A shuffled epoch as (window order, batch start offsets): shuffle, sort each pool by length, pack
        greedily while batch count * longest window <= batch_size * window, then shuffle the batches."""
        budget, pool = self.cfg.batch_size * self.cfg.window, self.POOL * self.cfg.batch_size
        perm = self._rng.permutation(len(self.chunks))
        batches: list[np.ndarray] = []
        for s in range(0, len(perm), pool):
            part = perm[s : s + pool]
            part = part[np.argsort(self._lengths[part], kind="stable")]
            start = 0
            for j in range(1, len(part) + 1):
                if j == len(part) or (j + 1 - start) * self._lengths[part[j]] > budget:
                    batches.append(part[start:j])
                    start = j
        batches = [batches[i] for i in self._rng.permutation(len(batches))]
        bounds = np.cumsum([0] + [len(b) for b in batches])
        return np.concatenate(batches), bounds

    def _next_batch(self) -> list[History]:
        if self._cursor == len(self._bounds) - 1:
            self._order, self._bounds = self._plan_epoch()
            self._epoch, self._cursor = self._epoch + 1, 0
        lo, hi = self._bounds[self._cursor], self._bounds[self._cursor + 1]
        self._cursor += 1
        return [self.chunks[i] for i in self._order[lo:hi]]

    def run(self, n_steps: int) -> dict[str, float]:
        """Up to n_steps more optimizer steps; loss is the mean over these steps, throughput events/s."""
        n = max(0, min(n_steps, self.total_steps - self.step))
        self.model.train()
        losses, events, start = [], 0, time.perf_counter()
        lr = lr_at(self.step, self.cfg)
        for _ in range(n):
            tasks, outcomes, mask = collate(self._next_batch(), _device(self.model))
            lr = lr_at(self.step, self.cfg)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            logits = self.model(tasks, outcomes)  # (B, N)
            loss = F.binary_cross_entropy_with_logits(
                logits[mask].float(), self._targets(tasks, outcomes, mask)
            )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
            self.optimizer.step()
            self.step += 1
            losses.append(loss.item())
            events += int(mask.sum())
        elapsed = time.perf_counter() - start
        return {
            "step": float(self.step),
            "loss": float(np.mean(losses)) if losses else math.nan,
            "throughput": events / elapsed if events else 0.0,
            "lr": lr,
            "epoch": self._epoch + self._cursor / (len(self._bounds) - 1),
        }

    def _targets(self, tasks: torch.Tensor, outcomes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The masked events' training targets: the outcomes, mixed with the teacher's probabilities."""
        if self.teacher is None:
            return outcomes[mask]
        with torch.no_grad():
            p = torch.sigmoid(self.teacher(tasks, outcomes)[mask].float())
        return (1 - self.cfg.distill) * outcomes[mask] + self.cfg.distill * p

    def evaluate(self) -> dict[str, float]:
        """Metrics on the validation histories ({} without any); remembered for `export`."""
        if not self.valid:
            return {}
        self.last_eval = evaluate_split(self.model, self.valid, self.cfg.window, self.cfg.eval_batch_size)
        return self.last_eval

    def save(self, directory: Path) -> None:
        """Writes `train_state.pt` (atomically) into `directory`: all that `load` needs to resume exactly."""
        save_train_state(
            Path(directory),
            {
                "step": self.step,
                "config": asdict(self.cfg),
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "torch_rng": rng_state(),
                "sampler": {
                    "numpy_rng": self._rng.bit_generator.state,
                    "order": torch.from_numpy(self._order),
                    "bounds": torch.from_numpy(self._bounds),
                    "cursor": self._cursor,
                    "epoch": self._epoch,
                },
                "last_eval": self.last_eval,
                **({"teacher": self.teacher.state_dict()} if self.teacher is not None else {}),
            },
        )

    def load(self, directory: Path) -> None:
        """Restores `save`'s state into this trainer (built with the same model shape, data and config)."""
        state = load_train_state(Path(directory))  # on the CPU; load_state_dict moves tensors to the model
        if state["config"] != asdict(self.cfg):
            raise ValueError(f"training state in {directory} was written with a different TrainConfig")
        sampler = state["sampler"]
        if len(sampler["order"]) != len(self.chunks):
            raise ValueError(f"training state in {directory} was written for different training data")
        if ("teacher" in state) != (self.teacher is not None):
            written = "with" if "teacher" in state else "without"
            raise ValueError(f"training state in {directory} was written {written} a teacher")
        self.model.load_state_dict(state["model"])
        if self.teacher is not None:
            self.teacher.load_state_dict(state["teacher"])
        self.optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["torch_rng"])
        self._rng.bit_generator.state = sampler["numpy_rng"]
        self._order, self._bounds = sampler["order"].numpy(), sampler["bounds"].numpy()
        self._cursor, self._epoch = int(sampler["cursor"]), int(sampler["epoch"])
        self.step, self.last_eval = int(state["step"]), dict(state["last_eval"])

    def export(self, directory: Path) -> dict[str, Any]:
        """Writes a servable DFM checkpoint (`save_dfm`, with the vocabulary) and returns its metadata; a DKT
        baseline is not servable (TypeError)."""
        if not isinstance(self.model, DFM):
            raise TypeError(f"only a DFM can be exported, not {type(self.model).__name__}")
        if self.vocab is None:
            raise ValueError("export needs the task vocabulary: pass vocab= to DFMTrainer")
        metadata = {
            "source": "lyceum_ml.dfm.train",
            "train_steps": self.step,
            "train_config": asdict(self.cfg),
            "train_windows": len(self.chunks),
            **({"valid": self.last_eval} if self.last_eval else {}),
            **self.metadata,
        }
        save_dfm(directory, self.model, self.vocab, metadata)
        return metadata


def train_dfm(
    model: nn.Module,
    train: Sequence[History],
    valid: Sequence[History] = (),
    cfg: TrainConfig = TrainConfig(),
    on_log: Callable[[dict[str, float]], None] | None = None,
) -> dict[str, float]:
    """Trains in place with a DFMTrainer (no teacher: `dfm.distill` distils), evaluating every
    `cfg.eval_every` steps and at the end; returns the last figures ({step, loss, throughput, lr, epoch}
    plus valid_* metrics when there is validation data)."""
    trainer = DFMTrainer(model, train, valid, cfg)
    result: dict[str, float] = {}
    while trainer.step < trainer.total_steps:
        result = trainer.run(cfg.eval_every or trainer.total_steps)
        result |= {f"valid_{k}": v for k, v in trainer.evaluate().items()}
        if on_log:
            on_log(result)
    model.eval()
    return result
