"""Where the predictor's model comes from: a checkpoint directory, or a registry reference `name@alias` /
`name@version` resolved through the model registry. A registry reference is polled by the server, so moving
the alias (e.g. `production`) serves the new version without a restart; moving it back rolls back."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from lyceum_core.errors import InvalidArgument
from lyceum_core.storage import ArtifactStore
from lyceum_db.engine import create_engine
from lyceum_db.repositories.registry import ModelRecord, ModelRepository
from lyceum_ml.checkpoint import LoadedDFM, load_dfm

REFERENCE = re.compile(r"^(?P<name>[a-z0-9][a-z0-9._-]*)@(?P<ref>[A-Za-z0-9._-]+)$")


@dataclass(frozen=True)
class ModelRef:
    name: str
    ref: str  # an alias or a version number

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        match = REFERENCE.match(text)
        if not match:
            raise InvalidArgument(f"model reference {text!r} is not of the form name@alias", field="model")
        return cls(match["name"], match["ref"])


class ModelSource:
    """Loads the configured model; for registry references, `resolve()` says which version is current."""

    def __init__(
        self,
        *,
        path: Path,
        reference: str | None,
        database_url: str,
        registry_url: str,
        cache_dir: Path,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        self.path, self.cache_dir, self.device, self.dtype = path, cache_dir, device, dtype
        self.ref = ModelRef.parse(reference) if reference else None
        if self.ref is not None:
            self.models = ModelRepository(create_engine(database_url))
            self.store = ArtifactStore(registry_url)

    @property
    def from_registry(self) -> bool:
        return self.ref is not None

    def resolve(self) -> ModelRecord:
        assert self.ref is not None
        return self.models.resolve(self.ref.name, self.ref.ref)

    def load(self, record: ModelRecord | None = None) -> LoadedDFM:
        """The model at `path`, or the registry's current (or given) version of the reference."""
        if self.ref is None:
            return load_dfm(self.path, device=self.device, dtype=self.dtype)
        record = record or self.resolve()
        local = self.store.get_dir(record.uri, self.cache_dir / record.name / str(record.version))
        loaded = load_dfm(local, device=self.device, dtype=self.dtype)
        loaded.metadata |= {"name": record.name, "version": str(record.version)}
        loaded.metadata["registry_version"] = record.version
        return loaded

    def newer(self, served_version: object) -> ModelRecord | None:
        """The registry record to switch to, if the reference names another version than `served_version`."""
        if self.ref is None:
            return None
        record = self.resolve()
        return None if record.version == served_version else record
