"""`python -m lyceum_trainer seed-demo` (and `make run`): the demo models land in the registry as
`production`, once."""

from __future__ import annotations

from pathlib import Path

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

    models = ModelRepository(create_engine(sqlite_url))
    for name, kind in [("dfm-demo", "dfm"), ("lm-demo", "lm")]:
        record = models.resolve(name, "production")
        assert record.kind == kind and len(models.list(name)) == 1
        assert (Path(record.uri.removeprefix("file://")) / "config.json").exists()
