"""The gateway's side of uploaded datasets: an upload is checked, cleaned and described
(`lyceum_jobs.datasets`), stored under `datasets/{tenant}/{dataset_id}` and only then recorded; a delete
removes the row first, then the folder; and a job's config may name only datasets of its tenant. Every
method acts for one tenant (its first argument): another tenant's dataset is missing. Knows nothing of
HTTP."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path, PurePath
from typing import BinaryIO

from tokenizers import Tokenizer

from lyceum_core.errors import InvalidArgument, NotFound, clip
from lyceum_core.identity import ModelRef, new_dataset_id
from lyceum_core.storage import ArtifactStore
from lyceum_db.models.dataset import DATASET_NAME_MAX_LEN, FILENAME_MAX_LEN
from lyceum_db.repositories.datasets import DatasetRecord, DatasetRepository
from lyceum_db.repositories.registry import ModelRepository
from lyceum_jobs.datasets import CleaningOptions, check_format, prepare
from lyceum_jobs.datasets.files import SUFFIXES

log = logging.getLogger(__name__)

TOKENIZER_FILE = "tokenizer.json"  # in the artifact folder of every language model version
LM_KIND = "lm"
_COPY_CHUNK = 1 << 20


def dataset_key(tenant: str, dataset_id: str) -> str:
    """The artifact store key of a dataset's folder."""
    return f"datasets/{tenant}/{dataset_id}"


class DatasetService:
    """Dataset uploads, reads and deletes for the routes; synchronous (the repositories and the store are)."""

    def __init__(self, datasets: DatasetRepository, store: ArtifactStore, models: ModelRepository) -> None:
        self.datasets = datasets
        self.store = store
        self.models = models

    def upload(
        self,
        tenant: str,
        data: BinaryIO,
        *,
        filename: str | None,
        format: str,
        name: str | None = None,
        options: CleaningOptions | None = None,
        tokenizer: str | None = None,
    ) -> DatasetRecord:
        """Checks `data` (a file of `format`) row by row, cleans it with `options`, stores it and records it.
        InvalidArgument naming the first bad row (field "file") or option, NotFound for an unknown
        `tokenizer` model (`name@alias` of a language model the tenant sees); nothing is stored then."""
        check_format(format)
        filename = _filename(filename)
        tok, tokenizer_ref = self._tokenizer(tenant, tokenizer) if tokenizer else (None, None)
        dataset_id = new_dataset_id()
        with tempfile.TemporaryDirectory(prefix="lyceum-dataset-") as tmp:
            # The upload's suffix tells JSON, JSONL, CSV and text apart; the rest of its name is the user's.
            suffix = PurePath(filename).suffix.lower()
            source = Path(tmp, "upload" + (suffix if suffix in SUFFIXES else ""))
            with source.open("wb") as out:
                shutil.copyfileobj(data, out, _COPY_CHUNK)
            folder = Path(tmp, "dataset")
            folder.mkdir()
            prepared = prepare(source, format, folder, options, tok)
            stats = {**prepared.stats, "tokenizer": tokenizer_ref} if tokenizer_ref else prepared.stats
            uri = self.store.put_dir(folder, dataset_key(tenant, dataset_id))
        record = DatasetRecord(
            tenant=tenant,
            dataset_id=dataset_id,
            name=name or filename[:DATASET_NAME_MAX_LEN],
            format=format,
            filename=filename,
            data_file=prepared.data_file,
            uri=uri,
            size_bytes=prepared.size_bytes,
            rows=prepared.rows,
            stats=stats,
            cleaning=prepared.cleaning,
        )
        try:
            return self.datasets.create(record)
        except BaseException:
            self.store.delete(uri)  # no row names it: the upload did not happen
            raise

    def get(self, tenant: str, dataset_id: str) -> DatasetRecord:
        record = self.datasets.get(tenant, dataset_id)
        if record is None:
            raise NotFound(f"dataset {dataset_id!r} not found", field="dataset_id")
        return record

    def list(self, tenant: str, limit: int) -> list[DatasetRecord]:
        """The tenant's datasets, newest first."""
        return self.datasets.list(tenant, limit)

    def delete(self, tenant: str, dataset_id: str) -> DatasetRecord:
        """Deletes the dataset's row, then its folder (one left behind by a failure is named by no row)."""
        record = self.datasets.delete(tenant, dataset_id)
        if record is None:
            raise NotFound(f"dataset {dataset_id!r} not found", field="dataset_id")
        try:
            self.store.delete(record.uri)
        except Exception:  # noqa: BLE001 - the dataset is gone for every reader; the folder is only garbage
            log.exception("deleted dataset %s but not its folder %s", dataset_id, record.uri)
        return record

    def require(self, tenant: str, dataset_ids: Iterable[str], field: str = "config") -> None:
        """NotFound naming the first of `dataset_ids` the tenant has no dataset of."""
        for dataset_id in dataset_ids:
            if self.datasets.get(tenant, dataset_id) is None:
                raise NotFound(f"dataset {dataset_id!r} not found", field=field)

    def _tokenizer(self, tenant: str, ref: str) -> tuple[Tokenizer, str]:
        """The tokenizer of the language model `ref` (`name@alias`) the tenant sees, and the pinned
        `name@version` it came from; only its `tokenizer.json` is read from the store."""
        parsed = ModelRef.parse(ref, field="tokenizer")
        try:
            model = self.models.resolve(tenant, parsed.name, parsed.ref)
        except NotFound:
            raise NotFound(f"tokenizer: model {ref!r} not found", field="tokenizer") from None
        if model.kind != LM_KIND:
            shown = f"tokenizer: model {ref!r} is a {model.kind} model, not a language model"
            raise InvalidArgument(shown, field="tokenizer")
        try:
            text = self.store.read_bytes(model.uri, TOKENIZER_FILE).decode("utf-8")
            tokenizer = Tokenizer.from_str(text)
        except Exception as exc:  # noqa: BLE001 - missing, not UTF-8, or not a tokenizer (a plain Exception)
            log.info("no usable tokenizer in %s: %s", model.uri, exc)
            shown = f"tokenizer: model {ref!r} has no usable {TOKENIZER_FILE}"
            raise InvalidArgument(shown, field="tokenizer") from None
        return tokenizer, f"{model.name}@{model.version}"


def _filename(filename: str | None) -> str:
    """The uploaded file's base name, bounded (browsers may send a path); "upload" without one."""
    base = PurePath((filename or "").replace("\\", "/")).name.strip()
    return clip(base, FILENAME_MAX_LEN - 3) if base else "upload"
