"""What every reader of CIFAR shares: the datasets' constants, the `Split` they produce, their errors.

Kept apart from the readers (`swapout.data.files` and the compact copy's `swapout.data.compact`) so
that each reader imports it, and not the other.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["DATASETS", "NUM_CLASSES", "MEAN", "STD", "SPLIT_SIZES", "DataError", "Split", "check_digest"]

DATASETS = ("cifar10", "cifar100")
"""The names of the datasets the readers know."""
NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
"""Number of classes of each dataset, by name."""
# Per-channel mean and standard deviation of the 50,000 training images (RGB, on a 0..1 scale).
MEAN = {"cifar10": (0.4914, 0.4822, 0.4465), "cifar100": (0.5071, 0.4865, 0.4409)}
"""Per-channel (R, G, B) mean of each dataset's 50,000 training images, on a 0..1 scale, by name."""
STD = {"cifar10": (0.2470, 0.2435, 0.2616), "cifar100": (0.2673, 0.2564, 0.2762)}
"""Per-channel (R, G, B) standard deviation of each dataset's 50,000 training images, on a 0..1 scale, by name."""

SPLIT_SIZES = {"train": 50_000, "test": 10_000}


class DataError(ValueError):
    """Missing, truncated, corrupt or unsafe data; the message names the file and what was expected."""


@dataclass
class Split:
    """One split in memory: ``images`` uint8 (N, 32, 32, 3) RGB, ``labels`` int64 (N,).

    ``exact`` is a bool mask of images known to be bit-exact (all True except the compact copy's
    twenty approximate CIFAR-10 test images); ``source`` says where the data came from.

    Args:
        images: the images, uint8 ``(N, 32, 32, 3)``, RGB.
        labels: the class of each image, int64 ``(N,)``.
        exact: bool ``(N,)``, True for each image known to be bit-exact.
        source: where the data came from: the file, folder or archive read.
    """

    images: np.ndarray
    labels: np.ndarray
    exact: np.ndarray
    source: str

    def __len__(self) -> int:
        return len(self.labels)


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_digest(path: Path, expected: str, algorithm: str,
                 remedy: str = "delete it and download the official archive again") -> None:
    """DataError naming ``path`` unless its digest is ``expected``; ``remedy`` says what to do."""
    try:
        actual = _digest(path, algorithm)
    except OSError as err:  # a folder where the file should be, or one that cannot be read
        raise DataError(f"{path}: cannot be read as a file ({err.strerror or err}); {remedy}") from None
    if actual != expected:
        raise DataError(f"{path}: {algorithm.upper()} is {actual}, expected {expected}; the file is truncated, "
                        f"corrupt or not the one expected; {remedy}")
