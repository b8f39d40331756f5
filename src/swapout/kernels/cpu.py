"""The fused swapout kernel for the CPU: ``csrc/swapout_cpu.c`` compiled at first use and loaded with ctypes.

The C file includes no PyTorch headers, so it builds with the system compiler in about a second and
works with any PyTorch version. The library is cached per user, under a key made of the source, the
compiler and the processor's features, since ``-march=native`` code must not run on another processor.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable, List, Optional

from ..cache import cache_dir

__all__ = ["load_library"]

_SOURCE = Path(__file__).with_name("csrc") / "swapout_cpu.c"


def _cpu_flags() -> str:
    # -march=native code must not be reused on a different processor: the cache key names its features.
    try:
        with open("/proc/cpuinfo") as fh:
            return next((line for line in fh if line.startswith(("flags", "Features"))), "")
    except OSError:
        return platform.processor()


def _compile(target: Path) -> Optional[str]:
    """Build the CPU kernel into ``target``; returns an error message, or None on success."""
    compiler = os.environ.get("CC", "cc")
    attempts = [["-O3", "-march=native", "-fopenmp"], ["-O3", "-fopenmp"], ["-O3"]]
    target.parent.mkdir(parents=True, exist_ok=True)
    error = "no attempt made"
    for flags in attempts:
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
        cmd = [compiler, *flags, "-shared", "-fPIC", "-std=c99", str(_SOURCE), "-o", tmp]
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as err:
            os.unlink(tmp)
            return f"{compiler} could not be run ({err})"
        if result.returncode == 0:
            os.replace(tmp, target)  # atomic: a concurrent process sees the old file or the new one
            return None
        os.unlink(tmp)
        error = (result.stderr.strip().splitlines() or ["unknown error"])[-1]
    return f"{compiler} failed: {error}"


def load_library(warn: Callable[[str], None]):
    """Build (once per machine and source) and load the CPU kernel; ``warn(reason)`` and None if impossible."""
    source = _SOURCE.read_bytes()
    key = hashlib.sha256(source + _cpu_flags().encode() + os.environ.get("CC", "cc").encode()
                         + platform.machine().encode()).hexdigest()[:16]
    target = cache_dir() / f"swapout_cpu_{key}.so"
    if not target.exists():
        try:
            error = _compile(target)
        except OSError as err:
            error = f"cannot write to {target.parent} ({err})"
        if error:
            warn(error)
            return None
    lib = ctypes.CDLL(str(target))
    pointers = [ctypes.c_void_p] * 3
    scalars: List[Any] = [ctypes.c_int64, ctypes.c_uint64, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_int]
    for name in ("swapout_fwd_f32", "swapout_fwd_f64", "swapout_bwd_f32", "swapout_bwd_f64"):
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = pointers + scalars, None
    lib.swapout_masks.argtypes, lib.swapout_masks.restype = [ctypes.c_void_p] + scalars, None
    return lib
