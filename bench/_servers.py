"""What the predictor benches share: a fresh PostgreSQL database per run, DFM checkpoints of a named shape
(random weights: speed does not depend on them), the Lyceum processes (scripts/fleet.py) with their settings,
a bench-local HTTP server process, seeded learner histories, latency summaries and process memory (RSS)."""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from fleet import FleetError, free_port, http_ok  # noqa: E402

from lyceum_ml.checkpoint import save_dfm  # noqa: E402
from lyceum_ml.dfm import DFM, DFMConfig, TaskVocab  # noqa: E402
from lyceum_ml.dfm.simulate import SimConfig, simulate  # noqa: E402

POSTGRES_ENV = "LYCEUM_BENCH_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
# The shapes a bench can serve: the demo DFM `make run` serves (lyceum_ml.dfm.demo), and DFM-Server's
# default shape scaled to what a CPU holds.
SHAPES: dict[str, dict[str, int]] = {
    "demo": {"d_model": 64, "n_layer": 2, "n_head": 4, "n_kv_head": 2},
    "large": {"d_model": 768, "n_layer": 12, "n_head": 6, "n_kv_head": 6},
}
MAX_LEN = 4096  # interleaved tokens, as the demo model: 2,046 events
CHUNK_TOKENS = 128  # the predictor's default cache_chunk_tokens


def demo_tasks() -> list[str]:
    """The demo model's task vocabulary (the simulator's task ids, e.g. `fractions/q3`)."""
    return simulate(SimConfig(n_learners=1)).tasks


def write_model(path: Path, shape: str, seed: int = 0) -> tuple[Path, DFMConfig]:
    """A DFM checkpoint of `shape` with the demo vocabulary and seeded random weights."""
    tasks = demo_tasks()
    torch.manual_seed(seed)
    cfg = DFMConfig(n_tasks=len(tasks), max_len=MAX_LEN, **SHAPES[shape])
    save_dfm(path, DFM(cfg).eval(), TaskVocab(tasks), {"name": f"bench-{shape}", "version": "1"})
    return path, cfg


def kv_bytes_per_learner(cfg: DFMConfig, events: int, dtype_bytes: int = 4) -> int:
    """What one resident learner's KV cache holds: BOS + 2 tokens per event, in chunks of CHUNK_TOKENS."""
    tokens = math.ceil((2 * events + 1) / CHUNK_TOKENS) * CHUNK_TOKENS
    head_dim = cfg.d_model // cfg.n_head
    return cfg.n_layer * 2 * cfg.n_kv_head * head_dim * tokens * dtype_bytes


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, empty database `lyceum_bench_<hex>` on $LYCEUM_BENCH_POSTGRES_URL, dropped afterwards (as
    tests/fixtures/database.py does for tests, so nothing a test or another run holds is touched)."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    server = make_url(os.environ.get(POSTGRES_ENV, DEFAULT_POSTGRES_URL))
    if server.drivername == "postgresql":
        server = server.set(drivername="postgresql+psycopg")
    name = f"lyceum_bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def lyceum_env(model: Path, database_url: str, **predictor: str) -> dict[str, str]:
    """A Fleet's env: one model and one database for the predictors, and extra `LYCEUM_PREDICTOR_<NAME>`
    settings (unknown ones are ignored by the predictor). Everything else as deployed (logs at INFO)."""
    env = {"LYCEUM_PREDICTOR_MODEL_PATH": str(model), "LYCEUM_PREDICTOR_DATABASE_URL": database_url}
    env.update({f"LYCEUM_PREDICTOR_{k.upper()}": v for k, v in predictor.items()})
    return env


def gateway_env(database_url: str, tenant: str, key: str) -> dict[str, str]:
    """A gateway with authentication on, as deployed: one tenant's key, keys looked up in `database_url`."""
    return {"LYCEUM_GATEWAY_DATABASE_URL": database_url, "LYCEUM_GATEWAY_API_KEYS": f"{tenant}:{key}"}


class HttpServer:
    """A bench-local HTTP server process (`python <script> <args>`, listening on `port`), ready when
    `GET /healthz` answers 200; output in `log`."""

    def __init__(self, args: Sequence[str], log: Path, env: Mapping[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [sys.executable, *args, "--port", str(self.port)]
        self.log = log
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    def start(self, timeout_s: float = 120.0) -> HttpServer:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + timeout_s
        while not http_ok(self.url + "/healthz"):
            if self.popen.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-3000:]
                raise FleetError(f"{self.args[1]} did not start:\n{tail}")
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def op_args(op: str, rng: random.Random, tasks: Sequence[str], forecast: tuple[int, int]) -> Any:
    """Seeded random arguments of an operation: `predict1` / `predict8` (tasks), `append` (one event),
    `forecast` (S x L tasks)."""
    if op == "predict1":
        return [rng.choice(tasks)]
    if op == "predict8":
        return rng.sample(list(tasks), 8)
    if op == "append":
        return [(rng.choice(tasks), float(rng.random() < 0.6))]
    n_seq, length = forecast
    return [[rng.choice(tasks) for _ in range(length)] for _ in range(n_seq)]


def http_request(op: str, learner: str, args: Any) -> tuple[str, bytes]:
    """The `/v1` path and JSON body of an operation (the gateway's API; the throughput bench's reference
    server answers the same)."""
    base = f"/v1/learners/{learner}"
    if op in ("predict1", "predict8"):
        return base + "/predictions", json.dumps({"tasks": args}).encode()
    if op == "append":
        events = [{"task": t, "outcome": o} for t, o in args]
        return base + "/events", json.dumps({"events": events}).encode()
    return base + "/forecasts", json.dumps({"task_sequences": args}).encode()


def histories(
    learners: Sequence[str], events: int, tasks: Sequence[str], seed: int
) -> dict[str, list[tuple[str, float]]]:
    """Seeded random histories: `events` (task, 0/1 outcome) pairs per learner."""
    rng = random.Random(seed)
    return {x: [(rng.choice(tasks), float(rng.random() < 0.6)) for _ in range(events)] for x in learners}


async def register(pool: HttpPool, data: dict[str, list[tuple[str, float]]], at_once: int = 8) -> None:
    """Registers every learner with its history through `POST /v1/learners`, `at_once` at a time."""

    async def one(learner: str, events: list[tuple[str, float]]) -> None:
        history = [{"task": t, "outcome": o} for t, o in events]
        body = json.dumps({"learner_id": learner, "history": history}).encode()
        status, answer = await pool.request("POST", "/v1/learners", body)
        if status not in (200, 201):
            raise RuntimeError(f"register {learner}: {status} {answer[:300]!r}")

    items = list(data.items())
    for i in range(0, len(items), at_once):
        await asyncio.gather(*(one(x, events) for x, events in items[i : i + at_once]))


@dataclass(frozen=True, slots=True)
class Summary:
    n: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.n / self.seconds if self.seconds > 0 else 0.0


def quantile(sorted_ms: Sequence[float], q: float) -> float:
    if not sorted_ms:
        return math.nan
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))]


def summarize(latencies_ms: Sequence[float], errors: int, seconds: float) -> Summary:
    ordered = sorted(latencies_ms)
    p50 = statistics.median(ordered) if ordered else math.nan
    return Summary(len(ordered), errors, seconds, p50, quantile(ordered, 0.99))


def cpu_seconds(pid: int | None) -> float:
    """The CPU time (user + system) process `pid` has used, all threads (from /proc; 0 if it is gone)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int | None) -> int:
    """The resident memory of process `pid` (VmRSS in /proc; 0 if it is gone)."""
    if pid is None:
        return 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class HttpPool:
    """An asyncio HTTP/1.1 client over keep-alive connections to one server, shared by many tasks (at most
    `size` connections). Deliberately minimal (a request, a `Content-Length` or chunked answer), so the
    client's own CPU, which shares the machine with the servers, stays small and alike for every system."""

    IDLE_S = 2.0

    def __init__(self, url: str, size: int, headers: Mapping[str, str] | None = None) -> None:
        host, _, port = url.removeprefix("http://").partition(":")
        self.host, self.port = host, int(port or 80)
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._head = f"Host: {host}:{self.port}\r\n{extra}"
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        self._slots = asyncio.Semaphore(size)

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        """(status, body) of one request; a broken connection raises (and is dropped)."""
        async with self._slots:
            conn = await self._connection()
            try:
                status, data, keep = await self._exchange(conn, method, path, body)
            except BaseException:
                conn[1].close()
                raise
            if keep:
                self._idle.append((*conn, time.monotonic()))
            else:
                conn[1].close()
            return status, data

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """An idle connection, or a new one. Connections idle for IDLE_S are closed rather than reused: the
        server may be closing them (uvicorn's keep-alive timeout is 5 s), and a request must not be lost."""
        while self._idle:
            reader, writer, since = self._idle.pop()
            if time.monotonic() - since < self.IDLE_S and not reader.at_eof():
                return reader, writer
            writer.close()
        return await asyncio.open_connection(self.host, self.port)

    async def _exchange(
        self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], method: str, path: str, body: bytes
    ) -> tuple[int, bytes, bool]:
        reader, writer = conn
        head = f"{method} {path} HTTP/1.1\r\n{self._head}"
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        writer.write(head.encode() + b"\r\n" + body)
        status_line = await reader.readline()
        if not status_line:
            raise ConnectionError("the server closed the connection")
        status = int(status_line.split(b" ", 2)[1])
        length, chunked, keep = 0, False, True
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                keep = b"close" not in value.lower()
        if not chunked:
            return status, await reader.readexactly(length), keep
        data = bytearray()
        while size := int((await reader.readline()).strip(), 16):
            data += await reader.readexactly(size)
            await reader.readline()
        await reader.readline()
        return status, bytes(data), keep

    async def aclose(self) -> None:
        for _, writer, _ in self._idle:
            writer.close()
        self._idle.clear()
