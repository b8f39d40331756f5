"""The data side of the paper's recipe (section 4): normalisation constants, translations and flips."""

import functools
import math

import numpy as np
import pytest
import torch

from swapout.data import files as data
from swapout.data.pipeline import TrainLoader

needs_data = pytest.mark.needs_data  # skipped without CIFAR-10: see the conftest.py at the top


# -- per-channel normalisation constants ---------------------------------------------------------------

def test_mean_and_std_are_the_published_cifar_statistics():
    assert data.MEAN == {"cifar10": (0.4914, 0.4822, 0.4465), "cifar100": (0.5071, 0.4865, 0.4409)}
    assert data.STD == {"cifar10": (0.2470, 0.2435, 0.2616), "cifar100": (0.2673, 0.2564, 0.2762)}


@needs_data
def test_mean_and_std_are_those_of_the_training_images():
    dataset = "cifar10"
    split = data.load_split(dataset, "train", download=False)  # verified, so read from the decoded cache
    assert len(split) == 50_000
    mean, std = [], []
    pixels = split.images.reshape(-1, 3)
    for c in range(3):  # exact moments of each channel from its histogram of uint8 values
        counts = np.bincount(pixels[:, c], minlength=256).astype(np.float64)
        values = np.arange(256) / 255
        m = (counts * values).sum() / counts.sum()
        mean.append(m)
        std.append(math.sqrt((counts * (values - m) ** 2).sum() / counts.sum()))
    # the constants are the statistics rounded to 4 decimals
    assert np.abs(np.array(mean) - data.MEAN[dataset]).max() <= 0.5e-4 + 1e-7, mean
    assert np.abs(np.array(std) - data.STD[dataset]).max() <= 0.5e-4 + 1e-7, std


# -- augmentation: translations of up to 4 pixels, left-right flips ------------------------------------

@functools.cache
def _augmented_views(crop, batches, batch_size):
    """Offsets (dy, dx) and flips of every augmented image, (batches, batch_size) each, read from the
    loader's output alone.

    Channel 0 is all 255, so the zero padding that a translation brings in shows where the image went;
    channel 1 is a left-to-right ramp, so its direction shows a flip; channel 2 a top-to-bottom one.
    """
    images = np.zeros((64, 32, 32, 3), np.uint8)
    images[..., 0] = 255
    images[..., 1] = np.arange(1, 33, dtype=np.uint8)[None, None, :] * 7
    images[..., 2] = np.arange(1, 33, dtype=np.uint8)[None, :, None] * 7
    loader = TrainLoader(images, np.zeros(64, np.int64), batch_size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "cpu",
                         seed=5, crop=crop)
    xs, epoch = [], 0
    while len(xs) < batches:
        xs.extend(x for x, _ in loader.batches(epoch))
        epoch += 1
    x = torch.cat(xs[:batches])
    present = x[:, 0] > 0
    rows, cols = present.any(2), present.any(1)
    top, left = rows.int().argmax(1), cols.int().argmax(1)
    bottom, right = 31 - rows.flip(1).int().argmax(1), 31 - cols.flip(1).int().argmax(1)
    # a crop at offset (dy, dx) of the padded image, 0..8 each, puts the image at rows 4 - dy .. 35 - dy
    dy = torch.where(top > 0, 4 - top, 35 - bottom)
    dx = torch.where(left > 0, 4 - left, 35 - right)
    n = torch.arange(len(x))
    flipped = x[n, 1, top, left] > x[n, 1, top, right]
    # a translation moves the image without changing it: the crop is the padded (flipped) image at (dy, dx)
    column = torch.arange(32) + dx[:, None] - 4  # the image column under each output column
    row = torch.arange(32) + dy[:, None] - 4
    ramp = torch.where(flipped[:, None], 32 - column, column + 1) * 7
    ramp = torch.where((column >= 0) & (column < 32), ramp, 0)
    inside = (row >= 0) & (row < 32)
    assert torch.equal(present, inside[:, :, None] & (ramp > 0)[:, None, :])
    assert torch.allclose(x[:, 1], inside[:, :, None] * ramp[:, None, :] / 255)
    vertical = torch.where(inside, (row + 1) * 7, 0)  # never flipped upside down
    assert torch.allclose(x[:, 2], vertical[:, :, None] * (ramp > 0)[:, None, :] / 255)
    shape = (batches, batch_size)
    return (dy - 4).view(shape), (dx - 4).view(shape), flipped.view(shape)


@pytest.mark.parametrize("crop", ["batch", "image"])
def test_translations_cover_exactly_minus_4_to_4_pixels(crop, one_thread):
    # 81 offsets, equally likely: after 1,500 draws a given one is missing with probability
    # (80/81)^1500 < 1e-8, so all 81 show up; none may lie outside -4..4.
    dy, dx, _ = _augmented_views(crop, 1500, 2) if crop == "batch" else _augmented_views(crop, 375, 4)
    offsets = set(zip(dy.flatten().tolist(), dx.flatten().tolist()))
    assert offsets == {(a, b) for a in range(-4, 5) for b in range(-4, 5)}
    one_per_batch = (dy == dy[:, :1]).all(1) & (dx == dx[:, :1]).all(1)
    if crop == "batch":
        assert one_per_batch.all()  # "All the images in a mini-batch use the same crop"
    else:
        assert not one_per_batch.all()


def test_flips_are_per_image_and_half_of_them(one_thread):
    _, _, flipped = _augmented_views("batch", 1500, 2)
    # 3,000 images: the share of flips is within 5 standard errors (0.046) of one half
    assert abs(flipped.double().mean().item() - 0.5) < 5 * math.sqrt(0.25 / flipped.numel())
    assert (flipped[:, 0] != flipped[:, 1]).any()  # drawn per image, not per batch
