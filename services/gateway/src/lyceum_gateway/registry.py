"""The gateway's side of the model registry: versions together with the aliases that point at them, and
alias moves that report where the alias was before. Every method acts for one tenant (its first argument),
which sees its own models and those the platform published; it moves aliases of its own models only. It
knows nothing of HTTP."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lyceum_core.errors import AlreadyExists, InvalidArgument, NotFound
from lyceum_core.identity import ModelRef, model_key
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

    def record(self, tenant: str, name: str, ref: str) -> ModelRecord:
        """The version `ref` (a version number or an alias) of `name` names, without its aliases."""
        return self.models.resolve(tenant, name, ref)

    def of_kind(self, tenant: str, kind: str, name: str | None = None) -> list[ModelView]:
        """The models (one, with `name`) whose versions are of `kind`, by name, with their aliases."""
        grouped: dict[str, list[VersionView]] = {}
        for view in self.versions(tenant, name):
            if view.record.kind == kind:
                grouped.setdefault(view.record.name, []).append(view)
        return [ModelView(n, views, self.models.aliases(tenant, n)) for n, views in sorted(grouped.items())]

    def register(
        self, tenant: str, name: str, kind: str, uri: str, metadata: Mapping[str, Any]
    ) -> VersionView:
        """Registers the next version of the tenant's model `name` (moving `latest` to it). AlreadyExists
        when the name the tenant sees holds models of another kind: kinds do not mix under one name."""
        self.check_kind(tenant, name, kind)
        record = self.models.register(tenant, name, kind, uri, {}, metadata=metadata)
        return _view(record, self.models.aliases(tenant, name))

    def check_kind(self, tenant: str, name: str, kind: str) -> None:
        """AlreadyExists if the model `name` the tenant sees has versions of another kind than `kind`."""
        other = {r.kind for r in self.models.list(tenant, name)} - {kind}
        if other:
            raise AlreadyExists(
                f"{name!r} is already a model of kind {sorted(other)[0]!r}; choose another name", field="name"
            )

    def require(self, tenant: str, references: Sequence[tuple[str, str, str]]) -> dict[str, ModelRecord]:
        """Every (field, name@ref, kind) a job config starts from names a model of that kind the tenant sees
        (NotFound / InvalidArgument naming the field); an adapter to continue must be of the named base.
        Returns the versions found, by field."""
        found: dict[str, ModelRecord] = {}
        by_field: dict[str, ModelRecord] = {}
        for field, text, kind in references:
            ref = ModelRef.parse(text, field)
            try:
                record = self.models.resolve(tenant, ref.name, ref.ref)
            except NotFound as exc:
                raise NotFound(f"{field}: {exc.message}", field=field) from None
            allowed = kind.split("|")  # "lm|adapter": either
            if record.kind not in allowed:
                message = f"{field}: {text} is a {record.kind!r} model, not {' or '.join(map(repr, allowed))}"
                raise InvalidArgument(message, field=field)
            found.setdefault(kind, record)
            by_field[field] = record
        base, adapter = found.get("lm"), found.get("adapter")
        if base is not None and adapter is not None:
            key = model_key(base.tenant, base.name, base.version)
            if adapter.metadata.get("base") != key:
                raise InvalidArgument(
                    f"config.init_adapter: it was made for {adapter.metadata.get('base')}, not {key}",
                    field="config.init_adapter",
                )
        return by_field

    def delete(self, tenant: str, name: str) -> list[ModelRecord]:
        """Deletes the tenant's own model `name`, every version and alias; the deleted versions (their
        artifacts are the caller's to remove), none if it had no such model."""
        return self.models.delete(tenant, name)

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
