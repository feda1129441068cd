"""Process-group setup for ``torchrun`` (NCCL on GPUs, gloo on CPU) and small helpers.

Without ``WORLD_SIZE`` in the environment everything runs as a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pretrain.config import PretrainError

import torch
import torch.distributed as dist


@dataclass(frozen=True, slots=True)
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """True on the rank that writes logs, metrics and checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when a process group is in use."""
        return self.world_size > 1


def resolve_device(kind: str, local_rank: int = 0) -> torch.device:
    """``cpu`` or ``cuda:<local_rank>``; a clear error when CUDA is asked for but absent.

    ``auto`` means CUDA when available, else CPU.
    """
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise PretrainError("--device cuda was requested but no CUDA device is available; "
                               "use --device cpu")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def init_distributed(kind: str) -> DistInfo:
    """Join the ``torchrun`` process group if there is one.

    The backend is NCCL for CUDA and gloo for CPU.  ``torchrun`` sets ``RANK``,
    ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(kind, local_rank)
    if world <= 1:
        return DistInfo(device=device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, device)


def shutdown(info: DistInfo) -> None:
    """Leave the process group (no-op for a single process)."""
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()


def mean_across_ranks(value: float, info: DistInfo) -> float:
    """Average of a float over all ranks (every rank must call this)."""
    if not info.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return float(t.item()) / info.world_size


def barrier(info: DistInfo) -> None:
    """Wait for all ranks (no-op for a single process)."""
    if info.distributed:
        dist.barrier()
