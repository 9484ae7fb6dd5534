"""SFT jobs on real worker processes (Redis broker, Postgres, a shared registry folder): an adapter (and the
merged model) registered with its base pinned; an uploaded dataset read by id; cancel + resume ending on the
same adapter as an uninterrupted run; two gloo processes under torchrun matching one process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from fixtures.trainer import TENANT, Workers, wait_for
from safetensors.torch import load_file

from lyceum_core.identity import new_dataset_id
from lyceum_core.storage import ArtifactStore
from lyceum_db.engine import create_engine
from lyceum_db.models.job import JobState
from lyceum_db.repositories.datasets import DatasetRecord, DatasetRepository
from lyceum_db.repositories.jobs import JobRepository
from lyceum_db.repositories.registry import ModelRepository
from lyceum_jobs.queue import enqueue, make_celery
from lyceum_jobs.submit import submit
from lyceum_ml.adapters import AdapterHost, read_adapter
from lyceum_ml.architecture import describe
from lyceum_ml.lm.checkpoint import load_lm
from lyceum_ml.sft.prepare import rows_sha256

pytestmark = pytest.mark.integration

ROWS = [
    {
        "messages": [
            {"role": "user", "content": f"{i}+{i}?"},
            {"role": "assistant", "content": f"Great! {2 * i}."},
        ]
    }
    for i in range(48)
]


@pytest.fixture
def registered_base(workers: Workers, db: str, tiny_lyceum_lm_dir: Path) -> str:
    """The tiny Lyceum LM registered as the tenant's `tiny` (kind lm, structure metadata)."""
    store = ArtifactStore(workers.tmp / "registry")
    uri = store.put_dir(tiny_lyceum_lm_dir, f"models/{TENANT}/tiny/base")
    model = load_lm(tiny_lyceum_lm_dir).model
    ModelRepository(create_engine(db)).register(TENANT, "tiny", "lm", uri, {}, metadata=describe(model))
    return "tiny@latest"


def sft_config(train: object, **train_overrides: object) -> dict:
    return {
        "base": {"model": "tiny@latest"},
        "data": {"format": "chat", "train": train, "max_seq_length": 96},
        "lora": {"r": 4, "dropout": 0.0},
        "train": {"max_steps": 8, "batch_size": 4, "lr": 5e-3, **train_overrides},
        "run": {"checkpoint_every": 4, "log_every": 1},
        "register_as": "tiny-tutor",
    }


def adapter_tensors(models: ModelRepository, name: str, version: int) -> dict[str, torch.Tensor]:
    record = models.resolve(TENANT, name, str(version))
    return load_file(Path(record.uri.removeprefix("file://")) / "adapter_model.safetensors")


def test_an_sft_job_on_an_uploaded_dataset_registers_an_adapter_and_the_merged_model(
    workers: Workers, db: str, broker: str, registered_base: str, tiny_lyceum_lm_dir: Path
) -> None:
    engine = create_engine(db)
    jobs, models = JobRepository(engine), ModelRepository(engine)
    store = ArtifactStore(workers.tmp / "registry")
    folder = workers.tmp / "upload"
    folder.mkdir()
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    dataset_id = new_dataset_id()
    uri = store.put_dir(folder, f"datasets/{TENANT}/{dataset_id}")
    DatasetRepository(engine).create(
        DatasetRecord(
            TENANT, dataset_id, "sums", "chat", "sums.jsonl", "data.jsonl", uri, 1, len(ROWS), {}, {}
        )
    )
    workers.start("w1")
    config = sft_config({"id": dataset_id}) | {"merged_as": "tiny-merged"}
    config["data"]["val_fraction"] = 0.0
    job, _ = submit(jobs, make_celery(broker), TENANT, "sft", config, queue="cpu")
    done = wait_for(jobs, job.job_id, lambda j: j.state.terminal, 180, "success", workers)
    assert done.state == JobState.SUCCEEDED, done.error

    adapter = models.resolve(TENANT, "tiny-tutor", "latest")
    base = models.resolve(TENANT, "tiny", "latest")
    assert adapter.kind == "adapter" and adapter.job_id == job.job_id and not adapter.public
    assert adapter.metadata["base"] == f"{TENANT}/tiny@{base.version}"
    assert adapter.metadata["lora"] == {
        "r": 4,
        "alpha": 16.0,
        "dropout": 0.0,
        "target_modules": ["q_proj", "kv_proj", "o_proj", "up", "down"],
    }
    assert adapter.metadata["data_sha256"] == rows_sha256(ROWS)
    merged = models.resolve(TENANT, "tiny-merged", "latest")
    assert merged.kind == "lm" and merged.metadata["architecture"] == "lyceum"
    assert [m["name"] for m in done.result["models"]] == ["tiny-tutor", "tiny-merged"]

    # the adapter changes the base's predictions, and the merged model predicts what base + adapter do
    loaded = load_lm(tiny_lyceum_lm_dir)
    ids = torch.tensor([loaded.tokenizer.encode("<|im_start|>user\n3+3?<|im_end|>").ids])
    with torch.no_grad():
        plain = loaded.model(ids)
        host = AdapterHost(loaded.model)
        host.add("tutor", read_adapter(Path(adapter.uri.removeprefix("file://"))))
        with host.applied(["tutor"]):
            adapted = loaded.model(ids)
        merged_logits = load_lm(Path(merged.uri.removeprefix("file://"))).model(ids)
    assert not torch.allclose(plain, adapted, atol=1e-3)
    torch.testing.assert_close(merged_logits, adapted, rtol=1e-4, atol=1e-4)
    assert models.list("globex") == [] and jobs.get("globex", job.job_id) is None


def test_a_cancelled_and_resumed_sft_job_ends_on_the_uninterrupted_adapter(
    workers: Workers, db: str, broker: str, registered_base: str
) -> None:
    engine = create_engine(db)
    jobs, models = JobRepository(engine), ModelRepository(engine)
    app = make_celery(broker)
    train = workers.tmp / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    workers.start("w1")
    config = sft_config(str(train), max_steps=120, batch_size=8)
    config["run"]["checkpoint_every"] = 5
    whole, _ = submit(jobs, app, TENANT, "sft", config | {"register_as": "whole"}, queue="cpu")
    wait_for(jobs, whole.job_id, lambda j: j.state.terminal, 300, "the whole run", workers)

    job, _ = submit(jobs, app, TENANT, "sft", config | {"register_as": "resumed"}, queue="cpu")
    checkpointed = lambda j: j.progress.get("last_checkpoint", 0) >= 10  # noqa: E731
    wait_for(jobs, job.job_id, checkpointed, 120, "a checkpoint", workers)
    jobs.request_cancel(TENANT, job.job_id)
    cancelled = wait_for(jobs, job.job_id, lambda j: j.state.terminal, 60, "the cancel", workers)
    assert cancelled.state == JobState.CANCELLED, cancelled.error
    assert 10 <= cancelled.progress["last_checkpoint"] < 120
    enqueue(app, job.job_id, jobs.resume(TENANT, job.job_id).queue)
    done = wait_for(jobs, job.job_id, lambda j: j.state.terminal, 300, "the resumed run", workers)
    assert done.state == JobState.SUCCEEDED, done.error
    assert "resumed at step" in workers.log("w1")

    a, b = adapter_tensors(models, "whole", 1), adapter_tensors(models, "resumed", 1)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_two_gloo_processes_train_what_one_process_does(
    workers: Workers, db: str, broker: str, registered_base: str
) -> None:
    """processes=2 with batch_size 2 each takes the same steps as one process with batch_size 4."""
    engine = create_engine(db)
    jobs, models = JobRepository(engine), ModelRepository(engine)
    app = make_celery(broker)
    train = workers.tmp / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    workers.start("w1")
    one, _ = submit(jobs, app, TENANT, "sft", sft_config(str(train)) | {"register_as": "one"}, queue="cpu")
    two_config = sft_config(str(train), batch_size=2) | {"register_as": "two"}
    two_config["run"]["processes"] = 2
    two, _ = submit(jobs, app, TENANT, "sft", two_config, queue="cpu")
    for job in (one, two):
        done = wait_for(jobs, job.job_id, lambda j: j.state.terminal, 300, "success", workers)
        assert done.state == JobState.SUCCEEDED, f"{done.error}\n{workers.log('w1')[-6000:]}"
    single, double = jobs.get(TENANT, one.job_id), jobs.get(TENANT, two.job_id)
    assert single is not None and double is not None
    assert double.progress["total"] == single.progress["total"] == 8
    assert double.metrics["val_loss"] == pytest.approx(single.metrics["val_loss"], abs=1e-4)
    a, b = adapter_tensors(models, "one", 1), adapter_tensors(models, "two", 1)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)
    trained = [v for k, v in b.items() if "lora_B" in k]
    assert any(v.abs().max() > 0 for v in trained)  # the two-process run trained (B starts at zero)
