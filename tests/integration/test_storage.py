"""ArtifactStore on a local directory and on fsspec's in-memory filesystem: put, get, exists, delete,
replacement, and the URIs and keys it refuses."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

from lyceum_core.errors import InvalidArgument, NotFound
from lyceum_core.storage import ArtifactStore

pytestmark = pytest.mark.integration

TREE = {"config.json": b'{"d": 64}', "weights/model.safetensors": bytes(range(256)) * 4, "weights/empty": b""}


def make_tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "src", TREE)


@pytest.fixture
def memory_root() -> Iterator[str]:
    # The memory filesystem is one per process: a unique root keeps tests apart.
    root = f"memory://lyceum-test-{uuid.uuid4().hex}"
    yield root
    fs = fsspec.filesystem("memory")
    if fs.exists(root):
        fs.rm(root, recursive=True)


@pytest.fixture(params=["file_url", "plain_path", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "file_url":
        return ArtifactStore((tmp_path / "artifacts").as_uri())
    if request.param == "plain_path":
        return ArtifactStore(tmp_path / "artifacts")
    return ArtifactStore(request.getfixturevalue("memory_root"))


def test_put_get_exists_delete_round_trip(store: ArtifactStore, source: Path, tmp_path: Path) -> None:
    uri = store.put_dir(source, "jobs/j1/checkpoint-000000010")
    assert uri == store.uri("jobs/j1/checkpoint-000000010")
    assert uri.startswith(store.root + "/")
    assert store.exists(uri)

    local = store.get_dir(uri, tmp_path / "dest")
    assert read_tree(local) == TREE
    assert read_tree(source) == TREE  # the source is untouched

    assert store.delete(uri) is True
    assert not store.exists(uri)
    assert store.delete(uri) is False
    with pytest.raises(NotFound) as info:
        store.get_dir(uri, tmp_path / "dest2")
    assert info.value.field == "uri"


def test_local_store_is_read_in_place_and_leaves_no_temporary_files(source: Path, tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    store = ArtifactStore(f"file://{root}")
    assert store.is_local
    uri = store.put_dir(source, "models/dfm/1")
    assert uri == f"file://{root}/models/dfm/1"
    dest = tmp_path / "dest"
    assert store.get_dir(uri, dest) == root / "models" / "dfm" / "1"
    assert not dest.exists()  # nothing was copied
    assert sorted(p.name for p in (root / "models" / "dfm").iterdir()) == ["1"]
    # A plain path names the same artifact.
    assert store.exists(str(root / "models" / "dfm" / "1"))


def test_memory_store_downloads_into_dest(memory_root: str, source: Path, tmp_path: Path) -> None:
    store = ArtifactStore(memory_root)
    assert not store.is_local
    uri = store.put_dir(source, "models/dfm/1")
    assert uri.startswith("memory://")
    dest = tmp_path / "dest"
    assert store.get_dir(uri, dest) == dest
    assert read_tree(dest) == TREE


def test_put_replaces_an_existing_artifact(store: ArtifactStore, source: Path, tmp_path: Path) -> None:
    store.put_dir(source, "models/dfm/1")
    newer = make_tree(tmp_path / "newer", {"config.json": b"{}", "other.bin": b"x"})
    uri = store.put_dir(newer, "models/dfm/1")
    assert read_tree(store.get_dir(uri, tmp_path / "dest")) == {"config.json": b"{}", "other.bin": b"x"}


def test_empty_directories_round_trip(store: ArtifactStore, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    uri = store.put_dir(tmp_path / "empty", "nothing")
    assert store.exists(uri)
    assert store.delete(uri)


def test_keys_and_uris_are_confined_to_the_root(store: ArtifactStore, source: Path, tmp_path: Path) -> None:
    for key in ("", "/abs", "a//b", "../escape", "a/../../b", "./a", "a\\b"):
        with pytest.raises(InvalidArgument) as info:
            store.put_dir(source, key)
        assert info.value.field == "key"
    outside = [store.root, store.root + "/../elsewhere", "file:///etc", "s3://bucket/x", "/etc/passwd"]
    for uri in outside:
        with pytest.raises(InvalidArgument) as info:
            store.delete(uri)
        assert info.value.field == "uri"
        with pytest.raises(InvalidArgument):
            store.get_dir(uri, tmp_path / "dest")
        with pytest.raises(InvalidArgument):
            store.exists(uri)


def test_put_of_a_missing_directory_is_invalid(store: ArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument) as info:
        store.put_dir(tmp_path / "missing", "k")
    assert info.value.field == "local_dir"
    assert not store.exists(store.uri("k"))
