"""Native `/v1/datasets` routes: upload a dataset (multipart; checked row by row, optionally cleaned, stored
for the tenant), list, read and delete them. Jobs name a dataset as `{"id": "ds-..."}` where their config
takes a path. Plain `def` routes: the repositories and the artifact store are synchronous (FastAPI's
threadpool); the multipart body is spooled to disk by the parser, never held whole in memory."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Path, Query, Response, UploadFile, status
from fastapi.exceptions import RequestValidationError

from lyceum_core.errors import InvalidArgument
from lyceum_core.identity import DATASET_ID_PATTERN, DATASET_ID_RULE, MODEL_REF_PATTERN
from lyceum_db.models.dataset import DATASET_NAME_MAX_LEN
from lyceum_db.repositories.datasets import LIST_MAX_LIMIT, DatasetRepository
from lyceum_db.repositories.registry import ModelRepository
from lyceum_gateway.datasets import DatasetService
from lyceum_gateway.deps import Context, DatabaseEngine, Store
from lyceum_gateway.routes import API_PREFIX
from lyceum_gateway.schemas.common import error_responses
from lyceum_gateway.schemas.datasets import FORMAT_DOC, DatasetFormat, DatasetList, DatasetOut
from lyceum_jobs.datasets import CleaningOptions

router = APIRouter(prefix=f"{API_PREFIX}/datasets", tags=["datasets"], responses=error_responses(401, 422))


def get_datasets(store: Store, engine: DatabaseEngine) -> DatasetService:
    """The dataset service over the gateway's database and artifact store (cheap to build per request)."""
    return DatasetService(DatasetRepository(engine), store, ModelRepository(engine))


Datasets = Annotated[DatasetService, Depends(get_datasets)]
DatasetIdPath = Annotated[
    str, Path(pattern=DATASET_ID_PATTERN, description=f"The dataset's id: {DATASET_ID_RULE}")
]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Upload a dataset",
    response_description="The dataset was checked, stored and recorded",
    responses=error_responses(404, 413),
)
def upload_dataset(
    ctx: Context,
    datasets: Datasets,
    response: Response,
    file: Annotated[UploadFile, File(description="The data: JSON (an array), JSONL, CSV or plain text")],
    format: Annotated[DatasetFormat, Form(description=FORMAT_DOC)],  # type: ignore[valid-type]
    name: Annotated[
        str | None,
        Form(min_length=1, max_length=DATASET_NAME_MAX_LEN, description="A label; default: the file's name"),
    ] = None,
    dedupe: Annotated[bool, Form(description="Drop exact duplicate rows (the first stays)")] = False,
    scrub_pii: Annotated[
        bool,
        Form(
            description="Replace e-mail addresses, phone and card numbers, IPs by [EMAIL] [PHONE] [CARD] [IP]"
        ),
    ] = False,
    min_length: Annotated[
        int | None, Form(ge=0, description="Drop rows whose text has fewer characters")
    ] = None,
    max_length: Annotated[
        int | None, Form(ge=1, description="Drop rows whose text has more characters")
    ] = None,
    tokenizer: Annotated[
        str | None,
        Form(
            pattern=MODEL_REF_PATTERN,
            description="Count tokens with this language model's tokenizer (`name@alias`)",
        ),
    ] = None,
) -> DatasetOut:
    """Checks every row against `format` (422 naming the first bad row, e.g. `row 17: output: must be a
    non-empty string`; nothing is stored), applies the cleaning rules asked for (scrubbing, then
    duplicates, then lengths; the counts are in `cleaning`), stores the data and answers the dataset with
    its statistics. 413 when the upload exceeds the gateway's `dataset_max_bytes`."""
    try:
        options = CleaningOptions(dedupe, scrub_pii, min_length, max_length)
        record = datasets.upload(
            ctx.tenant,
            file.file,
            filename=file.filename,
            format=format,
            name=name,
            options=options,
            tokenizer=tokenizer,
        )
    except InvalidArgument as err:
        # A well-formed request whose content breaks a rule: unprocessable, like a bad form field.
        raise _unprocessable(err) from None
    response.headers["Location"] = f"{router.prefix}/{record.dataset_id}"
    return DatasetOut.from_record(record)


@router.get("", summary="List datasets")
def list_datasets(
    ctx: Context,
    datasets: Datasets,
    limit: Annotated[int, Query(ge=1, le=LIST_MAX_LIMIT, description="At most this many")] = 100,
) -> DatasetList:
    """The tenant's datasets, newest first."""
    return DatasetList(datasets=[DatasetOut.from_record(r) for r in datasets.list(ctx.tenant, limit)])


@router.get("/{dataset_id}", summary="Get a dataset", responses=error_responses(404))
def get_dataset(dataset_id: DatasetIdPath, ctx: Context, datasets: Datasets) -> DatasetOut:
    """The dataset, its statistics and what cleaning did at upload."""
    return DatasetOut.from_record(datasets.get(ctx.tenant, dataset_id))


@router.delete(
    "/{dataset_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a dataset",
    responses=error_responses(404),
)
def delete_dataset(dataset_id: DatasetIdPath, ctx: Context, datasets: Datasets) -> Response:
    """Deletes the dataset and its stored data; jobs that name it and have not read it yet will fail."""
    datasets.delete(ctx.tenant, dataset_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _unprocessable(err: InvalidArgument) -> RequestValidationError:
    """The error as a 422 naming its form field (`file` for the content)."""
    return RequestValidationError(
        [{"type": "value_error", "loc": ("body", err.field or "file"), "msg": err.message, "input": None}]
    )
