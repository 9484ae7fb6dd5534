"""Predictor throughput at 64 concurrent clients: Lyceum through the gateway (HTTP `/v1`), Lyceum's predictor
called directly over gRPC, and a reference server built the way DFM-Server v0.1 is, on the same weights.

    python bench/predictor_throughput.py [--duration 10] [--clients 64] [--model-shape demo|large]
        [--batching-compare] [--clients 1 for the unloaded latencies] [--profile-gateway stacks.txt]

Workload: `--learners` (64) learners with `--events` (200) seeded random events each, from the demo model's
task vocabulary; operations: 1-task predict, 8-task predict, append (1 event), forecast (S=32, L=16). Each
(system, operation) runs for `--duration` seconds in total, split into `--rounds` slices interleaved across
the systems (a, b, c, a, b, c, ...) so that drift on a shared machine hits each alike. Closed loop: every
client sends its next request when the previous one is answered, to a random learner. Besides req/s, p50
and p99, the table gives the CPU each server process spent per request (from /proc: on 2 cores, where all of
them and the client share the CPU, the throughput ratios follow these), and `--profile-gateway` writes
py-spy's stacks of the gateway during the first operation (requirements/dev.txt has py-spy).

The reference (c) is defined with this bench (bench/_reference_server.py): one FastAPI + uvicorn process,
per-learner KV caches in memory (lyceum_ml.dfm.inference prefill/extend), one forward per requested task (a
k-task predict is k calls of `inference.predict` on one task), appends extending the cache in memory,
forecasts forking the cache for all S sequences at once (as v0.1's BatchedKVCache), no database, synchronous
endpoints in FastAPI's thread pool, bounded to one thread per core (`--reference-threads`; FastAPI's
default 40 threads thrash on 2 cores: at 64 clients the same server fell from ~300 to ~110 predictions/s
within seconds, its CPU per call from 3 to 13 ms).

Lyceum runs as real processes (scripts/fleet.py): one predictor over a fresh PostgreSQL database
($LYCEUM_BENCH_POSTGRES_URL, default the test server) and one gateway with authentication on (a tenant's key,
looked up as in production). `--batching-compare` serves Lyceum twice, with cross-learner batching on and
off (`LYCEUM_PREDICTOR_BATCH_MAX_ROWS` 1), and prints the on/off ratios. `--model-shape large` is
DFM-Server's default shape scaled to a CPU (12 layers, d 768, 6 heads), with random weights.

The client is this process: asyncio (uvloop when installed) with keep-alive HTTP/1.1 connections shared by
the clients (`_servers.HttpPool`, a minimal client: httpx.AsyncClient with 64 pooled connections cost 4-5 ms
of client CPU per request here, against 0.06 ms), and one gRPC channel. On a 2-core machine it competes with
the servers for the CPU (it is a separate process, so `top` shows its share); every system pays it alike,
except that a gRPC call costs the client more than an HTTP request (~0.2 ms). Torch runs one intra-op thread
in every server (`--torch-threads`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _servers as S  # noqa: E402
from fleet import Fleet  # noqa: E402

from lyceum_core.context import RequestContext  # noqa: E402

OPS = ("predict1", "predict8", "append", "forecast")
SYSTEMS = ("gateway", "direct", "reference")
FORECAST = (32, 16)  # S sequences of L tasks
TENANT, API_KEY = "bench", "bench-throughput-key"

Call = Callable[[str, str, random.Random], Awaitable[bool]]  # (op, learner, rng) -> answered 2xx


# --- requests ----------------------------------------------------------------------------------------


def http_system(pool: S.HttpPool, tasks: Sequence[str]) -> Call:
    shown: set[int] = set()

    async def call(op: str, learner: str, rng: random.Random) -> bool:
        path, body = S.http_request(op, learner, S.op_args(op, rng, tasks, FORECAST))
        status, answer = await pool.request("POST", path, body)
        if status != 200 and status not in shown:  # each kind of failure once
            shown.add(status)
            print(f"    {op} on {pool.host}:{pool.port} answered {status}: {answer[:200]!r}", flush=True)
        return status == 200

    return call


def grpc_system(address: str, tasks: Sequence[str]) -> tuple[Call, Callable[[], Awaitable[None]]]:
    """Calls on the predictor's own gRPC API, as the gateway would (the tenant's context as metadata)."""
    import grpc

    from lyceum_api.predictor.v1 import predictor_pb2 as pb
    from lyceum_api.predictor.v1 import predictor_pb2_grpc as pb_grpc

    channel = grpc.aio.insecure_channel(address)
    stub = pb_grpc.PredictorServiceStub(channel)
    ctx = RequestContext.new(TENANT)
    shown: set[grpc.StatusCode] = set()

    async def call(op: str, learner: str, rng: random.Random) -> bool:
        args = S.op_args(op, rng, tasks, FORECAST)
        md = ctx.metadata()
        try:
            if op in ("predict1", "predict8"):
                await stub.Predict(pb.PredictRequest(learner_id=learner, tasks=args), metadata=md, timeout=60)
            elif op == "append":
                events = [pb.Event(task=t, outcome=o) for t, o in args]
                await stub.AppendEvents(
                    pb.AppendEventsRequest(learner_id=learner, events=events), metadata=md, timeout=60
                )
            else:
                seqs = [pb.TaskSequence(tasks=seq) for seq in args]
                request = pb.ForecastRequest(
                    learner_id=learner, task_sequences=seqs, feedback=pb.FEEDBACK_MODE_EXPECTED
                )
                await stub.Forecast(request, metadata=md, timeout=60)
        except grpc.aio.AioRpcError as err:
            if err.code() not in shown:  # each kind of failure once
                shown.add(err.code())
                print(f"    {op} on {address} failed: {err.code().name}: {err.details()}", flush=True)
            return False
        return True

    return call, channel.close


# --- load --------------------------------------------------------------------------------------------


async def drive(
    call: Call, op: str, learners: Sequence[str], clients: int, seconds: float, seed: int
) -> tuple[list[float], int, float]:
    """Closed-loop load for `seconds`: (latencies in ms, errors, elapsed seconds)."""
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def client(i: int) -> None:
        nonlocal errors
        rng = random.Random(seed * 100_003 + i)
        while time.perf_counter() < stop:
            learner = rng.choice(learners)
            start = time.perf_counter()
            try:
                ok = await call(op, learner, rng)
            except (OSError, ConnectionError, asyncio.IncompleteReadError):
                ok = False
            if ok:
                latencies.append((time.perf_counter() - start) * 1e3)
            else:
                errors += 1

    start = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    return latencies, errors, time.perf_counter() - start


Servers = dict[str, dict[str, int | None]]  # system -> {process label: pid} of the servers it runs on
Cpu = dict[tuple[str, str], dict[str, float]]  # (system, op) -> {process label: CPU ms per request}


async def measure(
    systems: dict[str, Call], servers: Servers, learners: Sequence[str], args: argparse.Namespace
) -> tuple[dict[tuple[str, str], S.Summary], Cpu]:
    """Every operation on every system, interleaved in `args.rounds` slices; also the CPU each server process
    spent per request. With `args.profile_gateway`, py-spy samples the gateway during the first operation."""
    results: dict[tuple[str, str], S.Summary] = {}
    cpu: Cpu = {}
    slice_s = args.duration / args.rounds
    for i, op in enumerate(args.ops):
        spy = None
        if i == 0 and args.profile_gateway and "gateway" in servers:
            spy = profile(
                servers["gateway"]["gateway"], args.duration * len(systems) + 5, args.profile_gateway
            )
        acc: dict[str, tuple[list[float], int, float]] = {name: ([], 0, 0.0) for name in systems}
        spent: dict[str, dict[str, float]] = {name: dict.fromkeys(servers[name], 0.0) for name in systems}
        for r in range(args.rounds):
            for name, call in systems.items():
                before = {label: S.cpu_seconds(pid) for label, pid in servers[name].items()}
                lat, err, sec = await drive(call, op, learners, args.clients, slice_s, seed=r)
                for label, pid in servers[name].items():
                    spent[name][label] += S.cpu_seconds(pid) - before[label]
                old = acc[name]
                acc[name] = (old[0] + lat, old[1] + err, old[2] + sec)
        if spy is not None:
            spy.wait()
            print(f"  gateway profile ({op}): {args.profile_gateway} (py-spy raw stacks)", flush=True)
        for name, (lat, err, sec) in acc.items():
            s = results[(name, op)] = S.summarize(lat, err, sec)
            cpu[(name, op)] = {label: 1e3 * t / max(s.n, 1) for label, t in spent[name].items()}
            print(
                f"  {op:<9} {name:<10} {s.rps:8.1f} req/s  p50 {s.p50_ms:7.2f} ms  p99 {s.p99_ms:7.2f} ms"
                + (f"  errors {s.errors}" if s.errors else ""),
                flush=True,
            )
    return results, cpu


def profile(pid: int | None, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    """py-spy sampling process `pid` for `seconds` into `out` (collapsed stacks, one thread each)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if pid is None or not Path(spy).exists():
        print("  (no py-spy: pip install py-spy, see requirements/dev.txt)", flush=True)
        return None
    command = [spy, "record", "-p", str(pid), "-r", "250", "-d", str(int(seconds)), "-f", "raw"]
    command += ["-o", str(out), "--nonblocking", "--threads"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# --- setup -------------------------------------------------------------------------------------------


async def warm(call: Call, learners: Sequence[str]) -> None:
    """One predict per learner, so every cache is resident before anything is timed."""
    rng = random.Random(0)
    for i in range(0, len(learners), 8):
        oks = await asyncio.gather(*(call("predict1", x, rng) for x in learners[i : i + 8]))
        if not all(oks):
            raise RuntimeError("warm-up predictions failed")


def print_table(
    results: dict[tuple[str, str], S.Summary], cpu: Cpu, systems: Sequence[str], ops: Sequence[str]
) -> None:
    print(
        f"\n{'op':<9} {'system':<10} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'p99/p50':>8} {'errors':>7}"
        "  server CPU ms/request"
    )
    for op in ops:
        for name in systems:
            s = results[(name, op)]
            spent = " + ".join(f"{label} {ms:.2f}" for label, ms in cpu[(name, op)].items())
            print(
                f"{op:<9} {name:<10} {s.rps:8.1f} {s.p50_ms:8.2f} {s.p99_ms:8.2f} "
                f"{s.p99_ms / s.p50_ms:8.2f} {s.errors:7d}  {spent}"
            )
    if not {"gateway", "direct"} <= set(systems):
        return
    has_ref = "reference" in systems
    print(
        f"\n{'op':<9} "
        + (f"{'gw/ref':>8} {'direct/ref':>11} " if has_ref else "")
        + f"{'gw/direct':>10} {'gw added p50 ms':>16}"
    )
    for op in ops:
        gw, direct = results[("gateway", op)], results[("direct", op)]
        row = f"{op:<9} "
        if has_ref:
            ref = results[("reference", op)]
            row += f"{gw.rps / ref.rps:8.2f} {direct.rps / ref.rps:11.2f} "
        row += f"{gw.rps / direct.rps:10.2f} {gw.p50_ms - direct.p50_ms:16.2f}"
        print(row)


async def run_lyceum(
    fleet: Fleet,
    tag: str,
    predictor_env: dict[str, str],
    data: dict[str, list[tuple[str, float]]],
    args: argparse.Namespace,
    tasks: Sequence[str],
    reference: S.HttpServer | None,
    register: bool,
) -> tuple[dict[tuple[str, str], S.Summary], Cpu]:
    """Starts a predictor (with `predictor_env`) and a gateway, registers the learners (with `register`; the
    database keeps them for the next run), warms every cache and measures."""
    pod = fleet.start(fleet.predictor(f"{tag}-predictor", predictor_env))[0]
    gateway = fleet.gateway(f"{tag}-gateway", predictors=[pod], env=S.gateway_env(args.db, TENANT, API_KEY))
    gateway.start()
    print(f"[{tag}] predictor pid {pod.pid}, gateway pid {gateway.pid}", flush=True)
    auth = {"Authorization": f"Bearer {API_KEY}"}
    gw_pool = S.HttpPool(gateway.url, args.clients, auth)
    direct, close_direct = grpc_system(pod.address, tasks)
    systems: dict[str, Call] = {"gateway": http_system(gw_pool, tasks), "direct": direct}
    ref_pool = None
    try:
        if register:
            await S.register(gw_pool, data)
        if reference is not None:
            ref_pool = S.HttpPool(reference.url, args.clients)
            systems["reference"] = http_system(ref_pool, tasks)
        servers: Servers = {
            "gateway": {"gateway": gateway.pid, "predictor": pod.pid},
            "direct": {"predictor": pod.pid},
            "reference": {"reference": reference.pid if reference is not None else None},
        }
        learners = list(data)
        for call in systems.values():
            await warm(call, learners)
        return await measure(systems, servers, learners, args)
    finally:
        await gw_pool.aclose()
        if ref_pool is not None:
            await ref_pool.aclose()
        await close_direct()
        gateway.stop()
        pod.stop()


async def bench(args: argparse.Namespace) -> None:
    tasks = S.demo_tasks()
    learners = [f"learner-{i:04d}" for i in range(args.learners)]
    data = S.histories(learners, args.events, tasks, seed=1)
    with tempfile.TemporaryDirectory(prefix="lyceum-bench-throughput-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        model, cfg = S.write_model(work / "model", args.model_shape)
        args.db = args.database_url or stack.enter_context(S.postgres_database())
        print(
            f"{args.model_shape} DFM (d {cfg.d_model}, {cfg.n_layer} layers, {cfg.n_head} heads), "
            f"{args.learners} learners x {args.events} events, {args.clients} clients, "
            f"{args.duration:g}s per system and op in {args.rounds} slices, {os.cpu_count()} CPU cores",
            flush=True,
        )
        fleet = stack.enter_context(
            Fleet(work, S.lyceum_env(model, args.db, torch_threads=str(args.torch_threads)))
        )
        reference = S.HttpServer(
            [str(Path(__file__).with_name("_reference_server.py")), "--model", str(model)]
            + ["--torch-threads", str(args.torch_threads), "--threads", str(args.reference_threads)],
            work / "reference.log",
        ).start()
        stack.callback(reference.stop)
        print(f"[reference] pid {reference.pid}", flush=True)
        ref_pool = S.HttpPool(reference.url, 8)
        await S.register(ref_pool, data)
        await ref_pool.aclose()

        batching: dict[str, str] = {}
        if args.batch_max_rows is not None:
            batching["LYCEUM_PREDICTOR_BATCH_MAX_ROWS"] = str(args.batch_max_rows)
        if args.batch_max_delay_ms is not None:
            batching["LYCEUM_PREDICTOR_BATCH_MAX_DELAY_MS"] = str(args.batch_max_delay_ms)
        if args.batching_compare:
            batching.setdefault("LYCEUM_PREDICTOR_BATCH_MAX_ROWS", "32")
            batching.setdefault("LYCEUM_PREDICTOR_BATCH_MAX_DELAY_MS", "2")
        on, on_cpu = await run_lyceum(
            fleet, "on" if args.batching_compare else "lyceum", batching, data, args, tasks, reference, True
        )
        print_table(on, on_cpu, SYSTEMS, args.ops)
        if args.batching_compare:
            reference.stop()
            off, off_cpu = await run_lyceum(
                fleet, "off", {"LYCEUM_PREDICTOR_BATCH_MAX_ROWS": "1"}, data, args, tasks, None, False
            )
            print("\nbatching off:")
            print_table(off, off_cpu, ("gateway", "direct"), args.ops)
            print(f"\n{'op':<9} {'gw on/off':>10} {'direct on/off':>14}")
            for op in args.ops:
                gw = on[("gateway", op)].rps / off[("gateway", op)].rps
                direct = on[("direct", op)].rps / off[("direct", op)].rps
                print(f"{op:<9} {gw:10.2f} {direct:14.2f}")


# --- entry -------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per system and operation")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved slices per system and operation")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--learners", type=int, default=None, help="default 64 (demo), 16 (large)")
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--model-shape", choices=sorted(S.SHAPES), default="demo")
    parser.add_argument("--ops", nargs="+", choices=OPS, default=list(OPS), help="operations to measure")
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument(
        "--reference-threads",
        type=int,
        default=os.cpu_count() or 1,
        help="the reference's worker threads (default: one per core; 0: FastAPI's 40)",
    )
    parser.add_argument("--batching-compare", action="store_true")
    parser.add_argument(
        "--profile-gateway",
        type=Path,
        default=None,
        help="write py-spy's raw stacks of the gateway during the first operation to this file (py-spy "
        "takes CPU too: read that operation's ratios from a run without it)",
    )
    parser.add_argument("--batch-max-rows", type=int, default=None)
    parser.add_argument("--batch-max-delay-ms", type=float, default=None)
    parser.add_argument(
        "--database-url", default=None, help="the predictor's database (default: a fresh PostgreSQL one)"
    )
    args = parser.parse_args()
    if args.learners is None:
        args.learners = 16 if args.model_shape == "large" else 64
    try:
        import uvloop
    except ImportError:
        asyncio.run(bench(args))
    else:
        uvloop.run(bench(args))


if __name__ == "__main__":
    main()
