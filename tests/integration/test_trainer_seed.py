"""`python -m lyceum_trainer seed-demo` (and `make run`): the demo models, and the demo adapter over the demo
LM, land in the registry as `production`, once, published by the platform tenant for every tenant to read."""

from __future__ import annotations

import json
from pathlib import Path

from lyceum_core.identity import DEFAULT_TENANT, PLATFORM_TENANT
from lyceum_core.storage import ArtifactStore
from lyceum_db.engine import create_engine
from lyceum_db.repositories.registry import ModelRepository
from lyceum_trainer.seed import seed_demos


def test_seeding_registers_each_demo_once(
    sqlite_url: str, tmp_path: Path, test_checkpoint: Path, tiny_lyceum_lm_dir: Path
) -> None:
    checkpoints = {
        "dfm-demo": test_checkpoint,
        "lm-demo": tiny_lyceum_lm_dir,
        "lm-demo-tutor": tmp_path / "models" / "lm-demo-tutor",
    }
    registry = str(tmp_path / "registry")

    assert seed_demos(sqlite_url, registry, checkpoints) == ["dfm-demo", "lm-demo", "lm-demo-tutor"]
    assert seed_demos(sqlite_url, registry, checkpoints) == []

    models = ModelRepository(engine := create_engine(sqlite_url))
    for name, kind in [("dfm-demo", "dfm"), ("lm-demo", "lm")]:
        record = models.resolve(PLATFORM_TENANT, name, "production")
        assert record.kind == kind and len(models.list(PLATFORM_TENANT, name)) == 1
        assert (record.tenant, record.public) == (PLATFORM_TENANT, True)
        assert (Path(record.uri.removeprefix("file://")) / "config.json").exists()
        # Every tenant reads it; none may move its aliases.
        assert models.resolve(DEFAULT_TENANT, name, "production") == record
        assert models.resolve("acme", name, "production") == record
        assert models.aliases("acme", name) == {"latest": 1, "production": 1}

    # The adapter names the base version it was built for, and is stored in PEFT's layout.
    adapter = models.resolve("acme", "lm-demo-tutor", "production")
    assert (adapter.tenant, adapter.kind, adapter.public) == (PLATFORM_TENANT, "adapter", True)
    assert adapter.metadata == {"base": f"{PLATFORM_TENANT}/lm-demo@1", "source": "lyceum_ml.lm.demo_adapter"}
    stored = Path(adapter.uri.removeprefix("file://"))
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in stored.iterdir()}
    assert json.loads((stored / "adapter_config.json").read_text())["peft_type"] == "LORA"

    # A tenant's own model of the same name does not stop the platform's seeding (nor is it touched).
    models.register("acme", "dfm-demo", "dfm", "file:///acme/dfm", {})
    assert seed_demos(sqlite_url, registry, checkpoints) == []
    assert models.resolve("acme", "dfm-demo", "latest").tenant == "acme"
    engine.dispose()


def test_an_existing_deployment_gains_the_adapter_for_its_served_lm(
    sqlite_url: str, tmp_path: Path, test_checkpoint: Path, tiny_lyceum_lm_dir: Path
) -> None:
    # As an earlier release seeded it: the demos without the adapter, here with lm-demo's production at v2.
    store = ArtifactStore(tmp_path / "registry")
    models = ModelRepository(engine := create_engine(sqlite_url))
    earlier = [("dfm-demo", "dfm", test_checkpoint), ("lm-demo", "lm", tiny_lyceum_lm_dir)]
    for name, kind, checkpoint in earlier:
        uri = store.put_dir(checkpoint, f"models/{PLATFORM_TENANT}/{name}/demo")
        models.register(PLATFORM_TENANT, name, kind, uri, {}, public=True)
    models.register(PLATFORM_TENANT, "lm-demo", "lm", uri, {}, public=True)
    models.set_alias(PLATFORM_TENANT, "lm-demo", "production", 2)
    models.set_alias(PLATFORM_TENANT, "dfm-demo", "production", 1)

    # Without an entry of its own, the adapter is built next to the demo LM's checkpoint directory.
    checkpoints = {"dfm-demo": test_checkpoint, "lm-demo": tmp_path / "work" / "lm-demo"}
    assert seed_demos(sqlite_url, str(tmp_path / "registry"), checkpoints) == ["lm-demo-tutor"]
    assert (tmp_path / "work" / "lm-demo-tutor" / "adapter_config.json").exists()
    assert not (tmp_path / "work" / "lm-demo").exists()  # the registered LM was used, not trained again
    adapter = models.resolve(PLATFORM_TENANT, "lm-demo-tutor", "production")
    assert adapter.metadata["base"] == f"{PLATFORM_TENANT}/lm-demo@2"
    engine.dispose()
