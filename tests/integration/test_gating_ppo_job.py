"""`gating_ppo` jobs end to end on real workers (Redis broker, PostgreSQL): a tiny gated LM registered for the
tenant, a job submitted with the `lyceum` CLI through the real gateway records every PPO iteration's metrics,
ends with the ablation in its result and a `gating_policy` version pinned to the LM version, and `lyceum jobs
show` prints the ablation table. A job cut into one slice per iteration (resumed from its checkpoint each
time) registers exactly the weights of an uninterrupted one, a resumed run keeps its LM version when the
alias moves, and an LM without gates trains through sampling only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from fixtures.data import require_shared
from fixtures.gateway import ACME_KEY, NO_PREDICTOR, gateway_settings, serve
from fixtures.trainer import TENANT, Workers, wait_for
from safetensors.torch import load_file

from lyceum_client.cli import main as lyceum
from lyceum_core.errors import InvalidArgument
from lyceum_core.storage import ArtifactStore
from lyceum_db.engine import create_engine
from lyceum_db.models.job import JobState
from lyceum_db.repositories.jobs import JobRecord, JobRepository
from lyceum_db.repositories.registry import ModelRecord, ModelRepository
from lyceum_gateway.main import create_app
from lyceum_jobs.gating import GatingPPOConfig
from lyceum_jobs.queue import make_celery
from lyceum_jobs.submit import submit
from lyceum_ml.architecture import describe
from lyceum_ml.causal_lm_impl import load_causal_lm
from lyceum_ml.checkpoint import WEIGHTS_FILE
from lyceum_ml.gating.policy import load_policy
from lyceum_trainer.jobs import JobContext
from lyceum_trainer.jobs.gating_ppo import build

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_torch_thread")]

ARMS = {"random", "fixed", "neutral", "learned"}
PER_ITERATION = {"reward", "reward_div", "reward_ppl", "policy_loss", "value_loss", "entropy", "entropy_coef"}
PER_ITERATION |= {"modulation", "diversity_weight", "lambda", "loss", "throughput"}


def tiny_config(prompts: Path, register_as: str) -> dict[str, Any]:
    return {
        "lm": "tiny@latest",
        "prompts": str(prompts),
        "iterations": 3,
        "envs": 4,
        "episode_length": 8,
        "ppo": {"minibatch": 8, "epochs": 2},
        "ablation": {"episodes": 4, "seeds": [0, 1]},
        "run": {"checkpoint_every": 1},
        "register_as": register_as,
    }


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    """The first paragraphs of TinyStories' validation stories, separated by blank lines."""
    text = require_shared("tinystories", "tinystories_val_head.txt").read_text()[:12_000]
    path = tmp_path / "stories.txt"
    path.write_text(text)
    return path


@pytest.fixture
def tiny_lm(workers: Workers, db: str, tiny_lyceum_lm_dir: Path) -> ModelRecord:
    """The tiny gated TransformerLM, registered as the tenant's `tiny` (kind lm) in the workers' registry."""
    uri = ArtifactStore(workers.tmp / "registry").put_dir(tiny_lyceum_lm_dir, f"models/{TENANT}/tiny/v1")
    metadata = describe(load_causal_lm(tiny_lyceum_lm_dir).model)  # type: ignore[attr-defined]
    return ModelRepository(create_engine(db)).register(TENANT, "tiny", "lm", uri, {}, metadata=metadata)


@pytest.fixture
def gateway_url(workers: Workers, db: str, broker: str) -> Iterator[str]:
    settings = gateway_settings(
        [NO_PREDICTOR],
        database_url=db,
        broker_url=broker,
        registry_url=str(workers.tmp / "registry"),
        api_keys=[f"{TENANT}:{ACME_KEY}"],
    )
    with serve(create_app(settings)) as url:
        yield url


def run_job(workers: Workers, db: str, broker: str, config: dict[str, Any]) -> JobRecord:
    jobs = JobRepository(create_engine(db))
    job, _ = submit(jobs, make_celery(broker), TENANT, "gating_ppo", config, queue="cpu")
    done = wait_for(jobs, job.job_id, lambda j: j.state.terminal, 300, "the job's end", workers)
    assert done.state == JobState.SUCCEEDED, done.error
    return done


def policy_tensors(workers: Workers, record: ModelRecord, name: str) -> dict[str, torch.Tensor]:
    folder = ArtifactStore(workers.tmp / "registry").get_dir(record.uri, workers.tmp / "fetched" / name)
    return load_file(folder / WEIGHTS_FILE)


def test_a_gating_job_trains_registers_its_policy_and_shows_the_ablation(
    workers: Workers,
    db: str,
    gateway_url: str,
    tiny_lm: ModelRecord,
    prompts: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    engine = create_engine(db)
    jobs, models = JobRepository(engine), ModelRepository(engine)
    workers.start("w1")
    config_file = tmp_path / "gating.json"
    config_file.write_text(json.dumps(tiny_config(prompts, "gating-test")))
    cli = ["--url", gateway_url, "--api-key", ACME_KEY, "jobs"]
    assert lyceum([*cli, "submit", "gating_ppo", "--config", str(config_file), "--queue", "cpu"]) == 0
    (job,) = jobs.list(TENANT)
    done = wait_for(jobs, job.job_id, lambda j: j.state.terminal, 300, "the job's end", workers)
    assert done.state == JobState.SUCCEEDED, done.error

    history = jobs.metrics_history(TENANT, job.job_id)
    iterations = [(step, values) for step, values, _ in history if "policy_loss" in values]
    assert [step for step, _ in iterations][:3] == [1, 2, 3]
    for _, values in iterations:
        assert PER_ITERATION <= set(values) and 0.0 <= values["modulation"] <= 1.0
    assert done.progress["throughput_unit"] == "steps/s" and done.progress["step"] == 3

    lm_key = f"{TENANT}/tiny@{tiny_lm.version}"
    result = done.result
    assert result["lm"] == lm_key and result["gate_signal"] is True
    ablation = result["ablation"]
    assert set(ablation["arms"]) == ARMS and ablation["seeds"] == [0, 1] and ablation["episodes"] == 4
    assert ablation["episode_length"] == 8 and ablation["fixed_modulation"] == 0.5
    for arm in ablation["arms"].values():
        assert {"reward", "diversity", "ppl"} <= set(arm) and len(arm["per_seed"]) == 2
        assert arm["reward"]["std"] >= 0 and -1.0 <= arm["ppl"]["mean"] <= 0.0

    policy = models.resolve(TENANT, "gating-test", "latest")
    assert policy.kind == "gating_policy" and policy.job_id == job.job_id
    assert result["model"] == {"name": "gating-test", "version": policy.version, "kind": "gating_policy",
                               "uri": policy.uri}  # fmt: skip
    assert policy.metadata["lm"] == lm_key and policy.metadata["lm_ref"] == "tiny@latest"
    assert policy.metadata["gate_signal"] is True and policy.metadata["ablation"] == ablation
    folder = ArtifactStore(workers.tmp / "registry").get_dir(policy.uri, tmp_path / "policy")
    _, saved = load_policy(folder)
    assert saved["lm"] == lm_key and saved["iterations"] == 3

    capsys.readouterr()
    assert lyceum([*cli, "show", job.job_id]) == 0
    shown = capsys.readouterr().out
    assert "ARM" in shown and "PPL TERM" in shown and "fixed (m=0.5)" in shown
    assert "learned vs fixed:" in shown and "4 episodes x seeds [0, 1], 8 tokens each" in shown


def test_a_job_resumed_at_every_slice_registers_the_uninterrupted_weights(
    workers: Workers,
    db: str,
    broker: str,
    tiny_lm: ModelRecord,
    prompts: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    models = ModelRepository(create_engine(db))
    workers.start("whole")
    whole = run_job(workers, db, broker, tiny_config(prompts, "whole"))
    assert whole.attempt == 1
    workers.kill("whole")

    monkeypatch.setenv("LYCEUM_TRAINER_SLICE_S", "0.001")  # every iteration ends its slice: requeue, resume
    workers.start("sliced")
    sliced = run_job(workers, db, broker, tiny_config(prompts, "sliced"))
    assert sliced.attempt == 3 and "resumed at step 2/3" in workers.log("sliced")

    a = policy_tensors(workers, models.resolve(TENANT, "whole", "latest"), "whole")
    b = policy_tensors(workers, models.resolve(TENANT, "sliced", "latest"), "sliced")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert sliced.result["ablation"] == whole.result["ablation"]


def test_a_resumed_run_keeps_its_lm_version_when_the_alias_moves(
    workers: Workers, db: str, tiny_lm: ModelRecord, prompts: Path, tmp_path: Path
) -> None:
    models = ModelRepository(create_engine(db))
    store = ArtifactStore(workers.tmp / "registry")
    config = GatingPPOConfig.model_validate(tiny_config(prompts, "pinned"))

    def context(name: str, resume: Path | None) -> JobContext:
        return JobContext(f"job-{name}", TENANT, tmp_path / name, resume, models, store)

    first, _ = build(config, context("first", None))
    first.run(1)
    first.save(tmp_path / "ckpt")
    moved = models.register(TENANT, "tiny", "lm", tiny_lm.uri, {}, metadata=tiny_lm.metadata)
    assert moved.version == tiny_lm.version + 1  # `latest` is the new version now
    resumed, _ = build(config, context("resumed", tmp_path / "ckpt"))
    resumed.load(tmp_path / "ckpt")
    assert resumed.step == 1 and resumed.lm.version == tiny_lm.version  # type: ignore[attr-defined]
    fresh, _ = build(config, context("fresh", None))
    assert fresh.lm.version == moved.version  # type: ignore[attr-defined]


def test_an_lm_without_gates_trains_through_sampling_only(
    workers: Workers, db: str, tiny_hf_gpt2_dir: Path, prompts: Path, tmp_path: Path
) -> None:
    models = ModelRepository(create_engine(db))
    store = ArtifactStore(workers.tmp / "registry")
    uri = store.put_dir(tiny_hf_gpt2_dir, f"models/{TENANT}/gpt2/v1")
    models.register(TENANT, "gpt2", "lm", uri, {}, metadata={})  # metadata that cannot tell: the job does
    base = tiny_config(prompts, "plain") | {"lm": "gpt2@latest", "iterations": 1}

    def job(change: dict[str, Any], name: str) -> Any:
        config = GatingPPOConfig.model_validate(base | change)
        return build(config, JobContext(f"job-{name}", TENANT, tmp_path / name, None, models, store))[0]

    plain = job({}, "auto")
    assert plain.trainer.gate_signal is False
    assert plain.run(1)["modulation"] >= 0.0
    with pytest.raises(InvalidArgument) as refused:
        job({"gate_signal": True}, "on")
    assert refused.value.field == "config.gate_signal"
    with pytest.raises(InvalidArgument) as short:
        job({"prompt_tokens": 1000}, "long")
    assert short.value.field == "config.episode_length"
