"""Gated generation through the gateway over a real sampler and registry: `/v1/generate` with `gating` and
`return_trajectory` (JSON and the SSE `end` event), the OpenAI extension, token-wheel sessions (native and
the compatibility mount), Tidal's sidecar shape, validation naming the field, and tenant isolation of
policies."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from fixtures.gateway import ACME, ACME_KEY, GLOBEX, GLOBEX_KEY, NO_PREDICTOR, MakeGateway
from fixtures.sampler import HF_MODEL, LYCEUM_MODEL, RunningSampler
from test_gateway_sessions_generate import parse_sse
from test_sampler_gating import make_policy, offline_modulations

from lyceum_core.storage import ArtifactStore
from lyceum_db.engine import create_engine
from lyceum_db.repositories.registry import ModelRepository
from lyceum_ml.causal_lm import CausalLM
from lyceum_ml.gating.policy import GatingPolicy, save_policy

pytestmark = pytest.mark.integration
PROMPT = "Once upon a time"
ENDPOINTS = {0.0: (0.3, 5, 0.7, 1.2), 1.0: (2.0, 100, 1.0, 4.2)}
SSE = {"Accept": "text/event-stream"}


class Stack:
    def __init__(self, gateway: TestClient, models: ModelRepository, store: ArtifactStore, tmp: Path) -> None:
        self.gateway, self.models, self.store, self.tmp = gateway, models, store, tmp

    def register(self, policy: GatingPolicy, tenant: str = "acme", name: str = "gate") -> str:
        directory = save_policy(self.tmp / uuid.uuid4().hex, policy, {"lm": LYCEUM_MODEL})
        uri = self.store.put_dir(directory, f"policies/{tenant}/{name}/{uuid.uuid4().hex}")
        meta = {"lm": LYCEUM_MODEL, "episode_length": 8, "gate_signal": True}
        return f"{name}@{self.models.register(tenant, name, 'gating_policy', uri, {}, metadata=meta).version}"

    def post(self, path: str, headers: dict[str, str] = ACME, **body: Any) -> Any:
        return self.gateway.post(path, json=body, headers=headers)

    def generate(self, **body: Any) -> dict[str, Any]:
        body.setdefault("model", LYCEUM_MODEL)
        body.setdefault("prompt", PROMPT)
        body.setdefault("max_new_tokens", 6)
        response = self.post("/v1/generate", **body)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def stack(
    make_sampler: Callable[..., RunningSampler], make_gateway: MakeGateway, sqlite_url: str, tmp_path: Path
) -> Iterator[Stack]:
    registry = tmp_path / "registry"  # the gateway's registry_url too
    sampler = make_sampler(
        session_store_url="memory://",
        database_url=sqlite_url,
        registry_url=str(registry),
        serve_policies=True,
    )
    gateway = make_gateway(
        [NO_PREDICTOR],
        sampler_addresses=[sampler.address],
        api_keys=[f"acme:{ACME_KEY}", f"globex:{GLOBEX_KEY}"],
    )
    engine = create_engine(sqlite_url)
    yield Stack(gateway, ModelRepository(engine), ArtifactStore(registry), tmp_path)
    engine.dispose()


def endpoints(entry: dict[str, Any]) -> tuple[float, int, float, float]:
    keys = ("temperature", "top_k", "top_p", "repetition_penalty")
    return tuple(round(entry[k], 6) for k in keys)  # type: ignore[return-value]


def error_of(response: Any, status: int, field: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["field"] == field, response.text


# --- /v1/generate -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("m", [0.0, 1.0])
def test_fixed_trajectories_show_the_modulators_endpoints(stack: Stack, m: float) -> None:
    result = stack.generate(gating={"mode": "fixed", "modulation": m}, return_trajectory=True)
    trajectory = result["trajectory"]
    assert len(trajectory) == len(result["tokens"]) == 6
    assert [t["token_id"] for t in trajectory] == [t["token"]["id"] for t in result["tokens"]]
    assert all(t["modulation"] == m and endpoints(t) == ENDPOINTS[m] for t in trajectory)
    assert result["gating"] == {"mode": "fixed", "gate_signal": True, "modulation": m} | {
        k: None for k in ("policy", "policy_lm", "lm_mismatch", "seed")
    }
    ungated = stack.generate(
        model=HF_MODEL, gating={"mode": "fixed", "modulation": m}, return_trajectory=True
    )
    assert ungated["gating"]["gate_signal"] is False
    assert all(t["gate_signal"] is None and endpoints(t) == ENDPOINTS[m] for t in ungated["trajectory"])


def test_random_trajectories_replay_by_seed(stack: Stack) -> None:
    body = {"gating": {"mode": "random", "seed": 4}, "return_trajectory": True, "seed": 1}
    first = stack.generate(**body)
    assert first == stack.generate(**body) and first["gating"]["seed"] == 4
    assert len({t["modulation"] for t in first["trajectory"]}) == 6


def test_a_learned_policy_steers_generation_as_it_computes_offline(
    stack: Stack, tiny_lyceum_lm: CausalLM
) -> None:
    policy = make_policy(21)
    ref = stack.register(policy)
    body = {"gating": {"mode": "learned", "policy": ref}, "return_trajectory": True, "max_new_tokens": 8}
    result = stack.generate(**body, seed=3)
    tokens = [t["token_id"] for t in result["trajectory"]]
    served = [t["modulation"] for t in result["trajectory"]]
    assert served == pytest.approx(
        offline_modulations(tiny_lyceum_lm, policy, tiny_lyceum_lm.encode(PROMPT), tokens, 8), abs=1e-4
    )
    assert result["gating"]["policy"] == f"acme/{ref}" and result["gating"]["lm_mismatch"] is False

    with stack.gateway.stream(
        "POST",
        "/v1/generate",
        json={**body, "model": LYCEUM_MODEL, "prompt": PROMPT, "seed": 3},
        headers={**ACME, **SSE},
    ) as response:
        events = parse_sse(response.read().decode())
    end = events[-1]
    assert end[0] == "end" and end[2]["trajectory"] == result["trajectory"]

    results: dict[int, dict[str, Any]] = {}  # concurrent requests on one policy each get their trajectory
    threads = [
        threading.Thread(target=lambda i=i: results.__setitem__(i, stack.generate(**body, seed=i)))
        for i in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(len(results[i]["trajectory"]) == 8 for i in range(2))


def test_gating_requests_are_validated_naming_the_field(stack: Stack) -> None:
    ref = stack.register(make_policy(22))
    stack.models.register("acme", "story-lm", "lm", "lm/never-read", {})

    def refused(status: int, field: str, **body: Any) -> None:
        body = {"model": LYCEUM_MODEL, "prompt": PROMPT, **body}
        error_of(stack.post("/v1/generate", **body), status, field)

    refused(422, "gating.modulation", gating={"mode": "fixed", "modulation": 1.5})
    refused(422, "gating.mode", gating={"mode": "sometimes"})
    refused(400, "gating.modulation", gating={"mode": "fixed"})
    refused(400, "gating.policy", gating={"mode": "learned"})
    refused(400, "gating.policy", gating={"mode": "random", "policy": ref})
    refused(400, "params.temperature", gating={"mode": "random"}, temperature=0.5)
    refused(400, "gate_signal", gating={"mode": "random"}, gate_signal=0.5)
    refused(400, "strategy", gating={"mode": "random"}, strategy="beam")
    refused(400, "return_trajectory", return_trajectory=True)
    refused(404, "gating.policy", gating={"mode": "learned", "policy": "nope@1"})
    refused(400, "gating.policy", gating={"mode": "learned", "policy": "story-lm@1"})
    other = stack.post(
        "/v1/generate", GLOBEX, model=LYCEUM_MODEL, prompt=PROMPT, gating={"mode": "learned", "policy": ref}
    )
    error_of(other, 404, "gating.policy")  # acme's policy is no one else's


# --- other front doors ------------------------------------------------------------------------------------
def test_openai_completions_take_gating_as_an_extension(stack: Stack) -> None:
    body = {"model": LYCEUM_MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    chat = stack.post("/openai/v1/chat/completions", **body, gating={"mode": "fixed", "modulation": 0.0})
    assert chat.status_code == 200, chat.text
    assert chat.json()["choices"][0]["gating"]["mode"] == "fixed"
    legacy = stack.post(
        "/openai/v1/completions", model=HF_MODEL, prompt=PROMPT, max_tokens=3, gating={"mode": "random"}
    )
    assert legacy.status_code == 200 and legacy.json()["choices"][0]["gating"]["gate_signal"] is False
    greedy = stack.post("/openai/v1/chat/completions", **body, temperature=0, gating={"mode": "random"})
    assert greedy.status_code == 400 and greedy.json()["error"]["param"] == "temperature"


def test_sessions_show_each_steps_modulation(stack: Stack) -> None:
    created = stack.post(
        "/v1/sessions", model=LYCEUM_MODEL, prompt=PROMPT, gating={"mode": "fixed", "modulation": 1}
    )
    assert created.status_code == 201, created.text
    session = created.json()
    assert session["gating"]["mode"] == "fixed" and session["gating"]["gate_signal"] is True
    sid = session["session_id"]
    d = stack.gateway.get(f"/v1/sessions/{sid}/distribution", headers=ACME).json()
    assert endpoints(d["gating"]) == ENDPOINTS[1.0] and d["gating"]["gate_signal"] == 1.0
    appended = stack.post(f"/v1/sessions/{sid}/tokens", token_id=d["above"][0]["token"]["id"]).json()
    assert appended["appended"]["gating"]["modulation"] == 1.0
    knobs = stack.gateway.get(f"/v1/sessions/{sid}/distribution?temperature=0.5", headers=ACME)
    error_of(knobs, 400, "params.temperature")

    wheel = stack.post(
        "/token-wheel/api/sessions", model_name=LYCEUM_MODEL, gating={"mode": "fixed", "modulation": 0}
    )
    assert wheel.status_code == 201, wheel.text
    wid = wheel.json()["session_id"]
    assert stack.post(f"/token-wheel/api/sessions/{wid}/set-prompt", prompt=PROMPT).status_code == 200
    probs = stack.gateway.get(f"/token-wheel/api/sessions/{wid}/next-token-probs", headers=ACME).json()
    assert probs["temperature"] == pytest.approx(0.3) and endpoints(probs["gating"]) == ENDPOINTS[0.0]


def test_the_sidecar_shape_maps_onto_generate(stack: Stack) -> None:
    body = {"prompt": PROMPT, "maxTokens": 5, "gatingMode": "fixed", "modulation": 1.0, "model": LYCEUM_MODEL}
    response = stack.post("/v1/gating/generate", **body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["tokensGenerated"] == len(result["trajectory"]) == 5 and result["elapsedMs"] > 0
    assert all(endpoints(t) == ENDPOINTS[1.0] for t in result["trajectory"])
    error_of(stack.post("/v1/gating/generate", **body, temperature=0.5), 400, "temperature")
    plain = stack.post("/v1/gating/generate", prompt=PROMPT, maxTokens=3, gatingMode="none", temperature=0.5)
    assert plain.status_code == 200 and plain.json()["trajectory"] == []


# --- the Python client -------------------------------------------------------------------------------------
def test_the_python_client_generates_with_gating(stack: Stack) -> None:
    from lyceum_client import LyceumClient, LyceumClientError

    # the client's own request building and error mapping, its requests answered by the in-process gateway
    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.raw_path.decode()
        got = stack.gateway.request(request.method, path, headers=request.headers, content=request.content)
        return httpx.Response(got.status_code, headers=got.headers, content=got.content)

    transport = httpx.MockTransport(answer)
    with LyceumClient("http://testserver", ACME_KEY, transport=transport) as client:
        result = client.generate(
            LYCEUM_MODEL,
            PROMPT,
            gating={"mode": "fixed", "modulation": 1.0},
            return_trajectory=True,
            max_new_tokens=3,
        )
        assert [endpoints(t) for t in result["trajectory"]] == [ENDPOINTS[1.0]] * 3
        assert result["gating"]["mode"] == "fixed" and result["gating"]["gate_signal"] is True
        with pytest.raises(LyceumClientError) as err:
            client.generate(LYCEUM_MODEL, PROMPT, gating={"mode": "learned"})
        assert "gating.policy" in str(err.value)
