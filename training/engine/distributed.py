"""Device selection, seeding and the DistributedDataParallel process group.

``torchrun --nproc_per_node=N -m service.cli train ...`` sets ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``;
:func:`setup` then joins the process group (gloo on CPU, nccl on CUDA). Without them, it is a single process.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """Where this process runs and which share of the work it does."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """True on the process that writes files and evaluates (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        """Wait for every rank (no-op in a single process)."""
        if self.distributed:
            dist.barrier()


def select_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` → CUDA if available else CPU; ``cuda`` without a GPU is an error.

    Raises:
        ValueError: Unknown name, or ``cuda`` requested on a machine without CUDA.
    """
    if name not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be one of auto, cpu, cuda; got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available (use --device cpu or auto)")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


def setup(device_name: str) -> DistContext:
    """Join the process group when launched by torchrun, else describe a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = select_device(device_name, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def teardown() -> None:
    """Leave the process group, if any."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def any_rank(flag: bool, ctx: DistContext) -> bool:
    """True if ``flag`` is true on any rank (every rank gets the same answer)."""
    if not ctx.distributed:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=ctx.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def average_gradients(params: list[torch.nn.Parameter], ctx: DistContext) -> None:
    """Average the gradients of parameters DDP does not manage (the center-loss centers) over ranks."""
    if not ctx.distributed:
        return
    for param in params:
        if param.grad is not None:
            dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)
            param.grad.div_(ctx.world_size)


def broadcast_from_main(module: torch.nn.Module | None, ctx: DistContext) -> None:
    """Copy rank 0's parameters of a module DDP does not wrap (the center-loss centers) to every rank.

    Each rank seeds its own initialisation (``seed + rank``); without this, the centers would start, and stay,
    different on every rank although their gradients are averaged.
    """
    if module is None or not ctx.distributed:
        return
    with torch.no_grad():
        for param in module.parameters():
            dist.broadcast(param.data, src=0)
