"""The gateway's side of the model registry: versions together with the aliases that point at them, and
alias moves that report where the alias was before. Every method acts for one tenant (its first argument),
which sees its own models and those the platform published; it moves aliases of its own models only. It
knows nothing of HTTP."""

from __future__ import annotations

from dataclasses import dataclass

from lyceum_core.errors import NotFound
from lyceum_db.repositories.registry import ModelRecord, ModelRepository


@dataclass(frozen=True, slots=True)
class VersionView:
    """A model version and the aliases that point at it."""

    record: ModelRecord
    aliases: list[str]


@dataclass(frozen=True, slots=True)
class ModelView:
    name: str
    versions: list[VersionView]
    aliases: dict[str, int]


@dataclass(frozen=True, slots=True)
class AliasMoveResult:
    name: str
    alias: str
    previous_version: int | None
    version: VersionView


class RegistryService:
    """Registry reads and alias moves for the routes; synchronous, as the repository is."""

    def __init__(self, models: ModelRepository) -> None:
        self.models = models

    def versions(self, tenant: str, name: str | None = None) -> list[VersionView]:
        """Every version (of one model, with `name`), ordered by name and version, with its aliases."""
        records = self.models.list(tenant, name)
        names = dict.fromkeys(r.name for r in records)
        aliases = {n: self.models.aliases(tenant, n) for n in names}
        return [_view(record, aliases[record.name]) for record in records]

    def model(self, tenant: str, name: str) -> ModelView:
        """The model's versions and aliases; NotFound if it has no versions."""
        records = self.models.list(tenant, name)
        if not records:
            raise NotFound(f"model {name!r} not found", field="name")
        aliases = self.models.aliases(tenant, name)
        return ModelView(name, [_view(record, aliases) for record in records], aliases)

    def version(self, tenant: str, name: str, ref: str) -> VersionView:
        """The version `ref` names: a version number or an alias."""
        record = self.models.resolve(tenant, name, ref)
        return _view(record, self.models.aliases(tenant, name))

    def set_alias(self, tenant: str, name: str, alias: str, version: int) -> AliasMoveResult:
        """Points `alias` at `version`, creating the alias if needed."""
        # Read before the move, for the caller's information only: a concurrent move may slip in between.
        previous = self.models.aliases(tenant, name).get(alias)
        record = self.models.set_alias(tenant, name, alias, version)
        return AliasMoveResult(name, alias, previous, _view(record, self.models.aliases(tenant, name)))

    def rollback(self, tenant: str, name: str, alias: str) -> AliasMoveResult:
        """Moves `alias` back to the version it pointed at before its last move."""
        previous = self.models.aliases(tenant, name).get(alias)
        record = self.models.rollback(tenant, name, alias)
        return AliasMoveResult(name, alias, previous, _view(record, self.models.aliases(tenant, name)))


def _view(record: ModelRecord, aliases: dict[str, int]) -> VersionView:
    return VersionView(
        record, sorted(alias for alias, version in aliases.items() if version == record.version)
    )
