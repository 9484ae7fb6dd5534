"""Server interceptors every Lyceum gRPC service runs: error mapping (the one place domain errors become gRPC
statuses) and per-method metrics."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from lyceum_core.errors import Internal, LyceumError
from lyceum_core.grpc.errors import to_status
from lyceum_core.metrics import GRPC_LATENCY, GRPC_REQUESTS

log = logging.getLogger(__name__)

Behavior = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


class UnaryInterceptor(grpc.aio.ServerInterceptor):
    """Base class: wraps the behaviour of every unary-unary method with `wrap(method, behavior)`."""

    def wrap(self, method: str, behavior: Behavior) -> Behavior:
        raise NotImplementedError

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        return grpc.unary_unary_rpc_method_handler(
            self.wrap(details.method, handler.unary_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


class ErrorInterceptor(UnaryInterceptor):
    """Maps LyceumError (and unexpected exceptions, logged) to a rich gRPC status."""

    def wrap(self, method: str, behavior: Behavior) -> Behavior:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                return await behavior(request, context)
            except LyceumError as err:
                await context.abort_with_status(to_status(err))
            except grpc.aio.AbortError:
                raise  # the handler aborted with its own status
            except Exception:  # noqa: BLE001 - last line of defence; logged with the traceback
                log.exception("unhandled error in %s", method)
                await context.abort_with_status(to_status(Internal("internal error")))

        return wrapped


class MetricsInterceptor(UnaryInterceptor):
    """Counts calls by method and final status code, and times them."""

    def wrap(self, method: str, behavior: Behavior) -> Behavior:
        name = method.rsplit("/", 1)[-1]

        async def timed(request: Any, context: grpc.aio.ServicerContext) -> Any:
            start = time.perf_counter()
            code = "OK"
            try:
                return await behavior(request, context)
            except BaseException:
                code = (context.code() or grpc.StatusCode.UNKNOWN).name
                raise
            finally:
                GRPC_REQUESTS.labels(name, code).inc()
                GRPC_LATENCY.labels(name).observe(time.perf_counter() - start)

        return timed
