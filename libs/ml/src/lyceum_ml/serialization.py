"""Shared (de)serialisation for model configs saved inside checkpoints."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, Self


class DictConfig:
    """Mixin for config dataclasses: `to_dict`, and `from_dict` that ignores keys it does not know (so a
    checkpoint written by a newer version with extra fields still loads)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in known})
