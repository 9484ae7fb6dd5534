"""The whole local stack as `make run` starts it (fixtures/stack.py), one per test module: a module's tests
keep out of each other's way (their own learners, sessions, model names and job kinds)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.stack import local_stack


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    test_checkpoint: Path,
    tiny_lyceum_lm_dir: Path,
    smollm2_dir: Path,
) -> Iterator[str]:
    state = tmp_path_factory.mktemp("stack") / "var"
    with local_stack(state, test_checkpoint, tiny_lyceum_lm_dir, smollm2_dir) as url:
        yield url
