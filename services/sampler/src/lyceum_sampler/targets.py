"""What a request runs on: a loaded model and, optionally, one of its LoRA adapters. A request names a served
model (`lm@production`, a local name) with an optional `adapter`, or names the adapter alone (`tutor`,
`tutor@production`), whose registry version pins its base model."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from lyceum_core.errors import InvalidArgument, NotFound
from lyceum_core.identity import ALIAS_MAX_LEN, MODEL_NAME_MAX_LEN
from lyceum_sampler.adapters import Adapter, AdapterPool
from lyceum_sampler.models import Loaded, ModelPool
from lyceum_sampler.policies import PolicyPool

MAX_MODEL_LEN = MODEL_NAME_MAX_LEN + 1 + ALIAS_MAX_LEN  # `name@alias`, the longest a model may be named


@dataclass(frozen=True)
class Target:
    loaded: Loaded
    adapter: Adapter | None = None

    @property
    def label(self) -> str:
        """What serves the request, versions resolved: `owner/model@3` or `owner/model@3+owner/tutor@2`."""
        return self.loaded.key + (f"+{self.adapter.key}" if self.adapter else "")


def check_model(model: str, field: str = "model") -> str:
    if not model:
        raise InvalidArgument(f"{field} must not be empty: name a served model", field=field)
    if len(model) > MAX_MODEL_LEN:
        raise InvalidArgument(f"{field} must be at most {MAX_MODEL_LEN} characters", field=field)
    return model


class Targets:
    """What requests name: models, their adapters, and the gating policies that steer them."""

    def __init__(self, pool: ModelPool, adapters: AdapterPool, policies: PolicyPool) -> None:
        self.pool, self.adapters, self.policies = pool, adapters, policies

    def pin(self, tenant: str, model: str, adapter: str = "") -> tuple[str, Adapter | None]:
        """(base model key, adapter version) a request names, resolved in the tenant. NotFound(field=model
        or adapter) for what the tenant does not see (another tenant's adapter included)."""
        check_model(model)
        named: Adapter | None = None
        if model in self.pool.specs:
            key = self.pool.pin(tenant, model)
        elif (named := self.adapters.resolve(tenant, model)) is not None:
            key = named.base
        else:
            key = self.pool.pin(tenant, model)  # raises the pool's NotFound (or InvalidArgument)
        if adapter:
            check_model(adapter, "adapter")
            if named is not None:
                raise InvalidArgument("model names an adapter already; leave adapter empty", field="adapter")
            named = self.adapters.resolve(tenant, adapter, field="adapter")
            if named is None:
                raise NotFound(f"adapter {adapter!r} not found", field="adapter")
            if named.base != key:
                raise InvalidArgument(
                    f"adapter {adapter!r} applies to {named.base}, not {key}", field="adapter"
                )
        return key, named

    def resolve(self, tenant: str, model: str, adapter: str = "") -> Target:
        key, named = self.pin(tenant, model, adapter)
        return Target(self.load(key, "adapter" if adapter else "model"), named)

    def load(self, key: str, field: str = "model") -> Loaded:
        try:
            return self.pool.get(key)
        except NotFound as exc:
            raise NotFound(exc.message, field=field) from None

    @contextmanager
    def using(self, target: Target) -> Iterator[str | None]:
        """Within: the target's adapter is injected and counted in use; yields its module name (None: no
        adapter)."""
        if target.adapter is None:
            yield None
            return
        name = self.adapters.acquire(target.loaded, target.adapter)
        try:
            yield name
        finally:
            self.adapters.release(target.loaded, target.adapter)
