"""Native `/v1/adapters` routes: LoRA adapters as registry resources of the tenant, created empty (B = 0),
imported from a PEFT adapter archive, listed, and exported as one. Their aliases move and roll back on the
`/v1/models/{name}/aliases` routes, like any model's. A request that cannot make an adapter is a 422 naming
its field, and nothing is stored or registered. Plain `def` routes: the registry and the artifact store are
synchronous (FastAPI's threadpool)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Form, Path, Query, Response, UploadFile, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from lyceum_core.errors import InvalidArgument
from lyceum_gateway.adapters import AdapterService
from lyceum_gateway.deps import Context, Registry, Store
from lyceum_gateway.routes import API_PREFIX
from lyceum_gateway.routes.feedback import Feedback
from lyceum_gateway.schemas.adapters import (
    AdapterList,
    AdapterName,
    AdapterOut,
    AdapterVersionOut,
    BaseRef,
    CreateAdapterRequest,
)
from lyceum_gateway.schemas.common import error_responses
from lyceum_gateway.schemas.feedback import DistillRequest
from lyceum_gateway.schemas.jobs import JobOut

PREFIX = f"{API_PREFIX}/adapters"
router = APIRouter(prefix=PREFIX, tags=["adapters"], responses=error_responses(401, 422))

NamePath = Annotated[
    str, Path(min_length=1, max_length=128, description="The adapter's name", examples=["tutor-lora"])
]
RefPath = Annotated[
    str, Path(min_length=1, max_length=64, description="A version number, or an alias", examples=["latest"])
]
MEDIA_TYPES = {"tar.gz": "application/gzip", "zip": "application/zip"}


async def adapter_service(registry: Registry, store: Store) -> AdapterService:
    return AdapterService(registry, store)


Adapters = Annotated[AdapterService, Depends(adapter_service)]


@contextmanager
def unprocessable() -> Iterator[None]:
    """An InvalidArgument raised while making an adapter is answered like a malformed body: 422 naming it."""
    try:
        yield
    except InvalidArgument as exc:
        error = {
            "type": "value_error",
            "loc": ("body", exc.field or "body"),
            "msg": exc.message,
            "input": None,
        }
        raise RequestValidationError([error]) from None


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create an empty adapter",
    responses=error_responses(409),
)
def create_adapter(
    body: CreateAdapterRequest, adapters: Adapters, ctx: Context, response: Response
) -> AdapterVersionOut:
    """Registers a new version of the tenant's adapter `name`: a LoRA over the base language model (pinned
    to the version `base` names) that changes nothing until trained (B = 0). `target_modules` default by
    the base's architecture; each must match one of its linear layers. 409 if `name` is a model of another
    kind."""
    with unprocessable():
        view = adapters.create_empty(
            ctx.tenant,
            body.name,
            body.base,
            r=body.r,
            alpha=body.alpha,
            dropout=body.dropout,
            target_modules=body.target_modules,
            seed=body.seed,
        )
    response.headers["Location"] = f"{PREFIX}/{view.record.name}/versions/{view.record.version}"
    return AdapterVersionOut.from_view(view)


@router.post(
    ":import",
    status_code=status.HTTP_201_CREATED,
    summary="Import an adapter",
    responses=error_responses(409, 413),
)
def import_adapter(
    adapters: Adapters,
    ctx: Context,
    response: Response,
    file: Annotated[UploadFile, File(description="A .tar, .tar.gz or .zip of a PEFT LoRA adapter directory")],
    name: Annotated[AdapterName, Form()],
    base: Annotated[BaseRef, Form()],
) -> AdapterVersionOut:
    """Registers a new version of the tenant's adapter `name` from an archive of a PEFT adapter directory
    (`adapter_config.json` + `adapter_model.safetensors`, at its root or in one folder) trained on the base:
    every tensor must be the LoRA A (r x in) or B (out x r) of one of its linear layers."""
    with unprocessable():
        view = adapters.import_archive(ctx.tenant, name, base, file.file)
    response.headers["Location"] = f"{PREFIX}/{view.record.name}/versions/{view.record.version}"
    return AdapterVersionOut.from_view(view)


@router.get("", summary="List adapters")
def list_adapters(adapters: Adapters, ctx: Context) -> AdapterList:
    """The adapters the tenant sees (its own and published ones), by name, each with its versions (base,
    LoRA, source) and aliases."""
    return AdapterList(adapters=[AdapterOut.from_view(v) for v in adapters.adapters(ctx.tenant)])


@router.get("/{name}", summary="Get an adapter", responses=error_responses(404))
def get_adapter(name: NamePath, adapters: Adapters, ctx: Context) -> AdapterOut:
    """The adapter's versions, oldest first, and its aliases."""
    return AdapterOut.from_view(adapters.adapter(ctx.tenant, name))


@router.get(
    "/{name}/versions/{ref}/export",
    summary="Export an adapter version",
    response_class=FileResponse,
    responses={
        **error_responses(404, 409),
        200: {"content": {t: {} for t in MEDIA_TYPES.values()}, "description": "The archive"},
    },
)
def export_adapter(
    name: NamePath,
    ref: RefPath,
    adapters: Adapters,
    ctx: Context,
    format: Annotated[Literal["tar.gz", "zip"], Query(description="The archive's format")] = "tar.gz",
) -> FileResponse:
    """The version's PEFT directory (`adapter_config.json`, `adapter_model.safetensors`) in one folder of a
    .tar.gz (or .zip), as a download; `import` takes it back."""
    packed = adapters.export(ctx.tenant, name, ref, format)
    return FileResponse(
        packed.path,
        media_type=MEDIA_TYPES[format],
        filename=packed.filename,
        background=BackgroundTask(shutil.rmtree, packed.workdir, ignore_errors=True),
    )


@router.post(
    "/{name}/distill",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Distil pending feedback now",
    response_description="The `sdpo` job that trains the adapter on its pending feedback (queued)",
    responses=error_responses(400, 404, 409),
)
def distill_adapter(
    name: NamePath, feedback: Feedback, ctx: Context, response: Response, body: DistillRequest | None = None
) -> JobOut:
    """Starts the adapter's next `sdpo` job now instead of waiting for its batch to fill: it trains the oldest
    pending feedback item and those asking for its settings (or, with `training`, the pending items with
    those settings), from the version the adapter is served at; with `gate`, the new version is served
    only if it passes those thresholds instead of the default gate's. 404 for an adapter you do not see,
    400 for the platform's (only your own adapters learn) or when no feedback is pending, 409 while a job of
    the adapter is queued or running."""
    training = body.training if body is not None else None
    gate = body.gate.model_dump() if body is not None and body.gate is not None else None
    dispatched = feedback.distill(ctx.tenant, name, training, gate=gate)
    response.headers["Location"] = f"{API_PREFIX}/jobs/{dispatched.job.job_id}"
    return JobOut.from_record(dispatched.job)
