"""Session routing under failure, with real processes: two samplers sharing one Redis session store behind a
gateway. A seeded, Zipf-skewed workload creates sessions, appends tokens by id and reads distributions while
the owner of the busiest sessions is frozen, SIGKILLed and restarted. Every acknowledged token must survive,
exactly once and in order, and every distribution must equal a fresh single-pod rebuild from the store."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fixtures.fleet import Progress, SessionClient, Tally, fresh_sampler, owner_of, wait_replicas
from fixtures.sampler import LYCEUM_MODEL
from fleet import Fleet, Metrics, Process, wait_until

from lyceum_core.identity import DEFAULT_TENANT
from lyceum_sampler.views import Distribution

pytestmark = pytest.mark.integration

SEED = 1_717
N_SESSIONS = 16
ZIPF_S = 1.1
N_OPS = 240
N_CLIENTS = 3
KILL_AT, RESTART_AT = 0.35, 0.70
FROZEN_S = 0.5
PROMPTS = ["Once upon a time", "The little dog", "Lily and Ben went", "One day, a cat"]
TOKENS = 384  # the tiny LM's BPE vocabulary
MAX_GENERATED = 48  # well inside its context of 96 tokens
THRESHOLD = 0.02
TOL = 1e-5


@dataclass(frozen=True)
class Op:
    session: int  # index: 0 is the busiest
    kind: str  # "create" | "append" | "distribution"
    prompt: str = ""
    token_id: int = -1


def plan(seed: int) -> list[Op]:
    """Sessions drawn Zipf(s) by rank; a session's first op creates it, then appends (a random token id, while
    under `MAX_GENERATED`) and distribution reads. Sessions never drawn are created at the end."""
    rng = random.Random(seed)
    weights = [1 / (rank + 1) ** ZIPF_S for rank in range(N_SESSIONS)]
    generated: dict[int, int] = {}
    ops = []
    for session in rng.choices(range(N_SESSIONS), weights, k=N_OPS):
        if session not in generated:
            ops.append(Op(session, "create", prompt=rng.choice(PROMPTS)))
            generated[session] = 0
        elif rng.random() < 0.55 and generated[session] < MAX_GENERATED:
            ops.append(Op(session, "append", token_id=rng.randrange(TOKENS)))
            generated[session] += 1
        else:
            ops.append(Op(session, "distribution"))
    ops += [Op(s, "create", prompt=rng.choice(PROMPTS)) for s in range(N_SESSIONS) if s not in generated]
    return ops


def shard(ops: Sequence[Op], n: int) -> list[list[Op]]:
    """Each session's ops go to one client, in plan order (sessions dealt round-robin by rank)."""
    return [[op for op in ops if op.session % n == i] for i in range(n)]


def run_client(client: SessionClient, ops: Sequence[Op], ids: dict[int, str], progress: Progress) -> None:
    try:
        for op in ops:
            if op.kind == "create":
                ids[op.session] = client.create(LYCEUM_MODEL, op.prompt)
            elif op.kind == "append":
                client.append(ids[op.session], op.token_id)
            else:
                got = client.distribution(ids[op.session], THRESHOLD)
                assert got["context_len"] == len(client.log[ids[op.session]])  # read-your-writes
            progress.tick()
    finally:
        client.close()


def session_owned_by(pod: Process, addresses: Sequence[str], client: SessionClient, prompt: str) -> str:
    """Creates sessions until one's id is owned by `pod` (ids are random; half of them are)."""
    while True:
        session_id = client.create(LYCEUM_MODEL, prompt)
        if owner_of(addresses, session_id) == pod.address:
            return session_id


def assert_same_distribution(served: dict[str, Any], fresh: Distribution) -> None:
    """A distribution through the gateway (JSON) equals a fresh engine's, up to float noise."""
    assert [p["token"]["id"] for p in served["above"]] == [p.token.id for p in fresh.above]
    assert served["other"]["count"] == fresh.other_count
    assert served["context_len"] == fresh.context_len
    assert abs(served["other"]["probability"] - fresh.other_probability) < TOL
    pairs = zip([*served["above"], *served["other"]["top"]], [*fresh.above, *fresh.other_top], strict=True)
    for got, want in pairs:
        assert got["token"]["id"] == want.token.id
        assert abs(got["probability"] - want.probability) < TOL, (got, want)


def summary(title: str, tally: Tally, gateway: Metrics, pods: Sequence[Process]) -> str:
    lines = [title, "  client saw: " + ", ".join(f"{k}: {n}" for k, n in sorted(tally.counts.items()))]
    routed = gateway.by("lyceum_gateway_routed_requests_total", "target", service="sampler")
    rebinds = gateway.by("lyceum_gateway_rebinds_total", "reason", service="sampler")
    failovers = gateway.value("lyceum_gateway_failovers_total", service="sampler")
    lines.append(f"  gateway: routed {routed}; rebinds {rebinds}; failovers {failovers:g}")
    for pod in pods:
        metrics = pod.metrics()
        reasons = {
            k: int(v) for k, v in sorted(metrics.by("lyceum_sampler_cache_rebuilds_total", "reason").items())
        }
        sessions = metrics.value("lyceum_sampler_resident_sessions")
        lines.append(f"  {pod.name}: rebuilds {reasons}; resident sessions {sessions:g}")
    return "\n".join(lines)


def test_killing_the_busiest_sampler_loses_no_acknowledged_token(
    fleet: Fleet, sampler_env: dict[str, str], tiny_lyceum_lm_dir: Path, sampler_key_prefix: str
) -> None:
    pods = fleet.start(*(fleet.sampler(f"sampler-{i}", sampler_env) for i in range(2)))
    gateway = fleet.gateway("gateway", samplers=fleet.membership("samplers", pods)).start()
    wait_replicas(gateway, "sampler", serving=2)
    addresses = [p.address for p in pods]
    ops = plan(SEED)
    tally, probe_tally = Tally(), Tally()
    log: dict[str, list[int]] = {}
    ids: dict[int, str] = {}

    progress = Progress()
    with ThreadPoolExecutor(N_CLIENTS) as pool:
        clients = [
            pool.submit(run_client, SessionClient(gateway.url, tally, log), shard_ops, ids, progress)
            for shard_ops in shard(ops, N_CLIENTS)
        ]
        killed_at = progress.wait(KILL_AT * len(ops), clients)
        wait_until(lambda: 0 in ids, 30, what="the busiest session created")
        hot = next(p for p in pods if p.address == owner_of(addresses, ids[0]))
        prober = SessionClient(gateway.url, probe_tally, log)
        probe_id = session_owned_by(hot, addresses, prober, PROMPTS[0])
        # As with the predictors: freeze the owner so that calls are surely in flight on it, then kill it.
        hot.pause()
        with ThreadPoolExecutor(2) as probes, SessionClient(gateway.url, probe_tally, log) as reader:
            read_probe = probes.submit(reader.distribution, ids[0], THRESHOLD)
            append_probe = probes.submit(prober.append, probe_id, 42)
            # not an assertion: time for the gateway to send the probes to the frozen pod
            time.sleep(FROZEN_S)
            assert not read_probe.done() and not append_probe.done()
            hot.kill()
            read_probe.result()
            append_probe.result()
        prober.close()
        restarted_at = progress.wait(RESTART_AT * len(ops), clients)
        hot.start()
        for future in clients:
            future.result()

    wait_replicas(gateway, "sampler", serving=2)
    with SessionClient(gateway.url, tally, log) as reader:
        final = {sid: (reader.tokens(sid), reader.distribution(sid, THRESHOLD)) for sid in log}
    metrics = gateway.metrics()
    print(
        "\n"
        + summary(
            f"sampler chaos: {len(log)} sessions (Zipf s={ZIPF_S} over {N_SESSIONS}, plus probes), "
            f"{N_CLIENTS} clients, {len(ops)} ops; {hot.name} (owner of the busiest) frozen and SIGKILLed "
            f"after op {killed_at}, restarted after op {restarted_at}",
            Tally.merged(tally, probe_tally),
            metrics,
            pods,
        )
    )

    assert probe_tally["append 503"] == 1 and probe_tally["unknown append: not applied, resent"] == 1
    assert tally["distribution 503"] + tally["get 503"] + probe_tally["distribution 503"] == 0
    # every acknowledged token is stored, once, in order: the clients' logs, which are the plan's appends
    fresh = fresh_sampler(tiny_lyceum_lm_dir, sampler_key_prefix)
    for index, session_id in ids.items():
        appended = [op.token_id for op in ops if op.session == index and op.kind == "append"]
        assert log[session_id] == [*fresh.get(DEFAULT_TENANT, session_id).prompt_ids, *appended], session_id
    for session_id, (tokens, _) in final.items():
        assert tokens == log[session_id], session_id
    for session_id, (_, served) in final.items():
        assert_same_distribution(served, fresh.distribution(DEFAULT_TENANT, session_id, THRESHOLD, 5))
    fresh.store.close()
    assert metrics.value("lyceum_gateway_rebinds_total", service="sampler", reason="pod_down") > 0
    assert metrics.value("lyceum_gateway_failovers_total", service="sampler") > 0
