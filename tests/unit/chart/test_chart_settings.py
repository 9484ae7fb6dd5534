"""The environment the chart gives each service is one its Settings class reads: every LYCEUM_<SVC>_* key
names a real field, the rendered values parse, and the commands the pods run exist."""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from chart_helpers import SERVICES, Manifests, containers, name
from pydantic_settings import BaseSettings

import lyceum_db.__main__ as db_cli

# Keys for the Lyceum CLIs that are not Settings classes.
CLI_KEYS = {db_cli.URL_ENV}
DUMMY_SECRETS = {
    "DATABASE_URL": "postgresql://lyceum@postgres:5432/lyceum",
    "BROKER_URL": "redis://redis:6379/0",
    "SESSION_STORE_URL": "redis://redis:6379/1",
    "API_KEYS": "acme:k1,k2",
    "ADMIN_KEYS": "admin-k1",
}


@pytest.fixture
def settings_classes(monkeypatch: pytest.MonkeyPatch) -> dict[str, type[BaseSettings]]:
    """Each service's Settings, with this process's LYCEUM_* variables out of the way."""
    for key in list(os.environ):
        if key.startswith("LYCEUM_"):
            monkeypatch.delenv(key)
    return {svc: importlib.import_module(f"lyceum_{svc}.config").Settings for svc in SERVICES}


def lyceum_keys(m: Manifests, container: dict[str, Any]) -> dict[str, str | None]:
    """LYCEUM_* env of a container: ConfigMap data and literal values, None for secret/field refs."""
    keys: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            keys |= m.get("ConfigMap", source["configMapRef"]["name"])["data"]
    for env in container.get("env", []):
        keys[env["name"]] = env.get("value")
    return {k: v for k, v in keys.items() if k.startswith("LYCEUM_")}


def test_every_lyceum_key_is_a_settings_field(
    scenario: Manifests, settings_classes: dict[str, type[BaseSettings]]
) -> None:
    for workload in scenario.workloads():
        for c in containers(workload):
            for key in lyceum_keys(scenario, c):
                if key in CLI_KEYS:
                    continue
                service = key.split("_")[1].lower()
                assert service in settings_classes, f"{name(workload)}: {key} names no service"
                field = key.removeprefix(f"LYCEUM_{service.upper()}_").lower()
                fields = settings_classes[service].model_fields
                assert field in fields, f"{name(workload)}: {key}: {service} has no setting {field!r}"
    for cm in scenario.kind("ConfigMap"):
        for key in cm["data"]:
            if key.startswith("LYCEUM_"):
                service = key.split("_")[1].lower()
                field = key.removeprefix(f"LYCEUM_{service.upper()}_").lower()
                assert field in settings_classes[service].model_fields, f"ConfigMap {name(cm)}: {key}"


def test_rendered_settings_parse(
    scenario: Manifests, settings_classes: dict[str, type[BaseSettings]]
) -> None:
    """Each service container's settings build from what the chart renders (plus its secrets)."""
    built = set()
    for workload in scenario.workloads():
        for c in workload["spec"]["template"]["spec"]["containers"]:
            command = c.get("command", [])
            service = next((s for s in SERVICES if f"lyceum_{s}" in command), None)
            if service is None:
                continue
            prefix = f"LYCEUM_{service.upper()}_"
            given = {}
            for key, value in lyceum_keys(scenario, c).items():
                field = key.removeprefix(prefix).lower()
                if value is None:
                    value = DUMMY_SECRETS.get(key.removeprefix(prefix), "from-the-pod")
                given[field] = value
            settings = settings_classes[service](_env_file=None, **given)
            if hasattr(settings, "host"):
                assert settings.host == "0.0.0.0", name(workload)
            for field in ("database_url", "broker_url"):
                if field in type(settings).model_fields:
                    assert getattr(settings, field) == DUMMY_SECRETS[field.upper()], (
                        f"{name(workload)}: {field}"
                    )
            built.add(service)
    assert built >= {"gateway", "predictor", "trainer"}


def test_service_ports_match_settings(default: Manifests) -> None:
    expected = {
        "gateway": {"http": 8000},
        "predictor": {"grpc": 50051, "metrics": 9101},
        "sampler": {"grpc": 50061, "metrics": 9301},
        "trainer": {"metrics": 9201},
    }
    for workload in default.workloads():
        comp = workload["metadata"]["labels"]["app.kubernetes.io/component"]
        if comp not in expected or workload["kind"] == "Job":
            continue
        c = workload["spec"]["template"]["spec"]["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports == expected[comp], name(workload)
        data = default.config_data(workload)
        for port_name, port in ports.items():
            key = {"grpc": "PORT", "http": "PORT", "metrics": "METRICS_PORT"}[port_name]
            assert int(data[f"LYCEUM_{comp.upper()}_{key}"]) == port


def test_entrypoints_exist(scenario: Manifests) -> None:
    for workload in scenario.workloads():
        for c in containers(workload):
            command = [*c.get("command", []), *c.get("args", [])]
            if command[:2] != ["python", "-m"]:
                continue
            module = command[2]
            assert importlib.util.find_spec(module) is not None, f"{name(workload)}: no module {module}"
            assert importlib.util.find_spec(f"{module}.__main__") is not None, f"{module} has no __main__"


def test_trainer_subcommands_exist(scenario: Manifests) -> None:
    """`python -m lyceum_trainer <command> [--option ...]`: commands and options the CLI has."""
    source = (Path(importlib.util.find_spec("lyceum_trainer.__main__").origin)).read_text()
    for workload in scenario.workloads():
        for c in containers(workload):
            command = [*c.get("command", []), *c.get("args", [])]
            if command[:3] == ["python", "-m", "lyceum_trainer"]:
                for word in [command[3], *(w for w in command[4:] if w.startswith("--"))]:
                    assert f'"{word}"' in source, f"{name(workload)}: lyceum_trainer has no {word!r}"


def test_migrations_command_runs(default: Manifests, tmp_path: Path) -> None:
    """The migrations Job's exact command, with its URL variable, migrates a scratch SQLite database."""
    c = default.one("Job", "migrations")["spec"]["template"]["spec"]["containers"][0]
    url_var = next(e["name"] for e in c["env"] if "valueFrom" in e)
    command = [sys.executable if c["command"][0] == "python" else c["command"][0], *c["command"][1:]]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LYCEUM_")}
    env[url_var] = f"sqlite:///{tmp_path / 'chart.db'}"
    out = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "at revision" in out.stdout
    assert (tmp_path / "chart.db").stat().st_size > 0
