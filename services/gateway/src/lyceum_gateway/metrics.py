"""HTTP metrics: request counts and latencies labelled by route TEMPLATE (bounded cardinality), kept in
a per-app registry and served as Prometheus text on `/metrics`, beside the job-state gauge and the quota
refusals. No metric carries a tenant label: tenants are unbounded (the job gauge counts all tenants)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.routing import BaseRoute, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

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


class MetricsMiddleware:
    """Pure ASGI middleware timing every HTTP request; the outermost layer, so 401s are counted too."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the server answers if the app raises before starting a response

        async def send_and_record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record_status)
        finally:
            self.metrics.observe(scope["method"], route_template(scope), status, time.perf_counter() - start)


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
