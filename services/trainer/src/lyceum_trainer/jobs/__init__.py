"""Job kinds the trainer runs: the kind registry (names, configs, queues, exported model kind, throughput
unit) is lyceum_jobs.kinds; here each kind only maps to the function that builds its resumable trainer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from lyceum_jobs.kinds import KINDS
from lyceum_ml.training import ResumableTrainer

# (trainer, final_metrics): final_metrics() adds figures computed once at the end, e.g. the test split's.
Built = tuple[ResumableTrainer, Callable[[], dict[str, float]]]
# (config, work dir, checkpoint dir to resume or None) -> Built
Build = Callable[[Any, Path, Path | None], Built]


def _builders() -> dict[str, Build]:
    from lyceum_trainer.jobs import dfm_pretrain, lm_pretrain

    builders: dict[str, Build] = {"dfm_pretrain": dfm_pretrain.build, "lm_pretrain": lm_pretrain.build}
    if set(builders) != set(KINDS):
        missing, unknown = sorted(set(KINDS) - set(builders)), sorted(set(builders) - set(KINDS))
        raise RuntimeError(
            f"trainer builders disagree with lyceum_jobs.KINDS: missing {missing}, unknown {unknown}"
        )
    return builders


BUILDERS = _builders()
