"""`lyceum datasets`, run as a subprocess against a real uvicorn-served gateway on a real (SQLite) database
and artifact store: upload with a progress bar and cleaning, the first bad row named; list, show, delete."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from lyceum_core.identity import DEFAULT_TENANT
from lyceum_db.repositories.datasets import DatasetRepository

pytestmark = pytest.mark.integration

LYCEUM = Path(sys.executable).with_name("lyceum")

ROWS = [
    {"prompt": "Capital of France?", "completion": " Paris"},
    {"prompt": "Capital of France?", "completion": " Paris"},
    {"prompt": "Mail me at ann@example.com", "completion": " Sure."},
]


def lyceum(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """A `lyceum` run against `url`, without the caller's key, with a wide terminal for the tables."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("LYCEUM_URL", "LYCEUM_API_KEY", "LYCEUM_ADMIN_KEY")
    }
    env |= {"LYCEUM_URL": url, "COLUMNS": "250", "NO_COLOR": "1"}
    return subprocess.run([str(LYCEUM), *args], capture_output=True, text=True, env=env, timeout=120)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (
        f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    )
    return result.stdout


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    """SQLite only: these tests are about the command line; the API's tests cover both databases."""
    return sqlite_url


@pytest.fixture
def repo(jobs_engine: sa.Engine) -> DatasetRepository:
    return DatasetRepository(jobs_engine)


@pytest.fixture
def rows_file(tmp_path: Path) -> Path:
    path = tmp_path / "capitals.jsonl"
    # Enough rows that the upload takes several chunks of the progress bar.
    path.write_text("".join(json.dumps(row) + "\n" for row in ROWS * 3000))
    return path


def test_upload_shows_progress_and_the_dataset(
    jobs_gateway_url: str, repo: DatasetRepository, rows_file: Path
) -> None:
    size = rows_file.stat().st_size

    out = ok(
        lyceum(
            jobs_gateway_url,
            "datasets",
            "upload",
            str(rows_file),
            "--format",
            "completion",
            "--dedupe",
            "--scrub-pii",
        )
    )

    [record] = repo.list(DEFAULT_TENANT)
    assert record.rows == 2 and record.cleaning["duplicates_removed"] == 9000 - 2
    assert "capitals.jsonl" in out and f"{size / 1e3:.1f}/{size / 1e3:.1f} kB" in out  # the bar, complete
    assert f"dataset {record.dataset_id} (completion, 2 rows" in out
    assert "cleaning removed 8998 of 9000 rows, scrubbed PII in 3000" in out


def test_upload_json_output_list_show_and_delete(jobs_gateway_url: str, rows_file: Path) -> None:
    uploaded = json.loads(
        ok(
            lyceum(
                jobs_gateway_url,
                "datasets",
                "upload",
                str(rows_file),
                "--format",
                "completion",
                "--name",
                "caps",
                "--json",
            )
        )
    )
    dataset_id = uploaded["dataset_id"]

    table = ok(lyceum(jobs_gateway_url, "datasets", "list"))
    listed = json.loads(ok(lyceum(jobs_gateway_url, "datasets", "list", "--json")))
    shown = ok(lyceum(jobs_gateway_url, "datasets", "show", dataset_id))
    deleted = ok(lyceum(jobs_gateway_url, "datasets", "delete", dataset_id))
    missing = lyceum(jobs_gateway_url, "datasets", "show", dataset_id)

    assert (uploaded["name"], uploaded["rows"]) == ("caps", 9000)
    lines = table.splitlines()
    assert lines[0].split() == ["DATASET", "NAME", "FORMAT", "ROWS", "SIZE", "TOKENS", "CREATED"]
    assert lines[1].split()[:4] == [dataset_id, "caps", "completion", "9000"]
    assert [d["dataset_id"] for d in listed["datasets"]] == [dataset_id]
    assert f"dataset {dataset_id} (completion, 9000 rows" in shown and '"duplicate_rate"' in shown
    assert deleted == f"dataset {dataset_id} deleted\n"
    assert missing.returncode == 1 and f"NOT_FOUND: dataset '{dataset_id}' not found" in missing.stderr


def test_a_bad_row_fails_naming_it(jobs_gateway_url: str, repo: DatasetRepository, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n" + json.dumps({"prompt": "x", "completion": ""}) + "\n")

    result = lyceum(jobs_gateway_url, "datasets", "upload", str(path), "--format", "completion")

    assert result.returncode == 1
    assert (
        "INVALID_ARGUMENT: file: row 2: completion: must be a non-empty string (field: file)" in result.stderr
    )
    assert repo.list(DEFAULT_TENANT) == []


def test_a_missing_file_is_a_usage_error(jobs_gateway_url: str, tmp_path: Path) -> None:
    result = lyceum(jobs_gateway_url, "datasets", "upload", str(tmp_path / "nope.jsonl"), "--format", "text")

    assert result.returncode == 2 and "cannot read" in result.stderr
