"""Where the predictor's model comes from: a checkpoint directory, or a registry reference `name@alias` /
`name@version` resolved through the model registry as `tenant` (the platform by default: its own models, then
public ones). A registry reference is polled by the server, so moving the alias (e.g. `production`) serves the
new version without a restart; moving it back rolls back."""

from __future__ import annotations

from pathlib import Path

import torch

from lyceum_core.identity import PLATFORM_TENANT, ModelRef, check_tenant_id
from lyceum_core.storage import ArtifactStore
from lyceum_db.engine import create_engine
from lyceum_db.repositories.registry import ModelRecord, ModelRepository
from lyceum_ml.checkpoint import LoadedDFM, load_dfm


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
        tenant: str = PLATFORM_TENANT,
    ) -> None:
        self.path, self.cache_dir, self.device, self.dtype = path, cache_dir, device, dtype
        self.tenant = check_tenant_id(tenant, field="model_tenant")
        self.ref = ModelRef.parse(reference) if reference else None
        if self.ref is not None:
            self.models = ModelRepository(create_engine(database_url))
            self.store = ArtifactStore(registry_url)

    @property
    def from_registry(self) -> bool:
        return self.ref is not None

    def resolve(self) -> ModelRecord:
        assert self.ref is not None
        return self.models.resolve(self.tenant, self.ref.name, self.ref.ref)

    def load(self, record: ModelRecord | None = None) -> LoadedDFM:
        """The model at `path`, or the registry's current (or given) version of the reference."""
        if self.ref is None:
            return load_dfm(self.path, device=self.device, dtype=self.dtype)
        record = record or self.resolve()
        target = self.cache_dir / record.tenant / record.name / str(record.version)
        local = self.store.get_dir(record.uri, target)
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
