"""Helpers for the Helm chart tests: where the chart and helm are, `helm template` output parsed into
manifests with lookups by kind, name and component, and the scenarios the tests render."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "lyceum"
VALUES_DIR = ROOT / "deploy" / "helm"
VALUES_FILES = sorted(VALUES_DIR.glob("values-*.yaml"))
SERVICES = ("gateway", "predictor", "sampler", "trainer")
HELM_MAJOR = "v3."
INSTALL_HINT = "run `.venv/bin/python scripts/install_helm.py` (installs Helm 3 into .venv/bin/helm)"
WORKLOADS = ("Deployment", "StatefulSet", "Job")


def find_helm() -> Path | None:
    """.venv/bin/helm beside this interpreter, else a Helm 3 on PATH."""
    candidates = [Path(sys.executable).parent / "helm", ROOT / ".venv" / "bin" / "helm"]
    on_path = shutil.which("helm")
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


@dataclass(frozen=True)
class Manifests:
    """One `helm template` output: its documents and the release it was rendered for."""

    docs: tuple[dict[str, Any], ...]
    release: str
    namespace: str

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.docs)

    def kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [d for d in self.kind(kind) if d["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
        return found[0]

    def component(self, kind: str, component: str) -> list[dict[str, Any]]:
        return [d for d in self.kind(kind) if labels(d).get("app.kubernetes.io/component") == component]

    def one(self, kind: str, component: str) -> dict[str, Any]:
        found = self.component(kind, component)
        assert len(found) == 1, f"expected one {kind} of {component}, found {[name(d) for d in found]}"
        return found[0]

    def workloads(self) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] in WORKLOADS]

    def config_data(self, workload: dict[str, Any], container: str | None = None) -> dict[str, str]:
        """What a container's envFrom ConfigMaps plus its literal env give it (secrets left out)."""
        c = container_named(workload, container)
        data: dict[str, str] = {}
        for source in c.get("envFrom", []):
            if "configMapRef" in source:
                data |= self.get("ConfigMap", source["configMapRef"]["name"])["data"]
        data |= {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}
        return data


def name(doc: dict[str, Any]) -> str:
    return doc["metadata"]["name"]


def labels(doc: dict[str, Any]) -> dict[str, str]:
    return doc["metadata"].get("labels", {})


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


def container_named(workload: dict[str, Any], container: str | None = None) -> dict[str, Any]:
    main = pod_spec(workload)["containers"]
    if container is None:
        assert len(main) == 1, f"{name(workload)}: several containers, name one"
        return main[0]
    return next(c for c in main if c["name"] == container)


def selects(selector: dict[str, str], doc_labels: dict[str, str]) -> bool:
    return all(doc_labels.get(k) == v for k, v in selector.items())


Render = Callable[..., Manifests]


def helm_template(
    helm: Path, env: dict[str, str], args: list[str], chart: Path = CHART
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [helm, "template", *args[:1], chart, *args[1:]], capture_output=True, text=True, env=env
    )


# Renders the tests walk through: the defaults, every deploy/helm values file, and every optional part on.
EVERYTHING_ON = (
    "gateway.ingress.enabled=true",
    "serviceMonitor.enabled=true",
    "seed.enabled=true",
    "sampler.autoscaling.enabled=true",
    "sampler.pdb.enabled=true",
    "postgresql.enabled=true",
    "postgresql.auth.password=trial",
    "redis.enabled=true",
    "predictor.drain.preStopSleepSeconds=3",
    "secrets.apiKeys={acme:key-1,key-2}",
    "secrets.adminKeys={admin-key-1}",
)
SCENARIOS = {
    "default": ((), ()),
    **{path.stem.removeprefix("values-"): ((path,), ()) for path in VALUES_FILES},
    "everything-on": ((), EVERYTHING_ON),
}
