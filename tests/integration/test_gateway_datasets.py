"""`/v1/datasets` over a real gateway, database (SQLite and PostgreSQL) and artifact store: uploads of each
file kind, the first bad row named in a 422 with nothing stored, the upload size limit, cleaning counts, token
statistics under a registered language model's tokenizer, tenant isolation, and jobs that name datasets."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from fixtures.gateway import (
    ACME,
    GLOBEX,
    NO_PREDICTOR,
    JobsGateway,
    MakeGateway,
    TenantGateways,
)
from tokenizers import Tokenizer, models, pre_tokenizers

from lyceum_core.identity import DEFAULT_TENANT
from lyceum_core.storage import ArtifactStore
from lyceum_db.repositories.datasets import DatasetRepository

pytestmark = pytest.mark.integration

ALPACA = [
    {"instruction": "Add 2 and 2.", "input": "", "output": "4"},
    {"instruction": "Name a colour.", "input": "warm", "output": "red"},
    {"instruction": "Greet.", "output": "Hello there!"},
]
NORMALISED = [{"input": "", **row} for row in ALPACA]


def jsonl(rows: list[Any]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def alpaca_csv(rows: list[dict[str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, ["instruction", "input", "output"])
    writer.writeheader()
    writer.writerows({"input": "", **row} for row in rows)
    return out.getvalue().encode()


def upload(
    client: TestClient,
    content: bytes,
    filename: str = "data.jsonl",
    format: str = "alpaca",
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> Any:
    data = {
        "format": format,
        **{k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in fields.items()},
    }
    return client.post("/v1/datasets", files={"file": (filename, content)}, data=data, headers=headers or {})


def created(response: Any) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    return response.json()


def stored_files(registry: Path) -> list[Path]:
    return sorted(p for p in (registry / "datasets").rglob("*") if p.is_file()) if registry.exists() else []


@pytest.fixture
def registry(jobs_settings: dict[str, Any]) -> Path:
    return Path(jobs_settings["registry_url"])


@pytest.fixture
def repo(jobs_engine: sa.Engine) -> DatasetRepository:
    return DatasetRepository(jobs_engine)


@pytest.mark.parametrize(
    ("filename", "content"),
    [
        ("rows.jsonl", jsonl(ALPACA)),
        ("rows.json", json.dumps(ALPACA).encode()),
        ("rows.csv", alpaca_csv(ALPACA)),
        ("rows", json.dumps(ALPACA).encode()),  # no suffix: sniffed
    ],
)
def test_upload_stores_normalised_rows(
    jobs_gateway: JobsGateway, repo: DatasetRepository, registry: Path, filename: str, content: bytes
) -> None:
    body = created(upload(jobs_gateway.client, content, filename, name="arith"))

    assert body["dataset_id"].startswith("ds-")
    assert (body["name"], body["format"], body["filename"], body["rows"]) == ("arith", "alpaca", filename, 3)
    assert body["stats"]["rows"] == 3 and body["stats"]["tokens"] is None
    assert body["cleaning"] == {}
    record = repo.get(DEFAULT_TENANT, body["dataset_id"])
    assert record is not None and record.data_file == "data.jsonl"
    folder = ArtifactStore(registry).get_dir(record.uri, registry / "unused")
    lines = (folder / "data.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == NORMALISED
    assert body["size_bytes"] == (folder / "data.jsonl").stat().st_size == record.size_bytes
    assert jobs_gateway.client.get(f"/v1/datasets/{body['dataset_id']}").json() == body


def test_upload_of_plain_text_documents(jobs_gateway: JobsGateway) -> None:
    text = b"Once upon a time.\n\nThe end came soon.\n\n\nAnother story.\n"

    body = created(upload(jobs_gateway.client, text, "stories.txt", "text"))

    assert body["rows"] == 3
    assert body["stats"]["length_chars"]["max"] == len("The end came soon.")


def test_upload_of_a_dfm_file_is_kept_as_uploaded(jobs_gateway: JobsGateway, registry: Path) -> None:
    content = b"3\n1,2,3\n1,0,1\n2\n4,5\n0,1\n"

    body = created(upload(jobs_gateway.client, content, "hist.txt", "kt3"))

    assert (body["rows"], body["stats"]["events"]) == (2, 5)
    [stored] = stored_files(registry)
    assert (stored.name, stored.read_bytes()) == ("data.txt", content)


@pytest.mark.parametrize(
    ("content", "filename", "message"),
    [
        (
            jsonl([*ALPACA, {"instruction": "x", "output": ""}]),
            "a.jsonl",
            "row 4: output: must be a non-empty string",
        ),
        (jsonl([ALPACA[0], {"instruction": 1, "output": "y"}]), "a.jsonl", "row 2: instruction: must be"),
        (b"[" + json.dumps(ALPACA[0]).encode() + b",", "a.json", "invalid JSON at line 1"),
        (alpaca_csv(ALPACA)[:-1] + b"\n,,\n", "a.csv", "row 4: instruction: must be a non-empty string"),
        (b"", "a.jsonl", "the file holds no rows"),
    ],
)
def test_a_bad_row_is_a_422_naming_it_and_nothing_is_stored(
    jobs_gateway: JobsGateway,
    repo: DatasetRepository,
    registry: Path,
    content: bytes,
    filename: str,
    message: str,
) -> None:
    response = upload(jobs_gateway.client, content, filename)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("INVALID_ARGUMENT", "file")
    assert error["message"].startswith(f"file: {message}"), error["message"]
    assert repo.list(DEFAULT_TENANT) == []
    assert stored_files(registry) == []


def test_a_bad_form_field_is_a_422(jobs_gateway: JobsGateway) -> None:
    client = jobs_gateway.client
    bad_format = upload(client, jsonl(ALPACA), format="yaml")
    bad_lengths = upload(client, jsonl(ALPACA), min_length=10, max_length=5)
    dfm_cleaning = upload(client, b"1\n1\n1\n", "h.txt", "kt3", dedupe=True)

    assert bad_format.status_code == 422 and bad_format.json()["error"]["field"] == "format"
    assert bad_lengths.status_code == 422 and bad_lengths.json()["error"]["field"] == "min_length"
    assert dfm_cleaning.status_code == 422 and "not to kt3 files" in dfm_cleaning.json()["error"]["message"]


def test_cleaning_counts(jobs_gateway: JobsGateway) -> None:
    rows = [
        {"instruction": "Mail bob@example.com", "output": "Sent."},
        {"instruction": "Mail eve@example.com", "output": "Sent."},  # the same once scrubbed
        {"instruction": "Hi", "output": "yo"},  # too short
        {"instruction": "Call 415-555-0132", "output": "Calling."},
    ]

    body = created(upload(jobs_gateway.client, jsonl(rows), dedupe=True, scrub_pii=True, min_length=8))

    assert body["rows"] == 2
    cleaning = body["cleaning"]
    assert (cleaning["rows_in"], cleaning["rows_out"]) == (4, 2)
    assert (cleaning["duplicates_removed"], cleaning["too_short_removed"], cleaning["too_long_removed"]) == (
        1,
        1,
        0,
    )
    assert cleaning["pii_rows_changed"] == 3
    assert cleaning["pii_replacements"] == {"email": 2, "phone": 1, "card": 0, "ip": 0}


def test_tokens_are_counted_with_a_registered_language_models_tokenizer(
    jobs_gateway: JobsGateway, registry: Path, tmp_path: Path
) -> None:
    words = [
        "Add",
        "2",
        "and",
        ".",
        "4",
        "Name",
        "a",
        "colour",
        "warm",
        "red",
        "Greet",
        "Hello",
        "there",
        "!",
    ]
    tokenizer = Tokenizer(
        models.WordLevel({w: i for i, w in enumerate(["[UNK]", *words])}, unk_token="[UNK]")
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    folder = tmp_path / "lm"
    folder.mkdir()
    tokenizer.save(str(folder / "tokenizer.json"))
    uri = ArtifactStore(registry).put_dir(folder, "models/default/tok/1")
    jobs_gateway.models.register(DEFAULT_TENANT, "tok", "lm", uri, {})
    jobs_gateway.models.register(DEFAULT_TENANT, "dfm", "dfm", uri, {})

    body = created(upload(jobs_gateway.client, jsonl(ALPACA), tokenizer="tok@latest"))
    unknown = upload(jobs_gateway.client, jsonl(ALPACA), tokenizer="nope@latest")
    not_lm = upload(jobs_gateway.client, jsonl(ALPACA), tokenizer="dfm@latest")

    # "Add 2 and 2.\n4" | "Name a colour.\nwarm\nred" | "Greet.\nHello there!"
    assert body["stats"]["tokens"] == 6 + 6 + 5
    assert body["stats"]["tokenizer"] == "tok@1"
    assert body["stats"]["length_tokens"] == {"min": 5, "p50": 6, "p90": 6, "p99": 6, "max": 6}
    assert unknown.status_code == 404 and unknown.json()["error"]["field"] == "tokenizer"
    assert not_lm.status_code == 422 and "not a language model" in not_lm.json()["error"]["message"]


def test_the_upload_limit_is_its_own(make_gateway: MakeGateway, gateway_state: dict[str, Any]) -> None:
    client = make_gateway([NO_PREDICTOR], max_body_bytes=1024, dataset_max_bytes=8192)
    registry = Path(gateway_state["registry_url"])
    rows = [{"text": f"document number {i} " + "x" * 40} for i in range(40)]  # ~2.7 KB: over max_body_bytes
    big = [{"text": "y" * 100} for _ in range(100)]  # ~11 KB: over dataset_max_bytes

    fits = upload(client, jsonl(rows), format="text")
    too_big = upload(client, jsonl(big), format="text")
    other_route = client.post("/v1/jobs", content=b"x" * 2048, headers={"Content-Type": "application/json"})

    assert fits.status_code == 201, fits.text
    assert too_big.status_code == 413
    assert too_big.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert other_route.status_code == 413
    assert len(stored_files(registry)) == 1
    assert len(client.get("/v1/datasets").json()["datasets"]) == 1


def test_list_get_and_delete(jobs_gateway: JobsGateway, registry: Path) -> None:
    client = jobs_gateway.client
    first = created(upload(client, jsonl(ALPACA), name="first"))
    second = created(upload(client, jsonl(ALPACA[:1]), name="second"))

    listed = client.get("/v1/datasets").json()["datasets"]
    deleted = client.delete(f"/v1/datasets/{first['dataset_id']}")
    again = client.delete(f"/v1/datasets/{first['dataset_id']}")

    assert [d["name"] for d in listed] == ["second", "first"]
    assert deleted.status_code == 204
    assert again.status_code == 404
    assert client.get(f"/v1/datasets/{first['dataset_id']}").status_code == 404
    assert [d["dataset_id"] for d in client.get("/v1/datasets").json()["datasets"]] == [second["dataset_id"]]
    assert len(stored_files(registry)) == 1


def test_a_malformed_id_is_a_422(jobs_gateway: JobsGateway) -> None:
    response = jobs_gateway.client.get("/v1/datasets/not-an-id")

    assert response.status_code == 422
    assert response.json()["error"]["field"] == "dataset_id"


def test_tenants_see_only_their_own_datasets(tenant_gateways: TenantGateways) -> None:
    mine = created(upload(tenant_gateways.a, jsonl(ALPACA), headers=ACME))
    path = f"/v1/datasets/{mine['dataset_id']}"

    assert tenant_gateways.b.get(path, headers=GLOBEX).status_code == 404
    assert tenant_gateways.b.delete(path, headers=GLOBEX).status_code == 404
    assert tenant_gateways.b.get("/v1/datasets", headers=GLOBEX).json()["datasets"] == []
    assert tenant_gateways.b.get(path, headers=ACME).json() == mine  # the other replica, the owner's key


def test_jobs_may_name_only_their_tenants_datasets(tenant_gateways: TenantGateways) -> None:
    acme = created(upload(tenant_gateways.a, b"A story.\n\nAnother.\n", "c.txt", "text", headers=ACME))

    def submit(dataset_id: str, headers: dict[str, str]) -> Any:
        config = {"corpus": {"paths": [{"id": dataset_id}]}, "train": {"steps": 10}}
        return tenant_gateways.a.post(
            "/v1/jobs", json={"kind": "lm_pretrain", "config": config}, headers=headers
        )

    unknown = submit("ds-" + "0" * 32, ACME)
    foreign = submit(acme["dataset_id"], GLOBEX)
    own = submit(acme["dataset_id"], ACME)

    for response in (unknown, foreign):
        assert response.status_code == 404, response.text
        assert "dataset 'ds-" in response.json()["error"]["message"]
    assert tenant_gateways.jobs.list("globex") == []
    assert own.status_code == 201, own.text
    assert [job.job_id for job in tenant_gateways.jobs.list("acme")] == [own.json()["job_id"]]
