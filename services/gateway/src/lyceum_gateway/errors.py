"""The HTTP side of the error taxonomy: FastAPI exception handlers, registered once per app.

The native API answers `{"error": {"code", "message", "field", "request_id"}}` with `HTTP_STATUS[code]`; the
DFM-Server compatibility app answers the original server's `{"detail": "<message>"}`; the token-wheel one
answers as the original backend did: `{"detail": "<message>"}`, and FastAPI's own list of problems for a
malformed request. The compatibility shapes gain one key, `request_id`, which the original clients ignore.
Every error response carries the `X-Request-Id` header too.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lyceum_core.context import CURRENT, HTTP_REQUEST_ID
from lyceum_core.errors import HTTP_STATUS, Code, LyceumError

log = logging.getLogger(__name__)

_CODE_FOR_STATUS: dict[int, Code] = {}
for _code, _status in HTTP_STATUS.items():
    _CODE_FOR_STATUS.setdefault(_status, _code)

_BODY_LOCATIONS = {"body", "path", "query", "header", "cookie"}
PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"  # 413's code (HTTPStatus names it differently across Pythons)


def error_body(
    code: str, message: str, field: str | None = None, request_id: str | None = None
) -> dict[str, Any]:
    """The native API's error envelope; the request id defaults to that of the bound request context."""
    if request_id is None:
        ctx = CURRENT.get()
        request_id = ctx.request_id if ctx is not None else None
    return {"error": {"code": code, "message": message, "field": field, "request_id": request_id}}


def compat_body(detail: Any, request_id: str | None) -> dict[str, Any]:
    """The compatibility mounts' error body: the original `detail`, and the request id beside it."""
    return {"detail": detail, "request_id": request_id}


def request_id_of(request: Request) -> str | None:
    """The request id the gateway's middleware gave this request (None outside it)."""
    return getattr(request.state, "request_id", None)


def _headers(request_id: str | None, extra: dict[str, str] | None = None) -> dict[str, str] | None:
    headers = dict(extra or {})
    if request_id:
        headers[HTTP_REQUEST_ID] = request_id
    return headers or None


def error_response(
    err: LyceumError,
    *,
    compat: bool = False,
    request_id: str | None = None,
    status_code: int | None = None,
) -> JSONResponse:
    """The response for a domain error, in the native or a compatibility shape. An unauthenticated caller is
    told the scheme; a quota refusal says when to retry."""
    extra: dict[str, str] = {}
    if err.code is Code.UNAUTHENTICATED:
        extra["WWW-Authenticate"] = "Bearer"
    retry_after = getattr(err, "retry_after_s", None)
    if retry_after is not None:
        extra["Retry-After"] = str(max(1, math.ceil(retry_after)))
    if compat:
        content = compat_body(err.message, request_id)
    else:
        content = error_body(err.code.value, err.message, err.field, request_id)
    return JSONResponse(
        status_code=status_code or HTTP_STATUS[err.code],
        content=content,
        headers=_headers(request_id, extra),
    )


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
    return error_response(exc, request_id=request_id_of(request))


async def _native_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    field, message = validation_summary(exc)
    rid = request_id_of(request)
    return JSONResponse(
        status_code=422,
        content=error_body(Code.INVALID_ARGUMENT.value, message, field, rid),
        headers=_headers(rid),
    )


async def _native_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _CODE_FOR_STATUS.get(exc.status_code)
    name = code.value if code else HTTPStatus(exc.status_code).name
    if exc.status_code == 413:
        name = PAYLOAD_TOO_LARGE
    rid = request_id_of(request)
    return JSONResponse(
        status_code=exc.status_code,
        content=error_body(name, str(exc.detail), getattr(exc, "field", None), rid),
        headers=_headers(rid, getattr(exc, "headers", None)),
    )


async def _native_unhandled(request: Request, exc: Exception) -> JSONResponse:
    # Answered by Starlette's outermost layer, past the gateway's middleware: set the request id here.
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    rid = request_id_of(request)
    return JSONResponse(
        status_code=500,
        content=error_body(Code.INTERNAL.value, "internal error", None, rid),
        headers=_headers(rid),
    )


def install_native_handlers(app: FastAPI) -> None:
    """Maps every error of the native API to the `{"error": ...}` envelope."""
    app.add_exception_handler(LyceumError, _native_lyceum_error)
    app.add_exception_handler(RequestValidationError, _native_validation_error)
    app.add_exception_handler(StarletteHTTPException, _native_http_error)
    app.add_exception_handler(Exception, _native_unhandled)


# --- DFM-Server compatibility ---------------------------------------------------------------------


async def _compat_lyceum_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LyceumError)
    return error_response(exc, compat=True, request_id=request_id_of(request))


def _compat_json(request: Request, status_code: int, detail: Any, headers: Any = None) -> JSONResponse:
    rid = request_id_of(request)
    return JSONResponse(
        status_code=status_code, content=compat_body(detail, rid), headers=_headers(rid, headers)
    )


async def _compat_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    _, message = validation_summary(exc)
    return _compat_json(request, 422, message)


async def _compat_default_validation_error(request: Request, exc: Exception) -> JSONResponse:
    # FastAPI's default 422 body (`{"detail": [...]}`), as the original plain-FastAPI backend sent it.
    assert isinstance(exc, RequestValidationError)
    return _compat_json(request, 422, jsonable_encoder(exc.errors()))


async def _compat_http_error(request: Request, exc: Exception) -> JSONResponse:
    # FastAPI's own `{"detail": ...}`, as the originals answered unknown paths and methods.
    assert isinstance(exc, StarletteHTTPException)
    return _compat_json(request, exc.status_code, exc.detail, getattr(exc, "headers", None))


async def _compat_unhandled(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return _compat_json(request, 500, "Internal Server Error")


def install_token_wheel_handlers(app: FastAPI) -> None:
    """Maps every error of the token-wheel compatibility app as the original backend answered: a domain error
    is `{"detail": "<message>"}`; a malformed request keeps FastAPI's default 422 (`{"detail": [...]}`),
    which is what the original, a plain FastAPI app, sent. Each body also carries `request_id`."""
    app.add_exception_handler(LyceumError, _compat_lyceum_error)
    app.add_exception_handler(RequestValidationError, _compat_default_validation_error)
    app.add_exception_handler(StarletteHTTPException, _compat_http_error)
    app.add_exception_handler(Exception, _compat_unhandled)


def install_compat_handlers(app: FastAPI) -> None:
    """Maps every error of the DFM-Server compatibility app to `{"detail": "<message>"}` (and `request_id`),
    the original server's shape, FastAPI's HTTP errors (unknown paths, methods) included."""
    app.add_exception_handler(LyceumError, _compat_lyceum_error)
    app.add_exception_handler(RequestValidationError, _compat_validation_error)
    app.add_exception_handler(StarletteHTTPException, _compat_http_error)
    app.add_exception_handler(Exception, _compat_unhandled)
