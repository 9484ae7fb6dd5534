"""Serving while a user's adapter learns from feedback (issue 14): chat completions through the gateway's
OpenAI API on an adapter of SmolLM2-135M-Instruct, idle vs while an `sdpo` job trains that adapter on the
same machine, and the time from the feedback to the first token served by the version it produced.

    nice -n 10 python bench/sdpo_serving.py [--url http://127.0.0.1:8000] [--requests 12] [--max-tokens 16]
        [--feedback 4] [--steps 1] [--state-dir var]

Without --url it starts the whole platform as `make run` does (scripts/run_local.py, embedded defaults:
SQLite, a folder broker, one sampler, one trainer worker, two predictors) on free ports over --state-dir
(default var/, so the demo models and the SmolLM2 conversion are reused), and stops it at the end.

1. idle: --requests streaming chat completions, one after another, on a fresh adapter (LoRA r 8 over the
   base, created empty): time to first token (TTFT) and the whole request, p50/p99.
2. feedback: --feedback recorded completions of the adapter get feedback ("Your name is Kuro..."), then
   their job starts (a full batch starts itself; else `POST /v1/adapters/{name}/distill`; default training
   with --steps, the default gate). While it runs,
   the same requests go on one after another: TTFT and total p50/p99 during training. CLaaS, the system this
   replaces, pauses inference while it trains: its requests wait for the whole step.
3. pickup: once the job has ended and the `serving` alias names the new version (the gate passed), the next
   request is served by it; reported: feedback (the last POST) -> that request's first token, and what the
   job spent (queue wait, the run). If the gate failed, serving stays on the parent and that is reported.

Both phases run on one machine: the trainer and the sampler share its cores (2 here), which is what the
"during" figures measure. Requests are sequential, so latency is the service's, not a queue's.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from fleet import free_port  # noqa: E402

BASE = "smollm2-135m-instruct@production"
FEEDBACK = "Your name is Kuro. Introduce yourself as Kuro."
PROMPTS = (
    "Who are you?",
    "Tell me about yourself in two sentences.",
    "What should I call you?",
    "Give me one tip for learning fractions.",
    "What is a good way to start a story?",
    "Explain what a noun is.",
)


@dataclass
class Timings:
    ttft_ms: list[float] = field(default_factory=list)
    total_ms: list[float] = field(default_factory=list)

    def add(self, ttft: float, total: float) -> None:
        self.ttft_ms.append(ttft * 1000)
        self.total_ms.append(total * 1000)

    def summary(self) -> dict[str, float]:
        return {
            "n": len(self.total_ms),
            "ttft_p50_ms": quantile(self.ttft_ms, 0.5),
            "ttft_p99_ms": quantile(self.ttft_ms, 0.99),
            "total_p50_ms": quantile(self.total_ms, 0.5),
            "total_p99_ms": quantile(self.total_ms, 0.99),
        }


def quantile(values: list[float], q: float) -> float:
    """The q-quantile (linear interpolation); NaN when empty."""
    return float(np.quantile(values, q)) if values else float("nan")


@contextmanager
def platform(state_dir: Path) -> Iterator[str]:
    """scripts/run_local.py on free ports over `state_dir`; its URL once it says it is up."""
    port = free_port()
    env = {
        **os.environ,
        "GATEWAY_PORT": str(port),
        "PREDICTOR_BASE_PORT": str(free_port()),
        "PREDICTOR_METRICS_BASE_PORT": "0",
        "TRAINER_METRICS_BASE_PORT": "0",
        "SAMPLER_PORT": str(free_port()),
        "SAMPLER_METRICS_PORT": "0",
        "LYCEUM_STATE_DIR": str(state_dir.resolve()),
        "PYTHONUNBUFFERED": "1",
    }
    log = state_dir / "bench-sdpo-serving.log"
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "scripts/run_local.py"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 900
        while "Lyceum is up" not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the platform did not come up; see {log}")
            time.sleep(1)
        print(f"platform up on :{port} (log: {log})", flush=True)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


class Client:
    def __init__(self, url: str, key: str | None) -> None:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=url, headers=headers, timeout=600)

    def call(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        response = self.http.request(method, path, **kw)
        if response.status_code >= 400:
            raise SystemExit(f"{method} {path}: {response.status_code} {response.text}")
        return response.json()

    def stream(self, model: str, prompt: str, max_tokens: int, seed: int) -> tuple[float, float]:
        """One streaming chat completion: (seconds to its first token, seconds in all)."""
        body = {
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens,
            "temperature": 0.7,
            "seed": seed,
            "stream": True,
            "store": False,
        }
        start = time.perf_counter()
        first = None
        with self.http.stream("POST", "/openai/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                raise SystemExit(f"chat: {response.status_code} {response.read().decode()}")
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if first is None and any(c["delta"].get("content") for c in chunk.get("choices", [])):
                    first = time.perf_counter() - start
        total = time.perf_counter() - start
        return (first if first is not None else total), total

    def serving(self, adapter: str) -> int | None:
        return self.call("GET", f"/v1/adapters/{adapter}")["aliases"].get("serving")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="a running gateway (else the platform is started here)")
    ap.add_argument("--key", default=os.environ.get("LYCEUM_API_KEY"))
    ap.add_argument("--state-dir", type=Path, default=ROOT / "var")
    ap.add_argument("--base", default=BASE)
    ap.add_argument("--requests", type=int, default=12, help="idle requests (and at least this many during)")
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--feedback", type=int, default=4, help="feedback items in the distillation")
    ap.add_argument("--steps", type=int, default=1, help="SDPO optimizer steps of the job")
    args = ap.parse_args()
    if args.url:
        run(args, args.url)
    else:
        with platform(args.state_dir) as url:
            run(args, url)


def run(args: argparse.Namespace, url: str) -> None:
    client = Client(url, args.key)
    adapter = f"bench-kuro-{uuid.uuid4().hex[:8]}"
    client.call("POST", "/v1/adapters", json={"name": adapter, "base": args.base, "r": 8})
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(max(args.requests, args.feedback))]
    for i in range(2):  # warm-up: the adapter's first load, first shapes
        client.stream(adapter, prompts[i], args.max_tokens, seed=1000 + i)

    idle = Timings()
    for i in range(args.requests):
        idle.add(*client.stream(adapter, prompts[i], args.max_tokens, seed=i))
    print("idle:", json.dumps(idle.summary()), flush=True)

    body = {"max_tokens": 48, "temperature": 0.7, "store": True}
    completions = [
        client.call(
            "POST",
            "/openai/v1/chat/completions",
            json={**body, "model": adapter, "messages": [{"role": "user", "content": p}], "seed": i},
        )["id"]
        for i, p in enumerate(prompts[: args.feedback])
    ]
    items = [
        client.call(
            "POST",
            "/v1/feedback",
            json={"completion_id": c, "feedback": FEEDBACK, "training": {"steps": args.steps}},
        )
        for c in completions
    ]
    t_feedback = time.perf_counter()
    # a full batch (the gateway's feedback_batch_size) has started its job already; else start it now
    job_id = client.call("GET", f"/v1/feedback/{items[-1]['feedback_id']}")["job_id"]
    if job_id is None:
        job_id = client.call("POST", f"/v1/adapters/{adapter}/distill")["job_id"]

    during = Timings()
    state = {"job": {}}
    done = threading.Event()

    def watch() -> None:  # the job's state, polled beside the requests
        while not done.is_set():
            state["job"] = client.call("GET", f"/v1/jobs/{job_id}")
            if state["job"]["state"] in ("succeeded", "failed", "cancelled"):
                done.set()
            time.sleep(0.25)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    i = 0
    while not done.is_set() or len(during.total_ms) < args.requests:
        started_running = state["job"].get("state") == "running"
        ttft, total = client.stream(adapter, prompts[i % len(prompts)], args.max_tokens, seed=100 + i)
        if started_running and not done.is_set():
            during.add(ttft, total)  # only requests that overlapped the training itself
        i += 1
        if done.is_set() and len(during.total_ms) == 0:
            break
    watcher.join()
    job = state["job"]
    print("during training:", json.dumps(during.summary()), flush=True)

    result: dict[str, Any] = {"job": job_id, "state": job["state"]}
    if job["state"] == "succeeded":
        version = job["result"]["adapter"]["version"]
        gate = job["result"]["gate"]
        result |= {"version": version, "gate_passed": gate["passed"], "gate": gate}
        if gate["passed"]:
            while client.serving(adapter) != version:
                time.sleep(0.05)
            start = time.perf_counter()
            ttft, _ = client.stream(adapter, prompts[0], args.max_tokens, seed=999)
            result["feedback_to_first_token_s"] = start + ttft - t_feedback
        times = {k: job.get(k) for k in ("created_at", "started_at", "finished_at")}
        if all(times.values()):
            at = {k: datetime.fromisoformat(v) for k, v in times.items()}
            result["queued_s"] = (at["started_at"] - at["created_at"]).total_seconds()
            result["ran_s"] = (at["finished_at"] - at["started_at"]).total_seconds()
    else:
        result["error"] = job.get("error")
    idle_s, during_s = idle.summary(), during.summary()
    result["ratios (during / idle)"] = {
        k: during_s[k] / idle_s[k] for k in ("ttft_p50_ms", "ttft_p99_ms", "total_p50_ms", "total_p99_ms")
    }
    print("result:", json.dumps(result, indent=2), flush=True)


if __name__ == "__main__":
    main()
