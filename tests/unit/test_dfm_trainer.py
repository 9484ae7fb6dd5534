"""The resumable DFM trainer and the DKT baseline: exact resume (straight vs save + load, with and without a
teacher), bounded steps, length-packed epochs, export loadable by `load_dfm`, targets mixed with a teacher's
probabilities, and DKT learning simulated learners above chance."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lyceum_ml.checkpoint import load_dfm
from lyceum_ml.dfm import DFM, DFMConfig, TaskVocab
from lyceum_ml.dfm.dkt import DKT, DKTConfig
from lyceum_ml.dfm.inference import predict, prefill
from lyceum_ml.dfm.simulate import SimConfig, simulate
from lyceum_ml.dfm.train import (
    DFMTrainer,
    TrainConfig,
    evaluate_split,
    lr_at,
    predict_split,
    train_dfm,
)
from lyceum_ml.training import ResumableTrainer, training_loss, warmup_cosine

WINDOW = 24
SIM = SimConfig(n_skills=3, tasks_per_skill=3, n_learners=60, min_events=4, max_events=40, seed=2)
CFG = TrainConfig(steps=6, batch_size=4, window=WINDOW, lr=1e-2, warmup_steps=2, seed=5)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/fixtures/lm_models.py


def make_model(kind: str, n_tasks: int) -> nn.Module:
    torch.manual_seed(0)
    if kind == "dkt":
        return DKT(DKTConfig(n_tasks=n_tasks, d_embed=16, d_hidden=16, dropout=0.3))
    return DFM(
        DFMConfig(n_tasks=n_tasks, d_model=16, n_layer=2, n_head=2, n_kv_head=1, max_len=2 * WINDOW + 3)
    )


def sim_splits() -> tuple[list[str], list, list]:
    sim = simulate(SIM)
    return sim.tasks, sim.histories[:50], sim.histories[50:]


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def make_teacher(n_tasks: int, seed: int) -> DKT:
    torch.manual_seed(seed)
    return DKT(DKTConfig(n_tasks=n_tasks, d_embed=8, d_hidden=8))


# DKT's dropout also checks the torch RNG is restored; "dfm+teacher": a distilled DFM, whose resumed trainer
# starts from a differently initialised teacher that only the checkpoint's teacher weights can put right
@pytest.mark.parametrize("kind", ["dfm", "dkt", "dfm+teacher"])
def test_resume_is_exact(tmp_path: Path, kind: str) -> None:
    tasks, train, valid = sim_splits()
    model = kind.removesuffix("+teacher")

    def teacher(seed: int) -> DKT | None:
        return make_teacher(len(tasks), seed) if kind.endswith("+teacher") else None

    straight = DFMTrainer(make_model(model, len(tasks)), train, valid, CFG, teacher=teacher(1))
    losses = [straight.run(1)["loss"] for _ in range(6)]

    first = DFMTrainer(make_model(model, len(tasks)), train, valid, CFG, teacher=teacher(1))
    resumed = [first.run(1)["loss"] for _ in range(3)]
    first.save(tmp_path / "state")
    torch.manual_seed(123)  # whatever happens between slices must not matter
    second = DFMTrainer(make_model(model, len(tasks)), train, valid, CFG, teacher=teacher(2))
    second.run(2)  # ... not even steps a fresh trainer took before loading
    second.load(tmp_path / "state")
    assert second.step == 3
    resumed += [second.run(1)["loss"] for _ in range(3)]

    assert resumed == losses
    assert second.step == straight.step == 6
    for (name, a), b in zip(weights(straight.model).items(), weights(second.model).values(), strict=True):
        assert torch.equal(a, b), name
    assert second.evaluate() == straight.evaluate()


def test_resume_across_epoch_boundaries_and_refuses_other_settings(tmp_path: Path) -> None:
    tasks, train, _ = sim_splits()
    cfg = TrainConfig(steps=40, batch_size=8, window=WINDOW, seed=1)
    straight = DFMTrainer(make_model("dfm", len(tasks)), train[:12], cfg=cfg)
    a = straight.run(40)
    assert a["epoch"] > 3  # several epochs of a dozen histories

    first = DFMTrainer(make_model("dfm", len(tasks)), train[:12], cfg=cfg)
    first.run(17)
    first.save(tmp_path / "s")
    second = DFMTrainer(make_model("dfm", len(tasks)), train[:12], cfg=cfg)
    second.load(tmp_path / "s")
    b = second.run(100)  # never past total_steps
    assert second.step == 40 and b["epoch"] == a["epoch"]
    for (name, x), y in zip(weights(straight.model).items(), weights(second.model).values(), strict=True):
        assert torch.equal(x, y), name
    assert second.run(5)["throughput"] == 0.0 and second.step == 40

    with pytest.raises(ValueError, match="different TrainConfig"):
        DFMTrainer(make_model("dfm", len(tasks)), train[:12], cfg=replace(cfg, steps=41)).load(tmp_path / "s")
    with pytest.raises(ValueError, match="different training data"):
        DFMTrainer(make_model("dfm", len(tasks)), train[:13], cfg=cfg).load(tmp_path / "s")


def test_an_epoch_visits_every_window_once_in_packed_batches() -> None:
    tasks, train, _ = sim_splits()
    trainer = DFMTrainer(make_model("dfm", len(tasks)), train, cfg=TrainConfig(batch_size=4, window=WINDOW))
    seen = []
    for _ in range(len(trainer._bounds) - 1):
        batch = trainer._next_batch()
        assert len(batch) * max(len(t) for t, _ in batch) <= 4 * WINDOW  # the padded-event budget
        seen += [id(chunk) for chunk in batch]
    assert sorted(seen) == sorted(id(chunk) for chunk in trainer.chunks)
    assert len(seen) > 4 * (len(trainer._bounds) - 1)  # short windows share batches beyond batch_size


def test_run_reports_loss_and_throughput_and_training_learns() -> None:
    tasks, train, valid = sim_splits()
    trainer: ResumableTrainer = DFMTrainer(
        make_model("dfm", len(tasks)), train, valid, TrainConfig(steps=60, batch_size=8, window=WINDOW)
    )
    before = trainer.evaluate()
    out = trainer.run(60)
    after = trainer.evaluate()
    assert trainer.step == trainer.total_steps == 60 and out["throughput"] > 0 and out["loss"] > 0
    assert training_loss(out) == out["loss"] and training_loss({"throughput": 1.0}) is None
    assert set(after) >= {"auc", "accuracy", "bce", "ece"} and after["n"] == sum(len(t) for t, _ in valid)
    assert after["bce"] < before["bce"] - 0.05


def test_export_writes_a_dfm_checkpoint_that_loads_and_predicts(tmp_path: Path) -> None:
    tasks, train, valid = sim_splits()
    model = make_model("dfm", len(tasks))
    trainer = DFMTrainer(model, train, valid, CFG, vocab=TaskVocab(tasks), metadata={"name": "dfm-sim"})
    trainer.run(6)
    valid_metrics = trainer.evaluate()
    meta = trainer.export(tmp_path / "export")

    loaded = load_dfm(tmp_path / "export")
    assert loaded.vocab.tasks == tasks and loaded.metadata == meta
    assert meta["name"] == "dfm-sim" and meta["train_steps"] == 6 and meta["valid"] == valid_metrics
    t, o = torch.tensor(train[0][0][:10]), torch.tensor(train[0][1][:10])
    expected = predict(model.eval(), prefill(model, t, o), torch.arange(len(tasks)))
    got = predict(loaded.model, prefill(loaded.model, t, o), torch.arange(len(tasks)))
    assert torch.equal(got, expected) and ((got > 0) & (got < 1)).all()
    assert evaluate_split(loaded.model, valid, WINDOW) == evaluate_split(model, valid, WINDOW)

    with pytest.raises(ValueError, match="vocabulary"):
        DFMTrainer(make_model("dfm", len(tasks)), train, cfg=CFG).export(tmp_path / "x")
    dkt = DFMTrainer(make_model("dkt", len(tasks)), train, cfg=CFG, vocab=TaskVocab(tasks))
    with pytest.raises(TypeError, match="DKT"):
        dkt.export(tmp_path / "y")


def test_trainer_rejects_inconsistent_inputs() -> None:
    model = make_model("dfm", 4)
    with pytest.raises(ValueError, match="window"):
        DFMTrainer(model, [([0, 1], [1.0, 0.0])], cfg=TrainConfig(window=model.cfg.max_events + 1))
    with pytest.raises(ValueError, match="task row 4"):
        DFMTrainer(model, [([0, 4], [1.0, 0.0])], cfg=CFG)
    with pytest.raises(ValueError, match="vocabulary of 3"):
        DFMTrainer(model, [([0], [1.0])], cfg=CFG, vocab=TaskVocab(["a", "b", "c"]))
    with pytest.raises(ValueError, match="no training events"):
        DFMTrainer(model, [([], [])], cfg=CFG)
    assert DFMTrainer(model, [([0], [1.0])], cfg=CFG).evaluate() == {}  # nothing held out


def test_a_teacher_s_probabilities_are_the_targets_in_proportion_distill(tmp_path: Path) -> None:
    tasks, train, valid = sim_splits()
    undecided = make_teacher(len(tasks), 0)  # P = 0.5 for every event
    nn.init.zeros_(undecided.out.weight)
    nn.init.zeros_(undecided.out.bias)
    cfg = TrainConfig(steps=60, batch_size=8, window=WINDOW, lr=1e-2, warmup_steps=5, seed=0)

    def spread(distill: float) -> float:
        """How far the trained DFM's validation predictions stray from 0.5."""
        model = make_model("dfm", len(tasks))
        teacher = undecided if distill else None  # distill 0: no teacher at all
        DFMTrainer(model, train, valid, replace(cfg, distill=distill), teacher=teacher).run(60)
        return float(np.abs(predict_split(model, valid, WINDOW).p - 0.5).mean())

    assert spread(1.0) < 0.02  # it learns the teacher, not the outcomes
    assert spread(0.5) < spread(0.25) < spread(0.0) - 0.05  # between the two in proportion
    assert spread(0.0) > 0.1
    assert not undecided.training and not any(p.requires_grad for p in undecided.parameters())


def test_distillation_settings_are_checked(tmp_path: Path) -> None:
    tasks, train, _ = sim_splits()
    with pytest.raises(ValueError, match="distill must be in"):
        TrainConfig(distill=1.5)
    with pytest.raises(ValueError, match="needs cfg.distill > 0"):
        DFMTrainer(
            make_model("dfm", len(tasks)), train, cfg=replace(CFG, distill=0.0), teacher=make_teacher(9, 0)
        )
    DFMTrainer(make_model("dfm", len(tasks)), train, cfg=CFG).save(tmp_path / "plain")
    with pytest.raises(ValueError, match="without a teacher"):
        DFMTrainer(make_model("dfm", len(tasks)), train, cfg=CFG, teacher=make_teacher(9, 0)).load(
            tmp_path / "plain"
        )
    DFMTrainer(make_model("dfm", len(tasks)), train, cfg=CFG, teacher=make_teacher(9, 0)).save(
        tmp_path / "taught"
    )
    with pytest.raises(ValueError, match="with a teacher"):
        DFMTrainer(make_model("dfm", len(tasks)), train, cfg=CFG).load(tmp_path / "taught")


def test_learning_rate_follows_the_shared_schedule() -> None:
    cfg = TrainConfig(steps=100, lr=1e-2, warmup_steps=10, min_lr_ratio=0.1)
    for step in (0, 5, 9, 10, 50, 99, 100, 150):
        assert lr_at(step, cfg) == warmup_cosine(
            step, lr=1e-2, warmup_steps=10, total_steps=100, min_lr_ratio=0.1
        )


def test_train_dfm_drives_a_trainer_and_logs_each_evaluation() -> None:
    tasks, train, valid = sim_splits()
    logs: list[dict[str, float]] = []
    cfg = TrainConfig(steps=10, batch_size=4, window=WINDOW, eval_every=4)
    result = train_dfm(make_model("dfm", len(tasks)), train, valid, cfg, on_log=logs.append)
    assert [r["step"] for r in logs] == [4, 8, 10] and result == logs[-1]
    assert {"loss", "throughput", "valid_auc", "valid_bce"} <= set(result)


# --- DKT ----------------------------------------------------------------------------------------------------
def test_dkt_is_causal_and_reads_fractional_outcomes_between_its_two_inputs() -> None:
    model = make_model("dkt", 5).eval()
    tasks = torch.tensor([[0, 3, 3, 1, 4]])
    outcomes = torch.tensor([[1.0, 0.0, 1.0, 1.0, 0.0]])
    base = model(tasks, outcomes)
    assert base.shape == (1, 5)
    changed = outcomes.clone()
    changed[0, 2] = 0.0
    after = model(tasks, changed)
    assert torch.equal(after[:, :3], base[:, :3]) and not torch.equal(after[:, 3:], base[:, 3:])

    half = outcomes.clone()
    half[0, 2] = 0.5
    x_half = model.interaction(tasks[:, 2:3]) * 0.5 + model.interaction(tasks[:, 2:3] + 5) * 0.5
    assert torch.allclose(model(tasks, half)[:, 3], _dkt_step(model, tasks, outcomes, x_half), atol=1e-6)


def _dkt_step(model: DKT, tasks: torch.Tensor, outcomes: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """Event 3's logit computed by hand with x2 as the input of event 2."""
    o = outcomes[:, :2, None]
    x = (1 - o) * model.interaction(tasks[:, :2]) + o * model.interaction(tasks[:, :2] + model.cfg.n_tasks)
    h, _ = model.lstm(torch.cat([model.start.expand(1, 1, -1), x, x2], dim=1))
    return h[:, -1] @ model.out.weight[tasks[0, 3]] + model.out.bias[tasks[0, 3]]


def test_dkt_learns_simulated_learners_above_chance() -> None:
    sim = simulate(SimConfig(n_skills=4, tasks_per_skill=4, n_learners=300, min_events=20, max_events=60))
    train, valid = sim.histories[:240], sim.histories[240:]
    torch.manual_seed(0)
    model = DKT(DKTConfig(n_tasks=len(sim.tasks), d_embed=32, d_hidden=32, dropout=0.1))
    cfg = TrainConfig(steps=60, batch_size=16, window=48, lr=1e-2, warmup_steps=5, seed=0)
    before = evaluate_split(model, valid, 48)
    result = train_dfm(model, train, valid, cfg)
    assert result["valid_auc"] > 0.7 and result["valid_auc"] > before["auc"] + 0.1  # chance is 0.5
    assert result["valid_bce"] < before["bce"] - 0.05
