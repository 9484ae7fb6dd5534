"""Field types and the error envelope shared by the native API's schemas."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

MAX_MODEL_REF_LEN = 256  # `name@alias`, with room
MAX_PAGE_SIZE = 200  # items per page of a native list route (jobs, feedback, learners)
LEARNER_ID_PATTERN = r"^[A-Za-z0-9._:@-]+$"
LEARNER_ID_RULE = "1-128 characters of [A-Za-z0-9._:@-]"

LearnerId = Annotated[
    str,
    StringConstraints(min_length=1, pattern=LEARNER_ID_PATTERN),
    Field(description=LEARNER_ID_RULE, examples=["learner-42"]),
]
TaskId = Annotated[str, StringConstraints(min_length=1), Field(examples=["t03"])]
# strict: a JSON string or boolean is not a number; allow_inf_nan: Python's JSON parser accepts `NaN`.
Outcome = Annotated[
    float,
    Field(ge=0.0, le=1.0, strict=True, allow_inf_nan=False, description="Score in [0, 1]", examples=[1.0]),
]
Probability = Annotated[float, Field(description="Probability of success, in [0, 1]", examples=[0.73])]


class ErrorDetail(BaseModel):
    code: str = Field(description="Canonical error code", examples=["NOT_FOUND"])
    message: str = Field(examples=["learner 'learner-42' not found"])
    field: str | None = Field(None, description="The offending input, if any", examples=["learner_id"])
    request_id: str | None = Field(
        None, description="The request's id (also the `X-Request-Id` header): quote it when reporting"
    )


class ErrorResponse(BaseModel):
    """Every error of the native API."""

    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, object]]:
    """OpenAPI `responses=` entries documenting the error envelope for the given status codes."""
    return {status: {"model": ErrorResponse} for status in statuses}
