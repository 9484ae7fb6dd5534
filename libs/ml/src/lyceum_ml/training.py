"""What every resumable training loop offers the job runner, and the pieces they share (LR schedule,
training-state files). The runner drives a loop in slices: `run(n)` steps, checkpoint, check for
cancellation, repeat; a crashed or re-queued job resumes from `load(dir)` and continues bit-for-bit."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

TRAIN_STATE_FILE = "train_state.pt"


@dataclass(frozen=True)
class Export:
    """One artifact a finished job registers: the folder written, its registry kind, its name (None: the
    job's `register_as`) and its registry metadata."""

    path: Path
    kind: str
    name: str | None
    metadata: dict[str, Any]


class ResumableTrainer(Protocol):
    total_steps: int  # the run's length in optimizer steps
    step: int  # optimizer steps done so far

    def run(self, n_steps: int) -> dict[str, float]:
        """Runs up to n_steps more steps (never past total_steps); returns the latest training figures, at
        least a loss and "throughput" (tokens (LM) or events (DFM) per second). The loss is "loss", or
        "<phase>_loss" in a run of several phases (a distilled DFM's teacher_loss): `training_loss`."""
        ...

    def evaluate(self) -> dict[str, float]:
        """Held-out metrics of the current weights (e.g. val_loss/perplexity; auc/accuracy/bce/ece)."""
        ...

    def save(self, directory: Path) -> None:
        """Writes everything needed to resume exactly: weights, optimizer, step, RNG states, data position."""
        ...

    def load(self, directory: Path) -> None:
        """Restores what `save` wrote."""
        ...

    def export(self, directory: Path) -> dict[str, Any]:
        """Writes the servable artifact (model checkpoint + tokenizer/vocabulary) and returns its metadata.
        A trainer with several artifacts offers `exports(directory) -> list[Export]` instead."""
        ...


def training_loss(figures: dict[str, float]) -> float | None:
    """A step's training loss from `ResumableTrainer.run`'s figures: "loss", else a phase's "<phase>_loss";
    None when it reported none."""
    if "loss" in figures:
        return figures["loss"]
    return next((v for k, v in figures.items() if k.endswith("_loss")), None)


def warmup_cosine(step: int, *, lr: float, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> float:
    """Linear warmup to `lr`, then cosine decay to `lr * min_lr_ratio` at `total_steps`."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def scheduled_lr(
    schedule: str, step: int, *, lr: float, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0
) -> float:
    """The learning rate at `step`: linear warmup to `lr`, then `cosine` or `linear` decay to
    `lr * min_lr_ratio` at `total_steps`, or `constant`."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if schedule == "cosine":
        return warmup_cosine(
            step, lr=lr, warmup_steps=warmup_steps, total_steps=total_steps, min_lr_ratio=min_lr_ratio
        )
    if schedule == "linear":
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return lr * (1 - (1 - min_lr_ratio) * progress)
    if schedule == "constant":
        return lr
    raise ValueError(f"unknown schedule {schedule!r}")


def rng_state() -> dict[str, Any]:
    """Torch RNG states (CPU and, when present, every CUDA device)."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_train_state(directory: Path, state: dict[str, Any]) -> None:
    """Atomically writes a training-state dict (tensors, numbers, strings, nested containers) to a folder."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".train_state.", dir=directory)
    os.close(fd)
    torch.save(state, tmp)
    os.replace(tmp, directory / TRAIN_STATE_FILE)


def load_train_state(directory: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Reads what save_train_state wrote (weights_only: no arbitrary unpickling)."""
    return torch.load(directory / TRAIN_STATE_FILE, map_location=map_location, weights_only=True)


def replace_dir(src: Path, dst: Path) -> None:
    """Moves a finished directory into place, replacing any previous one."""
    if dst.exists():
        shutil.rmtree(dst)
    os.replace(src, dst)
