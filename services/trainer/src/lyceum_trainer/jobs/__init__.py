"""Job kinds the trainer runs: the kind registry (names, configs, queues, exported model kind, throughput
unit) is lyceum_jobs.kinds; here each kind only maps to the function that builds its resumable trainer, and
JobContext is what a builder may use of the platform: the job's folders and the tenant's registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from lyceum_core.errors import InvalidArgument
from lyceum_core.identity import ModelRef, model_key
from lyceum_core.storage import ArtifactStore
from lyceum_db.repositories.registry import ModelRecord, ModelRepository
from lyceum_jobs.kinds import KINDS
from lyceum_ml.training import ResumableTrainer

# (trainer, final_metrics): final_metrics() adds figures computed once at the end, e.g. the test split's.
Built = tuple[ResumableTrainer, Callable[[], dict[str, float]]]


@dataclass(frozen=True)
class JobContext:
    job_id: str
    tenant: str
    workdir: Path  # the job's local scratch folder
    resume: Path | None  # the checkpoint to resume from, or None on a first slice
    models: ModelRepository
    store: ArtifactStore
    engine: Engine | None = None  # the platform's database, for jobs that read more than the registry

    def model(self, ref: str, kind: str, field: str) -> tuple[ModelRecord, Path]:
        """The registry version `ref` (name@alias or name@version) names for the job's tenant, which must
        be of `kind`, and a local folder holding it. NotFound / InvalidArgument naming `field` otherwise."""
        parsed = ModelRef.parse(ref, field)
        record = self.models.resolve(self.tenant, parsed.name, parsed.ref)
        if record.kind != kind:
            raise InvalidArgument(f"{field}: {ref} is a {record.kind!r} model, not {kind!r}", field=field)
        local = self.workdir / "models" / f"{record.tenant}-{record.name}-{record.version}"
        return record, self.store.get_dir(record.uri, local)


# (config, context) -> Built
Build = Callable[[Any, JobContext], Built]


def registry_key(record: ModelRecord) -> str:
    """How registry metadata pins a model version: `owner/name@version` (an adapter's `base`)."""
    return model_key(record.tenant, record.name, record.version)


def _builders() -> dict[str, Build]:
    from lyceum_trainer.jobs import dfm_pretrain, evaluate, gating_ppo, lm_pretrain, sdpo, sft

    builders: dict[str, Build] = {
        "dfm_pretrain": dfm_pretrain.build,
        "lm_pretrain": lm_pretrain.build,
        "sft": sft.build,
        "sdpo": sdpo.build,
        "eval": evaluate.build,
        "gating_ppo": gating_ppo.build,
    }
    if set(builders) != set(KINDS):
        missing, unknown = sorted(set(KINDS) - set(builders)), sorted(set(builders) - set(KINDS))
        raise RuntimeError(
            f"trainer builders disagree with lyceum_jobs.KINDS: missing {missing}, unknown {unknown}"
        )
    return builders


BUILDERS = _builders()
