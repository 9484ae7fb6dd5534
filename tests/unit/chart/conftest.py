"""Fixtures for the Helm chart tests: the `helm` binary (installed by scripts/install_helm.py, never skipped)
and the chart rendered offline with `helm template`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_helpers import (
    HELM_MAJOR,
    INSTALL_HINT,
    SCENARIOS,
    VALUES_DIR,
    Manifests,
    Render,
    find_helm,
    helm_template,
)


@pytest.fixture(scope="session")
def helm_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Helm's config, cache and data dirs in a scratch folder: rendering never touches $HOME."""
    home = tmp_path_factory.mktemp("helm-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HELM_", "KUBECONFIG"))}
    env |= {f"HELM_{d}_HOME": str(home / d.lower()) for d in ("CONFIG", "CACHE", "DATA")}
    return env


@pytest.fixture(scope="session")
def helm(helm_env: dict[str, str]) -> Path:
    path = find_helm()
    if path is None:
        pytest.fail(f"helm not found: {INSTALL_HINT}", pytrace=False)
    out = subprocess.run([path, "version", "--short"], capture_output=True, text=True, env=helm_env)
    if out.returncode != 0 or not out.stdout.startswith(HELM_MAJOR):
        pytest.fail(f"{path} is not Helm 3 ({out.stdout.strip() or out.stderr.strip()}): {INSTALL_HINT}")
    return path


@pytest.fixture(scope="session")
def render(helm: Path, helm_env: dict[str, str]) -> Render:
    """render(*values_files, sets=[...], release=..., namespace=...) -> Manifests, cached per arguments."""
    cache: dict[tuple[Any, ...], Manifests] = {}

    def _render(
        *values: Path | str,
        sets: tuple[str, ...] | list[str] = (),
        release: str = "lyceum",
        namespace: str = "lyceum",
    ) -> Manifests:
        key = (tuple(map(str, values)), tuple(sets), release, namespace)
        if key not in cache:
            args = [release, "--namespace", namespace]
            for path in values:
                args += ["-f", str(path)]
            for item in sets:
                args += ["--set", item]
            out = helm_template(helm, helm_env, args)
            assert out.returncode == 0, f"helm template {' '.join(args)} failed:\n{out.stderr}"
            docs = tuple(d for d in yaml.safe_load_all(out.stdout) if d)
            cache[key] = Manifests(docs, release, namespace)
        return cache[key]

    return _render


@pytest.fixture(params=sorted(SCENARIOS))
def scenario(request: pytest.FixtureRequest, render: Render) -> Manifests:
    """The chart rendered under each scenario in SCENARIOS."""
    values, sets = SCENARIOS[request.param]
    return render(*values, sets=sets)


@pytest.fixture(scope="session")
def prod(render: Render) -> Manifests:
    return render(VALUES_DIR / "values-prod.yaml")


@pytest.fixture(scope="session")
def default(render: Render) -> Manifests:
    return render()
