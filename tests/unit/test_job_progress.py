"""A job's progress rate and ETA (`lyceum_trainer.runner`): each phase of a multi-phase run (a distilled
DFM's teacher, then its student) is timed on its own, on an injected clock."""

from __future__ import annotations

from dataclasses import dataclass

from lyceum_trainer.runner import PhaseRate, step_progress


@dataclass
class Run:
    step: int = 0
    total_steps: int = 100
    phase: str | None = "teacher"


def test_the_rate_restarts_with_each_phase() -> None:
    run = Run(step=10)  # resumed at step 10: the rate counts this process's steps only
    rate = PhaseRate(run, now=100.0)
    run.step = 50
    assert rate.steps_per_s(110.0) == 4.0  # the teacher's fast steps
    run.step, run.phase = 51, "student"  # the step that finished the teacher
    assert rate.steps_per_s(110.5) == 0.0  # no student step timed yet: no rate, so no ETA
    run.step = 61
    assert rate.steps_per_s(120.5) == 1.0  # the student's own rate, not the teacher's blended in


def test_a_one_phase_run_keeps_one_rate_and_reports_no_phase() -> None:
    run = Run(phase=None)
    rate = PhaseRate(run, now=0.0)
    run.step = 20
    progress = step_progress(
        run, {"loss": 0.5, "throughput": 9.0}, rate.steps_per_s(10.0), {"x": 1}, "events/s"
    )
    assert progress == {
        "x": 1,
        "step": 20,
        "total": 100,
        "throughput": 9.0,
        "throughput_unit": "events/s",
        "steps_per_s": 2.0,
        "eta_s": 40.0,
        "loss": 0.5,
    }


def test_the_progress_names_the_phase_and_its_loss() -> None:
    run = Run(step=30)
    progress = step_progress(run, {"teacher_loss": 0.7}, 3.0, {"phase": "old", "eta_s": 1.0}, "events/s")
    assert progress["phase"] == "teacher" and progress["loss"] == 0.7
    assert progress["eta_s"] == 70 / 3.0
    stalled = step_progress(run, {}, 0.0, progress, "events/s")
    assert stalled["eta_s"] is None and stalled["loss"] is None and stalled["throughput"] == 0.0
