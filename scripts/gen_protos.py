"""Generates Python code for protos/ into libs/api/src/lyceum_api (run by `make protos`).

Proto packages are `lyceum.<domain>.v1`; the generated modules live under `lyceum_api.<domain>.v1`, so the
imports protoc writes (`from lyceum.x.v1 import ...`) are rewritten to that package.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[1]
PROTOS = ROOT / "protos"
OUT = ROOT / "libs" / "api" / "src" / "lyceum_api"
IMPORT = re.compile(r"^from lyceum\.((?:\w+\.)*\w+) import", re.MULTILINE)


def main() -> int:
    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    include = str(Path(protoc.__file__).parent / "_proto")
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            f"-I{PROTOS}",
            f"-I{include}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *sources,
        ]
        if protoc.main(args) != 0:
            print("protoc failed", file=sys.stderr)
            return 1
        generated = Path(tmp) / "lyceum"
        for old in OUT.rglob("*_pb2*.py*"):
            old.unlink()
        for src in sorted(generated.rglob("*.py*")):
            dst = OUT / src.relative_to(generated)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text(IMPORT.sub(r"from lyceum_api.\1 import", src.read_text()))
        for pkg in sorted({p.parent for p in OUT.rglob("*_pb2.py")}):
            while pkg != OUT:  # every folder between lyceum_api and the module is a package
                (pkg / "__init__.py").touch()
                pkg = pkg.parent
    shutil.rmtree(OUT / "__pycache__", ignore_errors=True)
    print(f"generated {len(sources)} proto file(s) into {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
