"""CIFAR in a compact lossless form: label archives plus WebP tile grids, for machines without the archives.

Each split is ``NAME.npz`` (``labels``; CIFAR-10's test split also ``lossless``, False for twenty
images that are approximate) plus its images as 32x32 RGB tiles, row-major, in ``NAME.webp`` or
``NAME.0.webp`` and ``NAME.1.webp``. Each file is checked against its SHA-256 below (unless the caller
turns verification off).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from ..cache import cache_dir
from .cifar import SPLIT_SIZES, DataError, Split, check_digest

__all__ = ["read_compact", "COMPACT_SHA256"]

# SHA-256 of the compact lossless copy's files.
COMPACT_SHA256 = {
    "cifar10-train.0.webp": "00c1b7ae577eabd5388c4a62ce096e10c0af5376b78cc7210e591cc38b713003",
    "cifar10-train.1.webp": "2c7c1138fed6c13d2550a158700c4204917b206fd2ff18fde95a2b4b0a3642e2",
    "cifar10-train.npz": "4f7279fa8cc52d9c1f430d1ee19c9b1f9bca7373ab527224427e769c8f1fc493",
    "cifar10-test.webp": "110ab725da0ff2d4eaec28a5ac330b1ee4f62c79f6e7be904e9fab5e528f672d",
    "cifar10-test.npz": "95512cda98c335c2289c440d9debd891417499872c4fa0b0401dfe9e8f6ac5c2",
    "cifar100-train.0.webp": "0a4603c04448b6dfa08da433b4d24b7fff698ca07dd0c69658a591a31632c2fb",
    "cifar100-train.1.webp": "9cd75fdcc2de876dab14b6654d358aeae65b30a6af1f9747fad642f0d2c84263",
    "cifar100-train.npz": "b63078e641c03fc8f263771f192730b4b4d297d7b28145561ff4dae3011021e5",
    "cifar100-test.webp": "5103545e67ac0fed17b680f566114a386ad8d5d8aa4b41c188d235a3962f8360",
    "cifar100-test.npz": "22a4270a7d4881044024ea010a09815689dbfae27d18d48af4a17fe2b6d88c73",
}


def read_compact(dataset: str, split: str, data_dir: Path, verify: bool) -> Split:
    """One split from the compact copy in ``data_dir``, each file checked against its SHA-256 if ``verify``."""
    prefix = f"{dataset}-{split}"
    # the parts the copy is made of, so that a missing one is named; a split of another layout, by what is there
    known = sorted(n for n in COMPACT_SHA256 if n.startswith(f"{prefix}.") and n.endswith(".webp"))
    webps = [data_dir / n for n in known] or sorted(data_dir.glob(f"{prefix}.[0-9].webp")) or \
        [data_dir / f"{prefix}.webp"]
    files = webps + [data_dir / f"{prefix}.npz"]
    for path in files:
        if not path.exists():
            raise DataError(f"{path}: missing; the compact copy of {prefix} needs {', '.join(p.name for p in files)}")
    for path in files:
        if verify and path.name in COMPACT_SHA256:
            check_digest(path, COMPACT_SHA256[path.name], "sha256",
                         "copy the compact folder again from where it came, or use the official archive")
    # Decoding the WebP grids takes seconds; a verified copy's pixels are kept decoded in the cache.
    key = "-".join(COMPACT_SHA256.get(p.name, "")[:16] for p in webps)
    cached = cache_dir() / "decoded" / f"{prefix}-{key}.npy"
    images = None
    if verify and all(p.name in COMPACT_SHA256 for p in webps) and cached.exists():
        try:
            images = np.load(cached, allow_pickle=False)
        except (OSError, ValueError):
            images = None
        if images is not None and images.shape != (SPLIT_SIZES[split], 32, 32, 3):
            images = None  # a damaged cache entry: decode again
    if images is None:
        images = np.ascontiguousarray(np.concatenate([_tiles(p) for p in webps]))
        if verify and all(p.name in COMPACT_SHA256 for p in webps):
            _save_quietly(images, cached)
    try:
        with np.load(files[-1], allow_pickle=False) as archive:
            labels = archive["labels"].astype(np.int64)
            exact = archive["lossless"].astype(bool) if "lossless" in archive else np.ones(len(labels), bool)
    except Exception as err:
        raise DataError(f"{files[-1]}: not a readable label archive with 'labels' ({err})") from None
    if len(images) != SPLIT_SIZES[split] or len(labels) != len(images) or len(exact) != len(images):
        raise DataError(f"{prefix}: expected {SPLIT_SIZES[split]:,} images and labels, got {len(images):,} "
                        f"images and {len(labels):,} labels")
    return Split(images, labels, exact, f"{data_dir} (compact lossless copy)")


def _tiles(path: Path) -> np.ndarray:
    """The 32x32 tiles of one WebP grid, row-major, as (N, 32, 32, 3) uint8."""
    try:
        with Image.open(path) as img:
            grid = np.asarray(img.convert("RGB"))
    except Exception as err:
        raise DataError(f"{path}: not a readable WebP image ({err})") from None
    h, w, _ = grid.shape
    if h % 32 or w % 32:
        raise DataError(f"{path}: {w}x{h} pixels is not a grid of 32x32 tiles")
    return grid.reshape(h // 32, 32, w // 32, 32, 3).transpose(0, 2, 1, 3, 4).reshape(-1, 32, 32, 3)


def _save_quietly(images: np.ndarray, path: Path) -> None:
    """Write ``path`` atomically; a cache that cannot be written is simply not used."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            np.save(fh, images, allow_pickle=False)
        os.replace(tmp, path)
    except OSError:
        pass
