"""Learners outlive the model's context: under the default sliding window every event stays stored, appends
keep working far past the context, and every answer equals a fresh prefill of the window the policy names.
Plus the lease: while a predictor holds a learner's lease it answers from its cache, no database read."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import torch
from fixtures.predictor import MAX_HISTORY_LEN, TEST_TASKS, RunningPredictor, predictor_settings, tiny_dfm
from fixtures.predictor_calls import TOL, Stub, events
from fixtures.servers import tenant_channel

from lyceum_api.predictor.v1 import predictor_pb2 as pb
from lyceum_api.predictor.v1 import predictor_pb2_grpc
from lyceum_core.identity import DEFAULT_TENANT
from lyceum_ml.dfm import inference
from lyceum_ml.dfm.ragged import decode_ragged
from lyceum_predictor.cache import LearnerKey
from lyceum_predictor.context import ContextPolicy

pytestmark = pytest.mark.integration


def random_events(rng: random.Random, n: int) -> list[tuple[str, float]]:
    return [(rng.choice(TEST_TASKS), rng.choice((0.0, 1.0, 0.5))) for _ in range(n)]


@torch.no_grad()
def fresh_prefill(window: list[tuple[str, float]], tasks: list[str]) -> tuple[list[float], list[float]]:
    """What a brand-new cache over just `window` predicts for `tasks`, and the priors of its events."""
    model = tiny_dfm(0)
    rows = torch.tensor([TEST_TASKS.index(t) for t, _ in window], dtype=torch.long)
    outcomes = torch.tensor([o for _, o in window])
    cache = inference.prefill(model, rows, outcomes)
    if not tasks:
        probs = torch.zeros(0)
    else:
        probs = inference.predict(
            model, cache, torch.tensor([TEST_TASKS.index(t) for t in tasks], dtype=torch.long)
        )
    h, _ = decode_ragged(model, [inference.prefill_row(model, rows, outcomes)])[0]
    priors = inference.event_priors(model, h, rows, prefilled=True)
    return probs.tolist(), priors.tolist()


@pytest.fixture
def served(test_checkpoint: Path, database_url: str) -> Iterator[tuple[RunningPredictor, Stub]]:
    running = RunningPredictor(predictor_settings(test_checkpoint, database_url, migrate_on_start=True))
    try:
        with tenant_channel(running.address) as channel:
            yield running, predictor_pb2_grpc.PredictorServiceStub(channel)
    finally:
        running.close()


def test_appends_run_three_times_past_the_context_and_answer_as_a_fresh_window(
    served: tuple[RunningPredictor, Stub],
) -> None:
    running, stub = served
    info = stub.GetModelInfo(pb.GetModelInfoRequest())
    policy = ContextPolicy.build("sliding_window", MAX_HISTORY_LEN)
    assert (info.context_policy, info.context_window) == ("sliding_window", policy.window)
    assert info.max_history_len == MAX_HISTORY_LEN and policy.window < MAX_HISTORY_LEN

    rng = random.Random(7)
    stored = random_events(rng, 10)
    stub.RegisterLearner(pb.RegisterLearnerRequest(learner_id="long", history=events(stored)))
    shifts = 0
    while len(stored) < 3 * MAX_HISTORY_LEN:
        batch = random_events(rng, rng.randint(1, 9))
        before = policy.start(len(stored))
        response = stub.AppendEvents(pb.AppendEventsRequest(learner_id="long", events=events(batch)))
        stored += batch
        n, start = len(stored), policy.start(len(stored))
        shifts += start != before
        assert (response.learner.history_len, response.learner.context_len) == (n, n - start)

        # the priors are what the window after the append predicts before each new outcome
        _, window_priors = fresh_prefill(stored[start:], [])
        expected = window_priors[-len(batch) :]
        assert max(abs(a - b) for a, b in zip(response.prior_probabilities, expected, strict=True)) < TOL

        probs = stub.Predict(pb.PredictRequest(learner_id="long", tasks=TEST_TASKS)).probabilities
        truth, _ = fresh_prefill(stored[start:], TEST_TASKS)
        assert max(abs(a - b) for a, b in zip(probs, truth, strict=True)) < TOL

    assert shifts >= 3  # the window moved several times, each time by whole strides
    learner = stub.GetLearner(pb.GetLearnerRequest(learner_id="long")).learner
    assert learner.history_len == len(stored) and learner.context_len == policy.context_len(len(stored))
    assert running.engine.repo.history(DEFAULT_TENANT, "long") == stored  # nothing stored is lost

    # another process rebuilding the learner from the database builds the same window
    running.engine.caches.clear()
    probs = stub.Predict(pb.PredictRequest(learner_id="long", tasks=TEST_TASKS)).probabilities
    truth, _ = fresh_prefill(stored[policy.start(len(stored)) :], TEST_TASKS)
    assert max(abs(a - b) for a, b in zip(probs, truth, strict=True)) < TOL


def test_a_registration_longer_than_the_window_keeps_every_event(
    served: tuple[RunningPredictor, Stub],
) -> None:
    running, stub = served
    history = random_events(random.Random(3), 2 * MAX_HISTORY_LEN)
    learner = stub.RegisterLearner(
        pb.RegisterLearnerRequest(learner_id="big", history=events(history))
    ).learner
    policy = ContextPolicy.build("sliding_window", MAX_HISTORY_LEN)
    assert learner.history_len == len(history) and learner.context_len == policy.context_len(len(history))
    probs = stub.Predict(pb.PredictRequest(learner_id="big", tasks=TEST_TASKS)).probabilities
    truth, _ = fresh_prefill(history[policy.start(len(history)) :], TEST_TASKS)
    assert max(abs(a - b) for a, b in zip(probs, truth, strict=True)) < TOL
    assert running.engine.repo.history(DEFAULT_TENANT, "big") == history


def test_the_window_policy_is_a_function_of_the_history_length() -> None:
    policy = ContextPolicy.build("sliding_window", 64)
    assert (policy.window, policy.stride) == (56, 7)
    for n in range(0, 400):
        start = policy.start(n)
        assert start % policy.stride == 0 and 0 <= start <= n
        assert policy.window - policy.stride < policy.context_len(n) <= policy.window or n <= policy.window
        assert policy.start(n + 1) >= start  # the window only moves forward
    reject = ContextPolicy.build("reject", 64)
    assert (reject.window, reject.start(1000)) == (64, 0)
    with pytest.raises(ValueError):
        ContextPolicy("sliding_window", 10, stride=11)


def test_the_owner_answers_from_its_cache_without_reading_the_database(
    served: tuple[RunningPredictor, Stub],
) -> None:
    running, stub = served
    stub.RegisterLearner(pb.RegisterLearnerRequest(learner_id="hot", history=events([("t01", 1.0)] * 5)))
    statements: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    sa.event.listen(sa.Engine, "before_cursor_execute", count)
    try:
        for _ in range(20):
            stub.Predict(pb.PredictRequest(learner_id="hot", tasks=TEST_TASKS[:3]))
        reads = list(statements)
        stub.AppendEvents(pb.AppendEventsRequest(learner_id="hot", events=events([("t02", 0.0)])))
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", count)
    assert reads == []  # the lease taken at registration proves the cache current
    # the append is one group-commit transaction: the conditional update and the event insert
    assert [s.split()[0] for s in statements if s.split()[0] in ("UPDATE", "INSERT")] == ["UPDATE", "INSERT"]


@pytest.fixture
def long_leases(test_checkpoint: Path, database_url: str) -> Iterator[tuple[RunningPredictor, Stub]]:
    """A predictor whose own renewer wakes every 15 s (a 60 s lease): the test renews by hand."""
    settings = predictor_settings(test_checkpoint, database_url, migrate_on_start=True, lease_s=60)
    running = RunningPredictor(settings)
    try:
        with tenant_channel(running.address) as channel:
            yield running, predictor_pb2_grpc.PredictorServiceStub(channel)
    finally:
        running.close()


def test_leases_in_use_are_renewed_in_bulk_and_idle_ones_left_to_run_out(
    long_leases: tuple[RunningPredictor, Stub],
) -> None:
    running, stub = long_leases
    leases, caches = running.engine.runner.leases, running.engine.caches
    for learner_id in ("busy-1", "busy-2", "idle"):
        stub.RegisterLearner(pb.RegisterLearnerRequest(learner_id=learner_id, history=events([("t01", 1.0)])))
    now = time.monotonic()
    for learner_id in ("busy-1", "busy-2", "idle"):  # every lease past its middle
        entry = caches.get(LearnerKey(DEFAULT_TENANT, learner_id))
        assert entry is not None
        entry.lease_deadline = now + leases.lease_s / 10
        entry.used_at = now if learner_id != "idle" else now - 2 * leases.lease_s

    assert leases.renew() == 2  # one statement for the learners in use
    for learner_id, renewed in (("busy-1", True), ("busy-2", True), ("idle", False)):
        entry = caches.get(LearnerKey(DEFAULT_TENANT, learner_id))
        assert (entry.lease_deadline > now + leases.lease_s / 2) is renewed
    assert leases.renew() == 0  # nothing is due any more
