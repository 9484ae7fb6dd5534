"""DFM training, metrics and checkpoints: a short seeded run learns simulated learners, `roc_auc` agrees with
scikit-learn, and a checkpoint round trip predicts exactly what the saved model predicted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures.predictor import TEST_TASKS, tiny_dfm
from sklearn.metrics import roc_auc_score

from lyceum_ml.checkpoint import load_dfm, save_dfm
from lyceum_ml.dfm import DFM, DFMConfig, TaskVocab
from lyceum_ml.dfm.inference import predict, prefill
from lyceum_ml.dfm.simulate import SimConfig, simulate
from lyceum_ml.dfm.train import TrainConfig, evaluate, lr_at, train_dfm, windows
from lyceum_ml.metrics import binary_metrics, roc_auc

SMALL = SimConfig(n_skills=4, tasks_per_skill=4, n_learners=300, min_events=20, max_events=60, seed=0)
WINDOW = 48


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/fixtures/lm_models.py


def small_model(n_tasks: int) -> DFM:
    torch.manual_seed(0)
    return DFM(
        DFMConfig(n_tasks=n_tasks, d_model=32, n_layer=2, n_head=4, n_kv_head=2, max_len=2 * WINDOW + 3)
    )


def test_short_training_run_learns_simulated_learners() -> None:
    sim = simulate(SMALL)
    train, valid = sim.histories[:240], sim.histories[240:]
    model = small_model(len(sim.tasks))
    before = evaluate(model, valid, WINDOW)
    train_before = evaluate(model, train[:60], WINDOW)

    cfg = TrainConfig(steps=80, batch_size=16, window=WINDOW, lr=3e-3, warmup_steps=10, seed=0)
    result = train_dfm(model, train, valid, cfg)
    train_after = evaluate(model, train[:60], WINDOW)

    assert result["step"] == 80
    assert train_after["bce"] < train_before["bce"] - 0.1
    assert result["valid_bce"] < before["bce"] - 0.1
    assert result["valid_auc"] > 0.7  # ~0.8 measured; the generator's own probabilities reach ~0.9
    assert not model.training


def test_training_is_reproducible_for_a_seed() -> None:
    sim = simulate(
        SimConfig(n_skills=2, tasks_per_skill=3, n_learners=40, min_events=5, max_events=20, seed=1)
    )
    cfg = TrainConfig(steps=5, batch_size=4, window=WINDOW, warmup_steps=2, seed=3)
    a, b = small_model(len(sim.tasks)), small_model(len(sim.tasks))
    train_dfm(a, sim.histories, cfg=cfg)
    train_dfm(b, sim.histories, cfg=cfg)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name


def test_training_rejects_windows_longer_than_the_model() -> None:
    model = small_model(4)
    with pytest.raises(ValueError, match="window"):
        train_dfm(model, [([0, 1], [1.0, 0.0])], cfg=TrainConfig(steps=1, window=model.cfg.max_events + 1))


def test_simulate_is_deterministic_and_well_formed() -> None:
    a, b = simulate(SMALL), simulate(SMALL)
    assert a.histories == b.histories and a.tasks == b.tasks
    assert len(a.tasks) == 16 and len(set(a.tasks)) == 16
    assert len(a.histories) == SMALL.n_learners
    for (tasks, outcomes), probs in zip(a.histories, a.true_p, strict=True):
        assert SMALL.min_events <= len(tasks) == len(outcomes) == len(probs) <= SMALL.max_events
        assert set(outcomes) <= {0.0, 1.0} and all(0 <= t < 16 for t in tasks)
    assert simulate(SimConfig(**{**SMALL.__dict__, "seed": 1})).histories != a.histories


def test_windows_cut_histories_into_consecutive_pieces() -> None:
    cut = windows([([1, 2, 3, 4, 5], [1.0, 0.0, 1.0, 1.0, 0.0]), ([], [])], 2)
    assert cut == [([1, 2], [1.0, 0.0]), ([3, 4], [1.0, 1.0]), ([5], [0.0])]


def test_learning_rate_warms_up_then_decays_to_the_floor() -> None:
    cfg = TrainConfig(steps=100, lr=1e-2, warmup_steps=10, min_lr_ratio=0.1)
    rates = [lr_at(step, cfg) for step in range(cfg.steps + 1)]
    assert rates[0] == pytest.approx(1e-3) and rates[9] == pytest.approx(1e-2)
    assert all(a >= b for a, b in zip(rates[9:], rates[10:], strict=False))
    assert rates[-1] == pytest.approx(1e-3)


# --- metrics ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(5))
def test_roc_auc_matches_sklearn_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 500).astype(float)
    p = np.round(rng.random(500) * 0.6 + 0.3 * y, 1)  # ~10 distinct values: many ties across both classes
    assert len(np.unique(p)) < 15
    assert roc_auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)


def test_roc_auc_edge_cases() -> None:
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert roc_auc(np.array([1, 1, 0, 0]), np.array([0.1, 0.2, 0.3, 0.4])) == 0.0
    assert roc_auc(np.array([0, 1, 0, 1]), np.full(4, 0.5)) == 0.5  # all tied
    assert np.isnan(roc_auc(np.ones(3), np.array([0.1, 0.5, 0.9])))  # one class only
    # fractional outcomes count as successes from 0.5 up
    assert roc_auc(np.array([0.2, 0.5, 0.9]), np.array([0.1, 0.6, 0.7])) == 1.0


def test_binary_metrics_on_a_hand_computed_case() -> None:
    y = np.array([1.0, 0.0, 1.0, 0.0])
    p = np.array([0.8, 0.2, 0.4, 0.6])
    m = binary_metrics(y, p, bins=2)
    assert m["n"] == 4 and m["accuracy"] == 0.5
    assert m["auc"] == pytest.approx(0.75)
    assert m["bce"] == pytest.approx(-np.mean(np.log([0.8, 0.8, 0.4, 0.4])))
    # bin [0, .5): p = .2, .4 -> mean .3, y mean .5; bin [.5, 1]: p = .8, .6 -> .7 vs .5
    assert m["ece"] == pytest.approx(0.2)


# --- checkpoints --------------------------------------------------------------------------------------------
def _probe(model: DFM) -> torch.Tensor:
    tasks = torch.tensor([0, 3, 3, 7, 15, 2])
    outcomes = torch.tensor([1.0, 0.0, 0.5, 1.0, 0.0, 1.0])
    return torch.cat(
        [
            predict(model, prefill(model, tasks, outcomes), torch.arange(16)),
            model(tasks[None], outcomes[None])[0],
        ]
    )


@pytest.mark.parametrize(
    "overrides", [{}, {"task_encoder": "vectors", "task_vector_dim": 6}], ids=["table", "task-vectors"]
)
def test_checkpoint_round_trip_predicts_identically(tmp_path: Path, overrides: dict[str, object]) -> None:
    model = tiny_dfm(5, **overrides)
    if overrides:
        model.task_encoder.vectors.copy_(
            torch.randn(len(TEST_TASKS), 6, generator=torch.Generator().manual_seed(1))
        )
    save_dfm(tmp_path / "ckpt", model, TaskVocab(TEST_TASKS), {"name": "x", "version": "7"})

    loaded = load_dfm(tmp_path / "ckpt")
    assert loaded.vocab.tasks == TEST_TASKS
    assert loaded.metadata == {"name": "x", "version": "7"}
    assert loaded.model.cfg == model.cfg
    assert not loaded.model.training and loaded.model.dtype == torch.float32
    assert torch.equal(_probe(loaded.model), _probe(model))

    bf16 = load_dfm(tmp_path / "ckpt", dtype=torch.bfloat16).model
    assert bf16.dtype == torch.bfloat16
    assert torch.equal(_probe(bf16), _probe(model.to(torch.bfloat16)))


def test_saving_over_a_checkpoint_replaces_it_atomically(tmp_path: Path) -> None:
    save_dfm(tmp_path / "ckpt", tiny_dfm(1), TaskVocab(TEST_TASKS))
    newer = tiny_dfm(2)
    save_dfm(tmp_path / "ckpt", newer, TaskVocab(TEST_TASKS), {"version": "2"})

    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temporary siblings left behind
    loaded = load_dfm(tmp_path / "ckpt")
    assert loaded.metadata == {"version": "2"}
    assert torch.equal(_probe(loaded.model), _probe(newer))


def test_loading_a_non_dfm_directory_raises(tmp_path: Path) -> None:
    other = tmp_path / "lm"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"format": 1, "kind": "lm", "config": {}}))
    with pytest.raises(ValueError, match="not a DFM checkpoint"):
        load_dfm(other)
    with pytest.raises(FileNotFoundError):
        load_dfm(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError):
        load_dfm(empty)


# --- config and vocabulary ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad",
    [
        {"d_model": 30},  # not divisible by n_head
        {"n_kv_head": 3},  # does not divide n_head
        {"d_model": 12, "n_head": 4, "n_kv_head": 2},  # odd head dimension
        {"task_encoder": "vectors"},  # without a vector width
        {"n_tasks": 0},
        {"max_len": 3},
    ],
)
def test_config_rejects_inconsistent_hyperparameters(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        DFMConfig(**{"n_tasks": 4, **bad})  # type: ignore[arg-type]


def test_config_round_trips_and_ignores_unknown_keys() -> None:
    cfg = DFMConfig(n_tasks=5, d_model=16, max_len=21)
    assert DFMConfig.from_dict({**cfg.to_dict(), "added_later": 1}) == cfg
    assert cfg.max_events == 9  # 2 * (9 + 1) = 20 < 21 tokens: a 10th event could not be predicted


def test_vocab_encodes_and_names_the_first_unknown_task() -> None:
    vocab = TaskVocab(["a", "b", "c"])
    assert vocab.encode(["c", "a", "a"]) == [2, 0, 0] and len(vocab) == 3 and "b" in vocab
    with pytest.raises(KeyError) as info:
        vocab.encode(["a", "zz", "yy"])
    assert (info.value.task, info.value.index) == ("zz", 1)  # type: ignore[attr-defined]
    with pytest.raises(ValueError):
        TaskVocab(["a", "a"])
