"""The processes that run one job slice together: one process (SOLO), or the ranks of a torchrun launch.
Rank 0 leads: it alone talks to the database and the store and decides what every rank does next; `agree`
hands its decision to the others."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, TypeVar

import torch.distributed as dist

T = TypeVar("T")


class Group(Protocol):
    rank: int
    world_size: int

    @property
    def leader(self) -> bool: ...

    def agree(self, value: T) -> T:
        """Rank 0's `value`, on every rank (the others' values are ignored)."""
        ...


@dataclass(frozen=True)
class Solo:
    rank: int = 0
    world_size: int = 1

    @property
    def leader(self) -> bool:
        return True

    def agree(self, value: T) -> T:
        return value


@dataclass(frozen=True)
class TorchGroup:
    """The ranks of an initialised torch.distributed process group."""

    rank: int
    world_size: int

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def agree(self, value: T) -> T:
        box: list[object] = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]  # type: ignore[return-value]


SOLO = Solo()
