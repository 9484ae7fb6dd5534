"""Runs the platform on embedded defaults (`make run`): SQLite under var/, the demo DFM, N predictor processes
on loopback ports and the gateway routing across them. Ctrl-C (or SIGTERM) drains and stops everything.

    PREDICTORS=3 GATEWAY_PORT=8000 python scripts/run_local.py

Environment: PREDICTORS, GATEWAY_PORT, PREDICTOR_BASE_PORT, PREDICTOR_METRICS_BASE_PORT, HOST,
LYCEUM_STATE_DIR (default var/), and any LYCEUM_PREDICTOR_* / LYCEUM_GATEWAY_* setting.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
STATE = Path(os.environ.get("LYCEUM_STATE_DIR", ROOT / "var"))


def wait_serving(address: str, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"predictor at {address} exited with code {proc.returncode}")
            try:
                if (
                    stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                    == health_pb2.HealthCheckResponse.SERVING
                ):
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise SystemExit(f"predictor at {address} did not become ready in {timeout_s:.0f}s")


def main() -> int:
    n = int(os.environ.get("PREDICTORS", "1"))
    gateway_port = int(os.environ.get("GATEWAY_PORT", "8000"))
    base_port = int(os.environ.get("PREDICTOR_BASE_PORT", "50051"))
    host = os.environ.get("HOST", "127.0.0.1")
    STATE.mkdir(parents=True, exist_ok=True)
    model = Path(os.environ.get("LYCEUM_PREDICTOR_MODEL_PATH", STATE / "models" / "dfm-demo"))
    if not (model / "config.json").exists():
        subprocess.run(
            [sys.executable, "-m", "lyceum_ml.dfm.demo", "--out", str(model)], check=True, cwd=ROOT
        )
    metrics_base = int(os.environ.get("PREDICTOR_METRICS_BASE_PORT", "9101"))
    env = {
        "LYCEUM_PREDICTOR_DATABASE_URL": f"sqlite:///{STATE / 'lyceum.db'}",
        **os.environ,  # explicit settings win over the embedded defaults
        "LYCEUM_PREDICTOR_MODEL_PATH": str(model),
    }
    procs: list[subprocess.Popen] = []
    addresses = []

    def stop(*_: object) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()

    def on_signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # unwinds to `finally: stop()`, also where SIGINT was inherited as ignored

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        for i in range(n):
            port = base_port + i
            addresses.append(f"{host}:{port}")
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "lyceum_predictor"],
                    cwd=ROOT,
                    env={
                        **env,
                        "LYCEUM_PREDICTOR_PORT": str(port),
                        "LYCEUM_PREDICTOR_METRICS_PORT": str(metrics_base + i),
                        "LYCEUM_PREDICTOR_HOST": host,
                        # only the first process migrates, so parallel starts don't race on the schema
                        "LYCEUM_PREDICTOR_MIGRATE_ON_START": "true" if i == 0 else "false",
                    },
                )
            )
            wait_serving(addresses[-1], procs[-1])
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "lyceum_gateway"],
                cwd=ROOT,
                env={
                    **os.environ,
                    "LYCEUM_GATEWAY_HOST": host,
                    "LYCEUM_GATEWAY_PORT": str(gateway_port),
                    "LYCEUM_GATEWAY_PREDICTOR_ADDRESSES": ",".join(addresses),
                },
            )
        )
        url = f"http://{host}:{gateway_port}"
        print(
            f"\nLyceum is up ({n} predictor{'s' if n > 1 else ''}: {', '.join(addresses)})\n"
            f"  REST API      {url}/v1\n  API docs      {url}/docs\n  DFM-Server    {url}/dfm-server\n"
            f"  metrics       {url}/metrics\nCtrl-C to stop.\n",
            flush=True,
        )
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        failed = next(p for p in procs if p.poll() is not None)
        print(f"{failed.args[-1]} exited with code {failed.returncode}; stopping", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop()


if __name__ == "__main__":
    sys.exit(main())
