"""The error bodies of the compatibility mounts (`/dfm-server`, `/token-wheel`), as their documents declare
them: the original servers' `{"detail": ...}` and the one key the gateway adds, `request_id` (`errors.py`)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

RequestId = Annotated[
    str | None,
    Field(
        description="The request's id (also the `X-Request-Id` header): quote it when reporting; the "
        "original clients ignore it"
    ),
]


class CompatErrorResponse(BaseModel):
    """Every error of the DFM-Server mount, and the token-wheel mount's errors but a malformed request's."""

    detail: str = Field(examples=["Learner 'learner-42' not found"])
    request_id: RequestId


class ValidationIssue(BaseModel):
    """One problem with a request, in FastAPI's default shape."""

    model_config = ConfigDict(extra="allow")

    loc: list[str | int]
    msg: str
    type: str
    input: Any = None
    ctx: dict[str, Any] | None = None


class CompatValidationErrorResponse(BaseModel):
    """The token-wheel mount's 422: FastAPI's default list of problems, as the original (a plain FastAPI app)
    sent it."""

    detail: list[ValidationIssue]
    request_id: RequestId


def compat_error_responses(
    *statuses: int, model: type[BaseModel] = CompatErrorResponse
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries documenting a compatibility error body for the given status codes."""
    return {status: {"model": model} for status in statuses}
