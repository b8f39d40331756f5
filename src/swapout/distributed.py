"""Where a process runs: its device, and its place in a torchrun process group.

One code path serves single-process and data-parallel training (as in nanoGPT): :func:`process_group`
joins the group when torchrun started several processes and is a no-op otherwise.
"""

from __future__ import annotations

import datetime
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, List

import torch
import torch.distributed as dist

__all__ = ["resolve_device", "Process", "process_group"]


def resolve_device(name: str) -> torch.device:
    """``"auto"`` picks CUDA when available, else the CPU; anything else must name an available device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available here; use --device cpu")
    return device


@dataclass(frozen=True)
class Process:
    """This process: its rank, the number of processes, and its device."""

    rank: int
    world: int
    device: torch.device

    @property
    def lead(self) -> bool:
        """The first process writes files, logs and draws progress bars."""
        return self.rank == 0

    def gather(self, obj: Any) -> List[Any]:
        """``obj`` from every process, in rank order (a list of one without a process group)."""
        if self.world == 1:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def any(self, *flags: bool) -> List[bool]:
        """For each flag, whether any process raised it (a signal, a non-finite loss)."""
        if self.world == 1:
            return [bool(f) for f in flags]
        t = torch.tensor([float(f) for f in flags], device=self.device)
        dist.all_reduce(t)
        return [bool(v) for v in t.tolist()]


@contextmanager
def process_group(device_name: str) -> Iterator[Process]:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1), and leave it on exit.

    The backend is NCCL for CUDA and gloo for the CPU; each process uses the GPU of its LOCAL_RANK.
    ``SWAPOUT_DIST_TIMEOUT`` (seconds, default 300) bounds how long a collective waits for a process
    that has died, for launchers that do not stop the others themselves.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_name)
    if world <= 1:
        yield Process(0, 1, device)
        return
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    joined = not dist.is_initialized()
    if joined:
        timeout = datetime.timedelta(seconds=float(os.environ.get("SWAPOUT_DIST_TIMEOUT", "300")))
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timeout)
    try:
        yield Process(dist.get_rank(), dist.get_world_size(), device)
    finally:
        if joined and dist.is_initialized():
            dist.destroy_process_group()
