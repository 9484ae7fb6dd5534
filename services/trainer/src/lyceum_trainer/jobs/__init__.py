"""Job kinds the trainer runs: each handler builds a resumable trainer from a validated config."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lyceum_ml.training import ResumableTrainer

# (trainer, final_metrics): final_metrics() adds figures computed once at the end, e.g. the test split's.
Built = tuple[ResumableTrainer, Callable[[], dict[str, float]]]


@dataclass(frozen=True)
class Handler:
    build: Callable[[Any, Path, Path | None], Built]  # (config, work dir, checkpoint dir to resume or None)
    model_kind: str  # the registry kind of what it exports
    unit: str  # what its throughput counts


def _handlers() -> dict[str, Handler]:
    from lyceum_trainer.jobs import dfm_pretrain, lm_pretrain

    return {
        "dfm_pretrain": Handler(dfm_pretrain.build, "dfm", "events/s"),
        "lm_pretrain": Handler(lm_pretrain.build, "lm", "tokens/s"),
    }


HANDLERS = _handlers()
