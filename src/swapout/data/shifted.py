"""Corrupted test sets generated from a seed, cached once with a SHA-256 checksum.

`shifted_images` applies one corruption of `swapout.data.corruptions` at one severity to a
set of uint8 images. The random draws come from a generator seeded by (seed, corruption, severity,
chunk of 1,000 images), so the same inputs and seed always give the same images. The result is kept
under the cache directory (``$SWAPOUT_CACHE``, see `swapout.cache`) in
``shift/shift-v2-<dataset>-<corruption>-<severity>-<seed>-<n>-<inputs>.npz``, where ``<inputs>``
starts the SHA-256 of the clean images; the file also holds the SHA-256 of the corrupted images,
checked on every load: a file that fails the check (or cannot be read) is generated again.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..cache import cache_dir
from .corruptions import check_corruptions, check_severities, corrupt

__all__ = ["shifted_images", "shift_cache_path", "images_digest", "CHUNK"]

CHUNK = 1000  # images per batch of random draws; part of what makes a set reproducible
# bump when a corruption changes, so that old cached sets are not reused (v2: motion blur and snow's
# streaks turned by 90 degrees, to ImageMagick's direction)
_VERSION = "v2"


def images_digest(images: np.ndarray) -> str:
    """SHA-256 (hex) of an array's shape, dtype and bytes."""
    h = hashlib.sha256(f"{images.shape}{images.dtype}".encode())
    h.update(np.ascontiguousarray(images).tobytes())
    return h.hexdigest()


def shift_cache_path(dataset: str, corruption: str, severity: int, seed: int, images: np.ndarray,
                     root: Optional[Union[str, os.PathLike[str]]] = None) -> Path:
    """Where the corrupted copy of ``images`` is cached (``root`` defaults to ``cache_dir()/shift``)."""
    root = Path(root) if root is not None else cache_dir() / "shift"
    return root / (f"shift-{_VERSION}-{dataset}-{corruption}-{severity}-{seed}-{len(images)}-"
                   f"{images_digest(images)[:16]}.npz")


def _generate(images: np.ndarray, corruption: str, severity: int, seed: int) -> np.ndarray:
    key = zlib.crc32(corruption.encode())  # stable across runs and Python versions, unlike hash()
    out = np.empty_like(images)
    for k, lo in enumerate(range(0, len(images), CHUNK)):
        rng = np.random.default_rng([seed, key, severity, k])
        out[lo:lo + CHUNK] = corrupt(images[lo:lo + CHUNK], corruption, severity, rng)
    return out


def _load(path: Path) -> Optional[np.ndarray]:
    """The cached images if the file reads and its checksum matches, else None."""
    try:
        with np.load(path) as f:
            images, expected = f["images"], str(f["sha256"])
    except Exception:  # a truncated or foreign file: generate again
        return None
    return images if images_digest(images) == expected else None


def shifted_images(images: np.ndarray, corruption: str, severity: int, seed: int = 0, dataset: str = "cifar10",
                   cache: bool = True, root: Optional[Union[str, os.PathLike[str]]] = None) -> np.ndarray:
    """``images`` with ``corruption`` at ``severity``, generated in the manner of CIFAR-10-C from ``seed``.

    Cached (see the module's note) unless ``cache`` is False.

    Args:
        images: clean images, uint8 ``(N, H, W, 3)`` RGB; any 32 x 32 RGB images work, CIFAR-100 included.
        corruption: name of a corruption of `swapout.data.corruptions`.
        severity: corruption strength, 1 (mildest) to 5.
        seed: integer >= 0 that, with the corruption, severity and chunk of images, seeds the random draws.
        dataset: only names the cache file.
        cache: read the corrupted set from the cache if there, and write it there otherwise; if False,
            generate it and touch no file.
        root: folder of the cache files; ``cache_dir()/shift`` if None.

    Returns:
        The corrupted images, with the shape and dtype of ``images``.

    Raises:
        ValueError: for an unknown corruption, a severity outside 1-5, or a seed that is not an integer >= 0.
    """
    check_corruptions([corruption])
    check_severities([severity])
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if not cache:
        return _generate(images, corruption, severity, int(seed))
    path = shift_cache_path(dataset, corruption, severity, int(seed), images, root)
    if path.exists():
        cached = _load(path)
        if cached is not None and cached.shape == images.shape:
            return cached
    out = _generate(images, corruption, severity, int(seed))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, images=out, sha256=np.array(images_digest(out)))
    os.replace(tmp, path)
    return out
