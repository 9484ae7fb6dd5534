"""Container health probe, copied into every image as /opt/lyceum/healthcheck.py:
`python healthcheck.py SERVICE` exits 0 if the service in this container answers. It reads the service's own
Settings (the same LYCEUM_<SERVICE>_* variables), so it probes whatever port the service was told to use.

    gateway             HTTP GET /healthz on its port
    predictor, sampler  grpc.health.v1 Check on its port says SERVING (not while loading or draining)
    trainer             its Prometheus endpoint answers (the worker is up); metrics off: nothing to probe

Slim images have no curl, and this needs nothing the service's own image lacks.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import urllib.request
from dataclasses import dataclass

SERVICES = ("gateway", "predictor", "sampler", "trainer")
TIMEOUT_S = 3.0
# A service listening on every interface is probed over loopback.
WILDCARD_HOSTS = {"", "0.0.0.0", "::", "[::]"}


@dataclass(frozen=True)
class Probe:
    kind: str  # "http" or "grpc"
    target: str  # a URL for http, host:port for grpc


def probe_for(service: str) -> Probe | None:
    """What to probe for `service`, from its Settings as this container's environment sets them."""
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}; one of {', '.join(SERVICES)}")
    settings = importlib.import_module(f"lyceum_{service}.config").Settings()
    host = getattr(settings, "host", "")
    host = "127.0.0.1" if host in WILDCARD_HOSTS else host
    if service == "gateway":
        return Probe("http", f"http://{host}:{settings.port}/healthz")
    if service in ("predictor", "sampler"):
        return Probe("grpc", f"{host}:{settings.port}")
    if not settings.metrics_port:
        return None
    return Probe("http", f"http://127.0.0.1:{settings.metrics_port}/metrics")


def check_http(url: str) -> bool:
    # No proxies: a proxy from the environment must not answer for this container.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=TIMEOUT_S) as response:
        return response.status == 200


def check_grpc(address: str) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address, options=[("grpc.enable_http_proxy", 0)]) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = stub.Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT_S)
    return response.status == health_pb2.HealthCheckResponse.SERVING


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("service", choices=SERVICES)
    args = parser.parse_args(argv)
    probe = probe_for(args.service)
    if probe is None:
        print(f"{args.service}: metrics port off, nothing to probe")
        return 0
    try:
        healthy = check_http(probe.target) if probe.kind == "http" else check_grpc(probe.target)
    except Exception as exc:  # noqa: BLE001 - any failure to answer is "unhealthy", reported in one line
        details = getattr(exc, "details", None)  # a grpc.RpcError's str() spans lines
        reason = f"{exc.code().name}: {details()}" if callable(details) else str(exc)
        print(f"{args.service}: {probe.kind} {probe.target}: {reason}", file=sys.stderr)
        return 1
    print(f"{args.service}: {probe.kind} {probe.target}: {'healthy' if healthy else 'not serving'}")
    return 0 if healthy else 1


if __name__ == "__main__":
    raise SystemExit(main())
