"""The gateway's side of LoRA adapters as registry resources: created empty, imported from an archive,
exported as one. Checks everything (the base, the name, the files) before anything is stored; stores the
PEFT files through the artifact store under `models/{tenant}/{name}/{token}` and registers them (kind
`adapter`, the base pinned to its version). Synchronous; knows nothing of HTTP."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from lyceum_core.errors import FailedPrecondition, InvalidArgument, NotFound
from lyceum_core.identity import ModelRef
from lyceum_core.lora import default_target_modules
from lyceum_core.storage import ArtifactStore
from lyceum_gateway.adapter_files import (
    ArchiveFormat,
    BaseStructure,
    Lora,
    check_adapter,
    extract_upload,
    pack,
    write_empty,
)
from lyceum_gateway.registry import ModelView, RegistryService, VersionView

ADAPTER_KIND = "adapter"
LM_KIND = "lm"
SUFFIXES: dict[str, str] = {"tar.gz": ".tar.gz", "zip": ".zip"}


@dataclass(frozen=True, slots=True)
class Export:
    """A packed adapter: the archive at `path` (inside `workdir`, which the caller removes when sent)."""

    path: Path
    filename: str
    workdir: Path


class AdapterService:
    def __init__(self, registry: RegistryService, store: ArtifactStore) -> None:
        self.registry, self.store = registry, store

    def base(self, tenant: str, reference: str) -> BaseStructure:
        """The language model version `reference` (`name@alias|version`) names for the tenant, with its
        structure; InvalidArgument (field `base`) if there is none, it is no lm or it records no structure."""
        ref = ModelRef.parse(reference, field="base")
        try:
            record = self.registry.record(tenant, ref.name, ref.ref)
        except NotFound:
            raise InvalidArgument(f"base model {reference!r} not found", field="base") from None
        if record.kind != LM_KIND:
            raise InvalidArgument(
                f"base {reference!r} is a model of kind {record.kind!r}, not a language model ({LM_KIND})",
                field="base",
            )
        key = f"{record.tenant}/{record.name}@{record.version}"
        return BaseStructure.from_metadata(key, record.metadata)

    def create_empty(
        self,
        tenant: str,
        name: str,
        base_ref: str,
        *,
        r: int,
        alpha: int,
        dropout: float,
        target_modules: list[str] | None,
        seed: int,
    ) -> VersionView:
        """Registers a new version of `name`: a LoRA over the base whose B matrices are zero."""
        self.registry.check_kind(tenant, name, ADAPTER_KIND)
        base = self.base(tenant, base_ref)
        targets = tuple(target_modules) if target_modules else default_target_modules(base.architecture)
        if not targets:
            raise InvalidArgument(
                f"Lyceum has no default target modules for architecture {base.architecture!r}: name them",
                field="target_modules",
            )
        lora = Lora(r, alpha, dropout, tuple(dict.fromkeys(targets)))
        with tempfile.TemporaryDirectory(prefix="lyceum-adapter-") as tmp:
            directory = Path(tmp) / "adapter"
            write_empty(directory, base, lora, seed)
            return self._register(tenant, name, directory, base, lora, "empty")

    def import_archive(self, tenant: str, name: str, base_ref: str, file: IO[bytes]) -> VersionView:
        """Registers a new version of `name` from an uploaded .tar(.gz)/.zip of a PEFT adapter directory that
        fits the base."""
        self.registry.check_kind(tenant, name, ADAPTER_KIND)
        base = self.base(tenant, base_ref)
        with tempfile.TemporaryDirectory(prefix="lyceum-adapter-") as tmp:
            directory = extract_upload(file, Path(tmp) / "adapter")
            lora = check_adapter(directory, base)
            return self._register(tenant, name, directory, base, lora, "import")

    def adapters(self, tenant: str) -> list[ModelView]:
        return self.registry.of_kind(tenant, ADAPTER_KIND)

    def adapter(self, tenant: str, name: str) -> ModelView:
        """NotFound unless the tenant sees an adapter `name`."""
        found = self.registry.of_kind(tenant, ADAPTER_KIND, name)
        if not found:
            raise NotFound(f"adapter {name!r} not found", field="name")
        return found[0]

    def export(self, tenant: str, name: str, ref: str, fmt: ArchiveFormat) -> Export:
        """The version `ref` of the adapter, packed; NotFound unless the tenant sees it."""
        record = self.registry.record(tenant, name, ref)
        if record.kind != ADAPTER_KIND:
            raise NotFound(f"adapter {name!r} not found", field="name")
        stem = f"{record.name}-v{record.version}"
        workdir = Path(tempfile.mkdtemp(prefix="lyceum-export-"))
        try:
            try:
                files = self.store.get_dir(record.uri, workdir / "files")
            except NotFound:
                raise FailedPrecondition(
                    f"the files of adapter {name!r} version {record.version} are missing", field="name"
                ) from None
            path = workdir / (stem + SUFFIXES[fmt])
            with open(path, "wb") as out:
                pack(files, stem, fmt, out)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        return Export(path, path.name, workdir)

    def _register(
        self, tenant: str, name: str, directory: Path, base: BaseStructure, lora: Lora, source: str
    ) -> VersionView:
        metadata: dict[str, Any] = {"base": base.key, "lora": lora.as_metadata(), "source": source}
        uri = self.store.put_dir(directory, f"models/{tenant}/{name}/{uuid.uuid4().hex}")
        try:
            return self.registry.register(tenant, name, ADAPTER_KIND, uri, metadata)
        except BaseException:
            self.store.delete(uri)
            raise
