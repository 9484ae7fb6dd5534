"""The lifecycle every Lyceum gRPC service shares: health + reflection, NOT_SERVING while loading or
draining, and a graceful stop on SIGTERM/SIGINT that lets in-flight calls finish."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from lyceum_core.grpc.context import RequestContextInterceptor
from lyceum_core.grpc.interceptors import ErrorInterceptor, MetricsInterceptor
from lyceum_core.grpc.route_hint import RouteHintServerInterceptor

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class GrpcServer:
    """A grpc.aio server with health checking and reflection, started NOT_SERVING until `set_serving`.

    `register` adds the service implementations: a callable taking the server (e.g. the generated
    `add_XServicer_to_server` bound to a servicer). `service_names` are the full names of those services.
    """

    def __init__(
        self,
        register: Callable[[grpc.aio.Server], None],
        service_names: Sequence[str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_message_bytes: int = 16 * 1024 * 1024,
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    ) -> None:
        self.service_names = list(service_names)
        self.on_serving: Callable[[], object] | None = None  # see set_serving
        self.on_not_serving: Callable[[], object] | None = None  # see set_not_serving
        self.server = grpc.aio.server(
            interceptors=[
                RouteHintServerInterceptor(),
                MetricsInterceptor(),
                ErrorInterceptor(),
                RequestContextInterceptor(),
                *interceptors,
            ],
            options=[
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.so_reuseport", 0),
                # gateways ping idle connections every 10 s (to notice a replica gone silent)
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
                ("grpc.http2.max_ping_strikes", 0),
            ],
        )
        register(self.server)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            [
                *self.service_names,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ],
            self.server,
        )
        self.port = self.server.add_insecure_port(f"{host}:{port}")
        if self.port == 0:
            raise RuntimeError(f"could not bind {host}:{port}")
        self.address = f"{host}:{self.port}"

    async def start(self) -> None:
        await self._set_all(NOT_SERVING)
        await self.server.start()
        log.info("gRPC listening on %s", self.address)

    async def set_serving(self) -> None:
        """Reports SERVING; runs `on_serving` first (off the loop), if set."""
        if self.on_serving is not None:
            await asyncio.to_thread(self.on_serving)
        await self._set_all(SERVING)

    async def set_not_serving(self) -> None:
        """Reports NOT_SERVING while still answering calls: gateways route new work elsewhere. Then runs
        `on_not_serving` (off the loop): the service hands over what others will now serve."""
        await self._set_all(NOT_SERVING)
        if self.on_not_serving is not None:
            try:
                await asyncio.to_thread(self.on_not_serving)
            except Exception:  # noqa: BLE001 - handing over is an optimisation; draining goes on
                log.exception("handing over before draining failed")

    async def drain(self, grace_s: float, delay_s: float = 0.0) -> None:
        """Reports NOT_SERVING, keeps serving for `delay_s` (callers watching its health move away without
        a failed call), then refuses new calls and lets in-flight ones finish (up to `grace_s`)."""
        log.info("draining (delay %.1fs, grace %.1fs)", delay_s, grace_s)
        await self.set_not_serving()
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        await self.server.stop(grace_s)

    async def wait_for_signal(self, grace_s: float, delay_s: float = 0.0) -> None:
        """Blocks until SIGTERM or SIGINT, then drains."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        server_done = asyncio.ensure_future(self.server.wait_for_termination())
        signal_seen = asyncio.ensure_future(stop.wait())
        await asyncio.wait({server_done, signal_seen}, return_when=asyncio.FIRST_COMPLETED)
        if signal_seen.done():
            await self.drain(grace_s, delay_s)
        server_done.cancel()
        signal_seen.cancel()

    async def _set_all(self, status: int) -> None:
        for name in ["", *self.service_names]:
            await self.health.set(name, status)
