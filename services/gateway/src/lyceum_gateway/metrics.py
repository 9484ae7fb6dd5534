"""HTTP metrics: request counts and latencies labelled by route TEMPLATE (bounded cardinality), kept in
a per-app registry and served as Prometheus text on `/metrics`, beside the job-state gauge and the quota
refusals. No metric carries a tenant label: tenants are unbounded (the job gauge counts all tenants)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.routing import BaseRoute, Mount
from starlette.types import Scope

from lyceum_core.metrics import LATENCY_BUCKETS

log = logging.getLogger(__name__)

UNMATCHED = "<unmatched>"
JOBS_METRIC = "lyceum_jobs"
JOBS_HELP = "Jobs in the job table, by kind and state"


class HttpMetrics:
    """The gateway's HTTP instruments, in their own registry so each app (and test) starts from zero."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "lyceum_http_requests",
            "HTTP requests handled, by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "lyceum_http_request_latency_seconds",
            "HTTP request latency, by method and route template",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

        # Labelled by quota name only, never by tenant: tenants are unbounded.
        self.quota_refusals = Counter(
            "lyceum_quota_refusals",
            "Requests refused by a tenant quota (429), by quota name",
            ["quota"],
            registry=self.registry,
        )

    def refused(self, quota: str) -> None:
        self.quota_refusals.labels(quota).inc()

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Counts one request and its latency (`EdgeMiddleware` calls this for every HTTP request)."""
        # The labelled children, looked up once per (method, route, status): `labels()` checks its arguments
        # under a lock on every call. Route templates and statuses are few, so this stays small.
        children = self._children.get((method, route, status))
        if children is None:
            children = (self.requests.labels(method, route, str(status)), self.latency.labels(method, route))
            self._children[(method, route, status)] = children
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def route_template(scope: Scope) -> str:
    """The matched route's template incl. any mount prefix (`/dfm-server/learners/{learner_id}`)."""
    route: BaseRoute | None = scope.get("route")
    path = getattr(route, "path", None)
    if route is None or isinstance(route, Mount) or not isinstance(path, str):
        return UNMATCHED
    root_path: str = scope.get("root_path", "")
    mount_prefix = root_path.removeprefix(scope.get("app_root_path", ""))
    return mount_prefix + path


class JobsCollector(Collector):
    """`lyceum_jobs{kind,state}`: how many jobs are in each state, counted by the database at scrape time
    (one GROUP BY), so the fleet's job states are observable from the gateway alone. Every known kind and
    state is exported, zeros included, so that a state emptying reads 0 rather than a vanished series."""

    def __init__(
        self, counts: Callable[[], Mapping[tuple[str, str], int]], kinds: Iterable[str], states: Iterable[str]
    ) -> None:
        self._counts = counts
        self._kinds = list(kinds)
        self._states = list(states)

    def describe(self) -> Iterator[Metric]:
        # Registering calls describe (not collect), so no query runs at startup.
        yield GaugeMetricFamily(JOBS_METRIC, JOBS_HELP, labels=["kind", "state"])

    def collect(self) -> Iterator[Metric]:
        try:
            counts = dict(self._counts())
        except Exception:  # noqa: BLE001 - a database outage must not break the rest of the scrape
            log.warning("could not count jobs for %s", JOBS_METRIC, exc_info=True)
            return
        family = GaugeMetricFamily(JOBS_METRIC, JOBS_HELP, labels=["kind", "state"])
        for kind in self._kinds:
            for state in self._states:
                family.add_metric([kind, state], counts.pop((kind, state), 0))
        for (kind, state), n in sorted(counts.items()):  # kinds or states this gateway does not know
            family.add_metric([kind, state], n)
        yield family
