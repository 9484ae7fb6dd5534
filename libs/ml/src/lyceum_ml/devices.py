"""Where models run and how much memory their KV caches may take: the choices the serving processes share."""

from __future__ import annotations

import os

import torch

# Of the memory left once the model is loaded: most of a GPU (that is what it is for), a quarter of a host's
# available RAM (which several processes may share).
CACHE_FRACTION = {"cuda": 0.8, "cpu": 0.25}


def resolve_device(name: str) -> torch.device:
    """`auto` is CUDA when available, else CPU; anything else is a torch device name."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """Explicit precision, no autocast: bf16 on CUDA and fp32 on CPU unless configured otherwise."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def free_memory_bytes(device: torch.device) -> int:
    """Memory free for new allocations now: the GPU's (driver view) or the host's available RAM."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def default_cache_budget(device: torch.device, fraction: float | None = None, reserved_bytes: int = 0) -> int:
    """The KV-cache budget when none is configured: `fraction` (default by device kind, `CACHE_FRACTION`)
    of the memory free now, less `reserved_bytes` kept for what loads later (e.g. lazily loaded models)."""
    if fraction is None:
        fraction = CACHE_FRACTION.get(device.type, CACHE_FRACTION["cpu"])
    return int(max(free_memory_bytes(device) - reserved_bytes, 0) * fraction)


def free_memory(device: torch.device) -> int:
    """Runs the garbage collector and returns the accelerator allocator's cached, unused blocks to the
    device; the bytes released (0 on CPU, where freed tensors go back to the system allocator at once)."""
    import gc

    gc.collect()
    if device.type != "cuda":
        return 0
    before = torch.cuda.memory_reserved(device)
    torch.cuda.empty_cache()
    return max(0, before - torch.cuda.memory_reserved(device))
