"""Prometheus metrics shared by services (all named `lyceum_*`)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

GRPC_REQUESTS = Counter(
    "lyceum_grpc_server_requests_total", "gRPC calls handled, by method and status code", ["method", "code"]
)
GRPC_LATENCY = Histogram(
    "lyceum_grpc_server_latency_seconds", "gRPC call latency, by method", ["method"], buckets=LATENCY_BUCKETS
)
