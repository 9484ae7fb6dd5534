"""deploy/prometheus/rules/lyceum.rules.yml: the alerts the platform needs, in valid PromQL, over metrics and
labels the services really export, under the job names both the compose Prometheus and the chart's
ServiceMonitors give them. Their promtool unit tests (tests/unit/chart/alerts/) run with `make alerts-check`,
where promtool is installed (Debian: `apt-get install prometheus`)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from chart_helpers import ROOT, Render
from prometheus_client import REGISTRY, CollectorRegistry

RULES = ROOT / "deploy" / "prometheus" / "rules" / "lyceum.rules.yml"
PROMTOOL_TESTS = Path(__file__).parent / "alerts" / "lyceum.rules.test.yml"
JOBS = {"gateway", "predictor", "sampler", "trainer"}
REQUIRED_ALERTS = {
    "LyceumGatewayHighErrorRate",
    "LyceumGatewayHighLatencyP99",
    "LyceumPredictorCacheRebuildStorm",
    "LyceumSamplerCacheRebuildStorm",
    "LyceumJobsStuckQueued",
    "LyceumJobsStuckCancelling",
    "LyceumTrainerNoProgress",
    "LyceumPredictorDown",
    "LyceumPredictorsAllDown",
}
# Modules whose import registers the services' metrics in prometheus_client's default registry.
METRIC_MODULES = (
    "lyceum_core.metrics",
    "lyceum_predictor.cache",
    "lyceum_predictor.server",
    "lyceum_sampler.cache",
    "lyceum_sampler.models",
    "lyceum_trainer.runner",
    "lyceum_trainer.reconciler",
)
TARGET_LABELS = {"job", "instance"}
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created")}


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def exported(registry: CollectorRegistry) -> dict[str, set[str]]:
    """Sample name -> label names, for every metric in the registry (labelled ones included)."""
    names: dict[str, set[str]] = {}
    # The collectors themselves: a labelled metric yields no samples (so no label names) until first used.
    for collector in list(registry._collector_to_names):
        label_names = set(getattr(collector, "_labelnames", ()))
        for family in collector.collect():
            for suffix in SUFFIXES.get(family.type, ("",)):
                names[family.name + suffix] = label_names | ({"le"} if suffix == "_bucket" else set())
    return names


@pytest.fixture(scope="module")
def metrics() -> dict[str, set[str]]:
    """Every sample name the services export, with its label names."""
    for module in METRIC_MODULES:
        importlib.import_module(module)
    from lyceum_gateway.metrics import JOBS_METRIC, HttpMetrics

    names = exported(REGISTRY) | exported(HttpMetrics().registry)
    names[JOBS_METRIC] = {"kind", "state"}  # the gateway's JobsCollector, counted in the database
    names["up"] = set()
    return names


def test_required_alerts(rules: list[dict[str, Any]]) -> None:
    assert {r["alert"] for r in rules} == REQUIRED_ALERTS


def test_rules_are_complete(rules: list[dict[str, Any]]) -> None:
    for rule in rules:
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
        assert rule["for"].endswith("m"), rule["alert"]


def selectors(expr: str) -> list[promql_parser.VectorSelector]:
    found: list[promql_parser.VectorSelector] = []
    promql_parser.walk(
        promql_parser.parse(expr),
        pre_visit=lambda node: found.append(node) if isinstance(node, promql_parser.VectorSelector) else None,
    )
    return found


def test_expressions_use_exported_metrics(rules: list[dict[str, Any]], metrics: dict[str, set[str]]) -> None:
    for rule in rules:
        for selector in selectors(rule["expr"]):
            where = f"{rule['alert']}: {selector.name}"
            assert selector.name in metrics, f"{where} is not exported by any service"
            for matcher in selector.matchers.matchers:
                assert matcher.name in metrics[selector.name] | TARGET_LABELS, (
                    f"{where} has no label {matcher.name}"
                )
                if matcher.name == "job":
                    assert matcher.op == promql_parser.MatchOp.Equal and matcher.value in JOBS, where


def test_job_names_match_the_scrape_configs(render: Render) -> None:
    """The rules' `job` values are what both Prometheus setups call the services."""
    compose = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    assert JOBS <= {job["job_name"] for job in compose["scrape_configs"]}
    monitors = render(sets=["serviceMonitor.enabled=true"]).kind("ServiceMonitor")
    for sm in monitors:
        label = sm["spec"]["jobLabel"]
        assert sm["metadata"]["labels"][label] in JOBS
