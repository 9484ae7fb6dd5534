"""The Grafana provisioning and the Lyceum dashboard: the JSON parses, its queries name only metrics the
services export (found in their source, with prometheus_client's suffixes), and it shows what operators
need."""

from __future__ import annotations

import json
import re
from pathlib import Path

import promql_parser
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
GRAFANA = ROOT / "deploy/grafana"
DASHBOARD = GRAFANA / "dashboards/lyceum.json"
# A metric constructor and its name: a literal, or a module constant holding one.
CONSTRUCTOR = re.compile(
    r"\b(?P<type>Counter|Gauge|Histogram|Summary|Info|Enum|(?:Counter|Gauge|Histogram|Summary)MetricFamily)"
    r"\(\s*(?:name\s*=\s*)?(?:\"(?P<literal>lyceum_\w+)\"|(?P<constant>[A-Z][A-Z0-9_]*)\b)"
)
CONSTANT = re.compile(r"^(?P<constant>[A-Z][A-Z0-9_]*)\s*(?::[^=\n]+)?=\s*\"(?P<name>lyceum_\w+)\"", re.M)
METRIC = re.compile(r"\blyceum_[a-z0-9_]+")
# What the dashboard must show (the families, whatever the suffix).
REQUIRED = [
    "lyceum_http_requests_total",
    "lyceum_http_request_latency_seconds",
    "lyceum_predictor_resident_learners",
    "lyceum_sampler_resident_sessions",
    "lyceum_predictor_cache_bytes",
    "lyceum_sampler_cache_bytes",
    "lyceum_predictor_cache_hits_total",
    "lyceum_predictor_cache_misses_total",
    "lyceum_sampler_cache_hits_total",
    "lyceum_sampler_cache_misses_total",
    "lyceum_predictor_cache_rebuilds_total",
    "lyceum_sampler_cache_rebuilds_total",
    "lyceum_predictor_cache_rebuild_seconds",
    "lyceum_sampler_cache_rebuild_seconds",
    "lyceum_gateway_routed_requests_total",
    "lyceum_gateway_rebinds_total",
    "lyceum_jobs",
    "lyceum_trainer_steps_total",
    "lyceum_trainer_step_seconds",
]


def exported_names(kind: str, name: str) -> set[str]:
    """The sample names prometheus_client exports for one metric."""
    if kind in ("Counter", "CounterMetricFamily"):
        base = name.removesuffix("_total")
        return {f"{base}_total", f"{base}_created"}
    if kind in ("Histogram", "HistogramMetricFamily"):
        return {f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_created"}
    if kind in ("Summary", "SummaryMetricFamily"):
        return {name, f"{name}_sum", f"{name}_count", f"{name}_created"}
    if kind == "Info":
        return {f"{name}_info"}
    return {name}  # Gauge, GaugeMetricFamily, Enum


@pytest.fixture(scope="module")
def exported() -> dict[str, set[str]]:
    """Metric family -> the sample names it exports, for every metric defined in services/ and libs/."""
    found: dict[str, set[str]] = {}
    sources = [*ROOT.glob("services/*/src/**/*.py"), *ROOT.glob("libs/*/src/**/*.py")]
    for path in sources:
        if "lyceum_api" in path.parts:
            continue
        text = path.read_text()
        constants = {m["constant"]: m["name"] for m in CONSTANT.finditer(text)}
        for m in CONSTRUCTOR.finditer(text):
            name = m["literal"] or constants.get(m["constant"])
            if name:
                found[name] = exported_names(m["type"], name)
    return found


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels(dashboard: dict) -> list[dict]:
    result = []
    for panel in dashboard["panels"]:
        result.append(panel)
        result += panel.get("panels", [])  # inside a collapsed row
    return result


def expressions(dashboard: dict) -> list[str]:
    return [t["expr"] for p in panels(dashboard) for t in p.get("targets", [])]


def test_metric_discovery_sees_each_kind_of_definition(exported):
    assert exported["lyceum_http_requests"] == {"lyceum_http_requests_total", "lyceum_http_requests_created"}
    assert (
        "lyceum_predictor_cache_rebuild_seconds_bucket" in exported["lyceum_predictor_cache_rebuild_seconds"]
    )
    assert exported["lyceum_predictor_resident_learners"] == {"lyceum_predictor_resident_learners"}
    assert exported["lyceum_jobs"] == {"lyceum_jobs"}  # GaugeMetricFamily(JOBS_METRIC, ...)


def test_dashboard_queries_name_only_exported_metrics(dashboard, exported):
    known = set().union(*exported.values())
    for expr in expressions(dashboard):
        unknown = set(METRIC.findall(expr)) - known
        assert not unknown, f"{sorted(unknown)} in {expr!r}: no service exports it"


def test_dashboard_shows_what_operators_need(dashboard):
    used = {name for expr in expressions(dashboard) for name in METRIC.findall(expr)}
    families = {re.sub(r"_(bucket|sum|count)$", "", name) for name in used}
    missing = [name for name in REQUIRED if name not in used and name not in families]
    assert not missing, missing


def test_dashboard_is_well_formed(dashboard):
    assert dashboard["uid"] == "lyceum-overview" and dashboard["title"] == "Lyceum"
    all_panels = panels(dashboard)
    ids = [p["id"] for p in all_panels]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in all_panels:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            # Grafana fills in $__rate_interval (at least four scrape intervals) before Prometheus parses it.
            promql_parser.parse(expr.replace("$__rate_interval", "1m"))
            assert "[$__rate_interval]" in expr or not re.search(r"\b(rate|increase)\(", expr), expr


def test_provisioning_points_at_the_stack(dashboard, compose):
    [datasource] = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())[
        "datasources"
    ]
    uids = {p["datasource"]["uid"] for p in panels(dashboard) if p["type"] != "row"}
    assert uids == {datasource["uid"]}
    assert datasource["url"] == "http://prometheus:9090" and "prometheus" in compose["services"]

    [provider] = yaml.safe_load((GRAFANA / "provisioning/dashboards/lyceum.yml").read_text())["providers"]
    grafana = compose["services"]["grafana"]
    assert f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" in grafana["volumes"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/{DASHBOARD.name}"
