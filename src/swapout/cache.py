"""Where swapout keeps files it can always rebuild: compiled kernels and decoded datasets."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir() -> Path:
    """``$SWAPOUT_CACHE``, else ``swapout`` in the per-user cache directory (``$XDG_CACHE_HOME`` or ~/.cache)."""
    if os.environ.get("SWAPOUT_CACHE"):
        return Path(os.environ["SWAPOUT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or (Path.home() / ".cache")
    return Path(base) / "swapout"
