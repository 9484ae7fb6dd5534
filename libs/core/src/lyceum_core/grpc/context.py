"""Server side of the request context: every call (health and reflection excepted) must carry a tenant in its
metadata; the interceptor turns the metadata into a `RequestContext`, binds it as `CURRENT` for the handler
(and so for its log lines and the worker threads it starts with a copied context) and refuses calls without
one. Servicers read it with `lyceum_core.context.current_context()`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from lyceum_core.context import CURRENT, RequestContext
from lyceum_core.errors import LyceumError
from lyceum_core.grpc.errors import to_status

EXEMPT_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")


def _context(context: grpc.aio.ServicerContext) -> RequestContext:
    metadata = context.invocation_metadata()
    return RequestContext.from_metadata(metadata, time_remaining=context.time_remaining())


class RequestContextInterceptor(grpc.aio.ServerInterceptor):
    """Binds each call's `RequestContext`; a call without a valid one ends UNAUTHENTICATED (no tenant) or
    INVALID_ARGUMENT (a malformed one)."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or details.method.startswith(EXEMPT_PREFIXES):
            return handler
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _unary(handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _stream(handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


def _unary(behavior: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]) -> Any:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            ctx = _context(context)
        except LyceumError as err:
            await context.abort_with_status(to_status(err))
        token = CURRENT.set(ctx)
        try:
            return await behavior(request, context)
        finally:
            CURRENT.reset(token)

    return wrapped


def _stream(behavior: Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]]) -> Any:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            ctx = _context(context)
        except LyceumError as err:
            await context.abort_with_status(to_status(err))
        token = CURRENT.set(ctx)
        try:
            async for item in behavior(request, context):
                yield item
        finally:
            CURRENT.reset(token)

    return wrapped
