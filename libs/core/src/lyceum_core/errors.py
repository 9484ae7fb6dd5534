"""Lyceum's one error taxonomy: domain errors raised by engines, mapped once per transport.

The codes are the canonical google.rpc codes; `HTTP_STATUS` is the one HTTP mapping. The gRPC mapping lives
in `lyceum_core.grpc.errors`, the FastAPI one in each gateway's `errors.py`, both driven by these tables.
"""

from __future__ import annotations

from enum import StrEnum


class Code(StrEnum):
    """Canonical error codes (the names of google.rpc.Code)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    ABORTED = "ABORTED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    INTERNAL = "INTERNAL"


HTTP_STATUS: dict[Code, int] = {
    Code.INVALID_ARGUMENT: 400,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.FAILED_PRECONDITION: 409,
    Code.ABORTED: 409,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.UNAUTHENTICATED: 401,
    Code.PERMISSION_DENIED: 403,
    Code.UNAVAILABLE: 503,
    Code.DEADLINE_EXCEEDED: 504,
    Code.UNIMPLEMENTED: 501,
    Code.INTERNAL: 500,
}


def clip(text: str, limit: int = 80) -> str:
    """User input as echoed in an error message: bounded, so a huge value cannot bloat the reply."""
    return text if len(text) <= limit else text[:limit] + "..."


class LyceumError(Exception):
    """Base of every error Lyceum reports to a caller. `field` names the offending input, if any."""

    code: Code = Code.INTERNAL

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, field={self.field!r})"


class InvalidArgument(LyceumError):
    code = Code.INVALID_ARGUMENT


class NotFound(LyceumError):
    code = Code.NOT_FOUND


class AlreadyExists(LyceumError):
    code = Code.ALREADY_EXISTS


class FailedPrecondition(LyceumError):
    code = Code.FAILED_PRECONDITION


class Aborted(LyceumError):
    """A concurrent change won; the caller may retry."""

    code = Code.ABORTED


class ResourceExhausted(LyceumError):
    code = Code.RESOURCE_EXHAUSTED


class Unauthenticated(LyceumError):
    code = Code.UNAUTHENTICATED


class PermissionDenied(LyceumError):
    code = Code.PERMISSION_DENIED


class Unavailable(LyceumError):
    code = Code.UNAVAILABLE


class DeadlineExceeded(LyceumError):
    code = Code.DEADLINE_EXCEEDED


class Unimplemented(LyceumError):
    code = Code.UNIMPLEMENTED


class Internal(LyceumError):
    code = Code.INTERNAL


ERROR_TYPES: dict[Code, type[LyceumError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        Aborted,
        ResourceExhausted,
        Unauthenticated,
        PermissionDenied,
        Unavailable,
        DeadlineExceeded,
        Unimplemented,
        Internal,
    )
}


def error_for(code: Code, message: str, *, field: str | None = None) -> LyceumError:
    """Builds the domain error for a code (used when decoding an error from another transport)."""
    return ERROR_TYPES[code](message, field=field)
