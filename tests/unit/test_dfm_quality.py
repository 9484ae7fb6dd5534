"""What the knowledge-tracing quality work added: outcome tokens that carry their task, a task-specific
read-out, training-only dropout, a learned recency bias, checkpoints from before these still loading as
trained, pyKT's scoring protocol, per-event predictions for breakdowns, and the SAKT baseline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures.predictor import TEST_TASKS, tiny_dfm
from torch import Tensor, nn

from lyceum_jobs.configs import DFMModel
from lyceum_ml.checkpoint import load_dfm, save_dfm
from lyceum_ml.dfm import DFMConfig, TaskVocab
from lyceum_ml.dfm.inference import predict, prefill
from lyceum_ml.dfm.sakt import SAKT, SAKTConfig
from lyceum_ml.dfm.simulate import SimConfig, simulate
from lyceum_ml.dfm.train import TrainConfig, earlier_attempts, evaluate_split, predict_split, train_dfm

N_TASKS = len(TEST_TASKS)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/fixtures/lm_models.py


def _probe(model: nn.Module) -> Tensor:
    tasks, outcomes = torch.tensor([0, 3, 3, 1, 5, 2]), torch.tensor([1.0, 0.0, 1.0, 0.5, 1.0, 0.0])
    return predict(model, prefill(model, tasks, outcomes), torch.arange(N_TASKS))  # type: ignore[arg-type]


# --- outcome tokens and dropout -----------------------------------------------------------------------------
def test_an_outcome_token_carries_its_task_and_mixes_fractional_outcomes() -> None:
    model = tiny_dfm(0)
    assert model.cfg.outcome_embedding == "task"  # the default
    one = torch.ones(2)
    right = model.embed_outcomes(one, torch.tensor([0, 1]))
    assert not torch.allclose(right[0], right[1])  # same outcome, different task: different token
    task = torch.tensor([2])
    half = model.embed_outcomes(torch.tensor([0.5]), task)
    ends = (
        model.embed_outcomes(torch.tensor([0.0]), task) + model.embed_outcomes(torch.tensor([1.0]), task)
    ) / 2
    torch.testing.assert_close(half, ends)

    scalar = tiny_dfm(0, outcome_embedding="scalar")
    tokens = scalar.embed_outcomes(one, torch.tensor([0, 1]))
    torch.testing.assert_close(tokens[0], tokens[1])  # the outcome alone


def test_the_task_readout_gives_each_task_its_own_row_and_difficulty() -> None:
    model = tiny_dfm(0)
    h = torch.randn(1, model.cfg.d_model).expand(3, -1)  # one hidden state read out for three tasks
    logits = model.logits(h, torch.tensor([0, 1, 2]))
    plain = tiny_dfm(0, task_readout=False)
    assert logits.unique().numel() == 3 and plain.logits(h, torch.tensor([0, 1, 2])).unique().numel() == 1


def test_dropout_acts_in_training_only() -> None:
    model = tiny_dfm(0, dropout=0.5)
    tasks, outcomes = torch.tensor([[0, 3, 1, 2]]), torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    torch.testing.assert_close(model(tasks, outcomes), model(tasks, outcomes))  # eval: deterministic
    model.train()
    assert not torch.equal(model(tasks, outcomes), model(tasks, outcomes))


def test_dfm_pretrain_jobs_default_to_the_benchmarked_model() -> None:
    """The job config's model section mirrors DFMConfig's defaults (what bench/dfm_quality.py measures)."""
    job_defaults = DFMModel().model_dump()
    model_defaults = DFMConfig(n_tasks=1).to_dict()
    assert job_defaults == {name: model_defaults[name] for name in job_defaults}


def test_the_recency_bias_weights_recent_events_more_and_is_learned() -> None:
    model = tiny_dfm(0)
    attn = model.blocks[0].attn
    positions = torch.arange(9)
    bias = attn.bias(positions[-1:], positions)[:, 0]  # (H, 9): the last token over every token
    assert (bias.diff(dim=-1) > 0).all()  # nearer keys score higher, in every head
    slopes = attn.recency.exp()
    assert (slopes.diff() < 0).all()  # heads span short to long memories
    assert attn.recency.requires_grad and tiny_dfm(0, recency_bias=False).blocks[0].attn.recency is None


def test_the_fused_recency_path_equals_attention_with_an_explicit_bias() -> None:
    """Training's fp32 path folds the bias into an extra key dimension of the fused causal kernel; it must
    compute what softmax(qk / sqrt(hd) + bias) v does, and the same gradient for the slopes."""
    attn = tiny_dfm(0).blocks[0].attn
    g = torch.Generator().manual_seed(0)
    B, n, hd, group = 2, 11, attn.head_dim, attn.n_head // attn.n_kv_head
    q = torch.randn(B, attn.n_head, n, hd, generator=g)
    k, v = (torch.randn(B, attn.n_kv_head, n, hd, generator=g) for _ in range(2))
    positions = torch.arange(3, 3 + n)  # a window need not start at 0

    fused = attn.causal(q, k, v, positions)
    (fused_grad,) = torch.autograd.grad(fused.square().sum(), attn.recency)
    scores = q @ k.repeat_interleave(group, dim=1).transpose(-1, -2) / hd**0.5 + attn.bias(
        positions, positions
    )
    scores = scores.masked_fill(~torch.ones(n, n, dtype=torch.bool).tril(), float("-inf"))
    explicit = (scores.softmax(-1) @ v.repeat_interleave(group, dim=1)).transpose(1, 2).flatten(2)
    (explicit_grad,) = torch.autograd.grad(explicit.square().sum(), attn.recency)

    torch.testing.assert_close(fused, explicit, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fused_grad, explicit_grad, atol=1e-4, rtol=1e-4)


# --- checkpoints --------------------------------------------------------------------------------------------
def test_a_config_without_the_newer_fields_rebuilds_the_legacy_architecture() -> None:
    legacy = {k: v for k, v in DFMConfig(n_tasks=4).to_dict().items() if k not in DFMConfig.LEGACY}
    cfg = DFMConfig.from_dict(legacy)
    assert cfg.outcome_embedding == "scalar" and not cfg.task_readout and cfg.dropout == 0.0
    assert not cfg.recency_bias
    assert DFMConfig.from_dict(DFMConfig(n_tasks=4).to_dict()) == DFMConfig(
        n_tasks=4
    )  # a new one round-trips


def test_a_checkpoint_written_before_these_fields_loads_and_predicts_as_before(tmp_path: Path) -> None:
    model = tiny_dfm(4, **DFMConfig.LEGACY)
    save_dfm(tmp_path / "old", model, TaskVocab(TEST_TASKS))
    config = tmp_path / "old" / "config.json"
    doc = json.loads(config.read_text())
    for field in DFMConfig.LEGACY:  # as written before these fields existed
        del doc["config"][field]
    config.write_text(json.dumps(doc))

    loaded = load_dfm(tmp_path / "old").model
    assert loaded.cfg == model.cfg
    assert torch.equal(_probe(loaded), _probe(model))


# --- evaluation protocols -----------------------------------------------------------------------------------
class _Echo(nn.Module):
    """Predicts each event's own outcome at a confidence that grows with its position in the window."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, tasks: Tensor, outcomes: Tensor) -> Tensor:
        position = torch.arange(tasks.shape[1], dtype=torch.float32)
        return (2 * outcomes - 1) * (position + 1)


def test_pykt_protocol_drops_short_windows_and_leaves_each_window_first_event_unscored() -> None:
    histories = [([0] * 7, [1.0, 0.0] * 3 + [1.0]), ([1, 1], [0.0, 1.0]), ([2] * 4, [0.0, 1.0, 1.0, 0.0])]
    every = evaluate_split(_Echo(), histories, window=5)
    pykt = evaluate_split(_Echo(), histories, window=5, protocol="pykt")
    # windows of 5: [5, 2] events, [2], [4]; pyKT keeps [5, 4] (>= 3 events) and scores 4 + 3 of them
    assert every["n"] == 13 and pykt["n"] == 7
    with pytest.raises(ValueError, match="protocol"):
        evaluate_split(_Echo(), histories, window=5, protocol="other")  # type: ignore[arg-type]


def test_earlier_attempts_count_the_same_task_before_each_event_of_a_window() -> None:
    assert earlier_attempts([3, 1, 3, 3, 1, 2]).tolist() == [0, 0, 1, 2, 1, 0]
    assert earlier_attempts([]).tolist() == []


def test_predictions_keep_window_order_and_restart_attempt_counts_at_each_window() -> None:
    histories = [([0, 0, 1, 0, 0, 0, 1], [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0]), ([2, 2], [0.0, 1.0])]
    every = predict_split(_Echo(), histories, window=4)
    # windows of 4: [0 0 1 0] [0 0 1] [2 2], in that order although scored shortest first
    assert every.y.tolist() == [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0]
    assert every.attempts.tolist() == [0, 1, 0, 2, 0, 1, 0, 0, 1]
    position = np.array([0, 1, 2, 3, 0, 1, 2, 0, 1])
    np.testing.assert_allclose(every.p, 1 / (1 + np.exp(-(2 * every.y - 1) * (position + 1))), rtol=1e-6)
    # pyKT drops [2 2] (under 3 events) and leaves each window's first event unscored
    pykt = predict_split(_Echo(), histories, window=4, protocol="pykt")
    assert pykt.y.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0] and pykt.attempts.tolist() == [1, 0, 2, 1, 0]
    assert evaluate_split(_Echo(), histories, window=4) == every.metrics()


# --- SAKT ---------------------------------------------------------------------------------------------------
def test_sakt_is_causal() -> None:
    torch.manual_seed(0)
    model = SAKT(SAKTConfig(n_tasks=5, d_model=16, n_head=2, max_len=8)).eval()
    tasks = torch.tensor([[0, 3, 3, 1, 4]])
    outcomes = torch.tensor([[1.0, 0.0, 1.0, 1.0, 0.0]])
    base = model(tasks, outcomes)
    changed = outcomes.clone()
    changed[0, 2] = 0.0
    after = model(tasks, changed)
    assert base.shape == (1, 5)
    assert torch.equal(after[:, :3], base[:, :3]) and not torch.equal(after[:, 3:], base[:, 3:])


def test_sakt_learns_simulated_learners_above_chance() -> None:
    sim = simulate(SimConfig(n_skills=4, tasks_per_skill=4, n_learners=300, min_events=20, max_events=60))
    train, valid = sim.histories[:240], sim.histories[240:]
    torch.manual_seed(0)
    model = SAKT(SAKTConfig(n_tasks=len(sim.tasks), d_model=32, n_head=4, max_len=48, dropout=0.1))
    cfg = TrainConfig(steps=60, batch_size=16, window=48, lr=1e-2, warmup_steps=5, seed=0)
    before = evaluate_split(model, valid, 48)
    result = train_dfm(model, train, valid, cfg)
    assert result["valid_auc"] > 0.7 and result["valid_auc"] > before["auc"] + 0.1  # chance is 0.5
