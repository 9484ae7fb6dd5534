"""The HTTP side of the error taxonomy: FastAPI exception handlers, registered once per app.

The native API answers `{"error": {"code", "message", "field"}}` with `HTTP_STATUS[code]`; the DFM-Server
compatibility app answers the original server's `{"detail": "<message>"}`; the token-wheel one answers as the
original backend did: `{"detail": "<message>"}`, and FastAPI's own list of problems for a malformed request.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lyceum_core.errors import HTTP_STATUS, Code, LyceumError

log = logging.getLogger(__name__)

_CODE_FOR_STATUS: dict[int, Code] = {}
for _code, _status in HTTP_STATUS.items():
    _CODE_FOR_STATUS.setdefault(_status, _code)

_BODY_LOCATIONS = {"body", "path", "query", "header", "cookie"}


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    """The native API's error envelope."""
    return {"error": {"code": code, "message": message, "field": field}}


def error_response(err: LyceumError, *, compat: bool = False) -> JSONResponse:
    """The response for a domain error, in the native or the DFM-Server shape."""
    headers = {"WWW-Authenticate": "Bearer"} if err.code is Code.UNAUTHENTICATED else None
    content = {"detail": err.message} if compat else error_body(err.code.value, err.message, err.field)
    return JSONResponse(status_code=HTTP_STATUS[err.code], content=content, headers=headers)


def field_path(loc: Sequence[str | int]) -> str:
    """`("body", "events", 0, "outcome")` -> `"events[0].outcome"`; the location kind is dropped."""
    parts = list(loc)
    if parts and parts[0] in _BODY_LOCATIONS:
        parts = parts[1:]
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "body"


def _describe(error: dict[str, Any]) -> tuple[str, str]:
    field = field_path(error.get("loc", ()))
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    return field, message


def validation_summary(exc: RequestValidationError) -> tuple[str, str]:
    """(first offending field, a message naming every offending field) for a validation error."""
    described = [_describe(error) for error in exc.errors()]
    if not described:
        return "body", "invalid request"
    message = "; ".join(f"{field}: {msg}" for field, msg in described)
    return described[0][0], message


# --- native API -----------------------------------------------------------------------------------


async def _native_lyceum_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LyceumError)
    return error_response(exc)


async def _native_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    field, message = validation_summary(exc)
    return JSONResponse(status_code=422, content=error_body(Code.INVALID_ARGUMENT.value, message, field))


async def _native_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _CODE_FOR_STATUS.get(exc.status_code)
    name = code.value if code else HTTPStatus(exc.status_code).name
    return JSONResponse(
        status_code=exc.status_code,
        content=error_body(name, str(exc.detail)),
        headers=getattr(exc, "headers", None),
    )


async def _native_unhandled(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(status_code=500, content=error_body(Code.INTERNAL.value, "internal error"))


def install_native_handlers(app: FastAPI) -> None:
    """Maps every error of the native API to the `{"error": ...}` envelope."""
    app.add_exception_handler(LyceumError, _native_lyceum_error)
    app.add_exception_handler(RequestValidationError, _native_validation_error)
    app.add_exception_handler(StarletteHTTPException, _native_http_error)
    app.add_exception_handler(Exception, _native_unhandled)


# --- DFM-Server compatibility ---------------------------------------------------------------------


async def _compat_lyceum_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LyceumError)
    return error_response(exc, compat=True)


async def _compat_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    _, message = validation_summary(exc)
    return JSONResponse(status_code=422, content={"detail": message})


async def _compat_unhandled(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(status_code=500, content={"detail": "Internal Server Error"})


def install_token_wheel_handlers(app: FastAPI) -> None:
    """Maps every error of the token-wheel compatibility app as the original backend answered: a domain error
    is `{"detail": "<message>"}`; a malformed request keeps FastAPI's default 422 (`{"detail": [...]}`),
    which is what the original, a plain FastAPI app, sent."""
    app.add_exception_handler(LyceumError, _compat_lyceum_error)
    app.add_exception_handler(Exception, _compat_unhandled)


def install_compat_handlers(app: FastAPI) -> None:
    """Maps every error of the DFM-Server compatibility app to `{"detail": "<message>"}`.

    FastAPI's own HTTPException handler already answers `{"detail": ...}`, as the original server did.
    """
    app.add_exception_handler(LyceumError, _compat_lyceum_error)
    app.add_exception_handler(RequestValidationError, _compat_validation_error)
    app.add_exception_handler(Exception, _compat_unhandled)
