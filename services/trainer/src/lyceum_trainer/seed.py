"""Seeds a fresh deployment with the demo models: the demo DFM (`dfm-demo`) and demo language model
(`lm-demo`), each trained now if no checkpoint is at hand, stored in the artifact store and registered with
the alias `production`, which the predictors and samplers serve. Models already registered are left alone,
so seeding is idempotent (`make run` and the deployments' seed job run it on every start)."""

from __future__ import annotations

import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

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
    models = ModelRepository(create_engine(database_url))
    store = ArtifactStore(registry_url)
    seeded = []
    for demo in DEMOS:
        if models.list(demo.name):
            continue
        checkpoint = checkpoints[demo.name]
        if not (checkpoint / "config.json").exists():
            log.info("training %s into %s", demo.name, checkpoint)
            command = [sys.executable, "-m", demo.builder, "--out", str(checkpoint)]
            if demo.kind == "lm" and lm_corpus is not None:
                command += ["--corpus", str(lm_corpus)]
            subprocess.run(command, check=True)
        uri = store.put_dir(checkpoint, f"models/{demo.name}/demo")
        record = models.register(demo.name, demo.kind, uri, {}, metadata={"source": demo.builder})
        models.set_alias(demo.name, alias, record.version)
        log.info("registered %s version %s as %s", demo.name, record.version, alias)
        seeded.append(demo.name)
    return seeded
