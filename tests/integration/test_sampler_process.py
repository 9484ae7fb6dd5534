"""The `lyceum-sampler` entrypoint as a process: configured by LYCEUM_SAMPLER_* env vars, it serves, keeps
sessions in Redis across a restart of the process, and exits cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from fixtures.sampler import HF_MODEL, LYCEUM_MODEL, SAMPLER_REDIS_URL, append, create, distribution
from fixtures.servers import tenant_channel

from lyceum_api.sampler.v1 import sampler_pb2 as pb
from lyceum_api.sampler.v1 import sampler_pb2_grpc

pytestmark = pytest.mark.integration

SAMPLER = Path(sys.executable).with_name("lyceum-sampler")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Starts the sampler (output to `log`, so a full pipe can never block it) and waits until it serves."""
    with log.open("wb") as out:
        process = subprocess.Popen([str(SAMPLER)], env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if f"gRPC on 127.0.0.1:{port}" in log.read_text():
            return process
        assert process.poll() is None, f"the sampler exited before serving:\n{log.read_text()}"
        time.sleep(0.1)
    raise AssertionError(f"the sampler did not start serving:\n{log.read_text()}")


def stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=30)


def test_the_entrypoint_serves_and_keeps_sessions_across_restarts(
    tiny_lyceum_lm_dir: Path,
    tiny_hf_gpt2_dir: Path,
    sampler_redis: redis.Redis,
    sampler_key_prefix: str,
    tmp_path: Path,
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LYCEUM_SAMPLER_")} | {
        "LYCEUM_SAMPLER_PORT": str(port),
        "LYCEUM_SAMPLER_METRICS_PORT": "0",
        "LYCEUM_SAMPLER_MODELS": f"{LYCEUM_MODEL}={tiny_lyceum_lm_dir},{HF_MODEL}={tiny_hf_gpt2_dir}",
        "LYCEUM_SAMPLER_SESSION_STORE_URL": SAMPLER_REDIS_URL,
        "LYCEUM_SAMPLER_SESSION_KEY_PREFIX": sampler_key_prefix,
        "LYCEUM_SAMPLER_DEVICE": "cpu",
    }
    process = start(port, env, tmp_path / "first.log")
    try:
        with tenant_channel(f"127.0.0.1:{port}") as channel:
            stub = sampler_pb2_grpc.SamplerServiceStub(channel)
            assert {m.name for m in stub.ListModels(pb.ListModelsRequest()).models} == {
                LYCEUM_MODEL,
                HF_MODEL,
            }
            sid = create(stub).session_id
            append(stub, sid, token_id=9)
            before = distribution(stub, sid)
    finally:
        assert stop(process) == 0
    process = start(port, env, tmp_path / "second.log")
    try:
        with tenant_channel(f"127.0.0.1:{port}") as channel:
            stub = sampler_pb2_grpc.SamplerServiceStub(channel)
            after = distribution(stub, sid)
            assert [t.token.id for t in after.above] == [t.token.id for t in before.above]
            assert after.context_len == before.context_len
    finally:
        assert stop(process) == 0
