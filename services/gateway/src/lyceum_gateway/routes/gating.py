"""`POST /v1/gating/generate`: Tidal's inference-sidecar shape of gated generation, a convenience over the
same sampler call as `/v1/generate` (`gating` + `return_trajectory`); the native API is that one."""

from __future__ import annotations

import time
from contextlib import aclosing

from fastapi import APIRouter

from lyceum_core.errors import Internal, Unavailable
from lyceum_gateway.deps import Context, Samplers
from lyceum_gateway.routes import API_PREFIX
from lyceum_gateway.schemas.common import error_responses
from lyceum_gateway.schemas.gating import GatingOut, SidecarRequest, SidecarResponse, TrajectoryStep

router = APIRouter(prefix=f"{API_PREFIX}/gating", tags=["generation"], responses=error_responses(401, 503))


@router.post(
    "/generate", summary="Gated generation (Tidal's sidecar shape)", responses=error_responses(400, 404, 422)
)
async def generate(body: SidecarRequest, ctx: Context, samplers: Samplers) -> SidecarResponse:
    """Continues `prompt` for up to `maxTokens` under `gatingMode` (`learned` with `policy`, `fixed` with
    `modulation`, `random`, or `none` with `temperature`/`topK`): the text, the tokens generated, the time
    taken and each token's modulation and sampling parameters."""
    start = time.perf_counter()
    model = body.model or next((m.name for m in await samplers.any().list_models(ctx)), None)
    if model is None:
        raise Unavailable("no sampler serves a model")
    trajectory: list[TrajectoryStep] = []
    tokens = 0
    async with aclosing(samplers.spread().generate(ctx, body.to_domain(model))) as steps:
        async for step in steps:
            if step.token is not None:
                tokens += 1
                if (entry := TrajectoryStep.from_step(step)) is not None:
                    trajectory.append(entry)
                continue
            return SidecarResponse(
                text=step.text,
                tokensGenerated=tokens,
                elapsedMs=(time.perf_counter() - start) * 1000,
                trajectory=trajectory,
                model=step.model or model,
                gating=GatingOut.from_domain(step.gating) if step.gating is not None else None,
            )
    raise Internal("the sampler ended the generation without a final message")
