"""Where a training process sits in a torchrun launch, and the plumbing every trainer shares: process-group
set-up (NCCL on GPUs, gloo on CPUs), bf16 autocast where the device has it, DDP's no_sync and barriers."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

Precision = Literal["auto", "fp32", "bf16"]


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in a torchrun launch; a plain process is rank 0 of 1."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1


def dist_env() -> DistEnv:
    return DistEnv(
        rank=int(os.environ.get("RANK", 0)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
    )


def init_distributed(env: DistEnv) -> torch.device:
    """Joins the launch's process group (once) and returns this rank's device."""
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if torch.cuda.is_available():
        torch.cuda.set_device(env.local_rank)
        return torch.device("cuda", env.local_rank)
    return torch.device("cpu")


def autocast_dtype(precision: Precision, device: torch.device) -> torch.dtype | None:
    """bf16 under "bf16" or "auto" on a CUDA device ("auto" only if it supports bf16); None = plain fp32."""
    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "auto" and not torch.cuda.is_bf16_supported():
        return None
    return torch.bfloat16


def autocast(dtype: torch.dtype | None, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def no_sync(ddp: DistributedDataParallel | None, skip: bool) -> contextlib.AbstractContextManager[Any]:
    """DDP: no gradient all-reduce on the micro-batches before the last one of a step."""
    if skip and ddp is not None:
        return ddp.no_sync()
    return contextlib.nullcontext()


def barrier(env: DistEnv) -> None:
    if env.world_size > 1:
        dist.barrier()
