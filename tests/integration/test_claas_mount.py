"""The CLaaS compatibility mount (`/claas`) over the real gateway, a real sampler serving registry adapters
and a real database: LoRAs initialised, listed, exported as zips and deleted (idempotently) in CLaaS's shapes;
chat completions recorded under the digest of their text; CLaaS's feedback batch stored as feedback items on
those completions, distilled by one `sdpo` job (the test plays the worker) and answered in CLaaS's response
shape when the job ends; CLaaS's error codes (400 mixed batches, 404 unknown LoRA or response, 409 a training
past the lock timeout, 422 invalid training, 500 a failed job, 504 a job past its timeout); score; health;
tenant isolation; and the registry's delete on both database backends."""

from __future__ import annotations

import io
import itertools
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fixtures.claas import BASE, LORA, NAME, Stack, gpt2_metadata, in_background, make_stack, train
from fixtures.gateway import ACME, ACME_KEY, GLOBEX, GLOBEX_KEY, NO_PREDICTOR, MakeGateway, compat_json
from fixtures.gateway import gateway_settings as make_settings
from fixtures.sampler import MakeSampler

from lyceum_core.identity import DEFAULT_TENANT, SERVING_ALIAS
from lyceum_core.storage import ArtifactStore
from lyceum_db.engine import create_engine
from lyceum_db.repositories.completions import response_digest
from lyceum_db.repositories.feedback import FeedbackState
from lyceum_db.repositories.registry import ModelRepository
from lyceum_gateway.claas import adapter_name
from lyceum_gateway.main import create_app

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def base_metadata(tiny_hf_gpt2_dir: Path) -> dict[str, Any]:
    return gpt2_metadata(tiny_hf_gpt2_dir)


@pytest.fixture
def stack_settings(
    make_sampler: MakeSampler,
    gateway_state: dict[str, Any],
    tiny_hf_gpt2_dir: Path,
    base_metadata: dict[str, Any],
) -> Iterator[tuple[dict[str, Any], ModelRepository, Any]]:
    """The tiny GPT-2 registered as the platform's `tiny-gpt2` (public), a sampler serving it and the
    tenants' adapters of it from the registry, and the gateway's settings over both (auth off)."""
    database_url, registry = gateway_state["database_url"], gateway_state["registry_url"]
    engine = create_engine(database_url)
    models = ModelRepository(engine)
    uri = ArtifactStore(registry).put_dir(tiny_hf_gpt2_dir, f"lm/{DEFAULT_TENANT}/{BASE}/1")
    models.register(DEFAULT_TENANT, BASE, "lm", uri, {}, metadata=base_metadata, public=True)
    sampler = make_sampler(
        models=[f"{BASE}@latest"],
        session_store_url="memory://",
        database_url=database_url,
        registry_url=registry,
        serve_adapters=True,
    )
    settings = {**gateway_state, "sampler_addresses": [sampler.address], "events_poll_s": 0.02}
    yield settings, models, engine
    engine.dispose()


@pytest.fixture
def stack(stack_settings: tuple, make_gateway: MakeGateway) -> Stack:
    settings, _, engine = stack_settings
    return make_stack(make_gateway([NO_PREDICTOR], **settings), settings, engine)


@pytest.fixture
def stepping_stack(stack_settings: tuple) -> Iterator[Stack]:
    """The stack with a gateway whose clock leaps 50 s at each reading: its waits time out at once."""
    settings, _, engine = stack_settings
    clock = itertools.count(0.0, 50.0).__next__
    with TestClient(create_app(make_settings([NO_PREDICTOR], **settings), clock=clock)) as client:
        yield make_stack(client, settings, engine)


def item(response: str, prompt: str = "Hi", feedback: str = "Your name is Kuro.", **extra: Any) -> dict:
    return {"lora_id": LORA, "prompt": prompt, "response": response, "feedback": feedback, **extra}


ORCHESTRATION = {"sleep_before": True, "wake_after": True, "wake_on_failure": True, "sleep_level": 1}


# --- LoRAs ------------------------------------------------------------------------------------------------


def test_lora_ids_name_adapters() -> None:
    assert adapter_name("user/coder-v1") == "user-coder-v1"
    assert adapter_name("openclaw/assistant-latest") == "openclaw-assistant-latest"
    assert adapter_name("/Team//Kuro Bot/") == "team-kuro-bot"
    assert adapter_name("kuro") == "kuro"


def test_loras_are_initialised_listed_exported_and_deleted(stack: Stack) -> None:
    assert stack.init() == NAME
    assert stack.init("user/tutor") == "user-tutor"
    assert stack.init("other") == "other"
    listed = stack.client.get("/claas/v1/lora", params={"prefix": "user/"})
    assert listed.status_code == 200 and listed.json() == {"loras": ["user-coder-v1", "user-tutor"]}
    assert stack.client.get("/claas/v1/lora").json() == {"loras": ["other", "user-coder-v1", "user-tutor"]}

    exported = stack.client.get("/claas/v1/lora/export", params={"lora_id": LORA})
    assert exported.status_code == 200
    assert exported.headers["content-type"] == "application/zip"
    assert "attachment" in exported.headers["content-disposition"]
    names = zipfile.ZipFile(io.BytesIO(exported.content)).namelist()
    assert {Path(n).name for n in names} >= {"adapter_config.json", "adapter_model.safetensors"}

    # CLaaS re-initialises an existing LoRA: a new, empty version, served from now on.
    stack.models.set_alias(DEFAULT_TENANT, NAME, SERVING_ALIAS, 1)
    assert stack.init() == NAME
    assert stack.models.aliases(DEFAULT_TENANT, NAME) == {"latest": 2, SERVING_ALIAS: 2}

    gone = stack.client.delete("/claas/v1/lora", params={"lora_id": LORA})
    assert gone.status_code == 200 and gone.json() == {"deleted": True}
    assert stack.models.list(DEFAULT_TENANT, NAME) == []
    again = stack.client.delete("/claas/v1/lora", params={"lora_id": LORA})
    assert again.status_code == 200 and again.json() == {"deleted": False}
    assert stack.client.get("/claas/v1/lora").json() == {"loras": ["other", "user-tutor"]}
    missing = stack.client.get("/claas/v1/lora/export", params={"lora_id": LORA})
    assert missing.status_code == 404 and compat_json(missing) == {"detail": f"LoRA not found: {LORA}"}
    # The platform's base is no LoRA of the tenant's: nothing to delete.
    assert stack.client.delete("/claas/v1/lora", params={"lora_id": BASE}).json() == {"deleted": False}
    assert stack.models.list(DEFAULT_TENANT, BASE) != []


def test_lora_init_errors(stack: Stack) -> None:
    unknown = stack.post("/lora/init", {"lora_id": LORA, "base_model": "nope@latest"})
    assert unknown.status_code == 400 and "nope@latest" in compat_json(unknown)["detail"]
    bad_rank = stack.post("/lora/init", {"lora_id": LORA, "base_model": f"{BASE}@latest", "lora_r": 2})
    assert bad_rank.status_code == 422
    assert [e["loc"] for e in compat_json(bad_rank)["detail"]] == [["body", "lora_r"]]
    nameless = stack.post("/lora/init", {"lora_id": "///", "base_model": f"{BASE}@latest"})
    assert nameless.status_code == 400 and "lora_id" in compat_json(nameless)["detail"]
    assert stack.client.get("/claas/v1/lora").json() == {"loras": []}


# --- completions and feedback -----------------------------------------------------------------------------


def test_chat_completions_are_recorded_under_the_digest_of_their_text(stack: Stack) -> None:
    stack.init()
    content = stack.chat("Who are you?")
    found = stack.completions.find_by_response(DEFAULT_TENANT, response_digest(content))
    assert len(found) == 1
    assert found[0].adapter == f"{DEFAULT_TENANT}/{NAME}@1"
    assert found[0].params["messages"] == [{"role": "user", "content": "Who are you?"}]
    # Re-wrapped text (OpenClaw flattens newlines) finds it too.
    assert stack.completions.find_by_response(DEFAULT_TENANT, response_digest(f"  {content}\n")) == found
    # A legacy completion cut by a stop string is recorded under the text answered, not the tokens' text.
    body = {"model": LORA, "prompt": "Once upon", "max_tokens": 32, "seed": 1, "stop": ["e"]}
    legacy = stack.post("/completions", body)
    assert legacy.status_code == 200, legacy.text
    choice = legacy.json()["choices"][0]
    assert choice["finish_reason"] == "stop"
    (recorded,) = stack.completions.find_by_response(DEFAULT_TENANT, response_digest(choice["text"]))
    assert recorded.completion_id == choice["completion_id"]


def test_feedback_is_distilled_and_answered_in_claas_shape(stack: Stack) -> None:
    stack.init()
    first, second = stack.chat("Who are you?"), stack.chat("What is your name?")
    worker = in_background(lambda: train(stack))
    body = {
        "requests": [
            item(first, prompt="Who are you?", training={"teacher_mode": "self", "learning_rate": 1e-4}),
            item(second, prompt="What is your name?", training={"learning_rate": 1e-4, "alpha": 0.5}),
        ],
        "orchestration": ORCHESTRATION,
    }
    response = stack.post("/feedback", body)
    job = worker()
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] == "ok" and answer["lora_id"] == NAME and answer["batch_size"] == 2
    assert answer["request_id"] == response.headers["x-request-id"]
    assert answer["vllm"] == {"slept": False, "woke": False}
    assert set(answer["timing_ms"]) == {"sleep", "distill", "save", "wake", "logprobs", "total"}
    assert answer["timing_ms"]["total"] >= answer["timing_ms"]["distill"] >= 0
    assert answer["feedback_log_path"] == f"/v1/jobs/{job.job_id}"
    result = answer["distill_result"]
    assert result["lora_id"] == NAME
    metadata = result["metadata"]
    assert {k: metadata[k] for k in ("total_loss", "distill_loss", "mean_is_ratio", "tokens_processed")} == {
        "total_loss": 0.5,
        "distill_loss": 0.4,
        "mean_is_ratio": 1.0,
        "tokens_processed": 12,
    }
    assert metadata["batch_size"] == 2 and metadata["version"] == 2 and metadata["serving"] is True
    assert metadata["job_id"] == job.job_id and metadata["gate"] == {"passed": True}
    # One job trained exactly the batch, with the settings asked for; the items are applied.
    assert job.config["feedback"] == metadata["feedback_ids"]
    assert job.config["train"]["lr"] == 1e-4 and job.config["parent"] == 1
    items = stack.feedback.get_many(DEFAULT_TENANT, metadata["feedback_ids"])
    assert [(i.state, i.version, i.text) for i in items] == [
        (FeedbackState.APPLIED, 2, "Your name is Kuro.")
    ] * 2
    # The next chat is served by the new version.
    stack.chat("Who are you?")
    newest = stack.completions.list(DEFAULT_TENANT, limit=1)[0]
    assert newest.adapter == f"{DEFAULT_TENANT}/{NAME}@2"


def test_an_idempotency_key_makes_a_retry_answer_the_same_distillation(stack: Stack) -> None:
    stack.init()
    content = stack.chat("Who are you?")
    body = {"requests": [item(content)]}
    worker = in_background(lambda: train(stack))
    first = stack.post("/feedback", body, headers={"Idempotency-Key": "batch-1"})
    worker()
    retry = stack.post("/feedback", body, headers={"Idempotency-Key": "batch-1"})
    assert first.status_code == retry.status_code == 200, retry.text
    assert (
        retry.json()["distill_result"]["metadata"]["feedback_ids"]
        == (first.json()["distill_result"]["metadata"]["feedback_ids"])
    )
    assert len(stack.jobs.list(DEFAULT_TENANT, kind="sdpo")) == 1


def test_feedback_errors_store_nothing(stack: Stack) -> None:
    stack.init()
    stack.init("user/other")
    content = stack.chat("Who are you?")

    def refused(body: dict, status: int) -> Any:
        response = stack.post("/feedback", body)
        assert response.status_code == status, response.text
        return compat_json(response)["detail"]

    mixed = {"requests": [item(content), {**item(content), "lora_id": "user/other"}]}
    assert refused(mixed, 400) == "all requests must use the same lora_id"
    settings = {"requests": [item(content), item(content, training={"alpha": 1.0})]}
    assert refused(settings, 400) == "all requests must use the same training config"
    assert refused({"requests": [{**item(content), "lora_id": "ghost"}]}, 404) == "LoRA not found: ghost"
    assert "No recorded completion" in refused({"requests": [item("never said")]}, 404)
    invalid = refused({"requests": [item(content, training={"alpha": 2, "learning_rate": 0})]}, 422)
    assert [e["loc"] for e in invalid] == [
        ["body", "requests", 0, "training", "learning_rate"],
        ["body", "requests", 0, "training", "alpha"],
    ]
    remote = refused({"requests": [item(content, training={"teacher_mode": "remote"})]}, 422)
    assert remote[0]["loc"] == ["body", "requests", 0, "training", "teacher_mode"]
    assert refused({"requests": []}, 422)[0]["loc"] == ["body", "requests"]
    assert stack.feedback.list(DEFAULT_TENANT, limit=10) == []
    assert stack.jobs.list(DEFAULT_TENANT) == []


def test_feedback_on_a_completion_of_another_lora_base_is_400(stack: Stack) -> None:
    stack.init()
    content = stack.chat("Who are you?", model=f"{BASE}@latest")  # the base itself, no LoRA
    stack.models.register(DEFAULT_TENANT, "elsewhere", "adapter", "x", {}, metadata={"base": "a/b@1"})
    response = stack.post("/feedback", {"requests": [{**item(content), "lora_id": "elsewhere"}]})
    assert response.status_code == 400 and "was made for a/b@1" in compat_json(response)["detail"]
    # The LoRA over the same base learns from it.
    worker = in_background(lambda: train(stack))
    assert stack.post("/feedback", {"requests": [item(content)]}).status_code == 200
    worker()


def test_a_failed_distillation_is_500(stack: Stack) -> None:
    stack.init()
    content = stack.chat("Who are you?")
    worker = in_background(lambda: train(stack, fail="out of memory"))
    response = stack.post("/feedback", {"requests": [item(content)]})
    worker()
    assert response.status_code == 500
    assert compat_json(response) == {"detail": "Feedback update failed in phase 'distill': out of memory"}


def test_a_lora_training_past_the_lock_timeout_is_409(stepping_stack: Stack) -> None:
    stack = stepping_stack
    stack.init()
    first, second = stack.chat("Who are you?"), stack.chat("Hello?")
    # Another batch trains the LoRA (native feedback, distilled now); its job never ends.
    completion = stack.completions.find_by_response(DEFAULT_TENANT, response_digest(first))[0]
    submitted = stack.client.post(
        "/v1/feedback", json={"completion_id": completion.completion_id, "feedback": "Be brief."}
    )
    assert submitted.status_code == 202, submitted.text
    assert stack.client.post(f"/v1/adapters/{NAME}/distill", json={}).status_code == 202
    response = stack.post("/feedback", {"requests": [item(second)]})
    assert response.status_code == 409
    assert compat_json(response) == {"detail": f"Timed out waiting for lock on LoRA '{LORA}'"}
    assert len(stack.feedback.list(DEFAULT_TENANT, limit=10)) == 1  # only the other batch's item


def test_a_distillation_past_its_timeout_is_504_and_stays_queued(stepping_stack: Stack) -> None:
    stack = stepping_stack
    stack.init()
    content = stack.chat("Who are you?")
    response = stack.post("/feedback", {"requests": [item(content)]})
    assert response.status_code == 504
    assert "the feedback stays queued" in compat_json(response)["detail"]
    (queued,) = stack.feedback.list(DEFAULT_TENANT, limit=10)
    assert queued.state is FeedbackState.TRAINING and queued.job_id is not None


# --- score, health, docs ----------------------------------------------------------------------------------


def test_score_matches_the_native_score(stack: Stack) -> None:
    stack.init()
    body = {"model": LORA, "prompt": "Once upon a time", "completion": " there was a cat"}
    scored = stack.post("/score", body)
    assert scored.status_code == 200, scored.text
    answer = scored.json()
    assert set(answer) == {"logprobs", "tokens", "prompt_tokens", "completion_tokens", "logprob_sum", "model"}
    assert len(answer["logprobs"]) == len(answer["tokens"]) == answer["completion_tokens"] > 0
    assert answer["logprob_sum"] == pytest.approx(sum(answer["logprobs"]))
    assert answer["model"].endswith(f"+{DEFAULT_TENANT}/{NAME}@1")
    native = stack.client.post("/v1/score", json={**body, "model": NAME}).json()
    assert answer["logprob_sum"] == pytest.approx(native["sum_logprob"])
    messages = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}]
    chat = stack.post("/score", {"model": LORA, "messages": messages, "completion": "Hello"})
    native_chat = stack.client.post(
        "/v1/score", json={"model": NAME, "messages": messages, "completion": "Hello"}
    )
    assert chat.status_code == 200, chat.text
    assert chat.json()["logprob_sum"] == pytest.approx(native_chat.json()["sum_logprob"])
    # CLaaS takes the messages when both are given.
    both = stack.post("/score", {"model": LORA, "prompt": "x", "messages": messages, "completion": "Hello"})
    assert both.json()["logprob_sum"] == pytest.approx(chat.json()["logprob_sum"])
    neither = stack.post("/score", {"model": LORA, "completion": "x"})
    assert neither.status_code == 422
    assert "either prompt or messages" in compat_json(neither)["detail"][0]["msg"]
    unknown = stack.post("/score", {**body, "model": "ghost"})
    assert unknown.status_code == 404 and "detail" in compat_json(unknown)


def test_health_and_docs(stack: Stack) -> None:
    health = stack.client.get("/claas/v1/health")
    assert health.status_code == 200
    assert health.json() == {"status": "healthy", "worker": {"status": "healthy", "error": None}}
    paths = stack.client.get("/claas/openapi.json").json()["paths"]
    assert set(paths) == {
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/models",
        "/v1/feedback",
        "/v1/lora/init",
        "/v1/lora",
        "/v1/lora/export",
        "/v1/score",
        "/v1/health",
    }
    assert "409" in paths["/v1/feedback"]["post"]["responses"]
    models = stack.client.get("/claas/v1/models").json()["data"]
    assert f"{BASE}@latest" in {m["id"] for m in models}


# --- tenants ----------------------------------------------------------------------------------------------


def test_tenants_see_only_their_own_loras_and_completions(
    stack_settings: tuple, make_gateway: MakeGateway
) -> None:
    settings, _, engine = stack_settings
    keys = {**settings, "api_keys": [f"acme:{ACME_KEY}", f"globex:{GLOBEX_KEY}"]}
    stack = make_stack(make_gateway([NO_PREDICTOR], **keys), keys, engine)
    assert stack.init(headers=ACME) == NAME
    content = stack.chat("Who are you?", headers=ACME)
    assert stack.client.get("/claas/v1/lora", headers=GLOBEX).json() == {"loras": []}
    export = stack.client.get("/claas/v1/lora/export", params={"lora_id": LORA}, headers=GLOBEX)
    assert export.status_code == 404
    assert stack.client.delete("/claas/v1/lora", params={"lora_id": LORA}, headers=GLOBEX).json() == {
        "deleted": False
    }
    assert stack.post("/feedback", {"requests": [item(content)]}, headers=GLOBEX).status_code == 404
    # globex's own LoRA of the same id does not find acme's completion either.
    assert stack.init(headers=GLOBEX) == NAME
    missing = stack.post("/feedback", {"requests": [item(content)]}, headers=GLOBEX)
    assert missing.status_code == 404 and "No recorded completion" in compat_json(missing)["detail"]
    anonymous = stack.client.get("/claas/v1/lora")
    assert anonymous.status_code == 401 and compat_json(anonymous) == {"detail": "missing API key"}
    assert stack.models.list("acme", NAME)[0].tenant == "acme"


# --- the registry's delete --------------------------------------------------------------------------------


def test_the_registry_deletes_a_tenants_own_model(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        models = ModelRepository(engine)
        for uri in ("a1", "a2"):
            models.register("acme", "kuro", "adapter", uri, {})
        models.set_alias("acme", "kuro", "prod", 1)
        models.set_alias("acme", "kuro", "prod", 2)
        models.register("globex", "kuro", "adapter", "g1", {})
        models.register(DEFAULT_TENANT, "kuro", "adapter", "p1", {}, public=True)
        deleted = models.delete("acme", "kuro")
        assert [(r.version, r.uri) for r in deleted] == [(1, "a1"), (2, "a2")]
        # acme now sees the platform's public one; globex keeps its own; nothing of acme's is left.
        assert [(r.tenant, r.uri) for r in models.list("acme", "kuro")] == [(DEFAULT_TENANT, "p1")]
        assert models.alias_history("acme", "kuro", "prod") == []
        assert [r.uri for r in models.list("globex", "kuro")] == ["g1"]
        assert models.delete("acme", "kuro") == []
        assert models.delete("globex", "nothing") == []
        # A name registered again starts afresh.
        assert models.register("acme", "kuro", "adapter", "a3", {}).version == 1
    finally:
        engine.dispose()
