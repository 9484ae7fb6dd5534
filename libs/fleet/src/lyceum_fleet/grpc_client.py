"""What every gRPC client of a fleet shares: one grpc.aio channel per replica, its health check and health
watch, and the conversion of failed calls into domain errors (once, here). Every call carries the caller's
`RequestContext` as metadata, and a timeout cut to its deadline."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lyceum_core.context import RequestContext
from lyceum_core.errors import Code, LyceumError, Unavailable
from lyceum_core.grpc.errors import from_rpc_error, has_rich_status
from lyceum_core.grpc.route_hint import RouteHintInterceptor

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # the services' default receive/send limit

T = TypeVar("T")
# A dead replica is noticed at once (its sockets reset) or, behind a silent network, by keepalive pings; a
# returning one is reconnected within ~2 s rather than gRPC's default backoff of up to two minutes.
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]
# How gRPC words a call that never reached the server (so it ran nowhere and may go to another replica).
_NOT_SENT = (
    "failed to connect",
    "connection refused",
    "connections to all backends failing",
    "dns resolution",
)


class ReplicaUnreachable(Unavailable):
    """The replica could not be reached. `delivered` is False when the call certainly never got there (it can
    run elsewhere, writes included); True when the connection broke with the call in flight (it may have run:
    only calls that change nothing may be repeated)."""

    def __init__(self, message: str, *, address: str, delivered: bool) -> None:
        super().__init__(message)
        self.address = address
        self.delivered = delivered


class GrpcClient:
    """One grpc.aio channel with the health stub and the error conversion every client shares; an async
    context manager that owns the channel. Subclasses name their `role` and build their stub in `_open`."""

    role = "service"
    service_name = ""

    def __init__(self, address: str, *, timeout_s: float, health_timeout_s: float = 2.0) -> None:
        self.address = address
        self._timeout_s = timeout_s
        self._health_timeout_s = min(health_timeout_s, timeout_s)
        self._channel: grpc.aio.Channel | None = None
        self._health: health_pb2_grpc.HealthStub | None = None

    async def __aenter__(self) -> Self:
        self._channel = grpc.aio.insecure_channel(
            self.address, options=CHANNEL_OPTIONS, interceptors=[RouteHintInterceptor()]
        )
        self._open(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._channel is not None:
            await self._channel.close()
        self._channel = self._health = None
        self._close()

    def _open(self, channel: grpc.aio.Channel) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def _closed(self) -> RuntimeError:
        return RuntimeError(f"{self.role} client for {self.address} is not open")

    async def _call(
        self,
        rpc: Callable[..., Awaitable[T]],
        request: Any,
        ctx: RequestContext,
        timeout_s: float | None = None,
    ) -> T:
        """Runs one unary RPC for `ctx` (its metadata; a timeout of `timeout_s`, default the client's, cut to
        the context's deadline), converting a failed call into the domain error it carries (once, here)."""
        timeout = ctx.timeout(timeout_s or self._timeout_s)
        try:
            return await rpc(request, metadata=ctx.metadata(), timeout=timeout)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE and not has_rich_status(exc):  # type: ignore[attr-defined]
                details = (exc.details() or "").lower()  # type: ignore[attr-defined]
                log.warning("%s %s unreachable: %s", self.role, self.address, details)
                raise ReplicaUnreachable(
                    f"the {self.role} is unavailable; retry later",
                    address=self.address,
                    delivered=not any(marker in details for marker in _NOT_SENT),
                ) from None
            raise self._public(from_rpc_error(exc), timeout) from None

    def _public(self, err: LyceumError, timeout_s: float | None = None) -> LyceumError:
        """Transport failures keep their code but not their text, which names internal addresses."""
        deadline = self._timeout_s if timeout_s is None else timeout_s
        generic = {
            Code.UNAVAILABLE: f"the {self.role} is unavailable; retry later",
            Code.DEADLINE_EXCEEDED: f"the {self.role} did not answer within {deadline:g}s",
            Code.INTERNAL: f"internal error in the {self.role}",
        }.get(err.code)
        if generic is None:
            return err
        log.warning("%s %s failed: %s: %s", self.role, self.address, err.code.value, err.message)
        return type(err)(generic, field=err.field)

    async def health(self) -> bool:
        """True when the replica reports SERVING; never raises."""
        return await self.check() is True

    async def check(self) -> bool | None:
        """One grpc.health.v1 Check: True = SERVING, False = answered otherwise (loading, draining), None = no
        answer within the health deadline (down, or hung); never raises."""
        if self._health is None:
            return None
        request = health_pb2.HealthCheckRequest(service=self.service_name)
        try:
            response = await self._health.Check(request, timeout=self._health_timeout_s)
        except grpc.RpcError:
            return None
        return response.status == health_pb2.HealthCheckResponse.SERVING

    async def watch_health(self) -> AsyncIterator[bool]:
        """The replica's health as it changes (True = SERVING), from a grpc.health.v1 Watch stream; ends or
        raises `grpc.RpcError` when the connection is lost."""
        if self._health is None:
            raise self._closed()
        request = health_pb2.HealthCheckRequest(service=self.service_name)
        async for response in self._health.Watch(request):
            yield response.status == health_pb2.HealthCheckResponse.SERVING
