"""Job kinds the trainer runs: the kind registry (names, configs, queues, exported model kind, throughput
unit) is lyceum_jobs.kinds; here each kind only maps to the function that builds its resumable trainer, and
JobContext is what a builder may use of the platform: the job's folders and the tenant's registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
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


# Each kind's builder is `build` in its module here, imported at the kind's first job: a worker that only runs
# DFM jobs never loads the language-model stack (transformers, peft, bitsandbytes: seconds of every start).
MODULES = {
    "dfm_pretrain": "dfm_pretrain",
    "lm_pretrain": "lm_pretrain",
    "sft": "sft",
    "sdpo": "sdpo",
    "eval": "evaluate",
    "gating_ppo": "gating_ppo",
}
if set(MODULES) != set(KINDS):
    _missing, _unknown = sorted(set(KINDS) - set(MODULES)), sorted(set(MODULES) - set(KINDS))
    raise RuntimeError(
        f"trainer builders disagree with lyceum_jobs.KINDS: missing {_missing}, unknown {_unknown}"
    )


def builder(kind: str) -> Build:
    """The function that builds a `kind` job's trainer (KeyError for a kind lyceum_jobs.KINDS lacks)."""
    return import_module(f"{__name__}.{MODULES[kind]}").build
