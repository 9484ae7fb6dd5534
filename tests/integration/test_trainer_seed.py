"""`python -m lyceum_trainer seed-demo` (and `make run`): the demo models land in the registry as
`production`, once, published by the platform tenant for every tenant to read."""

from __future__ import annotations

from pathlib import Path

from lyceum_core.identity import DEFAULT_TENANT, PLATFORM_TENANT
from lyceum_db.engine import create_engine
from lyceum_db.repositories.registry import ModelRepository
from lyceum_trainer.seed import seed_demos


def test_seeding_registers_each_demo_once(
    sqlite_url: str, tmp_path: Path, test_checkpoint: Path, tiny_lyceum_lm_dir: Path
) -> None:
    checkpoints = {"dfm-demo": test_checkpoint, "lm-demo": tiny_lyceum_lm_dir}
    registry = str(tmp_path / "registry")

    assert seed_demos(sqlite_url, registry, checkpoints) == ["dfm-demo", "lm-demo"]
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

    # A tenant's own model of the same name does not stop the platform's seeding (nor is it touched).
    models.register("acme", "dfm-demo", "dfm", "file:///acme/dfm", {})
    assert seed_demos(sqlite_url, registry, checkpoints) == []
    assert models.resolve("acme", "dfm-demo", "latest").tenant == "acme"
    engine.dispose()
