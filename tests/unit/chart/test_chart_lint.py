"""The chart lints strictly with its defaults and every deploy/helm values file, values.schema.json refuses
bad values, template-level checks fail loudly, and NOTES.txt renders."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from chart_helpers import CHART, VALUES_FILES, Render, helm_template


def test_values_files_exist() -> None:
    assert [p.name for p in VALUES_FILES] == ["values-dev.yaml", "values-prod.yaml", "values-staging.yaml"]


@pytest.mark.parametrize("values", [None, *VALUES_FILES], ids=lambda p: p.name if p else "default")
def test_lint_strict(helm: Path, helm_env: dict[str, str], values: Path | None) -> None:
    args = [helm, "lint", "--strict", CHART, *(["-f", values] if values else [])]
    out = subprocess.run(args, capture_output=True, text=True, env=helm_env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 chart(s) failed" in out.stdout
    assert "[WARNING]" not in out.stdout and "[ERROR]" not in out.stdout, out.stdout


def test_schema_is_draft_07() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["additionalProperties"] is False


BAD_SETS = {
    "negative predictor replicas": (["predictor.replicas=-1"], "/predictor/replicas"),
    "zero predictor replicas": (["predictor.replicas=0"], "/predictor/replicas"),
    "unknown registry type": (["registry.type=nfs"], "/registry/type"),
    "s3 registry without url": (["registry.type=objectStore"], "/registry/objectStore/url"),
    "unknown service type": (["gateway.service.type=Ingress"], "/gateway/service/type"),
    "bad pull policy": (["image.pullPolicy=Sometimes"], "/image/pullPolicy"),
    "negative gpu": (["trainer.workers[0].gpu=-1"], "/trainer/workers/0/gpu"),
    "port out of range": (["predictor.port=70000"], "/predictor/port"),
    "model without alias": (["predictor.model=dfm-demo"], "/predictor/model"),
    "unknown top-level key": (["predictors.replicas=3"], "predictors"),
    "postgres without password": (["postgresql.enabled=true"], "/postgresql/auth/password"),
    "settings key not snake_case": (["gateway.config.RequestTimeout=3"], "RequestTimeout"),
}


@pytest.mark.parametrize("sets,where", BAD_SETS.values(), ids=BAD_SETS.keys())
def test_schema_rejects(helm: Path, helm_env: dict[str, str], sets: list[str], where: str) -> None:
    args = ["lyceum"] + [a for s in sets for a in ("--set", s)]
    out = helm_template(helm, helm_env, args)
    assert out.returncode != 0, f"helm template accepted {sets}"
    assert "values don't meet the specifications of the schema" in out.stderr, out.stderr
    assert where in out.stderr, out.stderr


def test_schema_rejects_bad_values_file(helm: Path, helm_env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("predictor:\n  replicas: three\n  gpu: 0.5\nsampler:\n  models: []\n")
    out = helm_template(helm, helm_env, ["lyceum", "-f", str(bad)])
    assert out.returncode != 0
    for where in ("/predictor/replicas", "/predictor/gpu", "/sampler/models"):
        assert where in out.stderr, out.stderr


TEMPLATE_FAILURES = {
    "grace shorter than drain": (
        ["predictor.terminationGracePeriodSeconds=20", "predictor.drain.delaySeconds=15"],
        "predictor.terminationGracePeriodSeconds (20) must exceed",
    ),
    "sampler grace shorter than drain": (
        ["sampler.terminationGracePeriodSeconds=5"],
        "sampler.terminationGracePeriodSeconds (5) must exceed",
    ),
    "samplers without a shared session store": (
        ["sampler.replicas=2", "secrets.sessionStoreUrl="],
        "needs a shared session store",
    ),
    "no database": (["secrets.databaseUrl="], "secrets.databaseUrl"),
    "seed without trainer": (
        ["seed.enabled=true", "trainer.enabled=false"],
        "seed.enabled needs trainer.enabled",
    ),
}


@pytest.mark.parametrize("sets,message", TEMPLATE_FAILURES.values(), ids=TEMPLATE_FAILURES.keys())
def test_template_refuses(helm: Path, helm_env: dict[str, str], sets: list[str], message: str) -> None:
    out = helm_template(helm, helm_env, ["lyceum"] + [a for s in sets for a in ("--set", s)])
    assert out.returncode != 0, f"helm template accepted {sets}"
    assert message in out.stderr, out.stderr


@pytest.fixture(scope="module")
def notes_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the chart with NOTES.txt wrapped in a manifest, since `helm template` skips NOTES.txt."""
    chart = tmp_path_factory.mktemp("notes") / "lyceum"
    shutil.copytree(CHART, chart)
    notes = (CHART / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "_notes_check.tpl").write_text(
        '{{- define "test.notes" -}}\n' + notes + "{{- end }}\n"
    )
    (chart / "templates" / "notes-check.yaml").write_text(
        'kind: NotesCheck\ntext: |\n  {{- include "test.notes" . | nindent 2 }}\n'
    )
    return chart


NOTES = {
    "port-forward": ([], ["kubectl port-forward --namespace lyceum svc/lyceum-gateway 8000:80"]),
    "ingress": (["gateway.ingress.enabled=true"], ["http://lyceum.example.com/"]),
    "load balancer": (
        ["gateway.service.type=LoadBalancer"],
        ["kubectl get svc --namespace lyceum lyceum-gateway"],
    ),
    "node port": (["gateway.service.type=NodePort"], ["NODE_PORT"]),
    "trial servers": (
        ["postgresql.enabled=true", "postgresql.auth.password=x", "redis.enabled=true", "seed.enabled=true"],
        ["Postgres and Redis are for trials only", "job/lyceum-seed"],
    ),
}


@pytest.mark.parametrize("sets,expected", NOTES.values(), ids=NOTES.keys())
def test_notes_render(
    helm: Path, helm_env: dict[str, str], notes_chart: Path, sets: list[str], expected: list[str]
) -> None:
    args = ["lyceum", "--namespace", "lyceum", "--show-only", "templates/notes-check.yaml"]
    out = helm_template(helm, helm_env, args + [a for s in sets for a in ("--set", s)], chart=notes_chart)
    assert out.returncode == 0, out.stderr
    text = yaml.safe_load(out.stdout)["text"]
    assert "lyceum-predictor-{0..1}.lyceum-predictor-headless.lyceum.svc.cluster.local:50051" in text
    for line in expected:
        assert line in text, text


def test_render_is_deterministic(render: Render) -> None:
    """Same values, same manifests (checksums included): upgrades without changes roll nothing."""
    first = render(sets=["log.level=DEBUG"])
    second = render(sets=["log.level=DEBUG", "log.level=DEBUG"])
    assert first.docs == second.docs
