"""The gRPC side of the error taxonomy: domain error <-> rich status (the interceptor that applies it on the
server is in `lyceum_core.grpc.interceptors`).

Errors travel as a canonical status code plus a google.rpc.ErrorInfo detail (reason = code name,
metadata["field"] = offending field), so any gRPC client can read them and ours rebuild the domain error.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from lyceum_core.errors import Code, LyceumError, error_for

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


def has_rich_status(exc: grpc.RpcError) -> bool:
    """Whether a failed call carries a rich status: a service answered it (a transport failure does not)."""
    try:
        return rpc_status.from_call(exc) is not None  # type: ignore[arg-type]
    except ValueError:
        return False


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
