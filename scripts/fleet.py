"""A small fleet of Lyceum service processes on loopback ports, for tests and benchmarks: start, stop,
SIGKILL, SIGTERM, pause and restart named predictor, sampler and gateway processes, wait until they are ready
(gRPC health SERVING, or the gateway's HTTP probe), keep a `file://` membership for gateways, and read any
process's Prometheus metrics.

    env = {"LYCEUM_PREDICTOR_MODEL_PATH": ..., "LYCEUM_PREDICTOR_DATABASE_URL": ...}
    with Fleet(workdir, env) as fleet:
        pods = fleet.start(*(fleet.predictor(f"p{i}") for i in range(3)))
        members = fleet.membership("predictors", pods)
        gateway = fleet.gateway("gw", predictors=members).start()
        pods[0].kill()                         # SIGKILL; pods[0].start() brings it back on the same ports
        members.write(pods[1:])                # the gateway re-reads the file
        gateway.metrics().value("lyceum_gateway_failovers_total", service="predictor")

Each process runs `python -m lyceum_<service>` in the fleet's folder (so no `.env` or `var/` of a checkout is
read), with its output in `<name>.log` there; it inherits the environment minus any `LYCEUM_<SERVICE>_*`
setting, then gets the fleet's `env`, then its own. Imports nothing of the tests.
"""

from __future__ import annotations

import enum
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

HOST = "127.0.0.1"
# Where a gateway sends the calls of a service the fleet does not run (nothing listens on port 9).
NOWHERE = "127.0.0.1:9"
SERVICE_PREFIXES = ("LYCEUM_PREDICTOR_", "LYCEUM_SAMPLER_", "LYCEUM_GATEWAY_", "LYCEUM_TRAINER_")
T = TypeVar("T")


class FleetError(RuntimeError):
    """A process exited, or did not become ready in time (the message ends with its log's tail)."""


class Service(enum.StrEnum):
    PREDICTOR = "predictor"
    SAMPLER = "sampler"
    GATEWAY = "gateway"


def free_port(host: str = HOST) -> int:
    """A port nothing listens on now (the OS's pick; another process may still take it before we do)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_until(
    predicate: Callable[[], T],
    timeout_s: float = 30.0,
    interval_s: float = 0.05,
    what: str = "condition",
) -> T:
    """Polls `predicate` until it returns something truthy (which is returned); FleetError after `timeout_s`.
    Exceptions from `predicate` count as not yet."""
    deadline = time.monotonic() + timeout_s
    last: BaseException | None = None
    while True:
        try:
            result = predicate()
        except Exception as exc:  # noqa: BLE001 - e.g. a server not listening yet
            result, last = None, exc
        if result:
            return result
        if time.monotonic() >= deadline:
            raise FleetError(
                f"{what} not reached in {timeout_s:g}s" + (f" (last error: {last!r})" if last else "")
            )
        time.sleep(interval_s)


class Metrics(dict[tuple[str, frozenset[tuple[str, str]]], float]):
    """One scrape: {(sample name, frozenset of (label, value)): value}. Counters appear under their `_total`
    sample name (and `_created`), as the text format writes them."""

    @classmethod
    def parse(cls, text: str) -> Metrics:
        metrics = cls()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                metrics[(sample.name, frozenset(sample.labels.items()))] = float(sample.value)
        return metrics

    def value(self, name: str, **labels: str) -> float:
        """The sample with exactly these labels; 0.0 if absent (a labelled counter not yet incremented)."""
        return self.get((name, frozenset(labels.items())), 0.0)

    def total(self, name: str, **labels: str) -> float:
        """The sum of the samples of `name` whose labels include `labels`."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.items() if n == name and wanted <= ls)

    def by(self, name: str, label: str, **labels: str) -> dict[str, float]:
        """`name`'s samples matching `labels`, summed per value of `label` (e.g. rebuilds by reason)."""
        wanted = set(labels.items())
        out: dict[str, float] = {}
        for (n, ls), v in self.items():
            keyed = dict(ls)
            if n == name and wanted <= ls and label in keyed:
                out[keyed[label]] = out.get(keyed[label], 0.0) + v
        return out


def scrape(url: str, timeout_s: float = 5.0) -> Metrics:
    """The Prometheus metrics served at `url`."""
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return Metrics.parse(response.read().decode())


def grpc_serving(address: str, timeout_s: float = 1.0) -> bool:
    """Whether the gRPC server at `address` answers grpc.health.v1 SERVING (overall service)."""
    with grpc.insecure_channel(address) as channel:
        try:
            status = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout_s
            )
        except grpc.RpcError:
            return False
    return status.status == health_pb2.HealthCheckResponse.SERVING


def http_ok(url: str, timeout_s: float = 2.0) -> bool:
    """Whether GET `url` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def gateway_whole(url: str, timeout_s: float = 2.0) -> bool:
    """Whether the gateway at `url` is ready and its health watches route to every predictor and sampler of
    its membership (`/readyz` counts both)."""
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=timeout_s) as response:
            body = json.load(response)
    except (urllib.error.URLError, OSError, ValueError):
        return False
    return body["serving"] == body["predictors"] and body["samplers_serving"] == body["samplers"]


class Process:
    """One named service process with fixed ports: `start()` (again after a stop or kill: same ports, same
    env), `kill()`, `terminate()`, `stop()`, `pause()`/`resume()`, `metrics()`."""

    def __init__(
        self,
        name: str,
        service: Service,
        env: Mapping[str, str],
        cwd: Path,
        *,
        host: str = HOST,
        port: int | None = None,
        metrics_port: int | None = None,
        ready_path: str = "/readyz",
        python: str = sys.executable,
    ) -> None:
        self.name = name
        self.service = service
        self.host = host
        self.port = port or free_port(host)
        # A gateway serves its metrics on its own HTTP port; gRPC services on a separate one.
        self.metrics_port = self.port if service is Service.GATEWAY else (metrics_port or free_port(host))
        self.ready_path = ready_path
        self.cwd = cwd
        self.log_path = cwd / f"{name}.log"
        self._python = python
        prefix = f"LYCEUM_{service.upper()}_"
        own = {"HOST": host, "PORT": str(self.port)}
        if service is not Service.GATEWAY:
            own["METRICS_PORT"] = str(self.metrics_port)
        # its ports are these, whatever `env` says
        self.env = {**env, **{prefix + k: v for k, v in own.items()}}
        self.popen: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def __repr__(self) -> str:
        state = "running" if self.running else f"exited {self.returncode}" if self.popen else "not started"
        return f"<{self.service} {self.name} {self.address} {state}>"

    # --- addresses ------------------------------------------------------------------------------------
    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """`http://host:port` (a gateway's base URL)."""
        return f"http://{self.address}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    # --- lifecycle ------------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll() if self.popen is not None else None

    def start(self, *, wait: bool = True, timeout_s: float = 90.0) -> Self:
        """Spawns the process (output appended to its log); with `wait`, returns once it is ready."""
        if self.running:
            raise FleetError(f"{self.name} is already running")
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts + 1} of {self.name} ({self.address}) ---\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                [self._python, "-m", f"lyceum_{self.service}"],
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1
        if wait:
            self.wait_ready(timeout_s)
        return self

    def ready(self) -> bool:
        """Whether it serves now: gRPC health SERVING, or the gateway's `ready_path` answering 200."""
        if self.service is Service.GATEWAY:
            return http_ok(self.url + self.ready_path)
        return grpc_serving(self.address)

    def wait_ready(self, timeout_s: float = 90.0) -> Self:
        """Blocks until `ready()`; FleetError (with the log's tail) if it exits or the time runs out."""
        deadline = time.monotonic() + timeout_s
        while not self.ready():
            if not self.running:
                raise FleetError(f"{self.name} exited with {self.returncode}:\n{self.log_tail()}")
            if time.monotonic() >= deadline:
                raise FleetError(f"{self.name} not ready within {timeout_s:g}s:\n{self.log_tail()}")
            time.sleep(0.1)
        return self

    def send(self, sig: int) -> None:
        if not self.running:
            raise FleetError(f"{self.name} is not running")
        assert self.popen is not None
        self.popen.send_signal(sig)

    def kill(self) -> int:
        """SIGKILL, reaped: nothing of it survives (no drain)."""
        self.send(signal.SIGKILL)
        return self.wait(30.0)

    def terminate(self) -> None:
        """SIGTERM without waiting: the service drains (`wait()` for its exit code)."""
        self.send(signal.SIGTERM)

    def pause(self) -> None:
        """SIGSTOP: the process holds its sockets but answers nothing (a hung pod)."""
        self.send(signal.SIGSTOP)

    def resume(self) -> None:
        self.send(signal.SIGCONT)

    def wait(self, timeout_s: float = 30.0) -> int:
        """Waits for the exit; its code (negative: killed by that signal)."""
        if self.popen is None:
            raise FleetError(f"{self.name} was never started")
        return self.popen.wait(timeout=timeout_s)

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM (after SIGCONT, should it be paused) and wait; SIGKILL past `timeout_s`. The exit code."""
        if self.popen is None:
            return None
        if self.running:
            self.popen.send_signal(signal.SIGCONT)
            self.popen.send_signal(signal.SIGTERM)
            try:
                return self.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        return self.popen.wait(timeout=30.0)

    def restart(self, *, wait: bool = True, timeout_s: float = 90.0) -> Self:
        """A graceful stop (if running), then a fresh start on the same ports."""
        self.stop()
        return self.start(wait=wait, timeout_s=timeout_s)

    # --- observation ----------------------------------------------------------------------------------
    def metrics(self) -> Metrics:
        """Its Prometheus metrics now."""
        return scrape(self.metrics_url)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def _address(member: str | Process) -> str:
    return member.address if isinstance(member, Process) else member


class MembershipFile:
    """A `file://` membership: one address per line, replaced atomically so a reader never sees half."""

    def __init__(self, path: Path, members: Iterable[str | Process] = ()) -> None:
        self.path = path
        self.addresses: list[str] = []
        self.write(members)

    @property
    def uri(self) -> str:
        return f"file://{self.path.resolve()}"

    def write(self, members: Iterable[str | Process]) -> None:
        self.addresses = [_address(m) for m in members]
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(a + "\n" for a in self.addresses))
        os.replace(tmp, self.path)


Members = str | MembershipFile | Iterable[str | Process] | None


def _members(spec: Members) -> str:
    """The `*_addresses` setting for `spec` (none: an address where nothing listens)."""
    if spec is None:
        return NOWHERE
    if isinstance(spec, str):
        return spec
    if isinstance(spec, MembershipFile):
        return spec.uri
    return ",".join(_address(m) for m in spec) or NOWHERE


class Fleet:
    """Named processes in one working folder; a context manager that stops them all on exit."""

    def __init__(
        self,
        workdir: Path,
        env: Mapping[str, str] | None = None,
        *,
        host: str = HOST,
        python: str = sys.executable,
    ) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.python = python
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(SERVICE_PREFIXES)}
        self.env = {**inherited, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.processes: dict[str, Process] = {}

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __getitem__(self, name: str) -> Process:
        return self.processes[name]

    def _add(
        self,
        name: str,
        service: Service,
        env: Mapping[str, str],
        port: int | None,
        metrics_port: int | None = None,
        ready_path: str = "/readyz",
    ) -> Process:
        if name in self.processes:
            raise FleetError(f"a process named {name!r} exists already")
        defaults: dict[str, str] = {}
        if service is not Service.GATEWAY:
            defaults[f"LYCEUM_{service.upper()}_TORCH_THREADS"] = "1"  # many processes share few cores
        process = Process(
            name,
            service,
            {**defaults, **self.env, **env},
            self.workdir,
            host=self.host,
            port=port,
            metrics_port=metrics_port,
            ready_path=ready_path,
            python=self.python,
        )
        self.processes[name] = process
        return process

    def predictor(
        self,
        name: str,
        env: Mapping[str, str] | None = None,
        *,
        port: int | None = None,
        metrics_port: int | None = None,
    ) -> Process:
        """A predictor (not started): `LYCEUM_PREDICTOR_*` settings from the fleet's env, then `env`; free
        ports unless given."""
        return self._add(name, Service.PREDICTOR, env or {}, port, metrics_port)

    def sampler(
        self,
        name: str,
        env: Mapping[str, str] | None = None,
        *,
        port: int | None = None,
        metrics_port: int | None = None,
    ) -> Process:
        """A sampler (not started), likewise."""
        return self._add(name, Service.SAMPLER, env or {}, port, metrics_port)

    def gateway(
        self,
        name: str,
        *,
        predictors: Members = None,
        samplers: Members = None,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
    ) -> Process:
        """A gateway (not started) over `predictors` and `samplers`: a `MembershipFile`, processes or
        addresses, or a setting string. Ready when `/readyz` answers 200, or `/healthz` without predictors
        (readiness counts predictors only). Its job database and broker default to files in the fleet's
        folder; membership files are re-read every 0.2 s unless `env` says otherwise."""
        settings = {
            "LYCEUM_GATEWAY_PREDICTOR_ADDRESSES": _members(predictors),
            "LYCEUM_GATEWAY_SAMPLER_ADDRESSES": _members(samplers),
            "LYCEUM_GATEWAY_MEMBERSHIP_REFRESH_S": "0.2",
            "LYCEUM_GATEWAY_DATABASE_URL": f"sqlite:///{self.workdir / f'{name}.db'}",
            "LYCEUM_GATEWAY_BROKER_URL": f"filesystem://{self.workdir / f'{name}-broker'}",
        }
        ready = "/readyz" if predictors is not None else "/healthz"
        return self._add(name, Service.GATEWAY, {**settings, **(env or {})}, port, ready_path=ready)

    def membership(self, name: str, members: Iterable[str | Process] = ()) -> MembershipFile:
        """A membership file `<name>.members` in the fleet's folder, written with `members`."""
        return MembershipFile(self.workdir / f"{name}.members", members)

    def start(self, *processes: Process, timeout_s: float = 90.0) -> list[Process]:
        """Starts the processes together (they load in parallel), then waits until each is ready."""
        for process in processes:
            process.start(wait=False)
        for process in processes:
            process.wait_ready(timeout_s)
        return list(processes)

    def close(self, timeout_s: float = 15.0) -> None:
        """Stops every running process: SIGTERM to all (resumed first if paused), SIGKILL past the time."""
        running = [p for p in self.processes.values() if p.running]
        for process in running:
            assert process.popen is not None
            process.popen.send_signal(signal.SIGCONT)
            process.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for process in running:
            assert process.popen is not None
            try:
                process.popen.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait(timeout=30.0)
