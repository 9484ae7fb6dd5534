"""bench/dfm_quality.py's selection and reporting rules: each model's budget is chosen on mean validation AUC
over seeds (never test), margins are paired by seed, and the budget grid refuses what it cannot run."""

from __future__ import annotations

import argparse
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest
from fixtures.scripts import load_script


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_script("dfm_quality_bench", "bench/dfm_quality.py")


def _runs(valid: list[float], test: list[float]) -> list[dict[str, float]]:
    return [{"valid_auc": v, "all_auc": t} for v, t in zip(valid, test, strict=True)]


def test_each_model_takes_the_budget_with_the_best_mean_validation_auc(bench: ModuleType) -> None:
    results = {
        # 500 has the best single seed (0.90) but the worse mean; test AUC must not sway the choice
        "DFM": {350: _runs([0.82, 0.82], [0.70, 0.70]), 500: _runs([0.90, 0.70], [0.99, 0.99])},
        "DKT": {350: _runs([0.80, 0.80], [0.75, 0.75]), 500: _runs([0.81, 0.81], [0.74, 0.74])},
    }
    row = bench.Row("toy", None, (350, 500), results)
    assert row.chosen("DFM") == 350 and row.chosen("DKT") == 500
    assert row.selected("DFM") is results["DFM"][350]


def test_a_tie_in_validation_goes_to_the_smaller_budget(bench: ModuleType) -> None:
    tied = {b: _runs([0.8, 0.7], [0.5, 0.5]) for b in (500, 350, 750)}
    assert bench.Row("toy", None, (500, 350, 750), {"DFM": tied}).chosen("DFM") == 350


def test_the_margin_is_paired_by_seed(bench: ModuleType) -> None:
    dfm = _runs([0, 0, 0], [0.81, 0.79, 0.80])
    dkt = _runs([0, 0, 0], [0.80, 0.78, 0.80])
    # seed by seed: +0.01, +0.01, 0.00 -> mean +0.0067, sample std 0.0058 (unpaired stds would be 0.01 each)
    assert bench.paired_margin(dfm, dkt, "all_auc") == "+0.0067 ± 0.0058"
    assert bench.paired_margin(dkt, dfm, "all_auc") == "-0.0067 ± 0.0058"
    assert bench.spread([0.5]) == "0.5000 ± 0.0000"  # one seed: no spread to report
    with pytest.raises(ValueError):
        bench.paired_margin(dfm, dkt[:2], "all_auc")  # a seed missing on one side is an error, not a margin


@pytest.mark.parametrize("text", ["", ",", "0", "350,-1", "350,abc", "3.5"])
def test_the_budget_grid_refuses_what_it_cannot_run(bench: ModuleType, text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="positive step counts"):
        bench.budget_grid(text)


def test_the_budget_grid_reads_comma_separated_step_counts(bench: ModuleType) -> None:
    assert bench.budget_grid("350, 500,") == (350, 500)


def test_each_ablation_switches_off_one_feature_of_the_default_dfm(bench: ModuleType) -> None:
    default = bench.MODELS["DFM"](7).cfg.to_dict()
    assert default == bench.DFMConfig(n_tasks=7, max_len=2 * bench.WINDOW + 3).to_dict()  # what jobs train
    for name, field in bench.ABLATIONS.items():
        changed = {k: v for k, v in bench.MODELS[name](7).cfg.to_dict().items() if default[k] != v}
        assert changed == {field: bench.DFMConfig.LEGACY[field]}, name


def _predictions(bench: ModuleType, p: list[float]) -> object:
    y = np.array([1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0])
    return bench.Predictions(y, np.array(p), np.array([0, 0, 0, 0, 1, 1, 9, 9]))


def test_the_breakdown_groups_validation_events_by_earlier_attempts(
    bench: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    # the DFM ranks first attempts perfectly and repeats backwards, DKT the other way round
    dfm = _predictions(bench, [0.9, 0.1, 0.8, 0.2, 0.1, 0.9, 0.2, 0.8])
    dkt = _predictions(bench, [0.1, 0.9, 0.2, 0.8, 0.9, 0.1, 0.8, 0.2])
    results = {
        "DFM": {350: [{"valid_auc": 0.5, "valid": dfm}]},
        "DKT": {350: [{"valid_auc": 0.5, "valid": dkt}]},
    }
    bench.breakdown([bench.Row("toy", None, (350,), results)], ["DFM", "DKT"])
    lines = {
        line.split()[1]: line.split()
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("toy")
    }
    assert list(lines) == ["0", "1", "8+", "all"]  # no event had 2-7 earlier attempts
    assert lines["0"][2:5] + lines["0"][9:10] == ["4", "1.0000", "±", "+1.0000"]
    assert lines["1"][2:6] + lines["1"][9:10] == ["2", "0.0000", "±", "0.0000", "-1.0000"]
    assert lines["8+"][2] == "2"
    assert lines["all"][2] == "8" and lines["all"][-4] == "0.5000"  # averaged: 0.5 everywhere, no ranking
    assert lines["all"][-1] == "-"  # one seed: no DFM to average the DFM with


def test_the_breakdown_averages_each_dfm_seed_with_the_next(
    bench: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _predictions(bench, [0.9, 0.1, 0.8, 0.2, 0.7, 0.3, 0.6, 0.4])  # ranks every event right
    bad = _predictions(bench, [0.1, 0.9, 0.2, 0.8, 0.3, 0.7, 0.4, 0.6])  # and wrong
    flat = _predictions(bench, [0.5] * 8)
    results = {
        "DFM": {350: [{"valid_auc": 0.5, "valid": good}, {"valid_auc": 0.5, "valid": bad}]},
        "DKT": {350: [{"valid_auc": 0.5, "valid": flat}, {"valid_auc": 0.5, "valid": flat}]},
    }
    bench.breakdown([bench.Row("toy", None, (350,), results)], ["DFM", "DKT"])
    lines = map(str.split, capsys.readouterr().out.splitlines())
    every = next(cells for cells in lines if cells[:2] == ["toy", "all"])
    assert every[-6:-3] == ["0.5000", "±", "0.7071"]  # DFM+DKT seed by seed: good + flat 1.0, bad + flat 0.0
    assert every[-3:] == ["0.5000", "±", "0.0000"]  # DFM+DFM: good + bad, twice, is flat


def test_predictions_of_different_events_are_not_averaged(bench: ModuleType) -> None:
    a = _predictions(bench, [0.5] * 8)
    b = bench.Predictions(a.y[::-1].copy(), a.p, a.attempts)
    with pytest.raises(ValueError, match="different events"):
        bench.averaged(a, b)


def test_the_dfm_learns_from_this_run_s_dkt_and_the_no_teacher_row_is_the_same_model(
    bench: ModuleType,
) -> None:
    assert bench.MODELS[bench.NO_TEACHER](7).cfg == bench.MODELS["DFM"](7).cfg  # only the training differs
    dkt = bench.MODELS["DKT"](7)
    assert dkt.cfg == bench.DKTConfig(n_tasks=7)  # the config fit_teacher trains, so the DKT row can teach
    cfg = bench.TrainConfig(steps=350, seed=2)
    bench.TEACHERS["toy", 350, 2] = dkt.state_dict()
    try:
        splits = SimpleNamespace(vocab=range(7))  # cached: nothing to train, no histories needed
        teacher = bench.teacher_for("toy", splits, cfg)
    finally:
        del bench.TEACHERS["toy", 350, 2]
    for name, weight in dkt.state_dict().items():
        assert bench.torch.equal(teacher.state_dict()[name], weight), name


def test_cells_trained_in_worker_processes_match_one_process(bench: ModuleType) -> None:
    """--workers: each (budget, seed) cell trains its DKT and the models distilled from it in one process,
    and gives what the serial run gives."""
    from lyceum_ml.dfm.simulate import SimConfig

    spec = bench.DatasetSpec("simulated", simulation=SimConfig(n_skills=3, n_learners=60, max_events=40))
    cells, models = [(3, 0), (3, 1)], ["DFM", "DKT-distilled", "DKT"]
    try:
        serial = bench.fit_cells("toy", spec, models, True, cells, workers=1, threads=1)
        pooled = bench.fit_cells("toy", spec, models, True, cells, workers=2, threads=1)
    finally:
        for budget, seed in cells:
            bench.TEACHERS.pop(("toy", budget, seed), None)
    assert list(pooled) == cells
    for cell in cells:
        for model in models:
            a, b = serial[cell][model], pooled[cell][model]
            assert b["all_auc"] == pytest.approx(a["all_auc"], abs=1e-6), (cell, model)
            np.testing.assert_allclose(b["valid"].p, a["valid"].p, atol=1e-6)
    # the seed is the cell's: the two cells trained different models
    assert not np.allclose(serial[(3, 0)]["DFM"]["valid"].p, serial[(3, 1)]["DFM"]["valid"].p)
    # DKT-distilled is the same DKT (config, seed, init) trained against the DKT's probabilities
    for cell in cells:
        assert serial[cell]["DKT-distilled"]["params"] == serial[cell]["DKT"]["params"]
        assert not np.allclose(serial[cell]["DKT-distilled"]["valid"].p, serial[cell]["DKT"]["valid"].p)
