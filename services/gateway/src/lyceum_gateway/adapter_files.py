"""LoRA adapters in the PEFT layout (`adapter_config.json` + `adapter_model.safetensors`) without torch: empty
adapters written with numpy, uploaded archives unpacked safely and checked against their base model's linear
layers (from its registry metadata), stored adapters packed for download. Knows nothing of HTTP or the
registry; problems with what the caller gave are InvalidArgument naming the field."""

from __future__ import annotations

import gzip
import json
import math
import posixpath
import re
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from lyceum_core.errors import InvalidArgument, clip
from lyceum_core.lora import LYCEUM_ARCHITECTURE, MAX_R

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PICKLED_WEIGHTS_FILE = "adapter_model.bin"
ADAPTER_FILES = (CONFIG_FILE, WEIGHTS_FILE)
ArchiveFormat = Literal["tar.gz", "zip"]

# The peft release whose `LoraConfig.save_pretrained` the written config reproduces (a test compares them).
PEFT_VERSION = "0.21.2"
# Architectures whose linear layers are transformers' Conv1D (weight stored in x out): peft needs
# fan_in_fan_out there.
CONV1D_ARCHITECTURES = frozenset({"gpt2"})
# peft's names for a LoRA's weights in a saved state dict (the adapter's own name is not in them).
KEY_PREFIX = "base_model.model."
LORA_A, LORA_B = ".lora_A.weight", ".lora_B.weight"
FLOAT_DTYPES = frozenset({"F16", "BF16", "F32", "F64"})

# Bounds on what an upload may unpack to: the archive's entries, the config, the weights.
MAX_MEMBERS = 1000
MAX_CONFIG_BYTES = 1 << 20
MAX_WEIGHTS_BYTES = 4 << 30
MAX_PATTERN_LEN = 512
_COPY_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class BaseStructure:
    """What an adapter must fit: the base version's registry key (`owner/name@version`), its architecture and
    its LoRA-able linear layers by qualified name -> (in_features, out_features)."""

    key: str
    architecture: str
    linear_modules: dict[str, tuple[int, int]]

    @classmethod
    def from_metadata(cls, key: str, metadata: Mapping[str, Any], field: str = "base") -> BaseStructure:
        """InvalidArgument when the registration records no structure (registered before it was recorded)."""
        architecture, modules = metadata.get("architecture"), metadata.get("linear_modules")
        shapes = {
            name: (shape[0], shape[1])
            for name, shape in (modules.items() if isinstance(modules, dict) else ())
            if isinstance(shape, list) and len(shape) == 2 and all(isinstance(n, int) for n in shape)
        }
        if not (isinstance(architecture, str) and architecture and shapes and len(shapes) == len(modules)):
            raise InvalidArgument(
                f"base model {key} has no architecture and linear_modules in its metadata: register it "
                "again (with lyceum_ml.architecture.describe) to build adapters for it",
                field=field,
            )
        return cls(key, architecture, shapes)


@dataclass(frozen=True, slots=True)
class Lora:
    """A LoRA's hyperparameters; `target_modules` is a tuple of module names, or one regular expression."""

    r: int
    alpha: float
    dropout: float
    target_modules: tuple[str, ...] | str

    def as_metadata(self) -> dict[str, Any]:
        targets = self.target_modules
        return {
            "r": self.r,
            "alpha": self.alpha,
            "dropout": self.dropout,
            "target_modules": targets if isinstance(targets, str) else list(targets),
        }


def matches(name: str, targets: tuple[str, ...] | str) -> bool:
    """Whether peft adapts the module `name`: equal to a target or ending in `.target`; a string target is a
    regular expression the whole name must match."""
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(name == t or name.endswith("." + t) for t in targets)


def targeted(base: BaseStructure, targets: tuple[str, ...], field: str = "target_modules") -> list[str]:
    """The base's linear layers the targets adapt, in the base's order; InvalidArgument naming the first
    target that matches none of them."""
    for target in targets:
        if not any(matches(name, (target,)) for name in base.linear_modules):
            raise InvalidArgument(
                f"target module {clip(target)!r} matches no linear layer of {base.key} "
                f"(e.g. {', '.join(list(base.linear_modules)[:4])})",
                field=field,
            )
    return [name for name in base.linear_modules if matches(name, targets)]


def adapter_config(base: BaseStructure, lora: Lora) -> dict[str, Any]:
    """`adapter_config.json` as peft's `LoraConfig.save_pretrained` writes it for this LoRA (peft
    PEFT_VERSION): every field, keys sorted. Hugging Face bases are causal LMs to peft; Lyceum's is a plain
    module (no task type), as the sampler loads it."""
    targets = lora.target_modules
    alpha: float = int(lora.alpha) if float(lora.alpha).is_integer() else lora.alpha
    config: dict[str, Any] = {
        **_LORA_DEFAULTS,
        "base_model_name_or_path": base.key,
        "fan_in_fan_out": base.architecture in CONV1D_ARCHITECTURES,
        "lora_alpha": alpha,
        "lora_dropout": lora.dropout,
        "r": lora.r,
        "target_modules": targets if isinstance(targets, str) else sorted(targets),
        "task_type": None if base.architecture == LYCEUM_ARCHITECTURE else "CAUSAL_LM",
    }
    return dict(sorted(config.items()))


def write_empty(directory: Path, base: BaseStructure, lora: Lora, seed: int) -> list[str]:
    """Writes a LoRA that changes nothing yet into `directory`: A initialised as peft does (Kaiming-uniform
    with a = sqrt(5), i.e. U(-1/sqrt(in), 1/sqrt(in))), B zero. Returns the adapted modules."""
    assert not isinstance(lora.target_modules, str), "empty adapters name their target modules"
    modules = targeted(base, lora.target_modules)
    rng = np.random.default_rng(seed)
    tensors: dict[str, np.ndarray] = {}
    for name in modules:
        n_in, n_out = base.linear_modules[name]
        bound = 1.0 / math.sqrt(n_in)
        tensors[KEY_PREFIX + name + LORA_A] = rng.uniform(-bound, bound, (lora.r, n_in)).astype(np.float32)
        tensors[KEY_PREFIX + name + LORA_B] = np.zeros((n_out, lora.r), np.float32)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_FILE).write_text(json.dumps(adapter_config(base, lora), indent=2, sort_keys=True))
    save_file(tensors, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
    return modules


# --- uploads ------------------------------------------------------------------------------------------------


def extract_upload(file: IO[bytes], dest: Path, field: str = "file") -> Path:
    """Unpacks the PEFT files of an uploaded .tar, .tar.gz or .zip into `dest` (created) and returns it. The
    files may lie at the archive's root or in one folder; every entry must be a plain file or folder with a
    relative path inside the archive (no links, no '..'), and sizes are bounded. Only the config and the
    safetensors weights are written; nothing else in the archive is."""
    head = file.read(4)
    file.seek(0)
    try:
        if head.startswith(b"PK"):
            with zipfile.ZipFile(file) as archive:
                return _extract(_zip_entries(archive, field), dest, field)
        with tarfile.open(fileobj=file, mode="r:*") as archive:
            return _extract(_tar_entries(archive, field), dest, field)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, gzip.BadGzipFile) as exc:
        raise InvalidArgument(
            f"the upload is not a readable .tar, .tar.gz or .zip ({exc})", field=field
        ) from None


_Entry = tuple[str, int, Any]  # (normalised path, declared size, opener)


def _safe_name(raw: str, field: str) -> str:
    name = raw.rstrip("/")
    parts = name.split("/")
    if not name or raw.startswith("/") or "\\" in raw or re.match(r"^[A-Za-z]:", raw) or ".." in parts:
        raise InvalidArgument(f"archive entry {clip(raw)!r} points outside the archive", field=field)
    return posixpath.normpath(name)


def _tar_entries(archive: tarfile.TarFile, field: str) -> Iterator[_Entry]:
    for count, member in enumerate(archive, 1):
        if count > MAX_MEMBERS:
            raise InvalidArgument(f"the archive has more than {MAX_MEMBERS} entries", field=field)
        name = _safe_name(member.name, field)
        if member.isdir():
            continue
        if not member.isfile():
            raise InvalidArgument(f"archive entry {clip(member.name)!r} is not a plain file", field=field)
        yield name, member.size, lambda m=member: archive.extractfile(m)


def _zip_entries(archive: zipfile.ZipFile, field: str) -> Iterator[_Entry]:
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise InvalidArgument(f"the archive has more than {MAX_MEMBERS} entries", field=field)
    for info in infos:
        name = _safe_name(info.filename, field)
        if info.is_dir():
            continue
        kind = stat.S_IFMT(info.external_attr >> 16)  # 0: made where file types are not recorded
        if kind and kind != stat.S_IFREG:
            raise InvalidArgument(f"archive entry {clip(info.filename)!r} is not a plain file", field=field)
        yield name, info.file_size, lambda i=info: archive.open(i)


def _extract(entries: Iterator[_Entry], dest: Path, field: str) -> Path:
    files = {name: (size, opener) for name, size, opener in entries}
    configs = [n for n in files if posixpath.basename(n) == CONFIG_FILE and n.count("/") <= 1]
    if len(configs) != 1:
        where = "several places" if configs else "neither the archive's root nor its folder"
        raise InvalidArgument(f"{CONFIG_FILE} must be in one place; found in {where}", field=field)
    folder = posixpath.dirname(configs[0])
    weights = posixpath.join(folder, WEIGHTS_FILE)
    if weights not in files:
        if posixpath.join(folder, PICKLED_WEIGHTS_FILE) in files:
            raise InvalidArgument(
                f"{PICKLED_WEIGHTS_FILE} (pickled weights) is refused: save the adapter as {WEIGHTS_FILE} "
                "(peft's save_pretrained does by default)",
                field=field,
            )
        raise InvalidArgument(f"the archive has {CONFIG_FILE} but no {WEIGHTS_FILE} beside it", field=field)
    dest.mkdir(parents=True, exist_ok=True)
    for name, limit in ((configs[0], MAX_CONFIG_BYTES), (weights, MAX_WEIGHTS_BYTES)):
        size, opener = files[name]
        if size > limit:
            raise InvalidArgument(f"{name} is larger than {limit} bytes", field=field)
        with opener() as source, open(dest / posixpath.basename(name), "wb") as target:
            _copy_bounded(source, target, limit, name, field)
    return dest


def _copy_bounded(source: IO[bytes], target: IO[bytes], limit: int, name: str, field: str) -> None:
    """Copies at most `limit` bytes: the sizes an archive declares are not trusted."""
    copied = 0
    while chunk := source.read(_COPY_CHUNK):
        copied += len(chunk)
        if copied > limit:
            raise InvalidArgument(f"{name} is larger than {limit} bytes", field=field)
        target.write(chunk)


def check_adapter(directory: Path, base: BaseStructure, field: str = "file") -> Lora:
    """The LoRA of a PEFT adapter directory, checked against the base: a LoRA config, and for every tensor
    a LoRA A or B weight of a linear layer the config targets, shaped (r x in) or (out x r), both present.
    InvalidArgument naming the first problem."""
    config = _read_config(directory / CONFIG_FILE, field)
    lora = _lora_of(config, field)
    targets = lora.target_modules
    if not isinstance(targets, str):
        targeted(base, targets, field)
    rank_pattern = config.get("rank_pattern") or {}
    if not isinstance(rank_pattern, dict):
        raise InvalidArgument(f"{CONFIG_FILE}: rank_pattern must be an object", field=field)
    seen: dict[str, set[str]] = {}
    try:
        with safe_open(str(directory / WEIGHTS_FILE), framework="np") as weights:
            for key in weights.keys():
                tensor = weights.get_slice(key)
                module, part = _module_of(key, field)
                if module not in base.linear_modules:
                    raise InvalidArgument(
                        f"tensor {key!r}: {base.key} has no linear layer {module!r}", field=field
                    )
                if not matches(module, targets):
                    raise InvalidArgument(
                        f"tensor {key!r}: {module!r} is not among target_modules", field=field
                    )
                if tensor.get_dtype() not in FLOAT_DTYPES:
                    raise InvalidArgument(f"tensor {key!r} has dtype {tensor.get_dtype()}", field=field)
                n_in, n_out = base.linear_modules[module]
                r = _rank(module, rank_pattern, lora.r)
                expected = [r, n_in] if part == LORA_A else [n_out, r]
                if list(tensor.get_shape()) != expected:
                    raise InvalidArgument(
                        f"tensor {key!r} has shape {list(tensor.get_shape())}, {base.key} needs {expected}",
                        field=field,
                    )
                seen.setdefault(module, set()).add(part)
    except SafetensorError as exc:
        raise InvalidArgument(
            f"{WEIGHTS_FILE} is not a readable safetensors file ({exc})", field=field
        ) from None
    if not seen:
        raise InvalidArgument(f"{WEIGHTS_FILE} holds no tensors", field=field)
    for module, parts in seen.items():
        if len(parts) != 2:
            missing = LORA_B if LORA_A in parts else LORA_A
            raise InvalidArgument(f"tensor {KEY_PREFIX + module + missing!r} is missing", field=field)
    return lora


def _read_config(path: Path, field: str) -> dict[str, Any]:
    try:
        config = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"{CONFIG_FILE} is not valid JSON ({exc})", field=field) from None
    if not isinstance(config, dict):
        raise InvalidArgument(f"{CONFIG_FILE} must hold a JSON object", field=field)
    if config.get("peft_type") != "LORA":
        raise InvalidArgument(
            f"{CONFIG_FILE}: peft_type is {clip(str(config.get('peft_type')))!r}; only LORA adapters are "
            "supported",
            field=field,
        )
    return config


def _lora_of(config: dict[str, Any], field: str) -> Lora:
    r, alpha, dropout = config.get("r"), config.get("lora_alpha"), config.get("lora_dropout", 0.0)
    targets = config.get("target_modules")
    if not (isinstance(r, int) and not isinstance(r, bool) and 1 <= r <= MAX_R):
        raise InvalidArgument(f"{CONFIG_FILE}: r must be an integer in [1, {MAX_R}]", field=field)
    if not (_is_number(alpha) and alpha > 0):
        raise InvalidArgument(f"{CONFIG_FILE}: lora_alpha must be a positive number", field=field)
    if not (_is_number(dropout) and 0 <= dropout < 1):
        raise InvalidArgument(f"{CONFIG_FILE}: lora_dropout must be in [0, 1)", field=field)
    if isinstance(targets, str) and 0 < len(targets) <= MAX_PATTERN_LEN:
        try:
            re.compile(targets)
        except re.error as exc:
            raise InvalidArgument(
                f"{CONFIG_FILE}: target_modules is no valid pattern ({exc})", field=field
            ) from None
        return Lora(r, alpha, dropout, targets)
    if not (isinstance(targets, list) and targets and all(isinstance(t, str) and t for t in targets)):
        raise InvalidArgument(f"{CONFIG_FILE}: target_modules must name modules", field=field)
    return Lora(r, alpha, dropout, tuple(sorted(set(targets))))


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _module_of(key: str, field: str) -> tuple[str, str]:
    """`base_model.model.<module>.lora_A.weight` -> (module, LORA_A)."""
    for part in (LORA_A, LORA_B):
        if key.startswith(KEY_PREFIX) and key.endswith(part) and len(key) > len(KEY_PREFIX) + len(part):
            return key[len(KEY_PREFIX) : -len(part)], part
    raise InvalidArgument(
        f"tensor {clip(key)!r} is not a LoRA weight ({KEY_PREFIX}<module>{LORA_A} or {LORA_B})", field=field
    )


def _rank(module: str, rank_pattern: dict[str, Any], r: int) -> int:
    """The module's rank: peft's rank_pattern (a key matching the name's end) overrides r."""
    for pattern, rank in rank_pattern.items():
        if re.match(rf"(.*\.)?({pattern})$", module):
            return int(rank)
    return r


# --- downloads ----------------------------------------------------------------------------------------------


def pack(directory: Path, folder: str, fmt: ArchiveFormat, out: IO[bytes]) -> None:
    """Writes the adapter's PEFT files into `out` as a .tar.gz or .zip, inside `folder`; the same files pack
    to the same bytes (no timestamps or owners)."""
    if fmt == "zip":
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
            for name in ADAPTER_FILES:
                info = zipfile.ZipInfo(f"{folder}/{name}", date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = (stat.S_IFREG | 0o644) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                with open(directory / name, "rb") as source, archive.open(info, "w") as target:
                    shutil.copyfileobj(source, target, _COPY_CHUNK)
        return
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as compressed:
        with tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as archive:
            for name in ADAPTER_FILES:
                path = directory / name
                info = tarfile.TarInfo(f"{folder}/{name}")
                info.size, info.mode = path.stat().st_size, 0o644
                with open(path, "rb") as source:
                    archive.addfile(info, source)


# Every field peft 0.21.2's LoraConfig.save_pretrained writes, at its default value (the per-adapter ones
# are set in adapter_config).
_LORA_DEFAULTS: dict[str, Any] = {
    "alora_invocation_tokens": None,
    "alpha_pattern": {},
    "arrow_config": None,
    "auto_mapping": None,
    "bias": "none",
    "corda_config": None,
    "ensure_weight_tying": False,
    "eva_config": None,
    "exclude_modules": None,
    "inference_mode": False,
    "init_lora_weights": True,
    "kasa_config": None,
    "layer_replication": None,
    "layers_pattern": None,
    "layers_to_transform": None,
    "loftq_config": {},
    "lora_bias": False,
    "lora_ga_config": None,
    "megatron_config": None,
    "megatron_core": "megatron.core",
    "modules_to_save": None,
    "monteclora_config": None,
    "peft_type": "LORA",
    "peft_version": PEFT_VERSION,
    "qalora_group_size": 16,
    "rank_pattern": {},
    "revision": None,
    "target_parameters": None,
    "trainable_token_indices": None,
    "use_bdlora": None,
    "use_dora": False,
    "use_qalora": False,
    "use_rslora": False,
    "velora_config": None,
}
