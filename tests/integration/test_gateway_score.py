"""`POST /v1/score` over a real sampler: the log-probabilities of a given completion (text or token ids)
after a prompt, chat messages or token ids; and the native `/v1/generate`'s log-probs, chat messages and
recorded completions, which a score of the same tokens must agree with."""

from __future__ import annotations

import math
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fixtures.gateway import NO_PREDICTOR, MakeGateway
from fixtures.sampler import HF_MODEL, LYCEUM_MODEL, PROMPT, MakeSampler

from lyceum_core.identity import DEFAULT_TENANT
from lyceum_db.engine import create_engine
from lyceum_db.repositories.completions import CompletionRepository

pytestmark = pytest.mark.integration

USER = [{"role": "user", "content": "A cat?"}]


def post(gateway: TestClient, path: str, **body: Any) -> dict[str, Any]:
    response = gateway.post(path, json=body)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("model", [LYCEUM_MODEL, HF_MODEL])
def test_score_reports_each_completion_tokens_log_prob(sampler_gateway: TestClient, model: str) -> None:
    result = post(sampler_gateway, "/v1/score", model=model, prompt=PROMPT, completion=" was happy")

    tokens = result["tokens"]
    assert result["model"].startswith(model)
    assert result["prompt_tokens"] > 0 and result["completion_tokens"] == len(tokens) > 0
    assert [t["index"] for t in tokens] == list(range(len(tokens)))
    assert "".join(t["token"]["text"] for t in tokens) == " was happy"
    assert all(t["logprob"] <= 0 and math.isclose(math.exp(t["logprob"]), t["probability"]) for t in tokens)
    assert result["sum_logprob"] == pytest.approx(sum(t["logprob"] for t in tokens))


def test_score_by_text_or_token_ids_agree(sampler_gateway: TestClient) -> None:
    by_text = post(sampler_gateway, "/v1/score", model=HF_MODEL, prompt="The cat", completion=" sat down")
    ids = [t["token"]["id"] for t in by_text["tokens"]]

    by_ids = post(sampler_gateway, "/v1/score", model=HF_MODEL, prompt="The cat", completion_token_ids=ids)
    after_ids = post(
        sampler_gateway, "/v1/score", model=HF_MODEL, prompt_token_ids=[464, 3797], completion_token_ids=ids
    )

    assert by_ids == by_text
    assert after_ids["sum_logprob"] == pytest.approx(
        by_text["sum_logprob"], abs=1e-4
    )  # "The cat" = [464, 3797]


def test_score_agrees_with_greedy_generation(sampler_gateway: TestClient) -> None:
    """Greedy generation reports each token under the unshaped distribution, as score does."""
    generated = post(
        sampler_gateway,
        "/v1/generate",
        model=HF_MODEL,
        messages=USER,
        strategy="greedy",
        max_new_tokens=5,
        top_logprobs=2,
    )
    tokens = generated["tokens"]
    assert all(t["top_logprobs"][0]["token"]["id"] == t["token"]["id"] for t in tokens)  # greedy: the top one
    assert all(math.isclose(math.exp(t["logprob"]), t["probability"], rel_tol=1e-6) for t in tokens)

    scored = post(
        sampler_gateway,
        "/v1/score",
        model=HF_MODEL,
        messages=USER,
        completion_token_ids=[t["token"]["id"] for t in tokens],
    )

    assert [t["logprob"] for t in scored["tokens"]] == pytest.approx([t["logprob"] for t in tokens], abs=1e-4)


def test_generate_can_record_its_completion(
    make_sampler: MakeSampler, make_gateway: MakeGateway, sqlite_url: str
) -> None:
    sampler = make_sampler(database_url=sqlite_url)  # the gateway's database too
    gateway = make_gateway([NO_PREDICTOR], sampler_addresses=[sampler.address])
    body = {"model": HF_MODEL, "prompt": "The cat", "max_new_tokens": 3, "seed": 1}

    recorded = post(gateway, "/v1/generate", **body, record=True)
    plain = post(gateway, "/v1/generate", **body)

    assert plain.get("completion_id") is None and recorded["tokens"] == plain["tokens"]
    engine = create_engine(sqlite_url)
    try:
        record = CompletionRepository(engine).get(DEFAULT_TENANT, recorded["completion_id"])
    finally:
        engine.dispose()
    assert record is not None
    assert list(record.token_ids) == [t["token"]["id"] for t in recorded["tokens"]]
    assert list(record.logprobs) == pytest.approx([t["logprob"] for t in recorded["tokens"]], abs=1e-6)


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"model": HF_MODEL, "completion": "x"}, 422, "body"),
        ({"model": HF_MODEL, "prompt": "a", "messages": USER, "completion": "x"}, 422, "body"),
        ({"model": HF_MODEL, "prompt": "a"}, 422, "body"),
        ({"model": HF_MODEL, "prompt": "a", "completion": "x", "completion_token_ids": [1]}, 422, "body"),
        ({"model": HF_MODEL, "prompt": "a", "completion_token_ids": [-1]}, 422, "completion_token_ids[0]"),
        ({"model": HF_MODEL, "prompt": "a", "completion_token_ids": []}, 422, "completion_token_ids"),
        ({"model": HF_MODEL, "messages": [{"role": "bot", "content": "x"}], "completion": "x"}, 422, None),
        ({"model": HF_MODEL, "prompt": "a", "completion": "x", "gate_signal": 2}, 422, "gate_signal"),
        ({"model": HF_MODEL, "prompt": "a", "completion": "x", "gate_signal": 0.5}, 400, "gate_signal"),
        ({"model": "no-such-model", "prompt": "a", "completion": "x"}, 404, "model"),
        ({"model": HF_MODEL, "prompt": "a", "completion_token_ids": [60000]}, 400, None),
    ],
)
def test_bad_scores_are_refused(
    sampler_gateway: TestClient, body: dict, status: int, field: str | None
) -> None:
    response = sampler_gateway.post("/v1/score", json=body)

    assert response.status_code == status, response.text
    if field is not None:
        assert response.json()["error"]["field"] == field


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"model": HF_MODEL}, 422, "body"),
        ({"model": HF_MODEL, "prompt": "a", "messages": USER}, 422, "body"),
        ({"model": HF_MODEL, "messages": []}, 422, "messages"),
        ({"model": HF_MODEL, "prompt": "a", "top_logprobs": 21}, 422, "top_logprobs"),
        ({"model": HF_MODEL, "prompt": "a", "gate_signal": -0.1}, 422, "gate_signal"),
        ({"model": HF_MODEL, "prompt": "a", "gate_signal": 0.5}, 400, "gate_signal"),
        ({"model": HF_MODEL, "prompt": "a", "adapter": "no-such-adapter"}, 404, None),
    ],
)
def test_bad_generations_with_the_new_fields_are_refused(
    sampler_gateway: TestClient, body: dict, status: int, field: str | None
) -> None:
    response = sampler_gateway.post("/v1/generate", json=body)

    assert response.status_code == status, response.text
    if field is not None:
        assert response.json()["error"]["field"] == field


def test_the_document_has_score(sampler_gateway: TestClient) -> None:
    document = sampler_gateway.get("/openapi.json").json()

    operation = document["paths"]["/v1/score"]["post"]
    assert operation["tags"] == ["generation"] and operation["description"]
    assert {"ScoreRequest", "ScoreResponse"} <= set(document["components"]["schemas"])
    assert "messages" in document["components"]["schemas"]["GenerateRequest"]["properties"]
