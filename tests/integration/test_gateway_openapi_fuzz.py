"""Schemathesis against the gateway's own OpenAPI document: every operation, a fixed number of seeded examples
(valid and invalid), sent over HTTP to the real stack (a real predictor and sampler over gRPC, a real database
and broker folder, authentication on). No answer may be a 5xx, and every answer must match the document
(status code declared, body schema, content type).

What earlier runs found became regular tests (see `test_gateway_errors.py`, `test_gateway_hardening.py`); this
run guards the document and the code against drifting apart again."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fixtures.gateway import gateway_settings, serve
from fixtures.predictor import RunningPredictor, predictor_settings
from fixtures.sampler import RunningSampler, sampler_settings
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.routing import Mount

from lyceum_gateway.main import create_app

pytestmark = pytest.mark.integration

TENANT_KEY = "fuzz:fuzz-key-5b1e"
ADMIN_KEY = "fuzz-admin-key-9c2d"
EXAMPLES_PER_OPERATION = 12
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance, content_type_conformance]


@pytest.fixture(scope="module")
def fuzz_stack(
    test_checkpoint: Path,
    sampler_models: list[str],
    sampler_eos_ids: dict[str, int],
    _sqlite_template: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """The gateway served by uvicorn over a predictor, a sampler (sessions in memory), a SQLite database and
    a broker folder of this module's own."""
    folder = tmp_path_factory.mktemp("fuzz")
    db = folder / "lyceum.db"
    shutil.copy(_sqlite_template, db)
    database_url = f"sqlite:///{db}"
    predictor = RunningPredictor(predictor_settings(test_checkpoint, database_url))
    sampler = RunningSampler(sampler_settings(sampler_models, "memory://"), sampler_eos_ids)
    try:
        app = create_app(
            gateway_settings(
                [predictor.address],
                sampler_addresses=[sampler.address],
                database_url=database_url,
                broker_url=f"filesystem://{folder / 'broker'}",
                registry_url=str(folder / "registry"),
                api_keys=[TENANT_KEY],
                admin_keys=[ADMIN_KEY],
            )
        )
        with serve(app) as url:
            yield url
    finally:
        sampler.close()
        predictor.close()


STATUSES: Counter[tuple[str, int]] = Counter()  # (operation, status) -> answers, for the summary


@pytest.fixture(scope="module", autouse=True)
def summary() -> Iterator[None]:
    """Prints what the run sent and got (`-s`): operations, examples, answers by status class."""
    yield
    operations = {operation for operation, _ in STATUSES}
    by_status = Counter()
    for (_, status), n in STATUSES.items():
        by_status[status] += n
    print(
        f"\nschemathesis: {len(operations)} operations, {sum(STATUSES.values())} requests; "
        f"answers by status: {dict(sorted(by_status.items()))}"
    )


# The documents the served app publishes (built without starting it; the tests call the served one): the
# native API's, and each compatibility mount's own (`/dfm-server/openapi.json`, `/token-wheel/openapi.json`).
APP = create_app(gateway_settings(["127.0.0.1:9"], api_keys=[TENANT_KEY], admin_keys=[ADMIN_KEY]))
MOUNTS = {route.path: route.app for route in APP.routes if isinstance(route, Mount)}
schema = schemathesis.openapi.from_dict(APP.openapi())
dfm_server = schemathesis.openapi.from_dict(MOUNTS["/dfm-server"].openapi())
token_wheel = schemathesis.openapi.from_dict(MOUNTS["/token-wheel"].openapi())
FUZZ = settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,  # seeded: the same examples every run
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def call(case: Any, base_url: str, key: str) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    response = case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS, timeout=30)
    STATUSES[
        (f"{base_url.rsplit(':', 1)[-1].partition('/')[2]} {case.operation.label}", response.status_code)
    ] += 1


@schema.parametrize()
@FUZZ
def test_every_operation_conforms_to_the_document(case: Any, fuzz_stack: str) -> None:
    call(case, fuzz_stack, ADMIN_KEY if case.path.startswith("/v1/admin") else TENANT_KEY.split(":", 1)[1])


@dfm_server.parametrize()
@FUZZ
def test_the_dfm_server_mount_conforms_to_its_document(case: Any, fuzz_stack: str) -> None:
    call(case, f"{fuzz_stack}/dfm-server", TENANT_KEY.split(":", 1)[1])


@token_wheel.parametrize()
@FUZZ
def test_the_token_wheel_mount_conforms_to_its_document(case: Any, fuzz_stack: str) -> None:
    call(case, f"{fuzz_stack}/token-wheel", TENANT_KEY.split(":", 1)[1])
