"""The gRPC side of the error taxonomy: one server interceptor, one client-side decoder.

Errors travel as a canonical status code plus a google.rpc.ErrorInfo detail (reason = code name,
metadata["field"] = offending field), so any gRPC client can read them and ours rebuild the domain error.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from lyceum_core.errors import Code, Internal, LyceumError, error_for

log = logging.getLogger(__name__)

DOMAIN = "lyceum.dev"
GRPC_CODE: dict[Code, grpc.StatusCode] = {code: getattr(grpc.StatusCode, code.value) for code in Code}
_FROM_GRPC = {v: k for k, v in GRPC_CODE.items()}


def to_status(err: LyceumError) -> grpc.Status:
    """The rich gRPC status for a domain error."""
    info = error_details_pb2.ErrorInfo(reason=err.code.value, domain=DOMAIN)
    if err.field:
        info.metadata["field"] = err.field
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(code=GRPC_CODE[err.code].value[0], message=err.message, details=[detail])
    return rpc_status.to_status(status)


def from_rpc_error(exc: grpc.RpcError) -> LyceumError:
    """The domain error carried by a failed call (UNAVAILABLE etc. for transport failures)."""
    code = _FROM_GRPC.get(exc.code(), Code.INTERNAL)  # type: ignore[attr-defined]
    message = exc.details() or code.value  # type: ignore[attr-defined]
    field = None
    try:
        status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    except ValueError:
        status = None
    if status is not None:
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info) and info.domain == DOMAIN:
                field = info.metadata.get("field") or None
    return error_for(code, message, field=field)


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps LyceumError (and unexpected exceptions) raised by unary handlers to a gRPC status, once."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary
        method = details.method

        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                return await inner(request, context)
            except LyceumError as err:
                await context.abort_with_status(to_status(err))
            except grpc.aio.AbortError:
                raise  # the handler aborted with its own status
            except Exception:  # noqa: BLE001 - last line of defence; logged with the traceback
                log.exception("unhandled error in %s", method)
                await context.abort_with_status(to_status(Internal("internal error")))

        return grpc.unary_unary_rpc_method_handler(
            wrapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
