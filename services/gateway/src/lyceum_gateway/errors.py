"""The HTTP side of the error taxonomy: FastAPI exception handlers, registered once per app.

The native API answers `{"error": {"code", "message", "field", "request_id"}}` with `HTTP_STATUS[code]`; the
DFM-Server compatibility app answers the original server's `{"detail": "<message>"}`; the token-wheel one
answers as the original backend did: `{"detail": "<message>"}`, and FastAPI's own list of problems for a
malformed request. The compatibility shapes gain one key, `request_id`, which the original clients ignore.
The OpenAI-compatible mount answers OpenAI's `{"error": {"message", "type", "param", "code"}}`, a malformed
request included (400, as OpenAI does, not 422). Every error response carries the `X-Request-Id` header too.
"""

from __future__ import annotations

import enum
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


class ErrorShape(enum.Enum):
    """Which error body an app (or the edge, for a path) answers with."""

    NATIVE = "native"  # {"error": {"code", "message", "field", "request_id"}}
    COMPAT = "compat"  # {"detail": ..., "request_id"}
    OPENAI = "openai"  # {"error": {"message", "type", "param", "code"}}


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
    shape: ErrorShape = ErrorShape.NATIVE,
    request_id: str | None = None,
    status_code: int | None = None,
) -> JSONResponse:
    """The response for a domain error, in `shape`. An unauthenticated caller is told the scheme; a quota
    refusal says when to retry."""
    extra: dict[str, str] = {}
    if err.code is Code.UNAUTHENTICATED:
        extra["WWW-Authenticate"] = "Bearer"
    retry_after = getattr(err, "retry_after_s", None)
    if retry_after is not None:
        extra["Retry-After"] = str(max(1, math.ceil(retry_after)))
    if shape is ErrorShape.COMPAT:
        content = compat_body(err.message, request_id)
    elif shape is ErrorShape.OPENAI:
        content = openai_error_body(err)
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
    return error_response(exc, shape=ErrorShape.COMPAT, request_id=request_id_of(request))


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


# --- OpenAI compatibility -------------------------------------------------------------------------

# OpenAI's error `type`s: every client mistake is an `invalid_request_error` (unknown keys and models
# included, as OpenAI answers them), a refused quota a rate limit, anything on our side a `server_error`.
_OPENAI_TYPE = {
    Code.RESOURCE_EXHAUSTED: "rate_limit_error",
    Code.UNAVAILABLE: "server_error",
    Code.DEADLINE_EXCEEDED: "server_error",
    Code.INTERNAL: "server_error",
    Code.UNIMPLEMENTED: "server_error",
}
_NO_PARAM = {Code.UNAUTHENTICATED, Code.PERMISSION_DENIED, Code.RESOURCE_EXHAUSTED}
# The sampler's names for what OpenAI calls otherwise (`params.temperature` is `temperature`).
_OPENAI_PARAM = {"max_new_tokens": "max_tokens", "prompt_token_ids": "prompt"}


def openai_param(field: str | None) -> str | None:
    """The request parameter an error's `field` names, as an OpenAI client knows it."""
    if field is None:
        return None
    field = field.removeprefix("params.")
    return _OPENAI_PARAM.get(field, field)


def _openai_code(err: LyceumError) -> str | None:
    if err.code is Code.NOT_FOUND and err.field == "model":
        return "model_not_found"
    if err.code is Code.UNAUTHENTICATED:
        return "invalid_api_key"
    if err.code is Code.RESOURCE_EXHAUSTED:
        return "rate_limit_exceeded"
    if err.code is Code.INVALID_ARGUMENT:
        return "invalid_value"
    return err.code.value.lower()


def openai_body(
    message: str, type_: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """OpenAI's error envelope."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def openai_error_body(err: LyceumError) -> dict[str, Any]:
    """A domain error in OpenAI's envelope: unknown model 404 `model_not_found`, bad parameter 400
    `invalid_request_error` naming the `param`, quota 429 `rate_limit_exceeded`."""
    type_ = _OPENAI_TYPE.get(err.code, "invalid_request_error")
    # A key or a quota is no request parameter: OpenAI names none.
    param = None if err.code in _NO_PARAM else openai_param(err.field)
    return openai_body(err.message, type_, param, _openai_code(err))


def _openai_json(request: Request, status_code: int, content: Any, headers: Any = None) -> JSONResponse:
    rid = request_id_of(request)
    return JSONResponse(status_code=status_code, content=content, headers=_headers(rid, headers))


async def _openai_lyceum_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LyceumError)
    return error_response(exc, shape=ErrorShape.OPENAI, request_id=request_id_of(request))


async def _openai_validation_error(request: Request, exc: Exception) -> JSONResponse:
    # OpenAI answers a malformed request 400, naming the first offending parameter.
    assert isinstance(exc, RequestValidationError)
    field, message = validation_summary(exc)
    kinds = {e.get("type"): e for e in exc.errors()}
    if "json_invalid" in kinds:
        field, message = "body", "We could not parse the JSON body of your request."
    elif "extra_forbidden" in kinds:
        field = field_path(kinds["extra_forbidden"].get("loc", ()))
        message = f"Unrecognized request argument supplied: {field}"
    body = openai_body(message, "invalid_request_error", None if field == "body" else field, "invalid_value")
    return _openai_json(request, 400, body)


async def _openai_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = PAYLOAD_TOO_LARGE if exc.status_code == 413 else HTTPStatus(exc.status_code).name
    body = openai_body(str(exc.detail), "invalid_request_error", getattr(exc, "field", None), code.lower())
    return _openai_json(request, exc.status_code, body, getattr(exc, "headers", None))


async def _openai_unhandled(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return _openai_json(request, 500, openai_body("internal error", "server_error", None, "internal"))


def install_openai_handlers(app: FastAPI) -> None:
    """Maps every error of the OpenAI-compatible app to OpenAI's `{"error": {...}}` envelope."""
    app.add_exception_handler(LyceumError, _openai_lyceum_error)
    app.add_exception_handler(RequestValidationError, _openai_validation_error)
    app.add_exception_handler(StarletteHTTPException, _openai_http_error)
    app.add_exception_handler(Exception, _openai_unhandled)
