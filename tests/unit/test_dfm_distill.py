"""A DFM distilled from a DKT teacher as one resumable run (`lyceum_ml.dfm.distill`): the teacher keeps its
best validation checkpoint deterministically, one step counter spans both phases, a checkpoint in either
phase resumes bit-for-bit, and only the finished DFM exports."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from test_dfm_trainer import CFG, WINDOW, make_model, sim_splits, weights

from lyceum_ml.dfm import TaskVocab
from lyceum_ml.dfm.distill import DistilledDFMTrainer, fit_teacher
from lyceum_ml.dfm.dkt import DKT, DKTConfig
from lyceum_ml.dfm.train import DFMTrainer, TrainConfig, evaluate_split
from lyceum_ml.training import training_loss

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/fixtures/lm_models.py


def test_fit_teacher_returns_its_best_validation_checkpoint_deterministically() -> None:
    tasks, train, valid = sim_splits()
    cfg = TrainConfig(steps=16, batch_size=8, window=WINDOW, lr=1e-2, warmup_steps=2, seed=3)
    teacher, metrics = fit_teacher(len(tasks), train, valid, cfg)
    assert isinstance(teacher, DKT) and teacher.cfg == DKTConfig(n_tasks=len(tasks)) and not teacher.training
    assert metrics["best_step"] in {2, 4, 6, 8, 10, 12, 14, 16}  # validated every 1/8 of the run
    assert evaluate_split(teacher, valid, WINDOW) == {k: v for k, v in metrics.items() if k != "best_step"}
    again, _ = fit_teacher(len(tasks), train, valid, cfg)
    for (name, a), b in zip(weights(teacher).items(), weights(again).values(), strict=True):
        assert torch.equal(a, b), name
    other, _ = fit_teacher(len(tasks), train, valid, replace(cfg, seed=4))
    assert not torch.equal(other.out.weight, teacher.out.weight)

    # nothing held out: its last step's weights, those of a plain run of the same seed
    last, none = fit_teacher(len(tasks), train, (), cfg)
    torch.manual_seed(cfg.seed)
    plain = DKT(DKTConfig(n_tasks=len(tasks)))
    DFMTrainer(plain, train, cfg=cfg).run(cfg.steps)
    assert none == {} and not last.training
    for (name, a), b in zip(weights(last).items(), weights(plain).values(), strict=True):
        assert torch.equal(a, b), name


def distilled(tasks: list[str], train: list, valid: list) -> DistilledDFMTrainer:
    return DistilledDFMTrainer(make_model("dfm", len(tasks)), train, valid, CFG, vocab=TaskVocab(tasks))


def test_one_step_counter_spans_the_teacher_then_the_dfm(tmp_path: Path) -> None:
    tasks, train, valid = sim_splits()
    run = distilled(tasks, train, valid)
    assert run.total_steps == 2 * CFG.steps and run.step == 0
    figures = run.run(4)
    assert run.step == 4 and run.student is None and set(run.evaluate()) >= {"teacher_auc", "teacher_bce"}
    assert run.phase == "teacher"
    # the teacher's curves are labelled as its own; the job's progress still reads step and throughput
    assert {"teacher_loss", "teacher_lr", "step", "throughput"} <= set(figures) and "loss" not in figures
    assert training_loss(figures) == figures["teacher_loss"]
    with pytest.raises(RuntimeError, match="teacher's phase"):
        run.export(tmp_path / "early")
    figures = run.run(5)  # the teacher's last 2 steps, then 3 of the DFM's
    assert {"loss", "lr", "throughput"} <= set(figures) and not any(k.startswith("teacher_") for k in figures)
    assert run.step == 9 and run.student is not None and run.student.step == 3 and run.phase == "student"
    assert figures["step"] == 9  # the run's step, not the DFM phase's own
    assert "auc" in run.evaluate()
    teacher, best = fit_teacher(len(tasks), train, valid, CFG)  # the teacher the DFM learnt from
    assert run.student.teacher is not None
    for (name, a), b in zip(weights(teacher).items(), weights(run.student.teacher).values(), strict=True):
        assert torch.equal(a, b), name
    run.run(100)
    assert run.step == run.total_steps == 12
    meta = run.export(tmp_path / "export")
    assert (
        meta["teacher"] == "dkt"
        and meta["train_steps"] == CFG.steps
        and meta["train_config"]["distill"] == 0.5
    )

    with pytest.raises(ValueError, match="distill > 0"):
        DistilledDFMTrainer(make_model("dfm", len(tasks)), train, valid, replace(CFG, distill=0.0))


@pytest.mark.parametrize("pause_at", [3, 6, 8])  # inside the teacher's phase, at its end, inside the DFM's
def test_a_checkpoint_in_either_phase_resumes_exactly(tmp_path: Path, pause_at: int) -> None:
    tasks, train, valid = sim_splits()
    straight = distilled(tasks, train, valid)
    losses = [training_loss(straight.run(1)) for _ in range(12)]

    first = distilled(tasks, train, valid)
    resumed = [training_loss(first.run(1)) for _ in range(pause_at)]
    first.save(tmp_path / "state")
    torch.manual_seed(99)
    second = distilled(tasks, train, valid)
    second.load(tmp_path / "state")
    assert second.step == pause_at
    resumed += [training_loss(second.run(1)) for _ in range(12 - pause_at)]

    assert resumed == losses and second.step == 12
    for (name, a), b in zip(weights(straight.model).items(), weights(second.model).values(), strict=True):
        assert torch.equal(a, b), name
    assert second.evaluate() == straight.evaluate()
