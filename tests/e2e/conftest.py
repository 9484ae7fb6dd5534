"""The whole local stack as `make run` starts it (fixtures/stack.py), one per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.stack import local_stack


@pytest.fixture
def stack(
    tmp_path: Path, test_checkpoint: Path, tiny_lyceum_lm_dir: Path, smollm2_dir: Path
) -> Iterator[str]:
    with local_stack(tmp_path / "var", test_checkpoint, tiny_lyceum_lm_dir, smollm2_dir) as url:
        yield url
