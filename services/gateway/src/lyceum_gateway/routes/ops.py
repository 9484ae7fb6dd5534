"""Operational routes, open even when API keys are on: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from lyceum_gateway.deps import Predictors, Samplers

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    """200 while the process is alive; checks nothing else."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness",
    responses={503: {"description": "No predictor reports SERVING"}},
)
async def readyz(predictors: Predictors, samplers: Samplers) -> JSONResponse:
    """200 if at least one predictor answers grpc.health.v1 SERVING, else 503. `predictors` counts the
    members, `serving` those that answer SERVING now; `membership_version` changes when members come or go.
    `samplers` counts the sampler members and `samplers_serving` those the health watches route to now: they
    inform (a stack is up once every replica is routed to) but do not decide readiness, as learners need no
    sampler."""
    serving = sum(await asyncio.gather(*(replica.health() for replica in predictors.serving())))
    body = {
        "status": "ready" if serving else "unavailable",
        "serving": serving,
        "predictors": len(predictors.addresses),
        "membership_version": predictors.membership.version,
        "samplers": len(samplers.addresses),
        "samplers_serving": len(samplers.serving()),
    }
    return JSONResponse(status_code=200 if serving else 503, content=body)


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """The gateway's metrics in the Prometheus text format. A plain `def`: the job gauge queries the
    database while rendering, which must not block the event loop."""
    http_metrics = request.app.state.metrics
    return Response(content=http_metrics.render(), media_type=http_metrics.content_type)
