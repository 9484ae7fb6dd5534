"""A predictor fleet that changes shape under load, with real processes behind a real gateway: a fourth
predictor joining through the membership file takes over about a quarter of the learners (and only those it
now owns), answering as a fresh rebuild would; a predictor told to stop (SIGTERM) drains without failing a
single call."""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fixtures.fleet import (
    DRAIN_DELAY_S,
    DRAIN_GRACE_S,
    Event,
    LearnerClient,
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
from fleet import Fleet, Process, wait_until

from lyceum_core.identity import DEFAULT_TENANT
from lyceum_db.engine import create_engine
from lyceum_db.repositories.learners import LearnerRepository

pytestmark = pytest.mark.integration

SEED = 7
N_LEARNERS = 400
N_CLIENTS = 4


def histories(ids: Sequence[str], seed: int) -> dict[str, list[Event]]:
    rng = random.Random(seed)
    return {
        x: [(rng.choice(TEST_TASKS), rng.choice((0.0, 1.0))) for _ in range(rng.randint(1, 3))] for x in ids
    }


def store_all(database_url: str, learners: dict[str, list[Event]]) -> None:
    """Stores the learners straight into the database (as if registered long ago: no pod holds a cache)."""
    engine = create_engine(database_url)
    repository = LearnerRepository(engine)
    for learner_id, history in learners.items():
        repository.create(DEFAULT_TENANT, learner_id, history)
    engine.dispose()


def register_all(
    url: str, tally: Tally, log: dict[str, list[Event]], learners: dict[str, list[Event]]
) -> None:
    """Registers the learners through the gateway from `N_CLIENTS` threads."""
    ids = list(learners)

    def run(part: Sequence[str]) -> None:
        client = LearnerClient(url, tally, log)
        for learner_id in part:
            client.register(learner_id, learners[learner_id])
        client.close()

    with ThreadPoolExecutor(N_CLIENTS) as pool:
        for future in [pool.submit(run, ids[i::N_CLIENTS]) for i in range(N_CLIENTS)]:
            future.result()


def test_a_new_predictor_takes_over_only_the_learners_it_now_owns(
    fleet: Fleet,
    predictors: list[Process],
    predictor_env: dict[str, str],
    test_checkpoint: Path,
    postgres_url: str,
) -> None:
    members = fleet.membership("predictors", predictors)
    gateway = fleet.gateway("gateway", predictors=members).start()
    newcomer = fleet.predictor("predictor-new", predictor_env).start(wait=False)  # loads meanwhile
    prefix = f"scale-{uuid.uuid4().hex[:6]}-"
    learners = histories([f"{prefix}{i:03d}" for i in range(N_LEARNERS)], SEED)
    store_all(postgres_url, learners)
    newcomer.wait_ready()

    before = [p.address for p in predictors]
    after = [*before, newcomer.address]
    moved = [x for x in learners if owner_of(before, x) != owner_of(after, x)]
    assert {owner_of(after, x) for x in moved} == {newcomer.address}
    assert 0.15 <= len(moved) / N_LEARNERS <= 0.35, len(moved)

    version = membership_version(gateway)
    members.write(after)
    wait_version_above(gateway, version)
    wait_replicas(gateway, "predictor", serving=4)
    routed = gateway.metrics()
    tally, log = Tally(), {x: list(events) for x, events in learners.items()}
    client = LearnerClient(gateway.url, tally, log)
    served = {x: client.predict(x) for x in moved}
    unmoved = [x for x in learners if x not in set(moved)][:40]
    for x in unmoved:
        client.predict(x)
    client.close()

    # every moved learner was served by the newcomer (rebuilt there from the database), nothing else was
    assert resident(newcomer) == len(moved)
    rebuilds = rebuild_reasons(newcomer)
    assert rebuilds == {"cold": len(moved)}
    metrics = gateway.metrics()
    for name in ("lyceum_gateway_rebinds_total", "lyceum_gateway_failovers_total"):
        assert metrics.total(name, service="predictor") == routed.total(name, service="predictor"), name
    assert_like_fresh_rebuild(served, test_checkpoint, postgres_url)
    assert set(tally.counts) == {"predict 200"}
    print(
        f"\nscale-out: {N_LEARNERS} learners over 3 predictors; a 4th joined and took over {len(moved)} "
        f"({len(moved) / N_LEARNERS:.1%}), all its own; its rebuilds {rebuilds}"
    )


def draining(gateway: Process) -> float:
    return gateway.metrics().value("lyceum_gateway_replicas", service="predictor", state="draining")


def test_a_draining_predictor_fails_no_call(
    fleet: Fleet, predictors: list[Process], test_checkpoint: Path, postgres_url: str
) -> None:
    leaving, staying = predictors[:2]
    gateway = fleet.gateway("gateway", predictors=[leaving, staying]).start()
    wait_replicas(gateway, "predictor", serving=2)
    prefix = f"drain-{uuid.uuid4().hex[:6]}-"
    ids = [f"{prefix}{i:02d}" for i in range(12)]
    pair = [leaving.address, staying.address]
    assert {owner_of(pair, x) for x in ids} == set(pair)
    tally, log = Tally(), {}
    register_all(gateway.url, tally, log, {x: [("t00", 1.0)] for x in ids})
    stop = threading.Event()
    ops = [0] * 3

    def run(i: int) -> None:
        """Appends (while under the history limit) and predictions, round-robin over its own learners."""
        client = LearnerClient(gateway.url, tally, log)
        rng = random.Random(i)
        mine = ids[i::3]
        while not stop.is_set():
            learner_id = mine[ops[i] % len(mine)]
            if rng.random() < 0.5 and len(log[learner_id]) < MAX_HISTORY_LEN - 4:
                client.append(learner_id, [(rng.choice(TEST_TASKS), rng.choice((0.0, 1.0)))])
            else:
                assert client.predict(learner_id)[0] == len(log[learner_id])
            ops[i] += 1
        client.close()

    def each_did(n: int) -> bool:
        return all(done >= n for done in ops) or any(f.done() for f in workers)

    with ThreadPoolExecutor(3) as pool:
        workers = [pool.submit(run, i) for i in range(3)]
        try:
            wait_until(lambda: each_did(10), 60, what="a steady workload")
            leaving.terminate()
            # its health turns NOT_SERVING and the gateway moves its learners away while it still serves
            wait_until(
                lambda: draining(gateway) == 1 or not leaving.running,
                DRAIN_DELAY_S + DRAIN_GRACE_S + 10,
                what="the gateway seeing the predictor drain",
            )
            exit_code = leaving.wait(timeout_s=DRAIN_DELAY_S + DRAIN_GRACE_S + 10)
            after_exit = min(ops)
            wait_until(lambda: each_did(after_exit + 10), 60, what="more calls after the exit")
        finally:
            stop.set()
        for future in workers:
            future.result()

    metrics = gateway.metrics()
    rebinds = metrics.by("lyceum_gateway_rebinds_total", "reason", service="predictor")
    print(
        f"\ndrain: {sum(ops)} calls from 3 clients while {leaving.name} drained; "
        f"client saw {dict(tally.counts)}; gateway rebinds {rebinds}"
    )
    assert exit_code == 0, leaving.log_tail()
    assert {key.split()[1] for key in tally.counts} <= {"200", "201"}, tally.counts
    assert rebinds.get("draining", 0) > 0
    client = LearnerClient(gateway.url, tally, log)
    served = {x: client.predict(x) for x in ids}
    client.close()
    assert_like_fresh_rebuild(served, test_checkpoint, postgres_url)
