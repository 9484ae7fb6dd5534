"""The whole local stack as `make run` starts it (scripts/run_local.py): two predictor processes, a training
worker and the gateway, on embedded defaults in a temporary state folder."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_block(n: int) -> int:
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20_000, 60_000)
        if all(_free(base + i) for i in range(n)):
            return base
    raise RuntimeError("no free ports")


@pytest.fixture
def stack(
    tmp_path: Path, test_checkpoint: Path, tiny_lyceum_lm_dir: Path, smollm2_dir: Path
) -> Iterator[str]:
    base = _free_block(7)
    env = {
        **os.environ,
        "PREDICTORS": "2",
        "GATEWAY_PORT": str(base),
        "PREDICTOR_BASE_PORT": str(base + 1),
        "PREDICTOR_METRICS_BASE_PORT": str(base + 3),
        "TRAINER_METRICS_BASE_PORT": "0",
        "SAMPLER_PORT": str(base + 6),
        "SAMPLER_METRICS_PORT": "0",
        "LYCEUM_DEMO_LM_PATH": str(tiny_lyceum_lm_dir),
        "LYCEUM_SMOLLM2_PATH": str(smollm2_dir),  # converted once per test process, not once per stack
        "LYCEUM_STATE_DIR": str(tmp_path / "var"),
        "LYCEUM_PREDICTOR_MODEL_PATH": str(test_checkpoint),
        "LYCEUM_PREDICTOR_MODEL_POLL_S": "0.5",  # see alias moves quickly
        "LYCEUM_TRAINER_TORCH_THREADS": "1",
        "LYCEUM_TRAINER_HEARTBEAT_S": "0.5",
        "PYTHONUNBUFFERED": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "scripts/run_local.py"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    up = threading.Event()
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "Lyceum is up" in line:
                up.set()

    threading.Thread(target=read, daemon=True).start()
    # a fresh var/ trains the demo models (45-70 s alone on 2 cores, more when busy)
    if not up.wait(timeout=480):
        proc.kill()
        pytest.fail("stack did not come up:\n" + "".join(lines[-40:]))
    url = f"http://127.0.0.1:{base}"
    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(100):  # the gateway starts after the predictors report ready
            try:
                if client.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            threading.Event().wait(0.2)
    yield url
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, "".join(lines[-40:])
