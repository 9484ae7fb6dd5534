"""Tenants across real processes. The same learner id in two tenants is two learners: behind a gateway process
with `acme:key-a,globex:key-b`, each tenant's `ada` is routed to the predictor that owns (tenant, id) among 3
predictor processes, cached there and nowhere else, and answers as a fresh single process computes from its
own history. And a `/token-wheel` session shown on one gateway process and appended on another answers as on
one gateway: the last-shown settings live in the sampler's session state, not in a gateway."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fixtures.fleet import TOL, fresh_predictor, owner_of
from fixtures.predictor import TEST_TASKS
from fixtures.sampler import LYCEUM_MODEL, PROMPT, RunningSampler
from fixtures.servers import tenant_channel
from fleet import Fleet, Process

from lyceum_api.predictor.v1 import predictor_pb2 as pb
from lyceum_api.predictor.v1 import predictor_pb2_grpc

pytestmark = pytest.mark.integration

API_KEYS = {"LYCEUM_GATEWAY_API_KEYS": "acme:key-a,globex:key-b"}
KEYS = {"acme": {"Authorization": "Bearer key-a"}, "globex": {"X-API-Key": "key-b"}}
HISTORIES = {  # one id, two tenants, two histories
    "acme": [("t01", 1.0), ("t02", 1.0), ("t03", 1.0), ("t04", 0.0)],
    "globex": [("t01", 0.0), ("t05", 0.0)],
}
APPENDED = {"acme": ("t06", 1.0), "globex": ("t06", 0.0)}


def learner_id_on_two_owners(addresses: list[str]) -> str:
    """`ada` if acme's and globex's `ada` have different owners (ports are the OS's pick, so owners vary by
    run), else the first of `ada-1`, `ada-2`, ... that does: the test then shows routing per tenant."""
    for candidate in ["ada", *(f"ada-{i}" for i in range(1, 50))]:
        if owner_of(addresses, candidate, "acme") != owner_of(addresses, candidate, "globex"):
            return candidate
    raise AssertionError("no id in 50 has two owners")  # (2/3)^-50: never


def resident_of(pod: Process, tenant: str) -> int:
    """The tenant's learners resident in the predictor process, as the predictor tells that tenant."""
    with tenant_channel(pod.address, tenant) as channel:
        stub = predictor_pb2_grpc.PredictorServiceStub(channel)
        return int(stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10).resident_learners)


def cache_counts(pod: Process) -> dict[str, float]:
    metrics = pod.metrics()
    return {
        "resident": metrics.value("lyceum_predictor_resident_learners"),
        "hits": metrics.value("lyceum_predictor_cache_hits_total"),
        "misses": metrics.value("lyceum_predictor_cache_misses_total"),
    }


def predictions(client: httpx.Client, tenant: str, learner_id: str) -> tuple[int, list[float]]:
    response = client.post(
        f"/v1/learners/{learner_id}/predictions", json={"tasks": TEST_TASKS}, headers=KEYS[tenant]
    )
    assert response.status_code == 200, response.text
    body = response.json()
    return body["history_len"], [p["probability"] for p in body["predictions"]]


def test_one_learner_id_in_two_tenants_is_routed_and_cached_independently(
    fleet: Fleet, predictors: list[Process], test_checkpoint: Path, postgres_url: str
) -> None:
    addresses = [p.address for p in predictors]
    # one database for all, as deployed: the predictors' learners, the gateway's tenants and keys
    env = {**API_KEYS, "LYCEUM_GATEWAY_DATABASE_URL": postgres_url}
    gateway = fleet.gateway("gateway", predictors=predictors, env=env).start()
    learner_id = learner_id_on_two_owners(addresses)
    owners = {t: owner_of(addresses, learner_id, t) for t in HISTORIES}
    before = {p.address: cache_counts(p) for p in predictors}
    resident_before = {(p.address, t): resident_of(p, t) for p in predictors for t in HISTORIES}

    with httpx.Client(base_url=gateway.url, timeout=60.0) as client:
        assert client.get(f"/v1/learners/{learner_id}").status_code == 401  # no key
        for tenant, history in HISTORIES.items():
            body = {"learner_id": learner_id, "history": [{"task": t, "outcome": o} for t, o in history]}
            response = client.post("/v1/learners", json=body, headers=KEYS[tenant])
            assert response.status_code == 201, response.text
        served = {t: predictions(client, t, learner_id) for t in HISTORIES}
        for tenant, (task, outcome) in APPENDED.items():
            events = {"events": [{"task": task, "outcome": outcome}]}
            response = client.post(f"/v1/learners/{learner_id}/events", json=events, headers=KEYS[tenant])
            assert response.status_code == 200, response.text
        appended = {t: predictions(client, t, learner_id) for t in HISTORIES}

    # each tenant's learner is resident on its own owner, and nowhere else
    for pod in predictors:
        for tenant in HISTORIES:
            expected = 1 if owners[tenant] == pod.address else 0
            assert resident_of(pod, tenant) - resident_before[(pod.address, tenant)] == expected, (
                pod.name,
                tenant,
            )
        now, then = cache_counts(pod), before[pod.address]
        mine = sum(owners[t] == pod.address for t in HISTORIES)
        assert now["resident"] - then["resident"] == mine, pod.name
        if not mine:  # no call of either learner reached a predictor that owns neither
            assert (now["hits"], now["misses"]) == (then["hits"], then["misses"]), pod.name
        else:  # every call after the register was served from the warm cache: no rebuild anywhere
            assert now["misses"] == then["misses"], pod.name
            assert now["hits"] - then["hits"] >= 3 * mine, pod.name

    # the two histories give two answers, each as a fresh single process computes it from the database
    assert served["acme"][1] != served["globex"][1]
    assert appended["acme"][1] != appended["globex"][1]
    fresh = fresh_predictor(test_checkpoint, postgres_url)
    for tenant, history in HISTORIES.items():
        probs, history_len = fresh.predict(tenant, learner_id, TEST_TASKS)
        assert appended[tenant][0] == history_len == len(history) + 1
        assert max(abs(p - q) for p, q in zip(appended[tenant][1], probs, strict=True)) < TOL, tenant
    print(
        f"\ntwo tenants' {learner_id!r} over 3 predictors: acme -> {owners['acme']}, "
        f"globex -> {owners['globex']}; each resident only on its owner, equal to a fresh rebuild"
    )


# --- the token wheel across gateway processes ---------------------------------------------------------------

WHEEL = "/token-wheel/api/sessions"
SHOWN = {"threshold": 0.02, "temperature": 0.8}  # not the defaults (0.01, 1.0): an append must use these


@pytest.fixture
def wheel_gateways(
    fleet: Fleet, sampler: RunningSampler, sqlite_url: str
) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """Two gateway processes over one sampler (sessions in the test's Redis) and one (migrated) database,
    authentication on."""
    env = {**API_KEYS, "LYCEUM_GATEWAY_DATABASE_URL": sqlite_url}
    a, b = fleet.start(
        fleet.gateway("gateway-a", samplers=[sampler.address], env=env),
        fleet.gateway("gateway-b", samplers=[sampler.address], env=env),
    )
    with (
        httpx.Client(base_url=a.url, timeout=60.0, headers=KEYS["acme"]) as client_a,
        httpx.Client(base_url=b.url, timeout=60.0, headers=KEYS["acme"]) as client_b,
    ):
        yield client_a, client_b


def wheel(client: httpx.Client, method: str, path: str, **kw: Any) -> dict[str, Any]:
    response = client.request(method, WHEEL + path, **kw)
    assert response.status_code in (200, 201), (method, path, response.text)
    return dict(response.json())


def new_session(client: httpx.Client) -> str:
    session_id = str(wheel(client, "POST", "", json={"model_name": LYCEUM_MODEL})["session_id"])
    wheel(client, "POST", f"/{session_id}/set-prompt", json={"prompt": PROMPT})
    return session_id


def timeless(append: dict[str, Any]) -> dict[str, Any]:
    """An append-token answer without what differs between two sessions: ids and selection times."""
    return {
        "appended_token": append["appended_token"],
        "previous_text": append["previous_text"],
        "current_text": append["current_text"],
        "token_history": [
            {k: v for k, v in t.items() if k != "selected_at"} for t in append["token_history"]
        ],
    }


def show_then_append(shower: httpx.Client, appender: httpx.Client) -> tuple[dict, list[dict]]:
    """A new session: shown (next-token-probs) by `shower`, then two appends by `appender` without settings
    (the most likely token, then the least likely listed in Other), each after a show. The shown wheels and
    the appends."""
    session_id = new_session(shower)
    shown = wheel(shower, "GET", f"/{session_id}/next-token-probs", params=SHOWN)
    first = shown["above_threshold_tokens"][0]["token_id"]
    appends = [wheel(appender, "POST", f"/{session_id}/append-token", json={"token_id": first})]
    again = wheel(shower, "GET", f"/{session_id}/next-token-probs", params=SHOWN)
    rare = again["other_category"]["sample_tokens"][-1]["token_id"]
    appends.append(wheel(appender, "POST", f"/{session_id}/append-token", json={"token_id": rare}))
    state = wheel(appender, "GET", f"/{session_id}")
    assert len(state["token_history"]) == 2
    return shown, [timeless(a) for a in appends]


def test_a_wheel_shown_on_one_gateway_appends_alike_on_another(
    wheel_gateways: tuple[httpx.Client, httpx.Client],
) -> None:
    a, b = wheel_gateways

    across_shown, across = show_then_append(a, b)  # shown on A, appended on B
    one_shown, one = show_then_append(a, a)  # both on A

    assert (
        across_shown["threshold"] == SHOWN["threshold"]
        and across_shown["temperature"] == SHOWN["temperature"]
    )
    assert {k: v for k, v in across_shown.items() if k != "session_id"} == {
        k: v for k, v in one_shown.items() if k != "session_id"
    }
    assert across == one
    # scored under the shown settings: the top token at the shown temperature, then one in Other
    top = across[0]["appended_token"]
    assert top["category"] == "above_threshold"
    assert abs(top["probability"] - across_shown["above_threshold_tokens"][0]["probability"]) < 1e-6
    assert across[1]["appended_token"]["category"] == "other"

    # without a show, an append is scored under the defaults: another probability (the test has teeth)
    session_id = new_session(a)
    unshown = wheel(b, "POST", f"/{session_id}/append-token", json={"token_id": top["token_id"]})
    assert abs(unshown["appended_token"]["probability"] - top["probability"]) > 1e-3
    print(
        f"\ntoken wheel: shown on gateway A at {SHOWN}, appended on gateway B -> "
        f"{[(x['appended_token']['token_id'], x['appended_token']['category']) for x in across]}, "
        f"p={top['probability']:.4f} (unshown p={unshown['appended_token']['probability']:.4f}); "
        "identical to both on one gateway"
    )
