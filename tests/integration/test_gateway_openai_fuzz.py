"""Schemathesis against the OpenAI-compatible mount's own document (`/openai/v1/openapi.json`): every
operation, a fixed number of seeded examples (valid and invalid) plus the document's own examples, sent over
HTTP to a gateway over a real sampler, authentication on. No answer may be a 5xx, and every answer must match
the document (status code declared, body schema, content type)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fixtures.gateway import NO_PREDICTOR, gateway_settings, serve
from fixtures.sampler import HF_MODEL, RunningSampler, sampler_settings
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.routing import Mount

from lyceum_gateway.main import OPENAI_PREFIX, create_app

pytestmark = pytest.mark.integration

KEY = "fuzz-openai-key-3e7a"
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance, content_type_conformance]


@pytest.fixture(scope="module")
def openai_fuzz_url(
    sampler_models: list[str],
    sampler_eos_ids: dict[str, int],
    _sqlite_template: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("openai-fuzz")
    db = folder / "lyceum.db"
    db.write_bytes(_sqlite_template.read_bytes())
    database_url = f"sqlite:///{db}"
    sampler = RunningSampler(
        sampler_settings(sampler_models, "memory://", database_url=database_url), sampler_eos_ids
    )
    try:
        app = create_app(
            gateway_settings(
                [NO_PREDICTOR],
                sampler_addresses=[sampler.address],
                database_url=database_url,
                broker_url=f"filesystem://{folder / 'broker'}",
                api_keys=[KEY],
            )
        )
        with serve(app) as url:
            yield url + OPENAI_PREFIX
    finally:
        sampler.close()


APP = create_app(gateway_settings(["127.0.0.1:9"], api_keys=[KEY]))
MOUNT = next(r.app for r in APP.routes if isinstance(r, Mount) and r.path == OPENAI_PREFIX)
schema = schemathesis.openapi.from_dict(MOUNT.openapi())


@schema.parametrize()
@settings(
    max_examples=25,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_openai_mount_conforms_to_its_document(case: Any, openai_fuzz_url: str) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    case.call_and_validate(base_url=openai_fuzz_url, headers=headers, checks=CHECKS, timeout=60)


VALID = [
    (
        "/chat/completions",
        {"model": HF_MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3},
    ),
    (
        "/chat/completions",
        {
            "model": HF_MODEL,
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 3,
            "n": 2,
            "logprobs": True,
            "top_logprobs": 2,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    ),
    ("/completions", {"model": HF_MODEL, "prompt": ["Hi", "Ho"], "max_tokens": 3, "logprobs": 2}),
    ("/completions", {"model": HF_MODEL, "prompt": [464, 3797], "max_tokens": 3, "stream": True}),
]


@pytest.mark.parametrize(("path", "body"), VALID)
def test_successful_answers_match_the_document(openai_fuzz_url: str, path: str, body: dict) -> None:
    case = schema[path]["POST"].Case(body=body)
    headers = {"Authorization": f"Bearer {KEY}"}
    response = case.call_and_validate(base_url=openai_fuzz_url, headers=headers, checks=CHECKS, timeout=60)
    assert response.status_code == 200, response.text
    for path_, method in (("/models", "GET"), ("/models/{model}", "GET")):
        listed = schema[path_][method].Case(path_parameters={"model": HF_MODEL})
        listed.call_and_validate(base_url=openai_fuzz_url, headers=headers, checks=CHECKS, timeout=60)
