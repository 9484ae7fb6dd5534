"""The `/v1/adapters` API over a real registry and artifact store: empty adapters (B = 0: the base's outputs,
loaded by the sampler's reader or by peft), import and export in the PEFT layout (a round trip keeps tensors
and outputs), 422s that store and register nothing, tenant isolation, and aliases moved and rolled back on
the `/v1/models` routes. Bases are the tiny Lyceum LM and the tiny GPT-2, registered with their structure."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from fixtures.gateway import ACME, GLOBEX, NO_PREDICTOR, MakeGateway, TenantGateways
from peft import LoraConfig, PeftConfig, PeftModel
from safetensors.torch import load_file

from lyceum_core.identity import DEFAULT_TENANT
from lyceum_core.lora import LYCEUM_ARCHITECTURE, default_target_modules
from lyceum_core.storage import ArtifactStore
from lyceum_db.engine import create_engine
from lyceum_db.repositories.registry import ModelRepository
from lyceum_gateway.adapter_files import CONFIG_FILE, WEIGHTS_FILE
from lyceum_ml.adapters import AdapterHost, read_adapter
from lyceum_ml.architecture import describe
from lyceum_ml.lm.checkpoint import load_lm
from lyceum_ml.lm.demo_adapter import build_demo_adapter

pytestmark = pytest.mark.integration

LM, GPT2 = "tiny-lm", "tiny-gpt2"
LYCEUM_TARGETS = list(default_target_modules(LYCEUM_ARCHITECTURE) or ())


@dataclass
class Registry:
    client: TestClient
    models: ModelRepository
    store: ArtifactStore
    root: Path

    def files(self, uri: str, dest: Path) -> Path:
        return self.store.get_dir(uri, dest)

    def stored(self, tenant: str = DEFAULT_TENANT) -> list[Path]:
        """The adapter artifacts stored for the tenant."""
        folder = self.root / "models" / tenant
        return sorted(p for p in folder.glob("*/*") if p.is_dir()) if folder.exists() else []


def lyceum_model(path: Path) -> torch.nn.Module:
    return load_lm(path, dtype=torch.float32).model


def gpt2_model(path: Path) -> torch.nn.Module:
    from transformers import GPT2LMHeadModel

    return GPT2LMHeadModel.from_pretrained(path, local_files_only=True).eval()


@pytest.fixture
def registry(
    make_gateway: MakeGateway,
    gateway_state: dict[str, Any],
    tiny_lyceum_lm_dir: Path,
    tiny_hf_gpt2_dir: Path,
) -> Iterator[Registry]:
    """The gateway (auth off) with the tiny Lyceum LM and the tiny GPT-2 registered as `tiny-lm` and
    `tiny-gpt2` (their `latest` -> version 1), structure in their metadata."""
    engine = create_engine(gateway_state["database_url"])
    models = ModelRepository(engine)
    for name, path, load in ((LM, tiny_lyceum_lm_dir, lyceum_model), (GPT2, tiny_hf_gpt2_dir, gpt2_model)):
        models.register(DEFAULT_TENANT, name, "lm", str(path), {}, metadata=describe(load(path)))
    root = Path(gateway_state["registry_url"])
    yield Registry(make_gateway([NO_PREDICTOR]), models, ArtifactStore(root), root)
    engine.dispose()


def create(client: TestClient, **body: Any) -> Any:
    return client.post("/v1/adapters", json={"name": "tutor", "base": f"{LM}@latest", **body})


def upload(
    client: TestClient, archive: bytes, name: str = "imported", base: str = f"{LM}@latest", **kw: Any
) -> Any:
    files = {"file": ("adapter.tar.gz", archive, "application/octet-stream")}
    return client.post("/v1/adapters:import", files=files, data={"name": name, "base": base}, **kw)


def tar_of(files: dict[str, bytes], folder: str = "") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{folder}{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def zip_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def peft_files(directory: Path) -> dict[str, bytes]:
    return {name: (directory / name).read_bytes() for name in (CONFIG_FILE, WEIGHTS_FILE)}


@pytest.fixture
def trained(tiny_lyceum_lm_dir: Path, tmp_path: Path) -> Path:
    """A rank-4 LoRA of the tiny Lyceum LM written by peft, with non-zero B (so it changes outputs)."""
    return build_demo_adapter(tiny_lyceum_lm_dir, tmp_path / "trained", rank=4, seed=3)


def lyceum_logits(model: torch.nn.Module, host: AdapterHost | None = None, adapter: str | None = None) -> Any:
    idx = torch.arange(1, 25).reshape(2, 12)
    with torch.no_grad():
        if host is None:
            return model(idx)
        with host.applied([adapter] * idx.shape[0]):
            return model(idx)


def with_adapter(base_dir: Path, adapter_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The tiny Lyceum LM's logits without and with the adapter, loaded as the sampler does."""
    model = lyceum_model(base_dir)
    before = lyceum_logits(model)
    host = AdapterHost(model)
    host.add("a", read_adapter(adapter_dir))
    return before, lyceum_logits(model, host, "a")


# --- created empty ----------------------------------------------------------------------------------------


def test_an_empty_adapter_changes_nothing_and_is_registered_with_its_pinned_base(
    registry: Registry, tiny_lyceum_lm_dir: Path, tmp_path: Path
) -> None:
    response = create(registry.client, r=4, alpha=8, dropout=0.0)

    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["name"], body["version"], body["base"], body["source"]) == (
        "tutor",
        1,
        f"default/{LM}@1",
        "empty",
    )
    assert body["lora"] == {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": LYCEUM_TARGETS}
    assert body["aliases"] == ["latest"]
    assert response.headers["location"] == "/v1/adapters/tutor/versions/1"
    files = registry.files(body["uri"], tmp_path / "files")
    assert files.parent == registry.root / "models" / "default" / "tutor"
    weights = load_file(files / WEIGHTS_FILE)
    assert len(weights) == 2 * 2 * 5  # A and B of five modules in each of two blocks
    a = weights["base_model.model.blocks.0.mlp.up.lora_A.weight"]
    assert a.shape == (4, 32) and a.abs().max() <= 32**-0.5 and a.std() > 0.05
    assert weights["base_model.model.blocks.0.mlp.up.lora_B.weight"].shape == (128, 4)
    assert all(t.count_nonzero() == 0 for k, t in weights.items() if "lora_B" in k)

    before, after = with_adapter(tiny_lyceum_lm_dir, files)
    assert torch.equal(before, after)


def test_an_empty_gpt2_adapter_loads_in_peft_and_changes_nothing(
    registry: Registry, tiny_hf_gpt2_dir: Path, tmp_path: Path
) -> None:
    body = create(registry.client, name="gpt2-lora", base=f"{GPT2}@1").json()

    assert body["lora"]["target_modules"] == ["c_attn", "c_proj"]
    files = registry.files(body["uri"], tmp_path / "files")
    config = PeftConfig.from_pretrained(str(files))
    assert isinstance(config, LoraConfig) and config.fan_in_fan_out and config.r == 8
    assert config.task_type == "CAUSAL_LM" and config.base_model_name_or_path == f"default/{GPT2}@1"
    model = gpt2_model(tiny_hf_gpt2_dir)
    idx = torch.arange(100, 116).reshape(2, 8)
    with torch.no_grad():
        before = model(idx).logits
        peft_model = PeftModel.from_pretrained(model, str(files)).eval()
        after = peft_model(idx).logits
    assert len([n for n, _ in peft_model.named_parameters() if "lora_A" in n]) == 2 * 3  # c_attn, 2 c_proj
    assert torch.equal(before, after)


@pytest.mark.parametrize("base", [LM, GPT2])
def test_the_config_is_what_peft_writes_for_the_same_lora(
    registry: Registry, tmp_path: Path, base: str
) -> None:
    body = create(
        registry.client, name=f"cfg-{base}", base=f"{base}@latest", r=16, alpha=32, dropout=0.1
    ).json()
    ours = json.loads((registry.files(body["uri"], tmp_path / "ours") / CONFIG_FILE).read_text())

    gpt2 = base == GPT2
    LoraConfig(
        r=16,
        lora_alpha=32,
        lora_dropout=0.1,
        target_modules=body["lora"]["target_modules"],
        fan_in_fan_out=gpt2,
        task_type="CAUSAL_LM" if gpt2 else None,
        base_model_name_or_path=f"default/{base}@1",
    ).save_pretrained(tmp_path / "peft")
    theirs = json.loads((tmp_path / "peft" / CONFIG_FILE).read_text())
    assert sorted(ours.pop("target_modules")) == sorted(theirs.pop("target_modules"))
    assert ours == theirs


def test_a_target_module_the_base_lacks_is_422_and_nothing_is_made(registry: Registry) -> None:
    response = create(registry.client, target_modules=["q_proj", "c_attn"])

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["field"] == "target_modules" and "'c_attn'" in error["message"]
    assert registry.models.list(DEFAULT_TENANT, "tutor") == [] and registry.stored() == []


@pytest.mark.parametrize(
    ("base", "needle"),
    [("nope@latest", "not found"), ("dfm@latest", "kind 'dfm'"), ("old-lm@1", "register it again")],
)
def test_an_unusable_base_is_422(registry: Registry, base: str, needle: str) -> None:
    registry.models.register(DEFAULT_TENANT, "dfm", "dfm", "var/registry/dfm/1", {})
    registry.models.register(
        DEFAULT_TENANT, "old-lm", "lm", "var/registry/old-lm/1", {}, metadata={"vocab": 9}
    )

    response = create(registry.client, base=base)

    assert response.status_code == 422
    assert response.json()["error"]["field"] == "base" and needle in response.json()["error"]["message"]
    assert registry.stored() == []


def test_an_architecture_without_defaults_needs_target_modules(registry: Registry) -> None:
    structure = {"architecture": "mamba", "linear_modules": {"layers.0.in_proj": [16, 64]}}
    registry.models.register(DEFAULT_TENANT, "mamba", "lm", "var/registry/mamba/1", {}, metadata=structure)

    missing = create(registry.client, base="mamba@latest")
    named = create(registry.client, base="mamba@latest", target_modules=["in_proj"])

    assert missing.status_code == 422 and missing.json()["error"]["field"] == "target_modules"
    assert named.status_code == 201 and named.json()["lora"]["target_modules"] == ["in_proj"]


def test_a_name_taken_by_another_kind_is_409(registry: Registry) -> None:
    response = create(registry.client, name=LM)

    assert response.status_code == 409
    assert response.json()["error"]["field"] == "name"


# --- import and export ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["tar.gz", "zip"])
def test_export_then_import_keeps_tensors_and_outputs(
    registry: Registry, trained: Path, tiny_lyceum_lm_dir: Path, tmp_path: Path, fmt: str
) -> None:
    imported = upload(registry.client, tar_of(peft_files(trained), folder="my-adapter/"))
    assert imported.status_code == 201, imported.text
    assert imported.json()["source"] == "import" and imported.json()["base"] == f"default/{LM}@1"
    assert imported.json()["lora"]["r"] == 4

    exported = registry.client.get("/v1/adapters/imported/versions/latest/export", params={"format": fmt})
    assert exported.status_code == 200
    assert f'filename="imported-v1.{fmt}"' in exported.headers["content-disposition"]
    again = upload(registry.client, exported.content, name="round-trip")
    assert again.status_code == 201, again.text

    files = registry.files(again.json()["uri"], tmp_path / "again")
    original, round_tripped = load_file(trained / WEIGHTS_FILE), load_file(files / WEIGHTS_FILE)
    assert original.keys() == round_tripped.keys()
    assert all(torch.equal(original[k], round_tripped[k]) for k in original)
    before, via_original = with_adapter(tiny_lyceum_lm_dir, trained)
    _, via_round_trip = with_adapter(tiny_lyceum_lm_dir, files)
    assert not torch.equal(before, via_original)  # the adapter does change outputs
    assert torch.equal(via_original, via_round_trip)


def test_an_export_is_the_same_bytes_each_time(registry: Registry) -> None:
    create(registry.client)
    url = "/v1/adapters/tutor/versions/1/export"

    first, second = registry.client.get(url), registry.client.get(url)

    assert first.headers["content-type"] == "application/gzip" and first.content == second.content
    with tarfile.open(fileobj=io.BytesIO(first.content)) as archive:
        assert sorted(archive.getnames()) == [f"tutor-v1/{CONFIG_FILE}", f"tutor-v1/{WEIGHTS_FILE}"]


def test_an_archive_at_its_root_or_as_zip_imports(registry: Registry, trained: Path) -> None:
    assert upload(registry.client, tar_of(peft_files(trained))).status_code == 201
    assert upload(registry.client, zip_of(peft_files(trained))).status_code == 201
    assert [r.version for r in registry.models.list(DEFAULT_TENANT, "imported")] == [1, 2]


def _reshaped(trained: Path) -> dict[str, bytes]:
    weights = load_file(trained / WEIGHTS_FILE)
    key = "base_model.model.blocks.1.mlp.down.lora_A.weight"
    weights[key] = torch.zeros(4, 32)  # down's input is 128 wide
    buffer = io.BytesIO(_safetensors_bytes(weights))
    return {CONFIG_FILE: (trained / CONFIG_FILE).read_bytes(), WEIGHTS_FILE: buffer.getvalue()}


def _safetensors_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    from safetensors.torch import save

    return save(tensors)


def _rank_changed(trained: Path) -> dict[str, bytes]:
    config = json.loads((trained / CONFIG_FILE).read_text())
    return {
        CONFIG_FILE: json.dumps({**config, "r": 8}).encode(),
        WEIGHTS_FILE: (trained / WEIGHTS_FILE).read_bytes(),
    }


def _foreign_module(trained: Path) -> dict[str, bytes]:
    weights = load_file(trained / WEIGHTS_FILE)
    weights["base_model.model.blocks.7.mlp.up.lora_A.weight"] = torch.zeros(4, 32)
    return {CONFIG_FILE: (trained / CONFIG_FILE).read_bytes(), WEIGHTS_FILE: _safetensors_bytes(weights)}


def _traversal(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in {**files, "../escape.txt": b"x"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _symlink(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("secrets")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
    return buffer.getvalue()


BAD_ARCHIVES: dict[str, tuple[Callable[[Path], bytes], str]] = {
    "traversal": (lambda t: _traversal(peft_files(t)), "outside the archive"),
    "absolute": (lambda t: zip_of({**peft_files(t), "/evil": b"x"}), "outside the archive"),
    "symlink": (lambda t: _symlink(peft_files(t)), "not a plain file"),
    "no config": (lambda t: tar_of({WEIGHTS_FILE: (t / WEIGHTS_FILE).read_bytes()}), CONFIG_FILE),
    "pickled weights": (
        lambda t: tar_of({CONFIG_FILE: (t / CONFIG_FILE).read_bytes(), "adapter_model.bin": b"\x80\x04"}),
        "adapter_model.bin",
    ),
    "wrong shape": (lambda t: tar_of(_reshaped(t)), "blocks.1.mlp.down.lora_A.weight"),
    "rank differs": (lambda t: tar_of(_rank_changed(t)), "needs [8, 32]"),
    "foreign module": (lambda t: tar_of(_foreign_module(t)), "no linear layer 'blocks.7.mlp.up'"),
    "not an archive": (lambda t: b"just some bytes, not an archive at all", "not a readable"),
}


@pytest.mark.parametrize("case", sorted(BAD_ARCHIVES))
def test_a_bad_archive_is_422_and_nothing_is_made(registry: Registry, trained: Path, case: str) -> None:
    build, needle = BAD_ARCHIVES[case]

    response = upload(registry.client, build(trained))

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == "file" and needle in error["message"], error
    assert registry.models.list(DEFAULT_TENANT, "imported") == [] and registry.stored() == []


def test_an_adapter_for_another_base_is_refused(registry: Registry, trained: Path) -> None:
    response = upload(registry.client, tar_of(peft_files(trained)), base=f"{GPT2}@latest")

    assert response.status_code == 422
    assert "matches no linear layer" in response.json()["error"]["message"]


# --- listing, aliases, tenants ----------------------------------------------------------------------------


def test_adapters_list_and_move_aliases_like_models(registry: Registry) -> None:
    client = registry.client
    create(client, r=4)
    create(client, r=8)

    listed = client.get("/v1/adapters").json()["adapters"]
    models = client.get("/v1/models").json()["models"]
    assert [(a["name"], [v["lora"]["r"] for v in a["versions"]]) for a in listed] == [("tutor", [4, 8])]
    assert listed[0]["aliases"] == {"latest": 2}
    adapter_rows = [(m["kind"], m["base"]) for m in models if m["name"] == "tutor"]
    assert adapter_rows == [("adapter", f"default/{LM}@1")] * 2
    assert {m["name"]: m["base"] for m in models if m["kind"] == "lm"} == {LM: None, GPT2: None}

    assert client.put("/v1/models/tutor/aliases/prod", json={"version": 1}).status_code == 200
    assert client.put("/v1/models/tutor/aliases/prod", json={"version": 2}).status_code == 200
    rolled = client.post("/v1/models/tutor/aliases/prod/rollback")
    assert rolled.status_code == 200 and rolled.json()["version"] == 1
    assert rolled.json()["model"]["kind"] == "adapter"
    assert client.get("/v1/adapters/tutor").json()["aliases"] == {"latest": 2, "prod": 1}
    exported = client.get("/v1/adapters/tutor/versions/prod/export")
    assert 'filename="tutor-v1.tar.gz"' in exported.headers["content-disposition"]


def test_a_model_that_is_no_adapter_is_not_one(registry: Registry) -> None:
    assert registry.client.get(f"/v1/adapters/{LM}").status_code == 404
    assert registry.client.get(f"/v1/adapters/{LM}/versions/1/export").status_code == 404
    assert registry.client.get("/v1/adapters").json() == {"adapters": []}


def test_tenants_see_only_their_own_adapters(
    tenant_gateways: TenantGateways, tiny_lyceum_lm_dir: Path, trained: Path
) -> None:
    structure = describe(lyceum_model(tiny_lyceum_lm_dir))
    for tenant in ("acme", "globex"):
        tenant_gateways.models.register(
            tenant, f"{tenant}-lm", "lm", str(tiny_lyceum_lm_dir), {}, metadata=structure
        )
    acme, globex = tenant_gateways.a, tenant_gateways.b
    made = acme.post("/v1/adapters", json={"name": "private", "base": "acme-lm@latest"}, headers=ACME)
    assert made.status_code == 201, made.text
    original = acme.get("/v1/adapters/private/versions/1/export", headers=ACME).content

    assert globex.get("/v1/adapters/private", headers=GLOBEX).status_code == 404
    assert globex.get("/v1/adapters/private/versions/1/export", headers=GLOBEX).status_code == 404
    assert globex.get("/v1/adapters", headers=GLOBEX).json() == {"adapters": []}
    assert (
        globex.put("/v1/models/private/aliases/prod", json={"version": 1}, headers=GLOBEX).status_code == 404
    )
    foreign_base = upload(
        globex, tar_of(peft_files(trained)), name="private", base="acme-lm@latest", headers=GLOBEX
    )
    assert foreign_base.status_code == 422 and foreign_base.json()["error"]["field"] == "base"

    own = upload(globex, tar_of(peft_files(trained)), name="private", base="globex-lm@latest", headers=GLOBEX)
    assert own.status_code == 201 and own.json()["base"] == "globex/globex-lm@1"
    acme_view = acme.get("/v1/adapters/private", headers=ACME).json()
    assert [v["source"] for v in acme_view["versions"]] == ["empty"]
    assert acme.get("/v1/adapters/private/versions/1/export", headers=ACME).content == original
    assert [a["name"] for a in globex.get("/v1/adapters", headers=GLOBEX).json()["adapters"]] == ["private"]


def test_an_upload_over_the_adapter_limit_is_413(
    registry: Registry, trained: Path, make_gateway: MakeGateway
) -> None:
    client = make_gateway([NO_PREDICTOR], adapter_max_bytes=1 << 20)
    response = upload(client, b"\0" * (2 << 20))

    assert response.status_code == 413
    assert registry.stored() == []


def test_import_needs_its_form_fields(registry: Registry, trained: Path) -> None:
    files = {"file": ("a.tar", tar_of(peft_files(trained)), "application/x-tar")}

    response = registry.client.post(
        "/v1/adapters:import", files=files, data={"name": "Bad Name!", "base": "x"}
    )

    assert response.status_code == 422
    assert registry.stored() == []
