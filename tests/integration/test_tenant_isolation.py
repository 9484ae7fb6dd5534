"""The tenant isolation matrix through ONE gateway with authentication on (`acme:key-a`, `globex:key-b`)
over a real predictor, a real sampler and a real database: for every resource (learners and their events,
predictions and forecasts; sessions; generation on a tenant's own language model; jobs; models and aliases;
the `/token-wheel` and `/dfm-server` mounts) acme creates it with key-a; then with key-b every read and write
of it answers 404 with exactly the body (less `request_id`) of an id that never existed, globex's lists show
none of it, globex creates its own of the same name (ids are chosen by the client where the API allows), and
the two stay independent. Without a key every operation is 401.

Run with `-s` to see the matrix: resource x operation -> status for the owner, the other tenant, an id that
never existed (as the other tenant) and no key."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures.gateway import DFM_CONFIG, MakeGateway
from fixtures.isolation import (
    ACME,
    ALIAS,
    API_KEYS,
    GHOST_LM,
    GLOBEX,
    MATRIX,
    OWN_LM,
    PUBLIC_LM,
    Op,
    Resource,
    Stack,
    created,
    error_text,
    ok,
    run_matrix,
)
from fixtures.predictor import TEST_TASKS, RunningPredictor
from fixtures.sampler import LYCEUM_MODEL, PROMPT, MakeSampler

from lyceum_core.identity import PLATFORM_TENANT
from lyceum_core.storage import ArtifactStore
from lyceum_db.engine import create_engine
from lyceum_db.repositories.registry import ModelRepository

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(
    predictor: RunningPredictor,
    make_sampler: MakeSampler,
    make_gateway: MakeGateway,
    gateway_state: dict[str, Any],
    tmp_path: Path,
    tiny_lyceum_lm_dir: Path,
    tiny_hf_gpt2_dir: Path,
) -> Iterator[Stack]:
    database_url = gateway_state["database_url"]  # the gateway's database: tenants, keys, jobs, the registry
    engine = create_engine(database_url)
    models = ModelRepository(engine)
    store = ArtifactStore(tmp_path / "registry")
    public = store.put_dir(tiny_lyceum_lm_dir, f"lm/{PLATFORM_TENANT}/{PUBLIC_LM}/1")
    version = models.register(PLATFORM_TENANT, PUBLIC_LM, "lm", public, {}, public=True)
    models.set_alias(PLATFORM_TENANT, PUBLIC_LM, ALIAS, version.version)
    sampler = make_sampler(
        models=[
            f"{LYCEUM_MODEL}={tiny_lyceum_lm_dir}",
            f"{PUBLIC_LM}@{ALIAS}",
            f"{OWN_LM}@{ALIAS}",
            f"{GHOST_LM}@{ALIAS}",
        ],
        database_url=database_url,
        registry_url=str(tmp_path / "registry"),
    )
    client = make_gateway([predictor.address], sampler_addresses=[sampler.address], api_keys=API_KEYS)
    yield Stack(client, models, store, {"acme": tiny_lyceum_lm_dir, "globex": tiny_hf_gpt2_dir})
    engine.dispose()


@pytest.fixture(scope="module", autouse=True)
def _print_matrix() -> Iterator[None]:
    yield
    if MATRIX.rows:
        print(MATRIX.render())


# --- learners, events, predictions, forecasts ---------------------------------------------------------------

HISTORIES = {
    "acme": [("t01", 1.0), ("t02", 0.0), ("t03", 1.0)],
    "globex": [("t01", 0.0)],
}
TASKS = TEST_TASKS[:4]


def tenant_of(headers: dict[str, str]) -> str:
    return "acme" if headers is ACME else "globex"


def register_learner(stack: Stack, headers: dict[str, str]) -> str:
    history = [{"task": t, "outcome": o} for t, o in HISTORIES[tenant_of(headers)]]
    body = created(stack.call(headers, "POST", "/v1/learners", {"learner_id": "ada", "history": history}))
    return str(body["learner_id"])


def learner_state(stack: Stack, headers: dict[str, str], learner_id: str) -> tuple[int, list[float]]:
    history_len = ok(stack.call(headers, "GET", f"/v1/learners/{learner_id}"))["history_len"]
    predicted = ok(stack.call(headers, "POST", f"/v1/learners/{learner_id}/predictions", {"tasks": TASKS}))
    return history_len, [p["probability"] for p in predicted["predictions"]]


def learners_independent(stack: Stack, mine: str, theirs: str) -> None:
    acme, globex = learner_state(stack, ACME, mine), learner_state(stack, GLOBEX, theirs)
    assert (acme[0], globex[0]) == (3, 1)  # globex's 404 append changed nothing of acme's
    assert acme[1] != globex[1]


def learners_after(stack: Stack, mine: str, theirs: str) -> None:
    assert stack.call(ACME, "GET", f"/v1/learners/{mine}").status_code == 404  # acme deleted its own
    assert learner_state(stack, GLOBEX, theirs)[0] == 1


LEARNERS = Resource(
    name="learners",
    create=register_learner,
    created=201,
    missing="ghost",
    ops=[
        Op("learners.get", "GET", "/v1/learners/{id}"),
        Op(
            "events.append", "POST", "/v1/learners/{id}/events", {"events": [{"task": "t04", "outcome": 1.0}]}
        ),
        Op("predictions", "POST", "/v1/learners/{id}/predictions", {"tasks": TASKS}),
        Op("forecasts", "POST", "/v1/learners/{id}/forecasts", {"task_sequences": [["t01", "t02"]]}),
        Op("learners.delete", "DELETE", "/v1/learners/{id}", owner=204),
    ],
    # no route lists learners; the DFM-Server mount's health counts the caller's resident ones
    lists=lambda stack, headers: ok(stack.call(headers, "GET", "/dfm-server/health"))["learner_count"],
    independent=learners_independent,
    after=learners_after,
)


# --- sessions -----------------------------------------------------------------------------------------------


def create_session(stack: Stack, headers: dict[str, str]) -> str:
    prompt = PROMPT if headers is ACME else "The cat"
    body = created(stack.call(headers, "POST", "/v1/sessions", {"model": LYCEUM_MODEL, "prompt": prompt}))
    return str(body["session_id"])


def session_tokens(stack: Stack, headers: dict[str, str], session_id: str) -> tuple[str, int]:
    body = ok(stack.call(headers, "GET", f"/v1/sessions/{session_id}"))
    return body["prompt"], len(body["generated"])


def sessions_independent(stack: Stack, mine: str, theirs: str) -> None:
    assert ok(stack.call(GLOBEX, "POST", f"/v1/sessions/{theirs}/tokens", {"token_id": 7}))
    assert session_tokens(stack, ACME, mine) == (PROMPT, 0)  # globex's 404 append changed nothing
    assert session_tokens(stack, GLOBEX, theirs) == ("The cat", 1)
    assert stack.call(ACME, "GET", f"/v1/sessions/{theirs}").status_code == 404  # and the other way round


SESSIONS = Resource(
    name="sessions",
    create=create_session,
    created=201,
    missing=uuid.uuid4().hex,
    ops=[
        Op("sessions.get", "GET", "/v1/sessions/{id}"),
        Op("sessions.distribution", "GET", "/v1/sessions/{id}/distribution?threshold=0.05"),
        Op("sessions.append", "POST", "/v1/sessions/{id}/tokens", {"token_id": 5}),
        Op("sessions.undo", "POST", "/v1/sessions/{id}/undo"),
        Op("sessions.prompt", "PUT", "/v1/sessions/{id}/prompt", {"prompt": "Once"}),
        Op("sessions.delete", "DELETE", "/v1/sessions/{id}", owner=204),
    ],
    lists=None,  # sessions are never listed
    independent=sessions_independent,
    after=lambda stack, mine, theirs: session_tokens(stack, GLOBEX, theirs),
    same_id=False,
)


# --- generation on a tenant's own language model ------------------------------------------------------------


def register_lm(stack: Stack, headers: dict[str, str]) -> str:
    tenant = tenant_of(headers)
    uri = stack.store.put_dir(stack.lm_dirs[tenant], f"lm/{tenant}/{OWN_LM}/1")
    version = stack.models.register(tenant, OWN_LM, "lm", uri, {})
    stack.models.set_alias(tenant, OWN_LM, ALIAS, version.version)
    if tenant == "acme":  # acme's model is loaded (and warm) while globex tries it
        generated(stack, headers, f"{OWN_LM}@{ALIAS}")
    return OWN_LM


GENERATE = {"prompt": "Once upon a time", "max_new_tokens": 4, "seed": 11}


def generated(stack: Stack, headers: dict[str, str], model: str) -> str:
    return str(ok(stack.call(headers, "POST", "/v1/generate", {"model": model, **GENERATE}))["text"])


def described(stack: Stack, headers: dict[str, str]) -> dict[str, str]:
    """`/v1/sampler/models` as `headers`' tenant sees it: name -> kind (empty: nothing known to it)."""
    return {m["name"]: m["kind"] for m in ok(stack.call(headers, "GET", "/v1/sampler/models"))["models"]}


def own_lm_listed(stack: Stack, headers: dict[str, str]) -> str:
    """What the tenant's model listing says of OWN_LM (its kind once it loaded for the tenant)."""
    return described(stack, headers).get(f"{OWN_LM}@{ALIAS}", "")


def generation_independent(stack: Stack, mine: str, theirs: str) -> None:
    for model in (LYCEUM_MODEL, f"{PUBLIC_LM}@{ALIAS}"):  # shared models: both generate, alike
        assert generated(stack, ACME, model) == generated(stack, GLOBEX, model)
    acme, globex = generated(stack, ACME, f"{mine}@{ALIAS}"), generated(stack, GLOBEX, f"{theirs}@{ALIAS}")
    assert acme == generated(stack, ACME, LYCEUM_MODEL)  # acme's own is the tiny Lyceum LM
    assert acme != globex  # globex's own is the GPT-2: same name, another model
    assert (own_lm_listed(stack, ACME), own_lm_listed(stack, GLOBEX)) == ("lyceum-lm", "hf-causal-lm")


GENERATION = Resource(
    name="generation",
    create=register_lm,
    created=201,  # registered in the database (no route registers models)
    missing=GHOST_LM,
    ops=[
        Op("generate", "POST", "/v1/generate", {"model": f"{{id}}@{ALIAS}", **GENERATE}),
        Op(
            "generate.stream",
            "POST",
            "/v1/generate",
            {"model": f"{{id}}@{ALIAS}", **GENERATE},
            headers={"Accept": "text/event-stream"},
        ),
        Op("sessions.create", "POST", "/v1/sessions", {"model": f"{{id}}@{ALIAS}", "prompt": "Hi"}, 201),
    ],
    lists=lambda stack, headers: own_lm_listed(stack, headers),
    independent=generation_independent,
)


# --- models and aliases -------------------------------------------------------------------------------------


def register_model(stack: Stack, headers: dict[str, str]) -> str:
    tenant = tenant_of(headers)
    for version in (1, 2) if tenant == "acme" else (1,):
        stack.models.register(tenant, "tutor", "dfm", f"var/registry/{tenant}/tutor/{version}", {"auc": 0.7})
    stack.models.set_alias(tenant, "tutor", ALIAS, 1)
    return "tutor"


def model_names(stack: Stack, headers: dict[str, str]) -> set[str]:
    return {m["name"] for m in ok(stack.call(headers, "GET", "/v1/models"))["models"]} - {PUBLIC_LM}


def models_independent(stack: Stack, mine: str, theirs: str) -> None:
    def versions(headers: dict[str, str]) -> list[int]:
        return [v["version"] for v in ok(stack.call(headers, "GET", f"/v1/models/{mine}"))["versions"]]

    assert (versions(ACME), versions(GLOBEX)) == ([1, 2], [1])
    # the platform's public model: readable by both, writable by neither
    for headers in (ACME, GLOBEX):
        assert ok(stack.call(headers, "GET", f"/v1/models/{PUBLIC_LM}/versions/{ALIAS}"))["version"] == 1
        public = stack.call(headers, "PUT", f"/v1/models/{PUBLIC_LM}/aliases/x", {"version": 1})
        never = stack.call(headers, "PUT", "/v1/models/never/aliases/x", {"version": 1})
        assert public.status_code == never.status_code == 404
        assert error_text(public, PUBLIC_LM, "m") == error_text(never, "never", "m")


def models_after(stack: Stack, mine: str, theirs: str) -> None:
    def prod(headers: dict[str, str]) -> int:
        return int(ok(stack.call(headers, "GET", f"/v1/models/{mine}/versions/{ALIAS}"))["version"])

    assert (prod(ACME), prod(GLOBEX)) == (1, 1)  # acme moved its alias to 2 and rolled it back
    history = ok(stack.call(GLOBEX, "GET", f"/v1/models/{theirs}"))
    assert [v["version"] for v in history["versions"]] == [1]


MODELS = Resource(
    name="models",
    create=register_model,
    created=201,  # registered in the database (no route registers models)
    missing="ghost",
    ops=[
        Op("models.get", "GET", "/v1/models/{id}"),
        Op("models.version", "GET", "/v1/models/{id}/versions/2"),
        Op("aliases.get", "GET", f"/v1/models/{{id}}/versions/{ALIAS}"),
        Op("aliases.set", "PUT", f"/v1/models/{{id}}/aliases/{ALIAS}", {"version": 2}),
        Op("aliases.rollback", "POST", f"/v1/models/{{id}}/aliases/{ALIAS}/rollback"),
    ],
    lists=model_names,
    independent=models_independent,
    after=models_after,
)


# --- jobs ---------------------------------------------------------------------------------------------------

JOB = {"kind": "dfm_pretrain", "config": DFM_CONFIG, "idempotency_key": "nightly"}


def submit_job(stack: Stack, headers: dict[str, str]) -> str:
    return str(created(stack.call(headers, "POST", "/v1/jobs", JOB))["job_id"])


def job_ids(stack: Stack, headers: dict[str, str]) -> list[str]:
    return [j["job_id"] for j in ok(stack.call(headers, "GET", "/v1/jobs"))["jobs"]]


def jobs_independent(stack: Stack, mine: str, theirs: str) -> None:
    assert (job_ids(stack, ACME), job_ids(stack, GLOBEX)) == ([mine], [theirs])
    again = ok(stack.call(ACME, "POST", "/v1/jobs", JOB))  # the key repeats in acme: its own job again
    assert again["job_id"] == mine


JOBS = Resource(
    name="jobs",
    create=submit_job,
    created=201,
    missing=uuid.uuid4().hex,
    ops=[
        Op("jobs.get", "GET", "/v1/jobs/{id}"),
        Op("jobs.metrics", "GET", "/v1/jobs/{id}/metrics"),
        Op("jobs.cancel", "POST", "/v1/jobs/{id}/cancel"),
        Op("jobs.events", "GET", "/v1/jobs/{id}/events"),  # the cancelled job's stream replays and ends
        Op("jobs.resume", "POST", "/v1/jobs/{id}/resume"),
    ],
    lists=job_ids,
    independent=jobs_independent,
    after=lambda stack, mine, theirs: ok(stack.call(GLOBEX, "GET", f"/v1/jobs/{theirs}")),
    same_id=False,
)


# --- the /token-wheel mount ---------------------------------------------------------------------------------

WHEEL = "/token-wheel/api/sessions"


def create_wheel_session(stack: Stack, headers: dict[str, str]) -> str:
    session_id = str(created(stack.call(headers, "POST", WHEEL, {"model_name": LYCEUM_MODEL}))["session_id"])
    prompt = PROMPT if headers is ACME else "The cat"
    ok(stack.call(headers, "POST", f"{WHEEL}/{session_id}/set-prompt", {"prompt": prompt}))
    return session_id


def wheel_independent(stack: Stack, mine: str, theirs: str) -> None:
    assert ok(stack.call(ACME, "GET", f"{WHEEL}/{mine}"))["current_text"] == PROMPT
    assert ok(stack.call(GLOBEX, "GET", f"{WHEEL}/{theirs}"))["current_text"] == "The cat"
    assert stack.call(ACME, "GET", f"{WHEEL}/{theirs}").status_code == 404


TOKEN_WHEEL = Resource(
    name="token-wheel",
    create=create_wheel_session,
    created=201,
    missing=uuid.uuid4().hex,
    ops=[
        Op("wheel.get", "GET", f"{WHEEL}/{{id}}"),
        Op("wheel.set-prompt", "POST", f"{WHEEL}/{{id}}/set-prompt", {"prompt": PROMPT}),
        Op("wheel.next-token-probs", "GET", f"{WHEEL}/{{id}}/next-token-probs?threshold=0.05"),
        Op("wheel.append-token", "POST", f"{WHEEL}/{{id}}/append-token", {"token_id": 5}),
        Op("wheel.undo", "POST", f"{WHEEL}/{{id}}/undo"),
        Op("wheel.delete", "DELETE", f"{WHEEL}/{{id}}"),
    ],
    lists=None,  # the mount lists no sessions
    independent=wheel_independent,
    after=lambda stack, mine, theirs: ok(stack.call(GLOBEX, "GET", f"{WHEEL}/{theirs}")),
    same_id=False,
)


# --- the /dfm-server mount ----------------------------------------------------------------------------------


def register_dfm_learner(stack: Stack, headers: dict[str, str]) -> str:
    tasks, outcomes = zip(*HISTORIES[tenant_of(headers)], strict=True)
    body = {"learner_id": "ada", "tasks": list(tasks), "outcomes": list(outcomes)}
    return str(ok(stack.call(headers, "POST", "/dfm-server/learners", body))["learner_id"])


def dfm_predictions(stack: Stack, headers: dict[str, str], learner_id: str) -> list[float]:
    body = {"learner_id": learner_id, "tasks": TASKS}
    return list(ok(stack.call(headers, "POST", "/dfm-server/predict", body))["predictions"])


def dfm_independent(stack: Stack, mine: str, theirs: str) -> None:
    assert dfm_predictions(stack, ACME, mine) != dfm_predictions(stack, GLOBEX, theirs)
    # the same predictions the native API gives each tenant for its own `ada`
    assert dfm_predictions(stack, ACME, mine) == learner_state(stack, ACME, mine)[1]
    assert dfm_predictions(stack, GLOBEX, theirs) == learner_state(stack, GLOBEX, theirs)[1]


DFM_SERVER = Resource(
    name="dfm-server",
    create=register_dfm_learner,
    created=200,  # the original server's code
    missing="ghost",
    ops=[
        Op("dfm.predict", "POST", "/dfm-server/predict", {"learner_id": "{id}", "tasks": TASKS}),
        Op("dfm.update", "POST", "/dfm-server/update", {"learner_id": "{id}", "task": "t04", "outcome": 1.0}),
        Op(
            "dfm.forecast",
            "POST",
            "/dfm-server/forecast",
            {"learner_id": "{id}", "task_sequences": [["t01", "t02"]]},
        ),
        Op("dfm.delete", "DELETE", "/dfm-server/learners/{id}"),
    ],
    lists=lambda stack, headers: ok(stack.call(headers, "GET", "/dfm-server/health"))["learner_count"],
    independent=dfm_independent,
    after=lambda stack, mine, theirs: dfm_predictions(stack, GLOBEX, theirs),
)


RESOURCES = [LEARNERS, SESSIONS, GENERATION, MODELS, JOBS, TOKEN_WHEEL, DFM_SERVER]


@pytest.mark.parametrize("resource", [pytest.param(r, id=r.name) for r in RESOURCES])
def test_another_tenants_resource_is_a_plain_404(stack: Stack, resource: Resource) -> None:
    run_matrix(stack, resource)
