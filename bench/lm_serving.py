"""LM serving through the sampler's gRPC service: continuous batching, mixed-adapter batches and adapter hot
loads, on a GPT-2-small-shaped Lyceum LM (12 layers, d 768, 12 heads, vocab 50304, random weights), fp32 CPU.

    nice -n 10 python bench/lm_serving.py [--streams 16] [--tokens 64] [--adapters 8] [--rounds 3]
        [--parts batching adapters hotload] [--profile stacks.txt] [--engine-max-rows 32] ...

One sampler process (`python -m lyceum_sampler` via scripts/fleet.py, LYCEUM_SAMPLER_* settings: the model as
`gpt2s=<dir>`, a migrated SQLite registry + artifact store with serve_adapters on, `--torch-threads` 2,
OMP_WAIT_POLICY=PASSIVE unless set). This process is the client: grpc.aio, one channel, the default tenant's
context as metadata. Every stream is SAMPLE at temperature 1 with its own seed, after a 16-token prompt of
seeded random token ids; a token's receive time is taken as its message arrives.

1. batching: `--streams` streams of `--tokens` tokens started together vs the same streams one at a time
   (each round does both). Aggregate tokens/s = tokens received / wall time from the first request to the
   last answer; per-token latency = the gap between consecutive tokens of a stream as the client receives
   them. Targets: >= 4x tokens/s at <= 2x per-token p50. Runs before any adapter is loaded.
2. adapters: the same streams over `--adapters` LoRA adapters (r 8 on q/kv/o/up/down; stream i uses adapter
   i mod n, `model=<adapter name>`) vs the same streams on the base model, interleaved per round, all
   adapters loaded by the warm-up. Target: >= 0.7x the adapter-free tokens/s. Also shown: base tokens/s
   before vs after adapters were injected (rows without an adapter still pass through peft's LoRA layers).
3. hotload: 8 base streams run; once each has 8 tokens, a NEW adapter is registered (artifact store + registry
   row, as the trainer does) and requested at once: registration -> its first streamed token, and the
   running streams' per-token p99 from the registration to that first token. The control round is the same
   with an already loaded adapter requested instead, over a window of the same length. Target (issue 12:
   nobody waits more than one step while an adapter loads): p99 during the load <= p99 without + one step
   (the control's p50 gap), and no failed request.

Warm-up before each part (the model's load, first shapes, the adapters' loads) is excluded. The engine's
step histograms (Prometheus) say how much of the wall time the engine spent stepping, with how many rows;
`--profile x.txt` records py-spy stacks of the sampler (idle samples included, so they count wall time) during
the first concurrent round of each part, into x-batching.txt and x-adapters.txt (py-spy takes CPU too: read
those parts' figures from a run without it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _lm_serving_setup as setup  # noqa: E402
import _servers as S  # noqa: E402
from _lm_serving_client import (  # noqa: E402
    Client,
    Phase,
    Run,
    adapter_load_seconds,
    describe,
    measure,
    one_at_a_time,
    same_tokens,
    streams,
    together,
)
from fleet import Fleet, Process  # noqa: E402

MODEL = "gpt2s"
HOT_STREAMS, HOT_TRIGGER = 8, 8  # running streams in the hot-load rounds; tokens each has before the load
PARTS = ("batching", "adapters", "hotload")


# --- parts -------------------------------------------------------------------------------------------
@asynccontextmanager
async def profiled(pid: int | None, out: Path | None) -> AsyncIterator[None]:
    """py-spy sampling process `pid` while the block runs, into `out` (raw collapsed stacks per thread);
    nothing if `out` is None."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if out is None or pid is None or not Path(spy).exists():
        if out is not None:
            print("  (no py-spy: pip install py-spy, see requirements/dev.txt)", flush=True)
        yield
        return
    command = [spy, "record", "-p", str(pid), "-r", "100", "-d", "600", "-f", "raw"]
    command += ["-o", str(out), "--nonblocking", "--threads", "--idle"]  # idle too: samples = wall time
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        process.send_signal(signal.SIGINT)  # py-spy writes its stacks on SIGINT
        process.wait()
        print(f"  py-spy stacks of this round: {out}", flush=True)


def profile_path(args: argparse.Namespace, part: str, round_: int) -> Path | None:
    if args.profile is None or round_:
        return None
    return args.profile.with_name(f"{args.profile.stem}-{part}{args.profile.suffix or '.txt'}")


async def part_batching(client: Client, pod: Process, args: argparse.Namespace) -> dict[str, Phase]:
    todo = streams(args.streams, [MODEL])
    print(
        f"\n[batching] {args.streams} streams x {args.tokens} tokens, together vs one at a time", flush=True
    )
    await client.generate(MODEL, todo[0].prompt, 0, 8)  # the model loads
    await together(client, todo, 8)()
    await one_at_a_time(client, todo[:2], 8)()
    out = {"together": Phase(), "one at a time": Phase()}
    for r in range(args.rounds):
        async with profiled(pod.pid, profile_path(args, "batching", r)):
            await measure(out["together"], pod, together(client, todo, args.tokens))
        await measure(out["one at a time"], pod, one_at_a_time(client, todo, args.tokens))
    for name, phase in out.items():
        describe(name, phase)
    same = same_tokens(*(p.runs for p in out.values()))
    print(f"  streams with the same tokens together and alone: {same}/{args.streams * args.rounds}")
    return out


async def part_adapters(
    client: Client, pod: Process, registry: setup.Registry, args: argparse.Namespace, adapter_dirs: list[Path]
) -> dict[str, Phase]:
    names = [f"bench-lora-{i}" for i in range(args.adapters)]
    for name, path in zip(names, adapter_dirs, strict=True):
        registry.register(path, name, MODEL)
    with_adapters, base = streams(args.streams, names), streams(args.streams, [MODEL])
    print(
        f"\n[adapters] {args.streams} streams x {args.tokens} tokens over {args.adapters} adapters vs none",
        flush=True,
    )
    start = time.perf_counter()
    await together(client, with_adapters[: args.adapters], 4)()  # each adapter loads
    print(f"  {args.adapters} adapters loaded by their first requests in {time.perf_counter() - start:.1f} s")
    await together(client, with_adapters, 8)()
    await together(client, base, 8)()
    out = {"over adapters": Phase(), "no adapter": Phase()}
    for r in range(args.rounds):
        async with profiled(pod.pid, profile_path(args, "adapters", r)):
            await measure(out["over adapters"], pod, together(client, with_adapters, args.tokens))
        await measure(out["no adapter"], pod, together(client, base, args.tokens))
    for name, phase in out.items():
        describe(name, phase)
    n = args.streams * args.rounds
    differ = n - same_tokens(*(p.runs for p in out.values()))
    print(f"  adapter streams whose tokens differ from the base's: {differ}/{n}")
    return out


@dataclass
class HotRound:
    first_s: float  # from the registration (control: the request) to the request's first token
    window_s: float  # the window the running streams' gaps are taken in (from the same start)
    register_s: float  # the registration itself (artifact copy + registry row); 0 in the control
    gaps: list[float]  # running streams' gaps within the window
    overrun: bool  # the running streams ended before the window did
    load_s: float  # the sampler's own account of adapter loading in the round (fetch, read, inject)
    errors: int


async def hot_round(
    client: Client,
    pod: Process,
    args: argparse.Namespace,
    request: Callable[[], Awaitable[tuple[float, Run]]],
    window_s: float | None,
) -> HotRound:
    """HOT_STREAMS base streams; when each has HOT_TRIGGER tokens, `request()` runs (it returns when its
    trigger happened, and its run). The window ends at the request's first token, or after `window_s`."""
    todo = streams(HOT_STREAMS, [MODEL])
    counts = [0] * len(todo)
    ready = asyncio.Event()

    def counter(i: int) -> Callable[[], None]:
        def on_token() -> None:
            counts[i] += 1
            if min(counts) >= HOT_TRIGGER:
                ready.set()

        return on_token

    loads_before = adapter_load_seconds(pod)
    running = asyncio.gather(
        *(client.generate(s.model, s.prompt, s.seed, args.hot_tokens, counter(i)) for i, s in enumerate(todo))
    )
    await ready.wait()
    trigger = time.perf_counter()
    registered, run = await request()
    runs = await running
    end = registered + window_s if window_s is not None else run.times[0] if run.times else float("nan")
    return HotRound(
        first_s=(run.times[0] if run.times else float("nan")) - registered,
        window_s=end - registered,
        register_s=registered - trigger,
        gaps=[g for r in runs for g in r.gaps_ms(after=trigger, until=end)],
        overrun=any(r.times[-1] < end for r in runs),
        load_s=adapter_load_seconds(pod) - loads_before,
        errors=sum(bool(r.error) for r in [*runs, run]),
    )


async def part_hotload(
    client: Client, pod: Process, registry: setup.Registry, args: argparse.Namespace, fresh_dirs: list[Path]
) -> tuple[list[HotRound], list[HotRound]]:
    print(
        f"\n[hotload] {HOT_STREAMS} base streams x {args.hot_tokens} tokens; after {HOT_TRIGGER} tokens "
        "each, a new adapter is registered and requested (control: a loaded adapter is requested)",
        flush=True,
    )
    prompt = streams(1, [MODEL])[0].prompt
    loads, controls = [], []
    for i, path in enumerate(fresh_dirs):
        name = f"bench-hot-{i}"

        async def load(name: str = name, path: Path = path) -> tuple[float, Run]:
            await asyncio.to_thread(registry.register, path, name, MODEL)
            return time.perf_counter(), await client.generate(name, prompt, 99, 4)

        async def control() -> tuple[float, Run]:
            return time.perf_counter(), await client.generate("bench-lora-0", prompt, 99, 4)

        loads.append(await hot_round(client, pod, args, load, None))
        controls.append(await hot_round(client, pod, args, control, loads[-1].window_s))
        a, b = loads[-1], controls[-1]
        print(
            f"  round {i}: registered in {a.register_s * 1e3:.0f} ms; its first token "
            f"{a.first_s * 1e3:.0f} ms later (sampler's load {a.load_s * 1e3:.0f} ms; a loaded adapter's "
            f"first token: {b.first_s * 1e3:.0f} ms); running streams' gaps in the window: p99 "
            f"{S.quantile(sorted(a.gaps), 0.99):.0f} / max {max(a.gaps, default=0):.0f} ms "
            f"(n={len(a.gaps)}), "
            f"without a load p99 {S.quantile(sorted(b.gaps), 0.99):.0f} / max {max(b.gaps, default=0):.0f} "
            f"ms (n={len(b.gaps)})"
            + ("  [streams ended inside the window: raise --hot-tokens]" if a.overrun or b.overrun else ""),
            flush=True,
        )
    return loads, controls


# --- report ------------------------------------------------------------------------------------------
def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def summary(rows: list[tuple[str, str, str, bool | None]]) -> None:
    print(f"\n{'figure':<58} {'value':>16} {'goal':>18}  result")
    for name, value, goal, ok in rows:
        print(f"{name:<58} {value:>16} {goal:>18}  {'-' if ok is None else verdict(ok)}")


def report(
    args: argparse.Namespace,
    batching: dict[str, Phase] | None,
    adapters: dict[str, Phase] | None,
    hot: tuple[list[HotRound], list[HotRound]] | None,
) -> None:
    rows: list[tuple[str, str, str, bool | None]] = []
    if batching:
        on, off = batching["together"], batching["one at a time"]
        tps, p50 = on.tps / off.tps, on.p(0.5) / off.p(0.5)
        rows += [
            (f"tokens/s, {args.streams} streams together", f"{on.tps:.1f}", "", None),
            ("tokens/s, one at a time", f"{off.tps:.1f}", "", None),
            ("tokens/s together / one at a time", f"{tps:.2f}x", ">= 4x", tps >= 4),
            ("per-token gap p50 together / p99 (ms)", f"{on.p(0.5):.1f} / {on.p(0.99):.1f}", "", None),
            ("per-token gap p50 one at a time / p99 (ms)", f"{off.p(0.5):.1f} / {off.p(0.99):.1f}", "", None),
            ("per-token p50 together / one at a time", f"{p50:.2f}x", "<= 2x", p50 <= 2),
        ]
    if adapters:
        lora, base = adapters["over adapters"], adapters["no adapter"]
        ratio = lora.tps / base.tps
        rows += [
            (
                f"tokens/s over {args.adapters} adapters / without adapters",
                f"{ratio:.2f}x",
                ">= 0.7x",
                ratio >= 0.7,
            ),
            (
                "per-token gap p50 over adapters / without (ms)",
                f"{lora.p(0.5):.1f} / {base.p(0.5):.1f}",
                "",
                None,
            ),
        ]
        if batching:
            before = batching["together"].tps
            rows.append(
                (
                    "adapter-free tokens/s after / before adapters loaded",
                    f"{base.tps / before:.2f}x",
                    "",
                    None,
                )
            )
    if hot:
        loads, controls = hot
        first = statistics.median(r.first_s for r in loads) * 1e3
        control_first = statistics.median(r.first_s for r in controls) * 1e3
        registering = statistics.median(r.register_s for r in loads) * 1e3
        loading = statistics.median(r.load_s for r in loads) * 1e3
        during = sorted(g for r in loads for g in r.gaps)
        quiet = sorted(g for r in controls for g in r.gaps)
        step = statistics.median(quiet) if quiet else float("nan")
        p99_load, p99_quiet = S.quantile(during, 0.99), S.quantile(quiet, 0.99)
        errors = sum(r.errors for r in [*loads, *controls])
        rows += [
            ("adapter registration (artifact + registry row), median ms", f"{registering:.0f}", "", None),
            ("registered -> its first streamed token, median ms", f"{first:.0f}", "(reported)", None),
            ("a loaded adapter's request -> first token, median ms", f"{control_first:.0f}", "", None),
            ("the sampler's adapter load (fetch, read, inject), median ms", f"{loading:.0f}", "", None),
            (
                "running streams' gap p99 during load / without (ms)",
                f"{p99_load:.0f} / {p99_quiet:.0f}",
                "",
                None,
            ),
            ("running streams' gap max during load (ms)", f"{max(during, default=0):.0f}", "", None),
            (
                "gap p99 during load - without, in steps (p50 gaps)",
                f"{(p99_load - p99_quiet) / step:.2f}",
                "<= 1 step",
                p99_load <= p99_quiet + step,
            ),
            ("failed requests (hot-load rounds)", f"{errors}", "0", errors == 0),
        ]
    summary(rows)


# --- entry -------------------------------------------------------------------------------------------
async def bench(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="lyceum-bench-lm-") as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        model_dir = setup.write_model(work / MODEL)
        registry = setup.Registry(work / "db")
        adapter_dirs, fresh_dirs = [], []
        if "adapters" in args.parts or "hotload" in args.parts:
            seeds = list(range(args.adapters + args.hot_loads))
            made = setup.write_adapters(model_dir, work / "adapters", seeds)
            adapter_dirs, fresh_dirs = made[: args.adapters], made[args.adapters :]
        made_s = time.perf_counter() - start
        print(f"model and {len(adapter_dirs) + len(fresh_dirs)} adapters written in {made_s:.0f} s")
        env = {
            "LYCEUM_SAMPLER_MODELS": f"{MODEL}={model_dir}",
            "LYCEUM_SAMPLER_DEVICE": "cpu",
            "LYCEUM_SAMPLER_DTYPE": "float32",
            "LYCEUM_SAMPLER_SESSION_STORE_URL": "memory://",
            "LYCEUM_SAMPLER_DATABASE_URL": registry.database_url,
            "LYCEUM_SAMPLER_REGISTRY_URL": registry.registry_url,
            "LYCEUM_SAMPLER_SERVE_ADAPTERS": "true",
            "LYCEUM_SAMPLER_MODEL_CACHE_DIR": str(work / "cache"),
            "LYCEUM_SAMPLER_TORCH_THREADS": str(args.torch_threads),
            "LYCEUM_SAMPLER_ENGINE_MAX_ROWS": str(args.engine_max_rows),
            "LYCEUM_SAMPLER_ENGINE_STEP_TOKENS": str(args.engine_step_tokens),
            "LYCEUM_SAMPLER_STREAM_BUFFER": str(args.stream_buffer),
            "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
        }
        print(
            "GPT-2-small-shaped Lyceum LM, random weights, fp32 CPU; sampler torch_threads "
            f"{args.torch_threads}, engine_max_rows {args.engine_max_rows}, engine_step_tokens "
            f"{args.engine_step_tokens}, stream_buffer {args.stream_buffer}, OMP_WAIT_POLICY "
            f"{env['OMP_WAIT_POLICY']}; {args.rounds} rounds; "
            f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        with Fleet(work / "fleet", env) as fleet:
            pod = fleet.sampler("sampler").start()
            client = Client(pod.address)
            try:
                batching = adapters = hot = None
                if "batching" in args.parts:
                    batching = await part_batching(client, pod, args)
                if "adapters" in args.parts:
                    adapters = await part_adapters(client, pod, registry, args, adapter_dirs)
                if "hotload" in args.parts:
                    if "adapters" not in args.parts:
                        registry.register(adapter_dirs[0], "bench-lora-0", MODEL)
                        await client.generate("bench-lora-0", streams(1, [MODEL])[0].prompt, 0, 4)
                    hot = await part_hotload(client, pod, registry, args, fresh_dirs)
            finally:
                await client.close()
                registry.close()
        print(f"\nload average after: {os.getloadavg()[0]:.2f}; total {time.perf_counter() - start:.0f} s")
        report(args, batching, adapters, hot)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--adapters", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--hot-loads", type=int, default=5, help="hot-load rounds (each with its control round)")
    ap.add_argument(
        "--hot-tokens", type=int, default=96, help="tokens of each running stream in a hot-load round"
    )
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    ap.add_argument("--torch-threads", type=int, default=2)
    ap.add_argument("--engine-max-rows", type=int, default=32)
    ap.add_argument("--engine-step-tokens", type=int, default=512)
    ap.add_argument("--stream-buffer", type=int, default=64)
    ap.add_argument(
        "--profile", type=Path, default=None, help="py-spy raw stacks of each part's first concurrent round"
    )
    args = ap.parse_args()
    if args.hot_loads and "hotload" in args.parts:
        args.adapters = max(args.adapters, 1)
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
