"""The `lyceum` command, run as a subprocess against a real uvicorn-served gateway on a real (SQLite) database
and filesystem broker; the test plays the worker through `JobRepository`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fixtures.gateway import (
    ADMIN_KEY,
    API_KEY,
    DFM_CONFIG,
    NO_PREDICTOR,
    WORKER,
    broker_messages,
    gateway_settings,
    serve,
)

from lyceum_core.identity import DEFAULT_TENANT
from lyceum_db.models.job import JobState
from lyceum_db.repositories.jobs import JobRepository
from lyceum_db.repositories.registry import ModelRepository
from lyceum_gateway.main import create_app

pytestmark = pytest.mark.integration

LYCEUM = Path(sys.executable).with_name("lyceum")


def env(url: str, **extra: str) -> dict[str, str]:
    """The environment of a `lyceum` run: the gateway's URL, no key, and a wide terminal for the tables."""
    values = {
        k: v for k, v in os.environ.items() if k not in ("LYCEUM_URL", "LYCEUM_API_KEY", "LYCEUM_ADMIN_KEY")
    }
    return values | {"LYCEUM_URL": url, "COLUMNS": "250", "NO_COLOR": "1"} | extra


def lyceum(
    url: str, *args: str, stdin: str | None = None, **extra_env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LYCEUM), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env(url, **extra_env),
        timeout=60,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (
        f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    )
    return result.stdout


def submit(url: str, tmp_path: Path, *extra: str) -> dict[str, Any]:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(DFM_CONFIG))
    return json.loads(
        ok(lyceum(url, "jobs", "submit", "dfm_pretrain", "--config", str(config), "--json", *extra))
    )


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    """SQLite only: these tests are about the command line; the API's tests cover both databases."""
    return sqlite_url


@pytest.fixture
def jobs(jobs_engine: sa.Engine) -> JobRepository:
    return JobRepository(jobs_engine)


def test_submit_from_a_file_creates_and_enqueues_the_job(
    jobs_gateway_url: str, jobs: JobRepository, broker_dir: Path, tmp_path: Path
) -> None:
    job = submit(jobs_gateway_url, tmp_path, "--queue", "cpu")

    assert (job["kind"], job["queue"], job["state"]) == ("dfm_pretrain", "cpu", "queued")
    assert jobs.get(DEFAULT_TENANT, job["job_id"]) is not None
    assert [m.job_id for m in broker_messages(broker_dir)] == [job["job_id"]]


def test_submit_from_stdin_is_idempotent_with_a_key(jobs_gateway_url: str, jobs: JobRepository) -> None:
    args = ("jobs", "submit", "dfm_pretrain", "--config", "-", "--idempotency-key", "run-1")

    first = ok(lyceum(jobs_gateway_url, *args, stdin=json.dumps(DFM_CONFIG)))
    again = ok(lyceum(jobs_gateway_url, *args, stdin=json.dumps(DFM_CONFIG)))

    [job] = jobs.list(DEFAULT_TENANT)
    assert first == again == f"job {job.job_id} (dfm_pretrain on gpu): queued\n"


def test_submit_an_invalid_config_fails_naming_the_field(jobs_gateway_url: str, jobs: JobRepository) -> None:
    config = json.dumps({**DFM_CONFIG, "train": {"lr": -1}})

    result = lyceum(jobs_gateway_url, "jobs", "submit", "dfm_pretrain", "--config", config)

    assert result.returncode == 1
    assert "INVALID_ARGUMENT" in result.stderr and "(field: config.train.lr)" in result.stderr
    assert jobs.list(DEFAULT_TENANT) == []


@pytest.mark.parametrize("config", ["missing.json", "{not json"])
def test_submit_an_unreadable_config_is_a_usage_error(jobs_gateway_url: str, config: str) -> None:
    result = lyceum(jobs_gateway_url, "jobs", "submit", "dfm_pretrain", "--config", config)

    assert result.returncode == 2
    assert "error:" in result.stderr


def test_list_and_show(jobs_gateway_url: str, jobs: JobRepository, tmp_path: Path) -> None:
    first, second = (submit(jobs_gateway_url, tmp_path)["job_id"] for _ in range(2))
    jobs.claim(first, WORKER, 60)
    jobs.heartbeat(first, WORKER, 60, {"step": 12, "total": 40})

    table = ok(lyceum(jobs_gateway_url, "jobs", "list"))
    listed = json.loads(ok(lyceum(jobs_gateway_url, "jobs", "list", "--state", "running", "--json")))
    paged = ok(lyceum(jobs_gateway_url, "jobs", "list", "--limit", "1"))
    shown = json.loads(ok(lyceum(jobs_gateway_url, "jobs", "show", first, "--json")))

    lines = table.splitlines()
    assert lines[0].split() == ["JOB", "KIND", "QUEUE", "STATE", "PROGRESS", "ATTEMPT", "CREATED"]
    assert lines[1].split()[:6] == [second, "dfm_pretrain", "gpu", "queued", "-", "0"]
    assert lines[2].split()[:6] == [first, "dfm_pretrain", "gpu", "running", "12/40", "1"]
    assert [job["job_id"] for job in listed["jobs"]] == [first]
    assert f"lyceum jobs list --before {second}" in paged
    assert (shown["job_id"], shown["state"], shown["progress"]["step"]) == (first, "running", 12)


def test_show_an_unknown_job_fails(jobs_gateway_url: str) -> None:
    result = lyceum(jobs_gateway_url, "jobs", "show", "nope")

    assert result.returncode == 1
    assert "NOT_FOUND: job 'nope' not found" in result.stderr


def test_cancel_and_resume(jobs_gateway_url: str, broker_dir: Path, tmp_path: Path) -> None:
    job_id = submit(jobs_gateway_url, tmp_path)["job_id"]

    cancelled = ok(lyceum(jobs_gateway_url, "jobs", "cancel", job_id))
    resumed = json.loads(ok(lyceum(jobs_gateway_url, "jobs", "resume", job_id, "--json")))
    again = lyceum(jobs_gateway_url, "jobs", "resume", job_id)

    assert cancelled == f"job {job_id} (dfm_pretrain on gpu): cancelled\n"
    assert resumed["state"] == "queued"
    assert [m.job_id for m in broker_messages(broker_dir)] == [job_id, job_id]
    assert again.returncode == 1 and "FAILED_PRECONDITION" in again.stderr


@pytest.mark.parametrize("mode", ["stream", "poll"])
def test_follow_shows_progress_and_exits_0_when_the_job_succeeds(
    jobs_gateway_url: str, jobs: JobRepository, tmp_path: Path, mode: str
) -> None:
    job_id = submit(jobs_gateway_url, tmp_path)["job_id"]
    jobs.claim(job_id, WORKER, 60)
    args = [str(LYCEUM), "jobs", "follow", job_id] + (["--poll"] if mode == "poll" else [])
    follower = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(jobs_gateway_url)
    )
    try:
        for step in (10, 20, 30, 40):  # a distilled DFM's: its DKT teacher's first 20 steps, then the DFM's
            time.sleep(0.3)
            phase, name = ("teacher", "teacher_") if step <= 20 else ("student", "")
            figures = {f"{name}loss": 1.0 / step, f"{name}lr": 0.01, "throughput": 1000.0}
            jobs.record_metrics(job_id, step, figures)
            if step == 20:  # the teacher's validation
                jobs.record_metrics(job_id, step, {"teacher_auc": 0.75})
            progress = {"step": step, "total": 40, "throughput": 1000.0, "throughput_unit": "events/s"}
            jobs.heartbeat(
                job_id, WORKER, 60, progress | {"eta_s": 40 - step, "loss": 1.0 / step, "phase": phase}
            )
        jobs.record_metrics(job_id, 40, {"auc": 0.8125})
        jobs.finish(job_id, WORKER, JobState.SUCCEEDED, result={"model": {"name": "dfm", "version": 1}})
        out, err = follower.communicate(timeout=30)
    finally:
        follower.kill()

    assert follower.returncode == 0, err
    assert "40/40" in out
    assert "step 40: auc=0.8125" in out  # evaluation metrics get their own line
    assert "step 20: teacher_auc=0.75" in out and "teacher_loss=" not in out  # training figures don't
    assert "loss 0.025 (student)" in out
    assert f"job {job_id} (dfm_pretrain on gpu): succeeded -> model dfm v1" in out


@pytest.mark.parametrize("state", [JobState.FAILED, JobState.CANCELLED])
def test_follow_exits_1_when_the_job_fails_or_is_cancelled(
    jobs_gateway_url: str, jobs: JobRepository, tmp_path: Path, state: JobState
) -> None:
    job_id = submit(jobs_gateway_url, tmp_path)["job_id"]
    jobs.claim(job_id, WORKER, 60)
    jobs.finish(job_id, WORKER, state, error="out of memory" if state == JobState.FAILED else None)

    result = lyceum(jobs_gateway_url, "jobs", "follow", job_id)

    assert result.returncode == 1
    assert f"): {state.value}" in result.stdout


def test_submit_and_follow(jobs_gateway_url: str, jobs: JobRepository) -> None:
    follower = subprocess.Popen(
        [str(LYCEUM), "jobs", "submit", "dfm_pretrain", "--config", json.dumps(DFM_CONFIG), "--follow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(jobs_gateway_url),
    )
    try:
        deadline = time.monotonic() + 20
        while not jobs.list(DEFAULT_TENANT) and time.monotonic() < deadline:
            time.sleep(0.05)
        [job] = jobs.list(DEFAULT_TENANT)
        jobs.request_cancel(DEFAULT_TENANT, job.job_id)  # queued: cancelled at once
        out, err = follower.communicate(timeout=30)
    finally:
        follower.kill()

    assert follower.returncode == 1, err
    assert out.startswith(f"job {job.job_id} (dfm_pretrain on gpu): queued\n")
    assert out.rstrip().endswith("cancelled")


def test_models_list_alias_and_rollback(jobs_gateway_url: str, jobs_engine: sa.Engine) -> None:
    models = ModelRepository(jobs_engine)
    for i in (1, 2):
        models.register(DEFAULT_TENANT, "dfm", "dfm", f"var/registry/dfm/{i}", {"auc": 0.7 + i / 10})

    table = ok(lyceum(jobs_gateway_url, "models", "list"))
    moved = ok(lyceum(jobs_gateway_url, "models", "alias", "dfm", "prod", "1"))
    moved_again = json.loads(ok(lyceum(jobs_gateway_url, "models", "alias", "dfm", "prod", "2", "--json")))
    back = ok(lyceum(jobs_gateway_url, "models", "rollback", "dfm", "prod"))
    listed = json.loads(ok(lyceum(jobs_gateway_url, "models", "list", "dfm", "--json")))
    missing = lyceum(jobs_gateway_url, "models", "alias", "dfm", "prod", "7")

    lines = table.splitlines()
    assert lines[0].split() == ["MODEL", "VERSION", "KIND", "ALIASES", "METRICS", "JOB", "CREATED"]
    assert lines[1].split()[:5] == ["dfm", "1", "dfm", "-", "auc=0.8"]
    assert lines[2].split()[:5] == ["dfm", "2", "dfm", "latest", "auc=0.9"]
    assert moved == "dfm: prod -> v1 (new alias)\n"
    assert (moved_again["version"], moved_again["previous_version"]) == (2, 1)
    assert back == "dfm: prod rolled back to v1 (was v2)\n"
    assert [m["aliases"] for m in listed["models"]] == [["prod"], ["latest"]]
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr


def test_api_key_comes_from_the_environment(jobs_settings: dict[str, Any]) -> None:
    app = create_app(gateway_settings([NO_PREDICTOR], api_keys=[API_KEY], **jobs_settings))
    with serve(app) as url:
        refused = lyceum(url, "jobs", "list")
        accepted = lyceum(url, "jobs", "list", LYCEUM_API_KEY=API_KEY)
        flag = lyceum(url, "--api-key", API_KEY, "models", "list")

    assert refused.returncode == 1 and "UNAUTHENTICATED: missing API key" in refused.stderr
    assert ok(accepted) == "no jobs\n"
    assert ok(flag) == "no models\n"


def test_tenants_and_keys_over_the_admin_routes(jobs_settings: dict[str, Any]) -> None:
    settings = gateway_settings(
        [NO_PREDICTOR], admin_keys=[ADMIN_KEY], api_keys=["acme:k-a"], **jobs_settings
    )
    with serve(create_app(settings)) as url:
        refused = lyceum(url, "tenants", "list")
        created = ok(
            lyceum(url, "--admin-key", ADMIN_KEY, "tenants", "create", "globex", "--quota", "max_jobs=2")
        )
        bad_quota = lyceum(url, "tenants", "create", "x", "--quota", "fast", LYCEUM_ADMIN_KEY=ADMIN_KEY)
        tenants = ok(lyceum(url, "tenants", "list", LYCEUM_ADMIN_KEY=ADMIN_KEY))
        new_key = ok(lyceum(url, "keys", "create", "globex", "--name", "ci", LYCEUM_ADMIN_KEY=ADMIN_KEY))
        key = new_key.splitlines()[-1]
        jobs_as_globex = lyceum(url, "jobs", "list", LYCEUM_API_KEY=key)
        listed = json.loads(
            ok(lyceum(url, "keys", "list", "--tenant", "globex", "--json", LYCEUM_ADMIN_KEY=ADMIN_KEY))
        )
        [record] = listed["keys"]
        table = ok(lyceum(url, "keys", "list", LYCEUM_ADMIN_KEY=ADMIN_KEY))
        revoked = ok(lyceum(url, "keys", "revoke", record["key_id"], LYCEUM_ADMIN_KEY=ADMIN_KEY))
        after = lyceum(url, "jobs", "list", LYCEUM_API_KEY=key)

    assert refused.returncode == 1 and "UNAUTHENTICATED: missing admin key" in refused.stderr
    assert created == "tenant globex created\n"
    assert bad_quota.returncode == 2 and "NAME=NUMBER" in bad_quota.stderr
    assert [line.split()[:2] for line in tenants.splitlines()[1:]] == [
        ["acme", "defaults"],
        ["globex", "max_jobs=2"],
    ]
    assert key.startswith("lyk_") and key not in new_key.splitlines()[0]
    assert ok(jobs_as_globex) == "no jobs\n"
    assert (record["tenant"], record["name"], record["revoked_at"]) == ("globex", "ci", None)
    assert key not in table and record["key_id"] in table
    assert revoked == f"key {record['key_id']} of tenant globex revoked\n"
    assert after.returncode == 1 and "UNAUTHENTICATED: invalid API key" in after.stderr


def test_an_unreachable_gateway_fails_clearly() -> None:
    result = lyceum("http://127.0.0.1:9", "--timeout", "5", "jobs", "list")

    assert result.returncode == 1
    assert "cannot reach the gateway at http://127.0.0.1:9" in result.stderr
