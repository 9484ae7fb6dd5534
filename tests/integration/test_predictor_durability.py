"""The predictor's caches are only an accelerator over the durable histories, on SQLite and real PostgreSQL:
restarts, a second pod writing the same learner, LRU eviction and concurrent appends all answer exactly as a
fresh rebuild from the database would. Plus one real process: SIGKILL loses no acknowledged append, SIGTERM
drains and exits 0."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from fixtures.predictor import TEST_TASKS, RunningPredictor, predictor_settings, tiny_dfm
from fixtures.predictor_calls import TOL, Stub, events, max_diff
from fixtures.servers import tenant_channel
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY

from lyceum_api.predictor.v1 import predictor_pb2 as pb
from lyceum_api.predictor.v1 import predictor_pb2_grpc
from lyceum_core.grpc.errors import from_rpc_error
from lyceum_core.identity import DEFAULT_TENANT
from lyceum_db.engine import create_engine
from lyceum_db.repositories.learners import LearnerRepository, PendingAppend
from lyceum_predictor.cache import LearnerKey

pytestmark = pytest.mark.integration

Connect = Callable[[RunningPredictor], Stub]
Pods = Callable[..., RunningPredictor]
HISTORY = [("t00", 1.0), ("t03", 0.0), ("t03", 1.0), ("t07", 0.5), ("t15", 0.0)]
T = DEFAULT_TENANT
MORE = [("t01", 1.0), ("t02", 1.0), ("t01", 0.0)]
PLANS = [["t04", "t05", "t06"], ["t09", "t09", "t09"]]


def register(stub: Stub, learner_id: str, history: Sequence[tuple[str, float]] = ()) -> int:
    request = pb.RegisterLearnerRequest(learner_id=learner_id, history=events(history))
    return stub.RegisterLearner(request).learner.history_len


def append(
    stub: Stub, learner_id: str, pairs: Sequence[tuple[str, float]], **kw: int
) -> pb.AppendEventsResponse:
    return stub.AppendEvents(pb.AppendEventsRequest(learner_id=learner_id, events=events(pairs), **kw))


def predict(stub: Stub, learner_id: str) -> tuple[int, list[float]]:
    response = stub.Predict(pb.PredictRequest(learner_id=learner_id, tasks=TEST_TASKS))
    return response.history_len, list(response.probabilities)


def forecast(stub: Stub, learner_id: str) -> list[float]:
    request = pb.ForecastRequest(
        learner_id=learner_id, task_sequences=[pb.TaskSequence(tasks=p) for p in PLANS]
    )
    return [p for row in stub.Forecast(request).predictions for p in row.probabilities]


def assert_same_state(a: tuple[int, list[float]], b: tuple[int, list[float]]) -> None:
    assert a[0] == b[0], "history_len differs"
    assert max_diff(a[1], b[1]) < TOL, (a, b)


def rebuilds(reason: str) -> float:
    return REGISTRY.get_sample_value("lyceum_predictor_cache_rebuilds_total", {"reason": reason}) or 0.0


@pytest.fixture
def connect() -> Iterator[Connect]:
    """stub = connect(running): a stub on the predictor's current address (a restart moves its port)."""
    channels: list[grpc.Channel] = []

    def make(running: RunningPredictor) -> Stub:
        channels.append(tenant_channel(running.address))
        return predictor_pb2_grpc.PredictorServiceStub(channels[-1])

    yield make
    for channel in channels:
        channel.close()


@pytest.fixture
def pods(test_checkpoint: Path, database_url: str) -> Iterator[Pods]:
    """pod(**setting_overrides): a RunningPredictor over this test's database; all closed at teardown. Leases
    are short (0.5 s), so a pod writing another's learner waits little."""
    started: list[RunningPredictor] = []

    def pod(**overrides: object) -> RunningPredictor:
        started.append(
            RunningPredictor(
                predictor_settings(
                    test_checkpoint, database_url, **{"migrate_on_start": True, "lease_s": 0.5, **overrides}
                )
            )
        )
        return started[-1]

    yield pod
    for running in started:
        running.close()


def test_restart_rebuilds_caches_from_stored_history(pods: Pods, connect: Connect) -> None:
    running = pods()
    stub = connect(running)
    register(stub, "a", HISTORY)
    append(stub, "a", MORE[:1])
    append(stub, "a", MORE[1:])
    register(stub, "b")
    append(stub, "b", HISTORY[:2])
    before = {x: (predict(stub, x), forecast(stub, x)) for x in ("a", "b")}
    assert before["a"][0][0] == len(HISTORY) + len(MORE)

    running.restart()
    assert len(running.engine.caches) == 0
    cold = rebuilds("cold")
    stub = connect(running)

    assert_same_state(predict(stub, "a"), before["a"][0])
    assert len(running.engine.caches) == 1 and rebuilds("cold") == cold + 1
    assert max_diff(forecast(stub, "a"), before["a"][1]) < TOL
    assert_same_state(predict(stub, "b"), before["b"][0])
    assert max_diff(forecast(stub, "b"), before["b"][1]) < TOL
    assert len(running.engine.caches) == 2 and rebuilds("cold") == cold + 2
    # a restarted pod keeps appending where the history left off
    assert append(stub, "a", MORE[:1]).learner.history_len == len(HISTORY) + len(MORE) + 1


def test_a_stale_cache_is_rebuilt_after_another_pod_appends(pods: Pods, connect: Connect) -> None:
    first, second = pods(), pods()  # e.g. the owner and a failover pod
    stub1, stub2 = connect(first), connect(second)
    register(stub1, "l", HISTORY)
    predict(stub1, "l")  # first now holds a cache of 5 events

    append(stub2, "l", MORE)
    stale = rebuilds("stale")
    seen = predict(stub1, "l")

    assert seen[0] == len(HISTORY) + len(MORE)
    assert rebuilds("stale") == stale + 1
    assert_same_state(seen, predict(stub2, "l"))
    first.engine.caches.clear()
    assert_same_state(seen, predict(stub1, "l"))  # a fresh rebuild agrees

    # appends through the first pod also see the other pod's events first
    append(stub2, "l", MORE[:1])
    response = append(stub1, "l", [("t08", 1.0)], expected_history_len=len(HISTORY) + len(MORE) + 1)
    assert response.learner.history_len == len(HISTORY) + len(MORE) + 2
    assert_same_state(predict(stub1, "l"), predict(stub2, "l"))


def test_a_learner_recreated_elsewhere_with_as_many_events_is_not_served_from_the_old_cache(
    pods: Pods,
    connect: Connect,
) -> None:
    first, second = pods(), pods()
    stub1, stub2 = connect(first), connect(second)
    register(stub1, "r", HISTORY)
    predict(stub1, "r")

    stub2.DeleteLearner(pb.DeleteLearnerRequest(learner_id="r"))
    register(stub2, "r", [(task, 1.0 - outcome) for task, outcome in HISTORY])  # same length, other history
    truth = predict(stub2, "r")
    assert max_diff(truth[1], predict(connect(pods()), "r")[1]) < TOL

    assert_same_state(predict(stub1, "r"), truth)


def test_evicted_learners_are_rebuilt_with_the_same_predictions(
    pods: Pods,
    connect: Connect,
) -> None:
    cfg = tiny_dfm(0).cfg
    chunk = 32  # one chunk holds 15 events
    per_learner = cfg.n_layer * 2 * cfg.n_kv_head * chunk * cfg.head_dim * 4  # one fp32 chunk
    running = pods(cache_budget_bytes=2 * per_learner, cache_chunk_tokens=chunk)
    caches = running.engine.caches
    stub = connect(running)

    states = {}
    for i in range(4):
        register(stub, f"e{i}", HISTORY[: i + 1])
        states[f"e{i}"] = predict(stub, f"e{i}")
    assert len(caches) == 2 and caches.nbytes == 2 * per_learner

    evicted = rebuilds("evicted")
    assert_same_state(predict(stub, "e0"), states["e0"])  # e0 and e1 were evicted: least recently used
    assert rebuilds("evicted") == evicted + 1
    assert len(caches) == 2 and caches.nbytes <= caches.budget_bytes

    # e0 is now the most recent and e3 the least: touching e0 again keeps it, e2 comes back evicting e3
    predict(stub, "e0")
    assert_same_state(predict(stub, "e2"), states["e2"])
    assert caches.get(LearnerKey(T, "e3")) is None and caches.get(LearnerKey(T, "e0")) is not None

    # a learner outgrowing its chunk is charged for two, which evicts everyone else
    append(stub, "e1", [("t06", 1.0)] * 15)
    assert len(caches) == 1 and caches.nbytes == 2 * per_learner
    for learner_id in ("e0", "e2", "e3"):
        assert_same_state(predict(stub, learner_id), states[learner_id])


def test_concurrent_appends_through_one_pod_lose_nothing(pods: Pods, connect: Connect) -> None:
    running = pods()  # two worker threads (the fixture fixes worker_threads=2)
    stub = connect(running)
    learners = [f"c{i}" for i in range(3)]
    for learner_id in learners:
        register(stub, learner_id)
    jobs = [(learners[i % 3], TEST_TASKS[i % 16], float(i % 2)) for i in range(24)]

    def send(job: tuple[str, str, float]) -> int:
        return append(stub, job[0], [(job[1], job[2])]).learner.history_len

    with ThreadPoolExecutor(8) as pool:
        lengths = list(pool.map(send, jobs))

    for learner_id in learners:
        # every append got its own slot, and the cache agrees with the stored order of events
        assert sorted(n for (x, _, _), n in zip(jobs, lengths, strict=True) if x == learner_id) == list(
            range(1, 9)
        )
        stored = running.engine.repo.history(T, learner_id)
        assert sorted(stored) == sorted((t, o) for x, t, o in jobs if x == learner_id)
        served = predict(stub, learner_id)
        register(stub, f"{learner_id}-copy", stored)
        assert_same_state(served, predict(stub, f"{learner_id}-copy"))


class RacingRepository:
    """The engine's repository, with another pod taking the learner over just before the engine's next
    append commits: the engine's lease ends (as if it had run out while the pod was stalled), the other pod
    commits an event, and the engine's group commit must notice."""

    def __init__(self, inner: LearnerRepository, other: LearnerRepository, owner: str) -> None:
        self._inner, self._other, self._owner = inner, other, owner
        self.raced = False

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    def append_many(self, owner: str, lease_s: float, appends: Sequence[PendingAppend]) -> list[object]:
        if not self.raced:
            self.raced = True
            self._other.release(self._owner)
            first = appends[0]
            self._other.append(
                first.tenant, first.learner_id, [("t12", 1.0)], expected_len=first.expected_len
            )
        return self._inner.append_many(owner, lease_s, appends)


@pytest.fixture
def race(database_url: str) -> Iterator[Callable[[RunningPredictor], None]]:
    """race(running): the running engine's next append loses a race to another writer."""
    engine = create_engine(database_url)

    def install(running: RunningPredictor) -> None:
        repo = RacingRepository(running.engine.repo, LearnerRepository(engine), running.engine.owner)
        running.engine.runner.repo = repo  # type: ignore[assignment]

    yield install
    engine.dispose()


def test_an_append_racing_another_pod_is_retried_after_its_events(
    pods: Pods,
    connect: Connect,
    race: Callable[[RunningPredictor], None],
) -> None:
    running = pods()
    stub = connect(running)
    register(stub, "race", HISTORY)
    race(running)

    response = append(stub, "race", MORE[:1])

    assert response.learner.history_len == len(HISTORY) + 2
    assert running.engine.repo.history(T, "race") == [*HISTORY, ("t12", 1.0), MORE[0]]
    register(stub, "twin", [*HISTORY, ("t12", 1.0)])
    twin = append(stub, "twin", MORE[:1])
    assert max_diff(response.prior_probabilities, twin.prior_probabilities) < TOL
    assert_same_state(predict(stub, "race"), predict(stub, "twin"))


def test_a_pinned_append_racing_another_pod_fails_its_precondition(
    pods: Pods,
    connect: Connect,
    race: Callable[[RunningPredictor], None],
) -> None:
    running = pods()
    stub = connect(running)
    register(stub, "pinned", HISTORY)
    race(running)

    with pytest.raises(grpc.RpcError) as info:
        append(stub, "pinned", MORE[:1], expected_history_len=len(HISTORY))

    # the committed history has 6 events, not the expected 5: the contract's FAILED_PRECONDITION, as without
    # the race, and nothing of this request written
    assert running.engine.repo.history(T, "pinned") == [*HISTORY, ("t12", 1.0)]
    assert (info.value.code(), from_rpc_error(info.value).field) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "expected_history_len",
    )


# --- a real process -----------------------------------------------------------------------------------------
DRAIN_GRACE_S = 2.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_predictor(env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "lyceum_predictor"], env=env, cwd=cwd, stdout=out, stderr=out
    )
    out.close()
    return proc


def wait_serving(proc: subprocess.Popen[bytes], address: str, log: Path, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"predictor exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    pytest.fail(f"predictor did not become SERVING in {timeout_s}s:\n{log.read_text()[-3000:]}")


def test_a_killed_process_loses_no_acknowledged_append_and_sigterm_drains(
    test_checkpoint: Path, postgres_url: str, tmp_path: Path
) -> None:
    port = free_port()
    address = f"127.0.0.1:{port}"
    env = {
        **os.environ,
        "LYCEUM_PREDICTOR_MODEL_PATH": str(test_checkpoint),
        "LYCEUM_PREDICTOR_DATABASE_URL": postgres_url,
        "LYCEUM_PREDICTOR_HOST": "127.0.0.1",
        "LYCEUM_PREDICTOR_PORT": str(port),
        "LYCEUM_PREDICTOR_METRICS_PORT": "0",
        "LYCEUM_PREDICTOR_DRAIN_GRACE_S": str(DRAIN_GRACE_S),
        "LYCEUM_PREDICTOR_TORCH_THREADS": "1",
    }
    learner_id = f"proc-{uuid.uuid4().hex[:8]}"  # the session's database is shared
    log = tmp_path / "predictor.log"
    procs = []
    try:
        procs.append(start_predictor(env, tmp_path, log))
        wait_serving(procs[-1], address, log)
        with tenant_channel(address) as channel:
            stub = predictor_pb2_grpc.PredictorServiceStub(channel)
            register(stub, learner_id, HISTORY)
            for pair in MORE:
                append(stub, learner_id, [pair])
            before = predict(stub, learner_id)
        assert before[0] == len(HISTORY) + len(MORE)

        procs[-1].send_signal(signal.SIGKILL)
        assert procs[-1].wait(timeout=30) == -signal.SIGKILL

        procs.append(start_predictor(env, tmp_path, log))
        wait_serving(procs[-1], address, log)
        with tenant_channel(address) as channel:
            stub = predictor_pb2_grpc.PredictorServiceStub(channel)
            got = stub.GetLearner(pb.GetLearnerRequest(learner_id=learner_id)).learner
            assert got.history_len == before[0]
            assert_same_state(predict(stub, learner_id), before)

        procs[-1].send_signal(signal.SIGTERM)
        assert procs[-1].wait(timeout=DRAIN_GRACE_S + 15) == 0, log.read_text()[-3000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
