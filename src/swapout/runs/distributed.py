"""Where a process runs: its device, its place in a torchrun process group, its signals.

One code path serves single-process and data-parallel training (as in nanoGPT): `process_group`
joins the group when torchrun started several processes and is a no-op otherwise.
"""

from __future__ import annotations

import datetime
import os
import platform
import signal
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional

import torch
import torch.distributed as dist

from ..progress import plural

__all__ = ["resolve_device", "Process", "process_group", "stop_signals"]


def resolve_device(name: str) -> torch.device:
    """``"auto"`` picks CUDA when available, else the CPU; anything else must name an available device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}") from None
    if device.type not in ("cpu", "cuda") or (device.type == "cpu" and device.index not in (None, 0)):
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

    def describe(self) -> str:
        """The hardware, in words, for logs and results: "NVIDIA H100 ...", "cpu (x86_64, 2 threads)"."""
        if self.device.type == "cuda":
            name = torch.cuda.get_device_name(self.device)
        else:
            name = f"cpu ({platform.processor() or platform.machine()}, {plural(torch.get_num_threads(), 'thread')})"
        return name if self.world == 1 else f"{self.world} processes, each {name}"

    def rng_state(self) -> Dict[str, Any]:
        """This process's random generator states (CPU, and its GPU's), for a checkpoint."""
        state = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def set_rng_state(self, state: Dict[str, Any]) -> None:
        """Restore what `rng_state` returned."""
        torch.set_rng_state(state["torch"])
        if self.device.type == "cuda" and "cuda" in state:
            torch.cuda.set_rng_state(state["cuda"], self.device)

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
    completed = False
    try:
        yield Process(dist.get_rank(), dist.get_world_size(), device)
        completed = True
    finally:
        if joined and dist.is_initialized():
            if completed:  # leave together: a process tearing down while another still talks can abort
                dist.barrier()
            dist.destroy_process_group()


@contextmanager
def stop_signals() -> Iterator[Dict[str, Optional[str]]]:
    """SIGINT and SIGTERM record their name in the yielded dict (``"name"``) instead of stopping the process.

    The training loop looks at it between steps, writes a checkpoint and returns, so a Ctrl-C or a
    scheduler's SIGTERM loses nothing. Outside the main thread signals are left alone.
    """
    received: Dict[str, Optional[str]] = {"name": None}

    def handler(signum, frame):
        received["name"] = signal.Signals(signum).name

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:
            pass
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
