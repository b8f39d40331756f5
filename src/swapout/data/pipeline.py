"""The input pipeline: the dataset as one uint8 tensor on the training device, augmented per batch there.

Augmentation follows the paper (section 4): per-image random left-right flips, and a random
translation of up to 4 pixels (zero-pad by 4, take a random 32x32 crop) with **one crop for the whole
mini-batch** (``crop="batch"``; ``crop="image"`` draws one per image). Images are normalised per
channel before padding, so the padding is the mean colour.

All randomness of an epoch (the order, the flips, the crops) comes from a generator seeded by
``(seed, epoch)``, so an epoch is the same wherever it is replayed and can be resumed at any step.
For data-parallel training each rank takes a disjoint, equal slice of every global batch, and all
ranks use the same crop for a given global batch.
"""

from __future__ import annotations

from typing import Iterator, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["TrainLoader", "eval_batches", "CROPS"]

CROPS = ("batch", "image")


def _normalise(images: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    return (images.float().div_(255) - mean) / std


def _to_device(images: np.ndarray, device: torch.device) -> Tensor:
    # (N, 32, 32, 3) uint8 -> (N, 3, 32, 32) uint8 on the device: 150 MB for CIFAR's 50,000 images.
    return torch.from_numpy(images).to(device).permute(0, 3, 1, 2).contiguous()


class TrainLoader:
    """Augmented training batches from a dataset held on ``device``.

    Args:
        images: uint8 array (N, 32, 32, 3), or another loader's ``images`` tensor to share it.
        labels: int array (N,).
        batch_size: global batch size; the last incomplete batch of an epoch is dropped.
        mean, std: per-channel statistics on a 0..1 scale.
        device: where the data lives and batches are made.
        seed: seed of every epoch's order, flips and crops.
        crop: ``"batch"`` (one translation per mini-batch, the paper) or ``"image"``.
        pad: translation range in pixels (4 in the paper).
        rank, world_size: this process's slice of each global batch in data-parallel training.
    """

    def __init__(self, images: Union[np.ndarray, Tensor], labels: Union[np.ndarray, Tensor], batch_size: int,
                 mean: Sequence[float], std: Sequence[float], device: torch.device, seed: int, crop: str = "batch",
                 pad: int = 4, rank: int = 0, world_size: int = 1):
        if crop not in CROPS:
            raise ValueError(f"crop must be 'batch' or 'image', got {crop!r}")
        if batch_size < 1 or batch_size > len(labels):
            raise ValueError(f"batch_size must be between 1 and the number of training images ({len(labels)}), "
                             f"got {batch_size}")
        if batch_size % world_size:
            raise ValueError(f"the global batch size {batch_size} must be divisible by the number of processes "
                             f"({world_size})")
        self.device = torch.device(device)
        # a tensor is already the (N, 3, 32, 32) uint8 copy on the device: loaders of a pack share one
        self.images = images if torch.is_tensor(images) else _to_device(images, self.device)
        self.labels = torch.as_tensor(labels, dtype=torch.long).to(self.device)
        self.mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)
        self.batch_size, self.seed, self.crop, self.pad = batch_size, seed, crop, pad
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        """Steps per epoch."""
        return len(self.labels) // self.batch_size

    def _epoch_plan(self, epoch: int) -> Tuple[Tensor, Tensor, Tensor]:
        gen = torch.Generator().manual_seed(int(np.random.SeedSequence([self.seed, epoch]).generate_state(1)[0]))
        order = torch.randperm(len(self.labels), generator=gen)
        flips = torch.rand(len(self.labels), generator=gen) < 0.5
        crops = torch.randint(0, 2 * self.pad + 1, (len(self) * (self.batch_size if self.crop == "image" else 1), 2),
                              generator=gen)
        return order, flips, crops

    def batches(self, epoch: int, start: int = 0) -> Iterator[Tuple[Tensor, Tensor]]:
        """This rank's (images, labels) for steps ``start`` .. ``len(self) - 1`` of ``epoch``."""
        order, flips, crops = self._epoch_plan(epoch)
        # One copy per epoch: a copy from pageable host memory per step would wait for the GPU each time.
        order, flips, image_crops = order.to(self.device), flips.to(self.device), crops.to(self.device)
        local = self.batch_size // self.world_size
        for step in range(start, len(self)):
            lo = step * self.batch_size + self.rank * local
            index = order[lo:lo + local]
            x = _normalise(self.images[index], self.mean, self.std)
            flip = flips[lo:lo + local]
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
            x = F.pad(x, (self.pad,) * 4)
            if self.crop == "batch":
                dy, dx = crops[step].tolist()  # host values: slicing needs Python integers
                x = x[:, :, dy:dy + 32, dx:dx + 32]
            else:
                offsets = image_crops[lo:lo + local]
                rows = (offsets[:, 0:1] + torch.arange(32, device=self.device)).view(-1, 1, 32, 1)
                cols = (offsets[:, 1:2] + torch.arange(32, device=self.device)).view(-1, 1, 1, 32)
                batch = torch.arange(local, device=self.device).view(-1, 1, 1, 1)
                x = x[batch, torch.arange(3, device=self.device).view(1, 3, 1, 1), rows, cols]
            yield x.contiguous(), self.labels[index]


def eval_batches(images: np.ndarray, labels: np.ndarray, mean: Sequence[float], std: Sequence[float],
                 device: torch.device, batch_size: int = 1000) -> Iterator[Tuple[Tensor, Tensor]]:
    """Normalised, unaugmented batches in order."""
    device = torch.device(device)
    x_all, y_all = _to_device(images, device), torch.as_tensor(labels, dtype=torch.long).to(device)
    m = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=device).view(1, 3, 1, 1)
    for lo in range(0, len(y_all), batch_size):
        yield _normalise(x_all[lo:lo + batch_size], m, s), y_all[lo:lo + batch_size]
