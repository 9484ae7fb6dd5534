"""Seeds a fresh deployment with the demo models: the demo DFM (`dfm-demo`) and demo language model
(`lm-demo`), each trained now if no checkpoint is at hand, stored in the artifact store and registered with
the alias `production`, which the predictors and samplers serve. The platform tenant publishes them (public:
every tenant may read them). Models already registered are left alone, so seeding is idempotent (`make run`
and the deployments' seed job run it on every start)."""

from __future__ import annotations

import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from lyceum_core.context import RequestContext, bound
from lyceum_core.identity import PLATFORM_TENANT
from lyceum_core.storage import ArtifactStore
from lyceum_db.engine import create_engine
from lyceum_db.repositories.registry import ModelRepository

log = logging.getLogger(__name__)
ALIAS = "production"


@dataclass(frozen=True)
class Demo:
    name: str
    kind: str
    builder: str  # module whose `--out DIR` trains the checkpoint


DEMOS = (Demo("dfm-demo", "dfm", "lyceum_ml.dfm.demo"), Demo("lm-demo", "lm", "lyceum_ml.lm.demo"))


def seed_demos(
    database_url: str,
    registry_url: str,
    checkpoints: dict[str, Path],
    *,
    alias: str = ALIAS,
    lm_corpus: Path | None = None,
) -> list[str]:
    """Registers each demo not yet in the registry, from `checkpoints[name]` (trained there when missing;
    the demo LM on `lm_corpus` if given, else on its default corpus); returns the names registered now."""
    engine = create_engine(database_url)
    models, store = ModelRepository(engine), ArtifactStore(registry_url)
    seeded = []
    try:
        with bound(RequestContext.system()):
            for demo in DEMOS:
                if _seed(models, store, demo, checkpoints[demo.name], alias, lm_corpus):
                    seeded.append(demo.name)
    finally:
        engine.dispose()
    return seeded


def _seed(
    models: ModelRepository,
    store: ArtifactStore,
    demo: Demo,
    checkpoint: Path,
    alias: str,
    lm_corpus: Path | None,
) -> bool:
    """Registers one demo as the platform's public model unless the platform has it already."""
    if any(record.tenant == PLATFORM_TENANT for record in models.list(PLATFORM_TENANT, demo.name)):
        return False
    if not (checkpoint / "config.json").exists():
        log.info("training %s into %s", demo.name, checkpoint)
        command = [sys.executable, "-m", demo.builder, "--out", str(checkpoint)]
        if demo.kind == "lm" and lm_corpus is not None:
            command += ["--corpus", str(lm_corpus)]
        subprocess.run(command, check=True)
    uri = store.put_dir(checkpoint, f"models/{PLATFORM_TENANT}/{demo.name}/demo")
    record = models.register(
        PLATFORM_TENANT, demo.name, demo.kind, uri, {}, metadata={"source": demo.builder}, public=True
    )
    models.set_alias(PLATFORM_TENANT, demo.name, alias, record.version)
    log.info("registered %s version %s as %s (public)", demo.name, record.version, alias)
    return True
