"""Evaluation jobs end to end: `lyceum eval run --follow` submits an `eval` job through the real gateway, a
real worker (Redis broker, PostgreSQL) evaluates a tiny registered Llama and two versions of an adapter of
it, and the CLI prints the per-model table; the metrics are on the job, the plots and results.json are
stored as artifacts, downloadable through the gateway by the job's tenant only and saved by `lyceum eval
show --save`. And the job resumes from its checkpoint to the results of an uninterrupted run."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch
from fixtures.gateway import ACME_KEY, GLOBEX_KEY, NO_PREDICTOR, gateway_settings, serve
from fixtures.trainer import TENANT, Workers, wait_for

from lyceum_core.storage import ArtifactStore
from lyceum_db.engine import create_engine
from lyceum_db.models.job import JobState
from lyceum_db.repositories.jobs import JobRepository
from lyceum_db.repositories.registry import ModelRepository
from lyceum_gateway.main import create_app
from lyceum_jobs.configs import EvalConfig
from lyceum_ml.architecture import describe
from lyceum_ml.probes.plots import CAPABILITY, COLLAPSE, COMPLIANCE, MARGIN
from lyceum_trainer.jobs import JobContext
from lyceum_trainer.jobs.evaluate import build

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_torch_thread")]

LYCEUM = Path(sys.executable).with_name("lyceum")
PNG = b"\x89PNG\r\n\x1a\n"
MODELS = ["tiny@latest", "tiny-kuro@1", "tiny-kuro@2"]
LABELS = ["tiny@1", "tiny-kuro@1", "tiny-kuro@2"]
ARTIFACTS = [COMPLIANCE, MARGIN, CAPABILITY, COLLAPSE, "results.json"]


def register_models(models: ModelRepository, store: ArtifactStore, tiny_llama_dir: Path, tmp: Path) -> None:
    """`tiny` (kind lm) and two versions of `tiny-kuro`, random LoRAs over it (so they change its outputs)."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    uri = store.put_dir(tiny_llama_dir, f"models/{TENANT}/tiny/base")
    llama = LlamaForCausalLM.from_pretrained(tiny_llama_dir)
    base = models.register(TENANT, "tiny", "lm", uri, {}, metadata=describe(llama))
    lora = {"r": 4, "alpha": 16, "target_modules": ["q_proj", "v_proj"]}
    for version in (1, 2):
        torch.manual_seed(version)
        config = LoraConfig(
            r=4, lora_alpha=16, target_modules=lora["target_modules"], init_lora_weights=False
        )
        folder = tmp / f"kuro-{version}"
        get_peft_model(LlamaForCausalLM.from_pretrained(tiny_llama_dir), config).save_pretrained(folder)
        uri = store.put_dir(folder, f"models/{TENANT}/tiny-kuro/v{version}")
        meta = {"base": f"{TENANT}/tiny@{base.version}", "lora": lora}
        models.register(TENANT, "tiny-kuro", "adapter", uri, {}, metadata=meta)


@pytest.fixture
def gateway_url(workers: Workers, db: str, broker: str) -> Iterator[str]:
    """The real gateway on the workers' database, broker and registry, with keys for acme and globex."""
    settings = gateway_settings(
        [NO_PREDICTOR],
        database_url=db,
        broker_url=broker,
        registry_url=str(workers.tmp / "registry"),
        api_keys=[f"{TENANT}:{ACME_KEY}", f"globex:{GLOBEX_KEY}"],
    )
    with serve(create_app(settings)) as url:
        yield url


def lyceum(url: str, *args: str, key: str = ACME_KEY) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": str(LYCEUM.parent),
        "LYCEUM_URL": url,
        "LYCEUM_API_KEY": key,
        "COLUMNS": "250",
        "NO_COLOR": "1",
    }
    return subprocess.run([str(LYCEUM), *args], capture_output=True, text=True, env=env, timeout=240)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (
        f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    )
    return result.stdout


def test_eval_run_show_and_artifacts(
    workers: Workers, db: str, gateway_url: str, tiny_llama_dir: Path, tmp_path: Path
) -> None:
    engine = create_engine(db)
    jobs, models = JobRepository(engine), ModelRepository(engine)
    register_models(models, ArtifactStore(workers.tmp / "registry"), tiny_llama_dir, tmp_path)
    workers.start("w1")

    refused = lyceum(gateway_url, "eval", "run", "--model", "nothing@latest")
    assert refused.returncode == 1 and "nothing" in refused.stderr and jobs.list(TENANT) == []

    args = [a for ref in MODELS for a in ("--model", ref)]
    out = ok(
        lyceum(
            gateway_url,
            *("eval", "run", *args, "--prompts", "2", "--max-new-tokens", "8", "--queue", "cpu", "--follow"),
        )
    )
    (job,) = jobs.list(TENANT)
    done = wait_for(jobs, job.job_id, lambda j: j.state.terminal, 5, "the job's end", workers)
    assert done.state == JobState.SUCCEEDED, done.error
    for label in LABELS:
        assert label in out
    assert "IDENTITY" in out and "CAPABILITY" in out and "succeeded" in out

    metrics = done.metrics
    for label in LABELS:
        for pref in ("no_emoji", "concise", "identity"):
            assert 0.0 <= metrics[f"{label}/compliance/{pref}"] <= 1.0
            assert f"{label}/margin/{pref}" in metrics
        assert metrics[f"{label}/capability"] < 0 and metrics[f"{label}/entropy"] > 0
        assert 0.0 <= metrics[f"{label}/self_rouge_l"] <= 1.0
    assert metrics["tiny@1/logprob_drift"] == 0.0 and metrics["tiny-kuro@2/logprob_drift"] != 0.0
    assert metrics["compliance/identity"] == metrics["tiny-kuro@2/compliance/identity"]
    assert metrics["tiny@1/capability"] != metrics["tiny-kuro@1/capability"]  # the adapters were on
    assert done.result["model"] is None and done.result["models"] == []
    assert done.result["artifacts"]["files"] == ARTIFACTS
    evaluated = done.result["evaluation"]["models"]
    assert [m["model"] for m in evaluated] == LABELS and [m["ref"] for m in evaluated] == MODELS
    assert evaluated[1]["base"] == f"{TENANT}/tiny@1" and "examples" not in evaluated[0]

    # the artifacts: the job's tenant downloads the files its result names, and nothing else
    acme = {"Authorization": f"Bearer {ACME_KEY}"}
    base = f"{gateway_url}/v1/jobs/{job.job_id}/artifacts"
    png = httpx.get(f"{base}/{COMPLIANCE}", headers=acme)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(PNG)
    results = httpx.get(f"{base}/results.json", headers=acme).json()
    assert [m["model"] for m in results["models"]] == LABELS
    assert len(results["models"][0]["examples"]["identity"]) == 2
    assert httpx.get(f"{base}/nothing.png", headers=acme).status_code == 404
    assert httpx.get(f"{base}/.hidden", headers=acme).status_code == 422
    other = httpx.get(f"{base}/{COMPLIANCE}", headers={"Authorization": f"Bearer {GLOBEX_KEY}"})
    assert other.status_code == 404

    saved = tmp_path / "saved"
    shown = ok(lyceum(gateway_url, "eval", "show", job.job_id, "--save", str(saved)))
    assert "tiny-kuro@2" in shown and f"saved {saved / COMPLIANCE}" in shown
    assert sorted(p.name for p in saved.iterdir()) == sorted(ARTIFACTS)
    assert (saved / COLLAPSE).read_bytes().startswith(PNG)
    assert json.loads((saved / "results.json").read_text()) == results
    assert lyceum(gateway_url, "eval", "show", job.job_id, key=GLOBEX_KEY).returncode == 1


def test_a_resumed_evaluation_ends_on_the_uninterrupted_results(
    db: str, tiny_llama_dir: Path, tmp_path: Path
) -> None:
    models = ModelRepository(create_engine(db))
    store = ArtifactStore(tmp_path / "registry")
    register_models(models, store, tiny_llama_dir, tmp_path)
    # The adapter first: the uninterrupted run evaluates the base with the adapter switched off, the
    # resumed one loads the base afresh, so equal results also say switching it off leaves the base. The
    # second model's drift is from the first's probes, which the checkpoint keeps.
    series = [MODELS[1], MODELS[0]]
    config = EvalConfig(
        models=series, prompts=1, max_new_tokens=6, preferences=["identity"], capability=False
    )

    def context(name: str, resume: Path | None) -> JobContext:
        return JobContext(f"job-{name}", TENANT, tmp_path / name, resume, models, store)

    whole, _ = build(config, context("whole", None))
    whole.run(2)
    first, _ = build(config, context("first", None))
    first.run(1)
    first.save(tmp_path / "ckpt")
    tiny = models.resolve(TENANT, "tiny", "1")  # a new version takes `latest`: the checkpoint keeps v1
    models.register(TENANT, "tiny", "lm", tiny.uri, {}, metadata=tiny.metadata)
    resumed, _ = build(config, context("resumed", tmp_path / "ckpt"))
    resumed.load(tmp_path / "ckpt")
    assert resumed.step == 1 and resumed.total_steps == 2
    assert [t.label for t in resumed.targets] == ["tiny-kuro@1", "tiny@1"]
    resumed.run(1)
    assert resumed.evaluate() == pytest.approx(whole.evaluate())
    assert resumed.evaluate()["tiny@1/logprob_drift"] != 0.0
    assert [r["examples"] for r in resumed.results] == [r["examples"] for r in whole.results]
