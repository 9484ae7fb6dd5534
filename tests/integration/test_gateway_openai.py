"""The OpenAI-compatible API (`/openai/v1`) with the official `openai` client, over a real socket: a gateway
served by uvicorn (authentication on) over a real sampler (the tiny test LMs), as a user's code would call it.
Lists models, completes (chat and legacy), streams token by token, returns log-probs, records completions;
answers errors in OpenAI's shape (checked on the raw responses too)."""

from __future__ import annotations

import json
import math
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fastapi.testclient import TestClient
from fixtures.gateway import API_KEY, NO_PREDICTOR, NO_SAMPLER, MakeGateway, gateway_settings, serve
from fixtures.sampler import HF_MODEL, LYCEUM_MODEL, RunningSampler, sampler_settings

from lyceum_core.identity import COMPLETION_ID_PATTERN, DEFAULT_TENANT
from lyceum_db.engine import create_engine
from lyceum_db.repositories.completions import CompletionRepository
from lyceum_gateway.main import create_app

pytestmark = pytest.mark.integration

USER = [{"role": "user", "content": "Once upon a time"}]
CHAT = [
    {"role": "system", "content": "Be kind."},
    {"role": "user", "content": "A cat?"},
    {"role": "assistant", "content": "A cat"},
    {"role": "user", "content": "Go on"},
]
# The tiny Lyceum LM's context is 96 tokens, and its small BPE spends many on the template's markers.
CHATS = {HF_MODEL: CHAT, LYCEUM_MODEL: CHAT[:2]}


@pytest.fixture(scope="module")
def openai_database_url(_sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The database of this module's gateway and sampler (registry, keys, recorded completions)."""
    db = tmp_path_factory.mktemp("openai-db") / "lyceum.db"
    shutil.copy(_sqlite_template, db)
    return f"sqlite:///{db}"


@pytest.fixture(scope="module")
def openai_url(
    sampler_models: list[str],
    sampler_eos_ids: dict[str, int],
    openai_database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """`http://127.0.0.1:PORT/openai/v1` of a gateway (key `API_KEY`) over a sampler sharing its database."""
    folder = tmp_path_factory.mktemp("openai")
    database_url = openai_database_url
    sampler = RunningSampler(
        sampler_settings(sampler_models, "memory://", database_url=database_url), sampler_eos_ids
    )
    try:
        settings = gateway_settings(
            [NO_PREDICTOR],
            sampler_addresses=[sampler.address],
            database_url=database_url,
            broker_url=f"filesystem://{folder / 'broker'}",
            api_keys=[API_KEY],
        )
        with serve(create_app(settings)) as url:
            yield url + "/openai/v1"
    finally:
        sampler.close()


@pytest.fixture
def client(openai_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=openai_url, api_key=API_KEY, max_retries=0, timeout=60) as c:
        yield c


@pytest.fixture
def http(openai_url: str) -> Iterator[httpx.Client]:
    """A plain HTTP client on the mount, with the key, for what the OpenAI client hides."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=openai_url, headers=headers, timeout=60) as c:
        yield c


def extra(obj: Any, name: str) -> Any:
    """A Lyceum extension field of an OpenAI client object (kept by the client as an extra)."""
    return (obj.model_extra or {}).get(name)


def sse_data(response: httpx.Response) -> list[str]:
    """The `data:` payloads of an event stream, in order."""
    return [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]


# --- models -------------------------------------------------------------------------------------------------


def test_lists_the_served_models(client: openai.OpenAI) -> None:
    models = client.models.list()

    ids = [m.id for m in models.data]
    assert {LYCEUM_MODEL, HF_MODEL} <= set(ids)
    assert all(m.object == "model" and m.owned_by == "lyceum" for m in models.data)
    assert client.models.retrieve(HF_MODEL).id == HF_MODEL
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("no-such-model")
    assert info.value.code == "model_not_found"


# --- chat completions ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [LYCEUM_MODEL, HF_MODEL])
def test_chat_completion(client: openai.OpenAI, model: str) -> None:
    response = client.chat.completions.create(model=model, messages=CHATS[model], max_tokens=8, seed=1)

    assert response.object == "chat.completion"
    assert response.model.startswith(model)
    [choice] = response.choices
    assert choice.index == 0 and choice.message.role == "assistant"
    assert isinstance(choice.message.content, str)
    assert choice.finish_reason in {"stop", "length"}
    assert choice.logprobs is None
    usage = response.usage
    assert usage is not None and 1 <= usage.completion_tokens <= 8
    assert usage.prompt_tokens > 0  # the rendered chat template, counted by the sampler
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_chat_completions_are_recorded_under_their_ids(client: openai.OpenAI) -> None:
    recorded = client.chat.completions.create(model=HF_MODEL, messages=USER, max_tokens=4, seed=2, n=2)
    ids = [extra(c, "completion_id") for c in recorded.choices]
    assert all(i is not None and re.fullmatch(COMPLETION_ID_PATTERN, i) for i in ids), ids
    assert len(set(ids)) == 2 and recorded.id == ids[0]

    unrecorded = client.chat.completions.create(
        model=HF_MODEL, messages=USER, max_tokens=4, seed=2, store=False
    )
    assert extra(unrecorded.choices[0], "completion_id") is None
    assert unrecorded.id.startswith("chatcmpl-")


def test_a_recorded_completion_holds_the_sampled_tokens_and_log_probs(
    client: openai.OpenAI, openai_database_url: str
) -> None:
    response = client.chat.completions.create(
        model=HF_MODEL, messages=USER, max_tokens=5, seed=11, logprobs=True, user="learner-7"
    )

    engine = create_engine(openai_database_url)
    try:
        record = CompletionRepository(engine).get(DEFAULT_TENANT, response.id)
    finally:
        engine.dispose()
    assert record is not None and record.subject == "learner-7"
    content = response.choices[0].logprobs.content  # type: ignore[union-attr]
    assert len(record.token_ids) == len(content) == response.usage.completion_tokens  # type: ignore[union-attr]
    assert record.logprobs == pytest.approx([t.logprob for t in content], abs=1e-6)
    assert record.model.endswith(HF_MODEL) and record.finish_reason in {"eos", "stop", "length"}


def test_greedy_is_deterministic_and_a_seed_reproduces_a_sample(client: openai.OpenAI) -> None:
    def contents(**kwargs: Any) -> list[str | None]:
        r = client.chat.completions.create(model=HF_MODEL, messages=USER, max_tokens=6, **kwargs)
        return [c.message.content for c in r.choices]

    greedy = contents(temperature=0)
    assert greedy == contents(temperature=0, seed=123)
    assert contents(temperature=0, n=2) == greedy * 2

    assert contents(seed=7) == contents(seed=7)
    three = contents(seed=7, n=3, temperature=1.5)
    assert three == [contents(seed=7 + i, temperature=1.5)[0] for i in range(3)]  # choice i: seed + i
    assert len(set(three)) > 1  # different seeds, different samples (at temperature 1.5, 50257 tokens)


def test_chat_logprobs(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model=HF_MODEL, messages=USER, max_tokens=5, temperature=0, logprobs=True, top_logprobs=3
    )

    [choice] = response.choices
    assert choice.logprobs is not None and choice.logprobs.content is not None
    content = choice.logprobs.content
    assert len(content) == response.usage.completion_tokens  # type: ignore[union-attr]
    assert "".join(t.token for t in content) == choice.message.content
    for t in content:
        assert t.logprob <= 0 and t.bytes == list(t.token.encode())
        tops = [top.logprob for top in t.top_logprobs]
        assert len(tops) == 3 and tops == sorted(tops, reverse=True)
        # greedy: the chosen token is the most likely one, reported under the same distribution
        assert t.top_logprobs[0].token == t.token
        assert math.isclose(t.top_logprobs[0].logprob, t.logprob, abs_tol=1e-5)


def test_a_chat_completion_streams_one_chunk_per_token(client: openai.OpenAI) -> None:
    body: dict[str, Any] = {"model": HF_MODEL, "messages": USER, "max_tokens": 6, "seed": 4}
    whole = client.chat.completions.create(**body)

    chunks = list(
        client.chat.completions.create(
            **body, stream=True, stream_options={"include_usage": True}, logprobs=True
        )
    )

    assert {c.object for c in chunks} == {"chat.completion.chunk"} and len({c.id for c in chunks}) == 1
    first, *tokens, end, usage = chunks
    assert first.choices[0].delta.role == "assistant" and not first.choices[0].delta.content
    assert all(c.choices[0].delta.role is None for c in [*tokens, end])
    assert all(c.choices[0].finish_reason is None for c in tokens)
    assert all(len(c.choices[0].logprobs.content) == 1 for c in tokens)  # type: ignore[union-attr]
    assert end.choices[0].finish_reason == whole.choices[0].finish_reason
    text = "".join(c.choices[0].delta.content or "" for c in [*tokens, end])
    assert text == whole.choices[0].message.content
    assert usage.choices == [] and usage.usage is not None
    assert len(tokens) == usage.usage.completion_tokens == whole.usage.completion_tokens  # type: ignore[union-attr]


def test_the_raw_stream_opens_with_the_role_and_ends_with_done(http: httpx.Client) -> None:
    body = {"model": LYCEUM_MODEL, "messages": USER, "max_tokens": 4, "seed": 3, "stream": True, "n": 2}
    with http.stream("POST", "/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert "content-length" not in response.headers  # sent as it is produced
        data = sse_data(response)

    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    for index in (0, 1):
        mine = [c["choices"][0] for c in chunks if c["choices"][0]["index"] == index]
        assert mine[0]["delta"] == {"role": "assistant", "content": ""}
        assert mine[-1]["finish_reason"] in {"stop", "length"}
        assert all(set(m["delta"]) <= {"content"} for m in mine[1:])
        assert all(m["finish_reason"] is None for m in mine[:-1])
    assert "usage" not in chunks[-1] or chunks[-1]["usage"] is None  # include_usage not asked for


def test_chunks_arrive_as_the_tokens_are_generated(http: httpx.Client) -> None:
    """Not buffered: the first tokens arrive long before the last (a whole-body response would bring every
    chunk at once)."""
    body = {"model": HF_MODEL, "messages": USER, "max_tokens": 150, "seed": 3, "stream": True}
    arrivals = []
    with http.stream("POST", "/chat/completions", json=body) as response:
        start = time.perf_counter()
        for line in response.iter_lines():
            if line.startswith("data: "):
                arrivals.append(time.perf_counter() - start)

    assert len(arrivals) >= 20
    assert arrivals[2] < arrivals[-1] / 2  # the role chunk, the first token, ...


# --- legacy completions -------------------------------------------------------------------------------------


def test_legacy_completion(client: openai.OpenAI) -> None:
    response = client.completions.create(model=HF_MODEL, prompt="The cat", max_tokens=5, seed=3)

    assert response.object == "text_completion"
    [choice] = response.choices
    assert choice.index == 0 and choice.finish_reason == "length" and choice.text
    assert response.usage is not None and response.usage.completion_tokens == 5


def test_legacy_completion_of_several_prompts_and_token_ids(client: openai.OpenAI) -> None:
    texts = client.completions.create(
        model=HF_MODEL, prompt=["The cat", "A dog"], max_tokens=3, temperature=0, n=2
    )
    assert [c.index for c in texts.choices] == [0, 1, 2, 3]
    cat, dog = (
        client.completions.create(model=HF_MODEL, prompt=p, max_tokens=3, temperature=0).choices[0].text
        for p in ("The cat", "A dog")
    )
    assert [c.text for c in texts.choices] == [cat, cat, dog, dog]  # greedy: n equal choices per prompt

    ids = client.completions.create(model=HF_MODEL, prompt=[464, 3797], max_tokens=3, temperature=0)
    assert ids.choices[0].text == cat  # GPT-2 encodes "The cat" as [464, 3797]


def test_legacy_logprobs_and_stream(client: openai.OpenAI) -> None:
    body: dict[str, Any] = {"model": HF_MODEL, "prompt": "The cat", "max_tokens": 4, "temperature": 0}
    whole = client.completions.create(**body, logprobs=2)

    logprobs = whole.choices[0].logprobs
    assert logprobs is not None and logprobs.tokens is not None and logprobs.token_logprobs is not None
    assert len(logprobs.tokens) == len(logprobs.token_logprobs) == 4
    assert "".join(logprobs.tokens) == whole.choices[0].text
    assert all(len(top) <= 2 for top in logprobs.top_logprobs or [])
    assert logprobs.text_offset is not None and logprobs.text_offset[0] == len("The cat")

    chunks = list(client.completions.create(**body, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == whole.choices[0].text
    assert chunks[-1].choices[0].finish_reason == "length"
    assert len(chunks) == 5  # one per token, then the end


# --- errors -------------------------------------------------------------------------------------------------


def assert_openai_error(
    response: httpx.Response, status: int, param: str | None, code: str | None = None
) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["param"] == param and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code
    assert response.headers["x-request-id"]
    return body["error"]


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"temperature": -1}, "temperature"),
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"n": 0}, "n"),
        ({"n": 9}, "n"),
        ({"presence_penalty": 2.5}, "presence_penalty"),
        ({"frequency_penalty": -3}, "frequency_penalty"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"stop": ["x"] * 17}, "stop"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"user": "has spaces"}, "user"),
        ({"frobnicate": 1}, "frobnicate"),
        ({"model": None}, "model"),
    ],
)
def test_invalid_parameters_are_400_naming_the_param(http: httpx.Client, change: dict, param: str) -> None:
    body = {"model": LYCEUM_MODEL, "messages": USER, "max_tokens": 2, **change}

    error = assert_openai_error(http.post("/chat/completions", json=body), 400, param)

    assert error["type"] == "invalid_request_error"


def test_an_unknown_model_is_404_model_not_found(client: openai.OpenAI, http: httpx.Client) -> None:
    for path, body in [
        ("/chat/completions", {"model": "no-such-model", "messages": USER}),
        ("/completions", {"model": "no-such-model", "prompt": "Hi"}),
    ]:
        error = assert_openai_error(http.post(path, json=body), 404, "model", "model_not_found")
        assert error["type"] == "invalid_request_error"
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="no-such-model", messages=USER, stream=True)
    assert info.value.code == "model_not_found"  # before the stream starts: a plain error response


def test_the_client_raises_bad_request_for_invalid_parameters(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=LYCEUM_MODEL, messages=USER, temperature=-1)
    assert info.value.param == "temperature"


def test_malformed_requests_and_unknown_paths(http: httpx.Client) -> None:
    raw = http.post("/chat/completions", content=b"{not json", headers={"Content-Type": "application/json"})
    assert_openai_error(raw, 400, None)
    assert_openai_error(http.post("/completions", json={"model": HF_MODEL, "prompt": ""}), 400, "prompt")
    assert_openai_error(
        http.post("/completions", json={"model": HF_MODEL, "prompt": "x", "echo": True}), 400, "echo"
    )
    assert_openai_error(http.get("/no-such-route"), 404, None)


def test_authentication(openai_url: str) -> None:
    for key in ("wrong-key", ""):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        response = httpx.get(openai_url + "/models", headers=headers)
        assert_openai_error(response, 401, None, "invalid_api_key")
    with (
        openai.OpenAI(base_url=openai_url, api_key="wrong-key", max_retries=0) as bad,
        pytest.raises(openai.AuthenticationError),
    ):
        bad.models.list()


def test_quota_refusals_and_large_bodies_answer_in_openai_shape(make_gateway: MakeGateway) -> None:
    g: TestClient = make_gateway(
        [NO_PREDICTOR], sampler_addresses=[NO_SAMPLER], quota_rps=0.001, quota_burst=1, max_body_bytes=1024
    )
    g.get("/openai/v1/models")  # takes the one token (and finds no sampler)

    refused = g.get("/openai/v1/models")
    error = assert_openai_error(refused, 429, None, "rate_limit_exceeded")
    assert refused.headers["retry-after"] and error["type"] == "rate_limit_error"


def test_a_body_over_the_limit_is_413(make_gateway: MakeGateway) -> None:
    g: TestClient = make_gateway([NO_PREDICTOR], sampler_addresses=[NO_SAMPLER], max_body_bytes=1024)
    big = {"model": LYCEUM_MODEL, "messages": [{"role": "user", "content": "x" * 4096}]}

    assert_openai_error(g.post("/openai/v1/chat/completions", json=big), 413, None, "payload_too_large")
    unavailable = g.get("/openai/v1/models")
    assert assert_openai_error(unavailable, 503, None)["type"] == "server_error"
    metrics = g.get("/metrics").text  # counted by route template, like the native API
    assert 'route="/openai/v1/models",status="503"' in metrics


# --- the document -------------------------------------------------------------------------------------------


def test_the_mount_documents_its_routes(http: httpx.Client) -> None:
    document = http.get("/openapi.json").json()
    paths = document["paths"]

    assert {"/chat/completions", "/completions", "/models", "/models/{model}"} <= set(paths)
    chat = paths["/chat/completions"]["post"]
    assert "text/event-stream" in chat["responses"]["200"]["content"]
    assert {"400", "401", "404", "429"} <= set(chat["responses"])
    schemas = document["components"]["schemas"]
    assert {"ChatCompletionRequest", "ChatCompletion", "OpenAIErrorResponse"} <= set(schemas)
    assert "repetition_penalty" in schemas["ChatCompletionRequest"]["properties"]
