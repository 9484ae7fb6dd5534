"""Routing through the gateway: predict throughput and latency with 1 vs N predictor replicas, and what
the first call after a failover costs (the learner's cache is rebuilt from its history on the next replica).

Real processes on loopback (scripts/fleet.py): N predictors over one database, one gateway routing by
rendezvous hashing, client threads calling `POST /v1/learners/{id}/predictions` on learners with `--history`
stored events each.

    python bench/routing.py [--replicas 3] [--learners 48] [--history 200] [--clients 8] [--seconds 10]

Prints, for 1 and N replicas: requests/s, p50 and p99 in ms, and the ratio N/1; then, with N replicas, the
latency of a warm predict vs the first predict after the owner is SIGKILLed (median and max over the killed
replica's learners) and the extra cost of that first call. On a machine with fewer cores than replicas the
replicas share the cores, so throughput cannot scale there: read the figures with `nproc` in mind.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from fleet import Fleet, Process, wait_until  # noqa: E402

from lyceum_core.identity import DEFAULT_TENANT  # noqa: E402
from lyceum_fleet.routing import owner, routing_key  # noqa: E402
from lyceum_ml.checkpoint import save_dfm  # noqa: E402
from lyceum_ml.dfm import DFM, DFMConfig, TaskVocab  # noqa: E402

TASKS = [f"task-{i:03d}" for i in range(128)]
CANDIDATES = TASKS[:8]


def write_model(path: Path, history: int) -> Path:
    torch.manual_seed(0)
    cfg = DFMConfig(
        n_tasks=len(TASKS), d_model=128, n_layer=4, n_head=4, n_kv_head=2, max_len=2 * history + 64
    )
    return save_dfm(path, DFM(cfg).eval(), TaskVocab(TASKS), {"name": "bench-routing", "version": "1"})


def register(client: httpx.Client, learners: list[str], history: int, seed: int) -> None:
    rng = random.Random(seed)
    for learner in learners:
        events = [{"task": rng.choice(TASKS), "outcome": float(rng.random() < 0.6)} for _ in range(history)]
        response = client.post("/v1/learners", json={"learner_id": learner, "history": events})
        assert response.status_code == 201, response.text


def predict_ms(client: httpx.Client, learner: str) -> float:
    start = time.perf_counter()
    response = client.post(f"/v1/learners/{learner}/predictions", json={"tasks": CANDIDATES})
    elapsed = (time.perf_counter() - start) * 1e3
    assert response.status_code == 200, response.text
    return elapsed


def load(url: str, learners: list[str], clients: int, seconds: float) -> tuple[float, float, float]:
    """Closed-loop load from `clients` threads for `seconds`: (requests/s, p50 ms, p99 ms)."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    stop = time.monotonic() + seconds

    def run(i: int) -> None:
        rng = random.Random(i)
        with httpx.Client(base_url=url, timeout=60) as client:
            while time.monotonic() < stop:
                latencies[i].append(predict_ms(client, rng.choice(learners)))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    merged = sorted(x for per in latencies for x in per)
    p99 = merged[min(len(merged) - 1, int(0.99 * len(merged)))]
    return len(merged) / elapsed, statistics.median(merged), p99


def start_fleet(fleet: Fleet, replicas: int, tag: str) -> tuple[list[Process], Process]:
    pods = fleet.start(*(fleet.predictor(f"{tag}-p{i}") for i in range(replicas)))
    gateway = fleet.gateway(f"{tag}-gw", predictors=pods).start()
    return pods, gateway


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--learners", type=int, default=48)
    parser.add_argument("--history", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="lyceum-bench-routing-") as tmp:
        work = Path(tmp)
        model = write_model(work / "model", args.history)
        env = {
            "LYCEUM_PREDICTOR_MODEL_PATH": str(model),
            "LYCEUM_PREDICTOR_DATABASE_URL": os.environ.get(
                "LYCEUM_BENCH_DATABASE_URL", f"sqlite:///{work / 'lyceum.db'}"
            ),
            "LYCEUM_PREDICTOR_WORKER_THREADS": "2",
            "LYCEUM_GATEWAY_LOG_LEVEL": "WARNING",
            "LYCEUM_PREDICTOR_LOG_LEVEL": "WARNING",
        }
        print(
            f"predict through the gateway: {args.learners} learners x {args.history} events, "
            f"{len(CANDIDATES)} candidate tasks, {args.clients} client threads x {args.seconds:g}s, "
            f"{os.cpu_count()} CPU cores"
        )
        results = {}
        with Fleet(work, env) as fleet:
            for replicas in (1, args.replicas):
                tag = f"r{replicas}"
                pods, gateway = start_fleet(fleet, replicas, tag)
                learners = [f"{tag}-learner-{i}" for i in range(args.learners)]
                with httpx.Client(base_url=gateway.url, timeout=60) as client:
                    register(client, learners, args.history, seed=replicas)
                    for learner in learners:  # warm every cache on its owner
                        predict_ms(client, learner)
                results[replicas] = load(gateway.url, learners, args.clients, args.seconds)
                rps, p50, p99 = results[replicas]
                print(f"  {replicas} replica(s): {rps:8.1f} req/s   p50 {p50:7.2f} ms   p99 {p99:7.2f} ms")
                if replicas == args.replicas:
                    failover(pods, gateway, learners, args.history)
                for process in (gateway, *pods):
                    if process.running:
                        process.stop()
        one, many = results[1], results[args.replicas]
        print(
            f"  {args.replicas} vs 1: throughput x{many[0] / one[0]:.2f}, p50 x{many[1] / one[1]:.2f}, "
            f"p99 x{many[2] / one[2]:.2f}"
        )


def failover(pods: list[Process], gateway: Process, learners: list[str], history: int) -> None:
    """Kills the owner of the most learners; times their first call elsewhere vs a warm call."""
    addresses = [p.address for p in pods]
    owners = {x: owner(addresses, routing_key(DEFAULT_TENANT, x)) for x in learners}  # as the gateway routes
    victim = max(pods, key=lambda p: sum(a == p.address for a in owners.values()))
    moved = [x for x in learners if owners[x] == victim.address]
    with httpx.Client(base_url=gateway.url, timeout=60) as client:
        warm = statistics.median(predict_ms(client, x) for x in moved for _ in range(3))
        victim.kill()
        first_at_once = predict_ms(client, moved[0])  # before the gateway's watch noticed: refused, re-sent
        down = {"service": "predictor", "state": "down"}
        wait_until(
            lambda: gateway.metrics().value("lyceum_gateway_replicas", **down) >= 1,
            what="the gateway to see the replica down",
        )
        first = [predict_ms(client, x) for x in moved[1:]]
        second = [predict_ms(client, x) for x in moved[1:]]
    print(
        f"  failover at history {history}: warm predict {warm:.2f} ms; first predict "
        f"on the next replica (rebuild) median {statistics.median(first):.2f} ms, max {max(first):.2f} ms "
        f"(extra {statistics.median(first) - warm:+.2f} ms); the call racing the kill "
        f"{first_at_once:.2f} ms; second call {statistics.median(second):.2f} ms "
        f"[{len(moved)} learners moved]"
    )


if __name__ == "__main__":
    main()
