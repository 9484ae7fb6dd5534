"""The client side of bench/lm_serving.py: Generate streams over grpc.aio with each token's receive time,
the seeded streams a part runs, and a phase's figures pooled over rounds with the sampler's step
histograms."""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import _lm_serving_setup as setup
import _servers as S
import grpc
from fleet import Process

from lyceum_api.sampler.v1 import sampler_pb2 as pb
from lyceum_api.sampler.v1 import sampler_pb2_grpc as pb_grpc
from lyceum_core.context import RequestContext

PROMPT_TOKENS = 16
GPT2_VOCAB = 50257


# --- client ------------------------------------------------------------------------------------------
@dataclass
class Run:
    """One Generate stream as the client saw it: token ids and their receive times (perf_counter)."""

    sent: float
    ids: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    finish: str = ""
    error: str = ""

    def gaps_ms(self, after: float = -1.0, until: float = float("inf")) -> list[float]:
        """Gaps between consecutive tokens, those whose later token arrived within (after, until]."""
        pairs = zip(self.times, self.times[1:], strict=False)
        return [(b - a) * 1e3 for a, b in pairs if after < b <= until]


class Client:
    def __init__(self, address: str) -> None:
        self.channel = grpc.aio.insecure_channel(address)
        self.stub = pb_grpc.SamplerServiceStub(self.channel)
        self.context = RequestContext.new(setup.TENANT)

    async def generate(
        self,
        model: str,
        prompt: Sequence[int],
        seed: int,
        tokens: int,
        on_token: Callable[[], None] | None = None,
    ) -> Run:
        request = pb.GenerateRequest(
            model=model,
            prompt_token_ids=prompt,
            strategy=pb.DECODING_STRATEGY_SAMPLE,
            params=pb.SamplingParams(temperature=1.0),
            max_new_tokens=tokens,
            seed=seed,
        )
        run = Run(time.perf_counter())
        try:
            async for message in self.stub.Generate(request, metadata=self.context.metadata(), timeout=600):
                if message.HasField("token"):
                    run.times.append(time.perf_counter())
                    run.ids.append(message.token.id)
                    if on_token is not None:
                        on_token()
                elif message.finish_reason:
                    run.finish = message.finish_reason
        except grpc.aio.AioRpcError as err:
            run.error = f"{err.code().name}: {err.details()}"
            print(f"    {model} stream failed: {run.error}", flush=True)
        return run

    async def close(self) -> None:
        await self.channel.close()


@dataclass(frozen=True)
class Stream:
    model: str
    prompt: tuple[int, ...]
    seed: int


def streams(n: int, models: Sequence[str]) -> list[Stream]:
    rng = random.Random(1234)
    prompts = [tuple(rng.randrange(GPT2_VOCAB) for _ in range(PROMPT_TOKENS)) for _ in range(n)]
    return [Stream(models[i % len(models)], prompts[i], seed=i) for i in range(n)]


# --- phases ------------------------------------------------------------------------------------------
@dataclass
class Phase:
    """Runs of one way of serving (pooled over rounds), with the server's side of them."""

    runs: list[Run] = field(default_factory=list)
    seconds: float = 0.0
    cpu_s: float = 0.0
    steps: float = 0.0
    step_s: float = 0.0
    step_rows: float = 0.0

    @property
    def tokens(self) -> int:
        return sum(len(r.times) for r in self.runs)

    @property
    def tps(self) -> float:
        return self.tokens / self.seconds

    def gaps(self) -> list[float]:
        return sorted(g for r in self.runs for g in r.gaps_ms())

    def p(self, q: float) -> float:
        gaps = self.gaps()
        return statistics.median(gaps) if q == 0.5 else S.quantile(gaps, q)

    @property
    def errors(self) -> int:
        return sum(bool(r.error) for r in self.runs)

    def ttft_ms(self) -> float:
        return statistics.median((r.times[0] - r.sent) * 1e3 for r in self.runs if r.times)


def engine_steps(pod: Process) -> tuple[float, float, float]:
    """(steps, seconds stepping, rows stepped) so far, from the sampler's step histograms."""
    m = pod.metrics()
    return (
        m.value("lyceum_sampler_step_seconds_count"),
        m.value("lyceum_sampler_step_seconds_sum"),
        m.value("lyceum_sampler_step_rows_sum"),
    )


def adapter_load_seconds(pod: Process) -> float:
    """Seconds the sampler has spent loading adapters so far (its load histogram)."""
    return pod.metrics().value("lyceum_sampler_adapter_load_seconds_sum")


async def measure(phase: Phase, pod: Process, work: Callable[[], Awaitable[list[Run]]]) -> None:
    before, cpu0, start = engine_steps(pod), S.cpu_seconds(pod.pid), time.perf_counter()
    runs = await work()
    phase.seconds += time.perf_counter() - start
    phase.cpu_s += S.cpu_seconds(pod.pid) - cpu0
    after = engine_steps(pod)
    phase.steps += after[0] - before[0]
    phase.step_s += after[1] - before[1]
    phase.step_rows += after[2] - before[2]
    phase.runs += runs


def together(client: Client, todo: Sequence[Stream], tokens: int) -> Callable[[], Awaitable[list[Run]]]:
    async def work() -> list[Run]:
        return list(await asyncio.gather(*(client.generate(s.model, s.prompt, s.seed, tokens) for s in todo)))

    return work


def one_at_a_time(client: Client, todo: Sequence[Stream], tokens: int) -> Callable[[], Awaitable[list[Run]]]:
    async def work() -> list[Run]:
        return [await client.generate(s.model, s.prompt, s.seed, tokens) for s in todo]

    return work


def describe(name: str, phase: Phase) -> None:
    busy = phase.step_s / phase.seconds if phase.seconds else 0.0
    rows = phase.step_rows / phase.steps if phase.steps else 0.0
    step_ms = phase.step_s / phase.steps * 1e3 if phase.steps else 0.0
    print(
        f"  {name:<22} {phase.tokens:5d} tok {phase.seconds:7.1f} s {phase.tps:7.1f} tok/s  "
        f"gap p50 {phase.p(0.5):6.1f} p99 {phase.p(0.99):6.1f} ms  TTFT p50 {phase.ttft_ms():7.1f} ms  "
        f"| engine: {phase.steps:5.0f} steps x {step_ms:5.1f} ms, {rows:4.1f} rows, busy {busy:4.0%}; "
        f"server CPU {phase.cpu_s / phase.seconds:4.2f} cores"
        + (f"  ERRORS {phase.errors}" if phase.errors else ""),
        flush=True,
    )


def same_tokens(a: Sequence[Run], b: Sequence[Run]) -> int:
    return sum(x.ids == y.ids for x, y in zip(a, b, strict=True))
