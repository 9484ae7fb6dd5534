"""Sticky routing under failure, with real processes: three predictors sharing one PostgreSQL database behind
a gateway that reads its membership from a file. A seeded, Zipf-skewed workload of registers, appends and
predictions keeps running while the owner of the hottest learners is frozen, SIGKILLed and restarted; and an
owner that missed appends made elsewhere rebuilds rather than answer stale. Every acknowledged update must
survive, exactly once and in order, and every answer must equal a fresh single-pod rebuild."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from fixtures.fleet import (
    Event,
    LearnerClient,
    Progress,
    Tally,
    assert_like_fresh_rebuild,
    membership_version,
    owner_of,
    rebuild_reasons,
    resident,
    wait_replicas,
    wait_version_above,
)
from fixtures.predictor import MAX_HISTORY_LEN, TEST_TASKS
from fleet import Fleet, Metrics, Process

from lyceum_core.identity import DEFAULT_TENANT
from lyceum_db.engine import create_engine
from lyceum_db.repositories.learners import LearnerRepository

pytestmark = pytest.mark.integration

SEED = 20_240_611
N_LEARNERS = 60
ZIPF_S = 1.1
N_OPS = 600
N_CLIENTS = 4
KILL_AT, RESTART_AT = 0.35, 0.70  # fractions of the workload done
FROZEN_S = 0.5  # how long the hot owner is frozen before the kill, so that calls are surely in flight on it
HISTORY_CAP = MAX_HISTORY_LEN - 4  # the tiny test DFM holds 64 events


@dataclass(frozen=True)
class Op:
    learner: int  # index: 0 is the hottest
    kind: str  # "register" | "append" | "predict"
    events: tuple[Event, ...] = ()


def plan(seed: int) -> list[Op]:
    """The workload: learners drawn Zipf(s) by rank; each learner's first op registers it (0-3 events), then
    appends (1-2 events, while under the history cap) and predictions. Learners never drawn are registered
    at the end, so that every one exists."""
    rng = random.Random(seed)
    weights = [1 / (rank + 1) ** ZIPF_S for rank in range(N_LEARNERS)]
    lengths: dict[int, int] = {}
    ops = []

    def events(n: int) -> tuple[Event, ...]:
        return tuple((rng.choice(TEST_TASKS), rng.choice((0.0, 0.5, 1.0))) for _ in range(n))

    for learner in rng.choices(range(N_LEARNERS), weights, k=N_OPS):
        if learner not in lengths:
            op = Op(learner, "register", events(rng.randint(0, 3)))
        elif rng.random() < 0.55 and lengths[learner] + 2 <= HISTORY_CAP:
            op = Op(learner, "append", events(rng.randint(1, 2)))
        else:
            op = Op(learner, "predict")
        lengths[learner] = lengths.get(learner, 0) + len(op.events)
        ops.append(op)
    ops += [Op(learner, "register", events(1)) for learner in range(N_LEARNERS) if learner not in lengths]
    return ops


def planned_histories(ops: Sequence[Op]) -> dict[int, list[Event]]:
    histories: dict[int, list[Event]] = {}
    for op in ops:
        histories.setdefault(op.learner, []).extend(op.events)
    return histories


def shard(ops: Sequence[Op], n: int) -> list[list[Op]]:
    """Each learner's ops go to one client (so its log is exact), in plan order; learners are dealt to the
    least loaded client, busiest first."""
    load = [0] * n
    client_of: dict[int, int] = {}
    counts: dict[int, int] = {}
    for op in ops:
        counts[op.learner] = counts.get(op.learner, 0) + 1
    for learner in sorted(counts, key=lambda x: (-counts[x], x)):
        client_of[learner] = min(range(n), key=load.__getitem__)
        load[client_of[learner]] += counts[learner]
    return [[op for op in ops if client_of[op.learner] == i] for i in range(n)]


def run_client(client: LearnerClient, ops: Sequence[Op], ids: Sequence[str], progress: Progress) -> None:
    try:
        for op in ops:
            learner_id = ids[op.learner]
            if op.kind == "register":
                client.register(learner_id, op.events)
            elif op.kind == "append":
                client.append(learner_id, op.events)
            else:
                history_len, _ = client.predict(learner_id)
                # read-your-writes: whichever replica answered, it saw every acknowledged event
                assert history_len == len(client.log[learner_id]), learner_id
            progress.tick()
    finally:
        client.close()


def learner_owned_by(pod: Process, addresses: Sequence[str], prefix: str) -> str:
    return next(x for x in (f"{prefix}{k}" for k in range(10_000)) if owner_of(addresses, x) == pod.address)


def rebuilds_since(pod: Process, baseline: dict[str, float]) -> dict[str, int]:
    return {k: int(v - baseline.get(k, 0)) for k, v in sorted(rebuild_reasons(pod).items())}


def summary(
    title: str,
    tally: Tally,
    gateway: Metrics,
    pods: Sequence[Process],
    baselines: dict[str, dict[str, float]],
) -> str:
    lines = [title, "  client saw: " + ", ".join(f"{k}: {n}" for k, n in sorted(tally.counts.items()))]
    routed = gateway.by("lyceum_gateway_routed_requests_total", "target", service="predictor")
    rebinds = gateway.by("lyceum_gateway_rebinds_total", "reason", service="predictor")
    failovers = gateway.value("lyceum_gateway_failovers_total", service="predictor")
    lines.append(f"  gateway: routed {routed}; rebinds {rebinds}; failovers {failovers:g}")
    for pod in pods:
        reasons = rebuilds_since(pod, baselines[pod.name])
        lines.append(f"  {pod.name}: rebuilds {reasons}; resident learners {resident(pod):g}")
    return "\n".join(lines)


def test_killing_the_hot_owner_loses_no_acknowledged_update(
    fleet: Fleet, predictors: list[Process], test_checkpoint: Path, postgres_url: str
) -> None:
    pods = predictors
    members = fleet.membership("predictors", pods)
    gateway = fleet.gateway("gateway", predictors=members).start()
    wait_replicas(gateway, "predictor", serving=3)
    addresses = [p.address for p in pods]
    prefix = f"chaos-{uuid.uuid4().hex[:6]}-"  # the session's database is shared
    ids = [f"{prefix}{i:02d}" for i in range(N_LEARNERS)]
    hot = next(p for p in pods if p.address == owner_of(addresses, ids[0]))
    survivors = [p for p in pods if p is not hot]
    ops = plan(SEED)
    tally, log = Tally(), {}
    probe_tally = Tally()
    probe_id = learner_owned_by(hot, addresses, f"{prefix}probe-")
    with LearnerClient(gateway.url, probe_tally, log) as prober:
        prober.register(probe_id, [("t00", 1.0)])

    baselines = {pod.name: rebuild_reasons(pod) for pod in pods}  # the pool's processes served earlier tests
    progress = Progress()
    with ThreadPoolExecutor(N_CLIENTS) as pool:
        clients = [
            pool.submit(run_client, LearnerClient(gateway.url, tally, log), shard_ops, ids, progress)
            for shard_ops in shard(ops, N_CLIENTS)
        ]
        killed_at = progress.wait(KILL_AT * len(ops), clients)
        # Freeze the hot owner, so that the clients' calls to it and two probes (a prediction of the hottest
        # learner, an append to a learner it owns) are surely in flight on it, then kill it: the prediction
        # must be re-sent elsewhere (a failover), the append answered 503 (it may have run), never re-sent.
        hot.pause()
        with (
            ThreadPoolExecutor(2) as probes,
            LearnerClient(gateway.url, probe_tally, log) as reader,
            LearnerClient(gateway.url, probe_tally, log) as writer,
        ):
            predict_probe = probes.submit(reader.predict, ids[0])
            append_probe = probes.submit(writer.append, probe_id, [("t01", 0.0)])
            # not an assertion: time for the gateway to send the probes to the frozen pod
            time.sleep(FROZEN_S)
            assert not predict_probe.done() and not append_probe.done()
            hot.kill()
            predict_probe.result()
            append_probe.result()
        restarted_at = progress.wait(RESTART_AT * len(ops), clients)
        hot.start()  # the same ports: it rejoins under the same address
        baselines[hot.name] = {}  # a new process counts from zero
        for future in clients:
            future.result()

    wait_replicas(gateway, "predictor", serving=3)
    before = gateway.metrics()
    with LearnerClient(gateway.url, tally, log) as reader:
        final = {learner_id: reader.predict(learner_id) for learner_id in log}
    after = gateway.metrics()
    print(
        "\n"
        + summary(
            f"predictor chaos: {N_LEARNERS} learners (Zipf s={ZIPF_S}), {N_CLIENTS} clients, {len(ops)} ops; "
            f"{hot.name} (owner of the hottest) frozen and SIGKILLed after op {killed_at}, "
            f"restarted after op {restarted_at}",
            Tally.merged(tally, probe_tally),
            after,
            pods,
            baselines,
        )
    )

    # The probes: the append was answered 503 once, found not applied, sent again and applied once.
    assert probe_tally["append 503"] == 1 and probe_tally["unknown append: not applied, resent"] == 1
    assert probe_tally["append 200"] == 1
    # No read was ever answered 503: the gateway re-sends what changes nothing.
    assert tally["predict 503"] + tally["get 503"] + probe_tally["predict 503"] == 0
    # No acknowledged update lost, none applied twice: the stored histories are exactly the clients' logs,
    # which are exactly the plan (every write eventually applied once).
    histories = planned_histories(ops)
    for index, learner_id in enumerate(ids):
        assert log[learner_id] == histories[index], learner_id
    database = create_engine(postgres_url)
    repository = LearnerRepository(database)
    for learner_id, events in log.items():
        assert repository.history(DEFAULT_TENANT, learner_id) == events, learner_id
        assert final[learner_id][0] == len(events), learner_id
    database.dispose()
    assert_like_fresh_rebuild(final, test_checkpoint, postgres_url)
    # The failure was seen and routed around.
    assert after.value("lyceum_gateway_rebinds_total", service="predictor", reason="pod_down") > 0
    assert after.value("lyceum_gateway_failovers_total", service="predictor") > 0
    assert sum(rebuilds_since(p, baselines[p.name]).get("failover", 0) for p in survivors) > 0
    # The returning owner serves its learners again: no call of the final round went elsewhere.
    assert after.total("lyceum_gateway_rebinds_total", service="predictor") == before.total(
        "lyceum_gateway_rebinds_total", service="predictor"
    )
    owned = sum(owner_of(addresses, learner_id) == hot.address for learner_id in log)
    assert resident(hot) == owned > 0  # a new process: only what it served since its restart


HISTORY = [("t00", 1.0), ("t03", 0.0), ("t03", 1.0), ("t07", 0.5), ("t15", 0.0)]
MORE = [("t01", 1.0), ("t02", 1.0), ("t01", 0.0)]


def test_an_owner_that_missed_appends_rebuilds_as_stale(
    fleet: Fleet, predictors: list[Process], test_checkpoint: Path, postgres_url: str
) -> None:
    a, b = predictors[:2]
    members = fleet.membership("predictors", [a, b])
    gateway = fleet.gateway("gateway", predictors=members).start()
    learner_id = learner_owned_by(a, [a.address, b.address], f"stale-{uuid.uuid4().hex[:6]}-")
    tally, log = Tally(), {}
    client = LearnerClient(gateway.url, tally, log)  # closed below
    resident_a, resident_b = resident(a), resident(b)
    client.register(learner_id, HISTORY)
    assert client.predict(learner_id)[0] == len(HISTORY)  # A holds a warm cache of 5 events
    assert (resident(a), resident(b)) == (resident_a + 1, resident_b)

    # A leaves the membership (as a pod the gateway cannot reach would): B serves the learner meanwhile
    version = membership_version(gateway)
    members.write([b])
    version = wait_version_above(gateway, version)
    client.append(learner_id, MORE)
    assert client.predict(learner_id)[0] == len(HISTORY) + len(MORE)
    assert resident(b) == resident_b + 1

    members.write([a, b])
    wait_version_above(gateway, version)
    stale = rebuild_reasons(a).get("stale", 0)
    served = client.predict(learner_id)
    client.close()

    assert rebuild_reasons(a).get("stale", 0) == stale + 1  # A saw its cache was behind the database
    assert served[0] == len(HISTORY) + len(MORE)
    assert_like_fresh_rebuild({learner_id: served}, test_checkpoint, postgres_url)
    assert tally.matching(" 503") == 0


def test_a_hung_owner_is_noticed_by_its_health_checks_and_routed_around(
    fleet: Fleet, predictors: list[Process], test_checkpoint: Path, postgres_url: str
) -> None:
    a, b = predictors[:2]
    gateway = fleet.gateway("gateway", predictors=[a, b]).start()
    learner_id = learner_owned_by(a, [a.address, b.address], f"hung-{uuid.uuid4().hex[:6]}-")
    tally, log = Tally(), {}
    client = LearnerClient(gateway.url, tally, log)  # closed below
    client.register(learner_id, HISTORY)
    wait_replicas(gateway, "predictor", serving=2)

    a.pause()  # SIGSTOP: its sockets stay open, it answers nothing (its connection alone looks alive)
    try:
        # Unanswered health Checks (3 x 1 s, each with a 2 s deadline) mark it down; no call needs to fail.
        wait_replicas(gateway, "predictor", serving=1)
        assert gateway.metrics().value("lyceum_gateway_replicas", service="predictor", state="down") == 1
        served = client.predict(learner_id)  # on B, rebuilt from the stored history
        client.append(learner_id, MORE)
    finally:
        a.resume()
    wait_replicas(gateway, "predictor", serving=2)
    after = client.predict(learner_id)  # back on A, which missed the append: rebuilt as stale
    client.close()

    assert served[0] == len(HISTORY) and after[0] == len(HISTORY) + len(MORE)
    assert_like_fresh_rebuild({learner_id: after}, test_checkpoint, postgres_url)
    assert tally.matching(" 503") == 0 and tally.matching(" 504") == 0
