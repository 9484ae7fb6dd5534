"""Feedback distilled into a user's adapter, on real parts: the gateway (REST and the OpenAI API), a sampler
serving a registered base and its adapters from the registry, PostgreSQL, a Redis broker and a trainer worker
process running the `sdpo` jobs. Feedback on completions becomes one job, the job registers a new adapter
version, and the version is served from the next request only if it passes the quality gate; a failed gate
leaves serving on the parent; rollback moves serving back; the base model never changes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fixtures.gateway import NO_PREDICTOR, gateway_settings, serve
from fixtures.sampler import MakeSampler
from fixtures.trainer import REDIS_URL, Workers

from lyceum_core.identity import DEFAULT_TENANT
from lyceum_core.storage import ArtifactStore
from lyceum_db.engine import create_engine
from lyceum_db.repositories.jobs import JobRecord, JobRepository
from lyceum_db.repositories.registry import ModelRepository
from lyceum_gateway.main import create_app
from lyceum_ml.architecture import describe

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

BASE = "tiny-gpt2"
ADAPTER = "kuro"
FEEDBACK = "Your name is Kuro. Say so when you introduce yourself."
PROMPTS = ("Who are you?", "Introduce yourself.", "What is your name?")
# A gate every honest version passes, and one none does (the entropy may not grow tenfold in one step).
OPEN_GATE = {
    "min_entropy_ratio": 0.0,
    "max_self_rouge_l": 1.0,
    "max_logprob_drift": 100.0,
    "min_capability_fraction": 0.0,
    "probes": 2,
    "samples": 2,
    "max_new_tokens": 8,
}
SHUT_GATE = {**OPEN_GATE, "min_entropy_ratio": 10.0}
TRAINING = {"lr": 5e-3, "steps": 2}  # big enough that a version differs visibly from its parent


@dataclass
class Stack:
    http: httpx.Client
    url: str
    jobs: JobRepository
    models: ModelRepository
    workers: Workers

    def chat(self, model: str, content: str = PROMPTS[0], **extra: Any) -> dict[str, Any]:
        body = {
            "model": model,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": 8,
            "temperature": 0,
            **extra,
        }
        response = self.http.post("/openai/v1/chat/completions", json=body)
        assert response.status_code == 200, response.text
        return response.json()

    def feedback(self, completion_id: str, text: str = FEEDBACK) -> dict[str, Any]:
        response = self.http.post("/v1/feedback", json={"completion_id": completion_id, "feedback": text})
        assert response.status_code == 202, response.text
        return response.json()

    def distill(self, gate: dict[str, Any]) -> str:
        response = self.http.post(
            f"/v1/adapters/{ADAPTER}/distill", json={"training": TRAINING, "gate": gate}
        )
        assert response.status_code == 202, response.text
        return response.json()["job_id"]

    def finished(self, job_id: str, timeout_s: float = 240.0) -> JobRecord:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            job = self.jobs.get(DEFAULT_TENANT, job_id)
            assert job is not None
            if job.state.terminal:
                assert job.state == "succeeded", f"{job.error}\n{self.workers.log('w1')[-4000:]}"
                return job
            time.sleep(0.2)
        pytest.fail(f"job {job_id} did not end:\n{self.workers.log('w1')[-4000:]}")

    def serving(self) -> int | None:
        return self.models.aliases(DEFAULT_TENANT, ADAPTER).get("serving")


@pytest.fixture
def stack(workers: Workers, db: str, make_sampler: MakeSampler, tiny_hf_gpt2_dir: Path) -> Iterator[Stack]:
    registry = str(workers.tmp / "registry")
    engine = create_engine(db)
    models = ModelRepository(engine)
    from transformers import GPT2LMHeadModel

    metadata = describe(GPT2LMHeadModel.from_pretrained(tiny_hf_gpt2_dir, local_files_only=True))
    uri = ArtifactStore(registry).put_dir(tiny_hf_gpt2_dir, f"models/{DEFAULT_TENANT}/{BASE}/1")
    models.register(DEFAULT_TENANT, BASE, "lm", uri, {}, metadata=metadata)
    sampler = make_sampler(
        models=[f"{BASE}@latest"],
        session_store_url="memory://",
        database_url=db,
        registry_url=registry,
        serve_adapters=True,
    )
    settings = gateway_settings(
        [NO_PREDICTOR],
        sampler_addresses=[sampler.address],
        database_url=db,
        broker_url=REDIS_URL,
        registry_url=registry,
        feedback_batch_size=len(PROMPTS),
        record_completions=True,
    )
    workers.start("w1")
    with serve(create_app(settings)) as url, httpx.Client(base_url=url, timeout=120) as http:
        yield Stack(http, url, JobRepository(engine), models, workers)
    engine.dispose()


def test_feedback_becomes_one_job_whose_version_is_served_only_past_its_gate(stack: Stack) -> None:
    created = stack.http.post("/v1/adapters", json={"name": ADAPTER, "base": f"{BASE}@latest", "r": 4})
    assert created.status_code == 201, created.text
    base_before = stack.chat(f"{BASE}@latest")["choices"][0]["message"]["content"]

    # Three completions of the adapter, three feedback items: one batch, so exactly one job.
    items = [
        stack.feedback(stack.chat(ADAPTER, prompt, temperature=0.8, seed=i)["id"])
        for i, prompt in enumerate(PROMPTS)
    ]
    job_ids = {item["job_id"] for item in items[:-1]}
    assert job_ids == {None}, "the batch was not full yet"
    job_id = stack.http.get(f"/v1/feedback/{items[-1]['feedback_id']}").json()["job_id"]
    assert job_id is not None
    job = stack.finished(job_id)
    assert job.kind == "sdpo" and job.config["parent"] == 1
    assert sorted(job.config["feedback"]) == sorted(item["feedback_id"] for item in items)
    for name in ("distill_loss", "kl_reg", "is_ratio_mean", "clip_fraction", "grad_norm", "tokens"):
        assert name in job.metrics, name
    # the default gate judged version 2; whatever it said, serving follows it
    assert job.result["adapter"]["version"] == 2
    served_after_default = stack.serving()
    assert served_after_default == (2 if job.result["gate"]["passed"] else 1)
    for item in items:
        after = stack.http.get(f"/v1/feedback/{item['feedback_id']}").json()
        assert after["state"] == "applied" and after["version"] == 2 and after["job_id"] == job_id

    # An open gate: version 3 is served from the next request on.
    stack.feedback(stack.chat(ADAPTER)["id"])
    job = stack.finished(stack.distill(OPEN_GATE))
    assert job.result["gate"]["passed"] is True and job.result["adapter"] == {
        "name": ADAPTER,
        "version": 3,
        "parent": served_after_default,
        "serving": 3,
    }
    assert stack.serving() == 3
    assert stack.chat(ADAPTER)["model"].endswith(f"{ADAPTER}@3"), "the new version serves the next request"
    version = stack.models.resolve(DEFAULT_TENANT, ADAPTER, "3")
    assert version.metadata["parent"] == served_after_default and version.metadata["source"] == "sdpo"
    assert version.metadata["gate"]["passed"] is True

    # A gate no version passes: version 4 is kept, with why, and serving stays on version 3.
    stack.feedback(stack.chat(ADAPTER)["id"])
    job = stack.finished(stack.distill(SHUT_GATE))
    gate = job.result["gate"]
    assert gate["passed"] is False and any("entropy ratio" in reason for reason in gate["reasons"])
    assert job.result["adapter"]["version"] == 4 and stack.serving() == 3
    assert stack.models.resolve(DEFAULT_TENANT, ADAPTER, "4").metadata["gate"]["passed"] is False
    assert stack.chat(ADAPTER)["model"].endswith(f"{ADAPTER}@3")

    # Rollback moves serving back to where it was before version 3.
    rolled = stack.http.post(f"/v1/models/{ADAPTER}/aliases/serving/rollback")
    assert rolled.status_code == 200, rolled.text
    assert stack.serving() == served_after_default
    assert stack.chat(ADAPTER)["model"].endswith(f"{ADAPTER}@{served_after_default}")

    # The base model never changed.
    assert stack.chat(f"{BASE}@latest")["choices"][0]["message"]["content"] == base_before


def test_the_feedback_loop_cli_runs_rounds_and_evaluates_every_version(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    from lyceum_client.cli import main

    args = ["--url", stack.url, "eval", "loop", "--adapter", "loopy", "--base", f"{BASE}@latest"]
    args += ["--preference", "identity", "--steps", "2", "--batch-size", "2", "--prompts", "2"]
    args += ["--max-tokens", "8", "--lr", "5e-3", "--job-timeout", "300"]
    assert main(args) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert "created adapter loopy" in out and "DISTILL_LOSS" in out
    versions = stack.models.list(DEFAULT_TENANT, "loopy")
    assert [v.version for v in versions] == [1, 2, 3]  # the empty adapter, then one version per round
    assert all(v.metadata["parent"] in (1, 2) for v in versions[1:])
    evaluation = next(j for j in stack.jobs.list(DEFAULT_TENANT) if j.kind == "eval")
    assert evaluation.config["models"] == [f"{BASE}@1", "loopy@1", "loopy@2", "loopy@3"]
    assert evaluation.state == "succeeded" and "compliance/identity" in evaluation.metrics
    assert f"{BASE}@1" in out and "loopy@3" in out  # the table, one row per model
