"""A DFM distilled from a DKT teacher (`TrainConfig.distill`), as one resumable run.

`TeacherPhase` trains the teacher: the DKT baseline (`DKTConfig` defaults) under the DFM's own TrainConfig,
validated every 1/`TEACHER_EVALS` of its run, keeping the weights of its best validation AUC (its last
step's without validation data). `fit_teacher` runs it whole; `DistilledDFMTrainer` is what `dfm_pretrain`
jobs run: the teacher's `cfg.steps` steps, then the DFM's `cfg.steps` steps against the teacher's
probabilities, under one step counter. Progress, cancellation and checkpoints therefore cover the teacher
too, and a checkpoint taken in either phase resumes exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from lyceum_ml.dfm.dkt import DKT, DKTConfig
from lyceum_ml.dfm.model import DFM
from lyceum_ml.dfm.train import DFMTrainer, History, TrainConfig
from lyceum_ml.dfm.vocab import TaskVocab
from lyceum_ml.training import load_train_state, save_train_state

TEACHER_EVALS = 8  # the teacher is validated every 1/8 of its run, as bench/dfm_quality.py validates models
# Teacher-phase figures that keep their names (the job's progress reads them); the rest become teacher_*.
UNPREFIXED = frozenset({"step", "throughput"})


def as_teacher(figures: dict[str, float]) -> dict[str, float]:
    """The teacher's training or validation figures, named teacher_* (but `UNPREFIXED`)."""
    return {k if k in UNPREFIXED else f"teacher_{k}": v for k, v in figures.items()}


class TeacherPhase:
    """The DKT teacher's training, seeded by cfg.seed, with its best validation checkpoint kept."""

    def __init__(
        self,
        n_tasks: int,
        train: Sequence[History],
        valid: Sequence[History] = (),
        cfg: TrainConfig = TrainConfig(),
        device: torch.device | str = "cpu",
    ) -> None:
        torch.manual_seed(cfg.seed)
        self.model = DKT(DKTConfig(n_tasks=n_tasks)).to(device)
        self.trainer = DFMTrainer(self.model, train, valid, cfg)
        self.every = max(1, cfg.steps // TEACHER_EVALS)
        self.best: dict[str, float] = {}  # validation metrics and best_step of the kept weights
        self.best_state: dict[str, torch.Tensor] = self._weights()

    @property
    def done(self) -> bool:
        return self.trainer.step >= self.trainer.total_steps

    def _weights(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def run(self, n_steps: int) -> dict[str, float]:
        """Up to n_steps more steps, validating at every 1/8 of the run it passes."""
        trainer, figures = self.trainer, {}
        end = min(trainer.step + max(0, n_steps), trainer.total_steps)
        while trainer.step < end:
            boundary = min(end, (trainer.step // self.every + 1) * self.every)
            figures = trainer.run(boundary - trainer.step)
            if trainer.step % self.every == 0 or self.done:
                self._validate()
        return figures

    def _validate(self) -> None:
        figures = self.trainer.evaluate()
        if not figures or figures["auc"] > self.best.get("auc", -1.0):
            self.best = {**figures, "best_step": float(self.trainer.step)} if figures else {}
            self.best_state = self._weights()

    def finish(self) -> tuple[DKT, dict[str, float]]:
        """The teacher at its kept weights, in eval mode, and their validation metrics ({} without any)."""
        self.model.load_state_dict(self.best_state)
        return self.model.eval(), dict(self.best)

    def save(self, directory: Path) -> None:
        self.trainer.save(directory)
        save_train_state(directory / "best", {"metrics": self.best, "model": self.best_state})

    def load(self, directory: Path) -> None:
        self.trainer.load(directory)
        best = load_train_state(directory / "best")
        self.best, self.best_state = dict(best["metrics"]), best["model"]


def fit_teacher(
    n_tasks: int,
    train: Sequence[History],
    valid: Sequence[History] = (),
    cfg: TrainConfig = TrainConfig(),
    device: torch.device | str = "cpu",
) -> tuple[DKT, dict[str, float]]:
    """The teacher a DFM is distilled from, trained whole (`TeacherPhase`): the DKT at its best validation
    AUC, in eval mode, with those validation metrics and `best_step` ({} without validation data)."""
    phase = TeacherPhase(n_tasks, train, valid, cfg, device)
    phase.run(cfg.steps)
    return phase.finish()


class DistilledDFMTrainer:
    """A `ResumableTrainer` of 2 * cfg.steps steps: `TeacherPhase`, then a `DFMTrainer` of the DFM with the
    teacher. `run` and `evaluate` give the teacher's figures as teacher_* during its phase; `export` writes
    the DFM."""

    def __init__(
        self,
        model: DFM,
        train: Sequence[History],
        valid: Sequence[History] = (),
        cfg: TrainConfig = TrainConfig(),
        *,
        vocab: TaskVocab | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if cfg.distill <= 0:
            raise ValueError("a distilled run needs cfg.distill > 0; train with DFMTrainer alone otherwise")
        self.model, self.train, self.valid, self.cfg, self.vocab = model, train, valid, cfg, vocab
        self.metadata = {**(metadata or {}), "teacher": "dkt"}
        self.teacher = TeacherPhase(model.cfg.n_tasks, train, valid, cfg, model.device)
        self.student: DFMTrainer | None = None
        self.total_steps = 2 * cfg.steps

    @property
    def step(self) -> int:
        """The teacher's steps, then cfg.steps plus the DFM's (the DFM starts once the teacher is done)."""
        return self.teacher.trainer.step if self.student is None else self.cfg.steps + self.student.step

    @property
    def phase(self) -> str:
        """`teacher` while the DKT trains, then `student` (the DFM): a job's progress names it."""
        return "teacher" if self.student is None else "student"

    def _start_student(self, teacher: DKT) -> DFMTrainer:
        self.student = DFMTrainer(
            self.model,
            self.train,
            self.valid,
            self.cfg,
            vocab=self.vocab,
            metadata=self.metadata,
            teacher=teacher,
        )
        return self.student

    def run(self, n_steps: int) -> dict[str, float]:
        """Training figures as DFMTrainer's; the teacher's phase names them teacher_* (teacher_loss, ...),
        as `evaluate` does, so a job's curves tell the DKT from the DFM. `step` and `throughput` (the job's
        progress) keep their names."""
        figures: dict[str, float] = {}
        if self.student is None:
            before = self.step
            figures = as_teacher(self.teacher.run(n_steps))
            n_steps -= self.step - before
            if self.teacher.done:
                self._start_student(self.teacher.finish()[0])
        if n_steps > 0 and self.student is not None:
            figures = self.student.run(n_steps)
        return {**figures, "step": float(self.step)} if figures else figures

    def evaluate(self) -> dict[str, float]:
        if self.student is None:
            return as_teacher(self.teacher.trainer.evaluate())
        return self.student.evaluate()

    def save(self, directory: Path) -> None:
        """The phase's state: `teacher/` (its trainer and best weights) or `student/` (the DFM's trainer,
        whose state holds the teacher's weights)."""
        if self.student is None:
            self.teacher.save(Path(directory) / "teacher")
        else:
            self.student.save(Path(directory) / "student")

    def load(self, directory: Path) -> None:
        student = Path(directory) / "student"
        if student.is_dir():  # the teacher's phase is over; the DFM's state holds the teacher's weights
            self._start_student(self.teacher.model).load(student)
        else:
            self.teacher.load(Path(directory) / "teacher")

    def export(self, directory: Path) -> dict[str, Any]:
        if self.student is None:
            raise RuntimeError("the teacher's phase is not over: nothing to export yet")
        return self.student.export(directory)
