"""One storage interface for artifacts (checkpoints, exported models) via fsspec: a local directory by
default (`file:///abs/path` or a plain path), any fsspec URL in deployments (`s3://bucket/prefix`, or
`memory://` in tests).

An artifact is a directory tree stored under a key; callers keep the returned URI (in the database) and pass
it back to read or delete the artifact.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import uuid
from pathlib import Path
from typing import Any

from fsspec import AbstractFileSystem
from fsspec.core import split_protocol, strip_protocol, url_to_fs
from fsspec.implementations.local import LocalFileSystem

from lyceum_core.errors import InvalidArgument, NotFound


class ArtifactStore:
    """Directory trees stored under keys below one root URL.

    On a local root `put_dir` is atomic (the tree is written to a temporary sibling, then renamed into
    place), so readers never see a partial artifact. On object stores it is not: upload first, then publish
    the URI (e.g. commit the checkpoint pointer), so that nothing refers to a partial upload.
    `storage_options` (credentials, endpoint, ...) go to fsspec for the root's filesystem.
    """

    def __init__(self, root_url: str | os.PathLike[str], **storage_options: Any) -> None:
        fs, root = url_to_fs(os.fspath(root_url), **storage_options)
        self._fs: AbstractFileSystem = fs
        self._local = isinstance(fs, LocalFileSystem)
        self._root = _normpath(root)
        protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
        # A local store also accepts plain paths, which carry no protocol.
        self._protocols: set[str | None] = {*protocols, None} if self._local else set(protocols)

    @property
    def root(self) -> str:
        """The root as a URL, e.g. `file:///var/lyceum/artifacts` or `s3://bucket/prefix`."""
        return self._fs.unstrip_protocol(self._root)

    @property
    def is_local(self) -> bool:
        """True if artifacts live on this machine's filesystem (then `get_dir` does not copy)."""
        return self._local

    def uri(self, key: str) -> str:
        """The URI an artifact stored under `key` has (whether or not it exists)."""
        return self._fs.unstrip_protocol(self._key_path(key))

    def put_dir(self, local_dir: str | os.PathLike[str], key: str) -> str:
        """Copies the directory tree `local_dir` to `key`, replacing what was there; returns its URI."""
        source = Path(local_dir)
        if not source.is_dir():
            raise InvalidArgument(f"{source} is not a directory", field="local_dir")
        target = self._key_path(key)
        if self._local:
            _put_local(source, Path(target))
        else:
            self._put_remote(source, target)
        return self._fs.unstrip_protocol(target)

    def get_dir(self, uri: str, dest_dir: str | os.PathLike[str]) -> Path:
        """A local directory holding the artifact at `uri`: on a local store the artifact's own directory
        (nothing is copied and `dest_dir` is unused; do not modify it), else `dest_dir` after downloading the
        tree into it. NotFound if there is no such artifact."""
        path = self._uri_path(uri)
        if self._local:
            if not os.path.isdir(path):
                raise NotFound(f"no artifact at {uri}", field="uri")
            return Path(path)
        remote = sorted(self._fs.find(path))
        if not remote:
            raise NotFound(f"no artifact at {uri}", field="uri")
        dest = Path(dest_dir)
        local = [dest / posixpath.relpath(file, path) for file in remote]
        for file in local:
            file.parent.mkdir(parents=True, exist_ok=True)
        self._fs.get(remote, [str(file) for file in local])
        return dest

    def read_bytes(self, uri: str, relpath: str) -> bytes:
        """The bytes of one file of the artifact at `uri` (`relpath` inside it, e.g. `tokenizer.json`),
        without fetching the rest. NotFound if the artifact has no such file."""
        path = f"{self._uri_path(uri).rstrip('/')}/{_relpath(relpath)}"
        try:
            with self._fs.open(path, "rb") as f:
                return f.read()
        except (FileNotFoundError, IsADirectoryError):
            raise NotFound(f"no file {relpath!r} in the artifact at {uri}", field="uri") from None

    def exists(self, uri: str) -> bool:
        """True if an artifact is stored at `uri`."""
        return bool(self._fs.exists(self._uri_path(uri)))

    def delete(self, uri: str) -> bool:
        """Deletes the artifact at `uri`; True if it existed."""
        path = self._uri_path(uri)
        if not self._fs.exists(path):
            return False
        self._fs.rm(path, recursive=True)
        return True

    def _put_remote(self, source: Path, target: str) -> None:
        if self._fs.exists(target):
            self._fs.rm(target, recursive=True)
        files = sorted(file for file in source.rglob("*") if file.is_file())
        if not files:
            self._fs.makedirs(target, exist_ok=True)  # object stores have no empty directories
            return
        remote = [f"{target}/{file.relative_to(source).as_posix()}" for file in files]
        # Lists in, lists out: one call, which async filesystems (s3, gcs) run concurrently.
        self._fs.put([str(file) for file in files], remote)

    def _key_path(self, key: str) -> str:
        parts = key.split("/")
        if not key or any(part in ("", ".", "..") for part in parts) or "\\" in key:
            raise InvalidArgument(
                f"key {key!r} must be a relative path of non-empty segments without '.', '..' or '\\'",
                field="key",
            )
        return f"{self._root.rstrip('/')}/{key}"

    def _uri_path(self, uri: str) -> str:
        """The filesystem path of `uri`; InvalidArgument unless it names something below the store's root."""
        protocol, _ = split_protocol(uri)
        path = _normpath(strip_protocol(uri)) if protocol in self._protocols else None
        root = self._root.rstrip("/")
        if path is None or not path.startswith(f"{root}/"):
            raise InvalidArgument(f"{uri!r} is not an artifact URI below {self.root}", field="uri")
        return path


def _normpath(path: str) -> str:
    # normpath resolves '..' before the root check; it would turn the empty root of `memory://` into '.'.
    return posixpath.normpath(path) if path else path


def _relpath(relpath: str) -> str:
    """`relpath` if it names a file inside an artifact (no '.', '..', '\\' or empty segments)."""
    parts = relpath.split("/")
    if not relpath or any(part in ("", ".", "..") for part in parts) or "\\" in relpath:
        raise InvalidArgument(
            f"{relpath!r} must be a relative path of non-empty segments without '.', '..' or '\\'",
            field="relpath",
        )
    return relpath


def _put_local(source: Path, target: Path) -> None:
    """Copies the tree to a temporary sibling of `target` and renames it into place (atomic on one
    filesystem). An existing target is first renamed aside, so only that instant shows no artifact."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex}")
    try:
        shutil.copytree(source, tmp)
        if target.exists():
            old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex}")
            os.rename(target, old)
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
