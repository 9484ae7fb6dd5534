"""Soak: Lyceum through its gateway under a mixed, skewed load for a bounded time, watching errors, latency
and every process's memory. Loopback only (real processes, scripts/fleet.py; a fresh PostgreSQL database).

    python bench/predictor_soak.py [--duration 600] [--clients 64] [--learners 1000] [--events 200]

Workload: 70% 1-task predictions, 10% 8-task predictions, 15% appends (1 event), 5% forecasts (S=8, L=8), at
`--clients` closed-loop clients, on `--learners` learners (`--events` seeded events each) drawn Zipf-skewed
(s=1.1: the hottest learners take most calls, and grow past the model's context if the run is long). The
predictor's KV-cache budget holds about a third of the learners (`--cache-fraction`; bytes per learner from
the model's shape and the history length), so cold learners are evicted and rebuilt throughout.

Every `--interval` seconds a row: operations, errors, p50 and p99 (ms), and the resident memory (RSS) of the
gateway and the predictor. At the end: total errors (must be 0: exit code 1 otherwise), each process's RSS
growth after the warm-up (the first 20% of the run), and p99 of the first half against the second.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import math
import os
import random
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _servers as S  # noqa: E402
from fleet import Fleet  # noqa: E402

MIX = {"predict1": 0.70, "predict8": 0.10, "append": 0.15, "forecast": 0.05}
FORECAST = (8, 8)
TENANT, API_KEY = "soak", "bench-soak-key"
WARM_UP = 0.2  # the share of the run after which memory must stay flat


class Window:
    """Latencies and errors since the last row, and over the whole run by half."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors = 0
        self.halves: tuple[list[float], list[float]] = ([], [])
        self.total_errors = 0
        self.total_ops = 0
        self.by_op: dict[str, list[float]] = {op: [] for op in MIX}  # the whole run, per operation

    def take(self) -> tuple[list[float], int]:
        latencies, errors = self.latencies, self.errors
        self.latencies, self.errors = [], 0
        return latencies, errors


async def drive(
    pool: S.HttpPool,
    learners: list[str],
    tasks: list[str],
    args: argparse.Namespace,
    window: Window,
    start: float,
    stop: float,
) -> None:
    """The closed-loop clients, until `stop` (a `time.perf_counter()` instant)."""
    ops, weights = list(MIX), list(itertools.accumulate(MIX.values()))
    zipf = list(itertools.accumulate(1.0 / (k**args.zipf_s) for k in range(1, len(learners) + 1)))
    half = start + (stop - start) / 2
    shown: set[tuple[str, int]] = set()

    async def client(i: int) -> None:
        rng = random.Random(args.seed * 100_003 + i)
        while time.perf_counter() < stop:
            op = ops[bisect.bisect(weights, rng.random() * weights[-1])]
            learner = learners[bisect.bisect(zipf, rng.random() * zipf[-1])]
            path, body = S.http_request(op, learner, S.op_args(op, rng, tasks, FORECAST))
            began = time.perf_counter()
            try:
                status, answer = await pool.request("POST", path, body)
            except (OSError, asyncio.IncompleteReadError) as exc:
                status, answer = 0, repr(exc).encode()
            ended = time.perf_counter()
            window.total_ops += 1
            if status == 200:
                ms = (ended - began) * 1e3
                window.latencies.append(ms)
                window.by_op[op].append(ms)
                window.halves[began >= half].append(ms)
            else:
                window.errors += 1
                window.total_errors += 1
                if (op, status) not in shown:  # each kind of failure once
                    shown.add((op, status))
                    print(f"    {op} answered {status}: {answer[:200]!r}", flush=True)

    await asyncio.gather(*(client(i) for i in range(args.clients)))


async def soak(args: argparse.Namespace) -> int:
    tasks = S.demo_tasks()
    learners = [f"learner-{i:05d}" for i in range(args.learners)]
    data = S.histories(learners, args.events, tasks, seed=args.seed)
    with tempfile.TemporaryDirectory(prefix="lyceum-bench-soak-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        model, cfg = S.write_model(work / "model", args.model_shape)
        db = args.database_url or stack.enter_context(S.postgres_database())
        per_learner = S.kv_bytes_per_learner(cfg, args.events)
        resident = math.ceil(args.learners * args.cache_fraction)
        budget = resident * per_learner
        env = S.lyceum_env(model, db, cache_budget_bytes=str(budget), torch_threads=str(args.torch_threads))
        fleet = stack.enter_context(Fleet(work, env))
        pod = fleet.start(fleet.predictor("predictor"))[0]
        gateway = fleet.gateway("gateway", predictors=[pod], env=S.gateway_env(db, TENANT, API_KEY)).start()
        print(
            f"soak: {args.model_shape} DFM, {args.learners} learners x {args.events} events (Zipf s="
            f"{args.zipf_s:g}), {args.clients} clients, {args.duration:g}s; "
            f"KV budget {budget / 2**20:.1f} MiB = {resident} learners x {per_learner / 2**10:.0f} KiB; "
            f"gateway pid {gateway.pid}, predictor pid {pod.pid}; {os.cpu_count()} CPU cores",
            flush=True,
        )
        pool = S.HttpPool(gateway.url, args.clients, {"Authorization": f"Bearer {API_KEY}"})
        began = time.perf_counter()
        await S.register(pool, data)
        print(f"registered {args.learners} learners in {time.perf_counter() - began:.1f}s", flush=True)

        window = Window()
        start = time.perf_counter()
        stop = start + args.duration
        load = asyncio.ensure_future(drive(pool, learners, tasks, args, window, start, stop))
        rows: list[tuple[float, int, int]] = []  # (seconds into the run, gateway RSS, predictor RSS)
        header = f"{'t s':>6} {'ops':>7} {'err':>5} {'p50 ms':>8} {'p99 ms':>8}"
        print(f"\n{header} {'gw RSS MiB':>11} {'pred RSS MiB':>13}")
        next_row = start + args.interval
        while not load.done():
            # A row every interval; the last one when the clients' final calls are answered.
            await asyncio.wait([load], timeout=max(0.0, next_row - time.perf_counter()))
            next_row += args.interval
            latencies, errors = window.take()
            now = time.perf_counter() - start
            gw_rss, pred_rss = S.rss_bytes(gateway.pid), S.rss_bytes(pod.pid)
            rows.append((now, gw_rss, pred_rss))
            s = S.summarize(latencies, errors, args.interval)
            print(
                f"{now:6.0f} {s.n + errors:7d} {errors:5d} {s.p50_ms:8.2f} {s.p99_ms:8.2f} "
                f"{gw_rss / 2**20:11.1f} {pred_rss / 2**20:13.1f}",
                flush=True,
            )
        await load
        await pool.aclose()

    first, second = (S.summarize(h, 0, 1.0) for h in window.halves)
    warm = next((r for r in rows if r[0] >= WARM_UP * args.duration), rows[0])
    end = rows[-1]
    print(f"\ntotal: {window.total_ops} operations, {window.total_errors} errors")
    print(
        f"RSS growth after warm-up (from {warm[0]:.0f}s to {end[0]:.0f}s): gateway "
        f"{(end[1] - warm[1]) / 2**20:+.1f} MiB, predictor {(end[2] - warm[2]) / 2**20:+.1f} MiB "
        f"(KV budget {budget / 2**20:.1f} MiB)"
    )
    print(
        f"p99 first half {first.p99_ms:.2f} ms, second half {second.p99_ms:.2f} ms "
        f"(x{second.p99_ms / first.p99_ms:.2f}); p50 {first.p50_ms:.2f} / {second.p50_ms:.2f} ms"
    )
    for op, latencies in window.by_op.items():
        s = S.summarize(latencies, 0, args.duration)
        print(f"  {op:9} {s.n:7d} ops  p50 {s.p50_ms:8.2f} ms  p99 {s.p99_ms:8.2f} ms")
    return 1 if window.total_errors else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds per row")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--learners", type=int, default=1000)
    parser.add_argument("--events", type=int, default=200, help="events per learner at the start")
    parser.add_argument("--zipf-s", type=float, default=1.1)
    parser.add_argument("--cache-fraction", type=float, default=1 / 3, help="learners the KV budget holds")
    parser.add_argument("--model-shape", choices=sorted(S.SHAPES), default="demo")
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--database-url", default=None, help="the predictor's database (default: a fresh PostgreSQL one)"
    )
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        sys.exit(asyncio.run(soak(args)))
    sys.exit(uvloop.run(soak(args)))


if __name__ == "__main__":
    main()
