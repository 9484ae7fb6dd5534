"""Native batch predictions: `POST /v1/predictions:batch` scores many learners in one call, each item sent to
its learner's owner and answered alone."""

from __future__ import annotations

from fastapi import APIRouter

from lyceum_core.errors import LyceumError
from lyceum_core.identity import check_learner_id
from lyceum_fleet.predictor import ItemFailure, Predictions
from lyceum_gateway.deps import Context, Predictors, RequestLimits
from lyceum_gateway.limits import Limits
from lyceum_gateway.routes import API_PREFIX
from lyceum_gateway.schemas.common import error_responses
from lyceum_gateway.schemas.predictions import (
    BatchItem,
    BatchItemResult,
    BatchPredictRequest,
    BatchPredictResponse,
)

router = APIRouter(prefix=API_PREFIX, tags=["learners"], responses=error_responses(401, 422))


def _check(item: BatchItem, limits: Limits) -> None:
    """The checks the single-learner route makes at the edge (its path pattern and the request limits)."""
    check_learner_id(item.learner_id)
    limits.learner_id(item.learner_id)
    limits.tasks(item.tasks)


@router.post(
    "/predictions:batch",
    summary="Predict for many learners at once",
    responses=error_responses(400),
    response_model_exclude_unset=True,
)
async def predict_batch(
    body: BatchPredictRequest, ctx: Context, predictors: Predictors, limits: RequestLimits
) -> BatchPredictResponse:
    """P(success) on each item's tasks for each item's learner (an app scoring a class), answered in item
    order; each item succeeds or fails alone (`status`, and `error` as the single-learner call would give
    it), so the call itself answers 200. 400 only when the batch has more than `max_batch_items` items."""
    limits.batch(body.items)
    answers: dict[int, BatchItemResult] = {}
    valid: list[int] = []
    for i, item in enumerate(body.items):
        try:
            _check(item, limits)
        except LyceumError as err:
            answers[i] = BatchItemResult.failed(item.learner_id, err)
        else:
            valid.append(i)
    results: list[Predictions | ItemFailure] = await predictors.predict_many(
        ctx, [body.items[i].to_domain() for i in valid]
    )
    for i, result in zip(valid, results, strict=True):
        answers[i] = BatchItemResult.of(body.items[i].learner_id, result)
    return BatchPredictResponse(results=[answers[i] for i in range(len(body.items))])
