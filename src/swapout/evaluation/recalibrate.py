"""BatchNorm recalibration for deterministic inference (section 3.1 of the paper).

BatchNorm's running statistics are collected in training, under random masks. Deterministic
inference replaces every mask by its expectation, which keeps the mean of a join's output but
shrinks its variance (``Var[Theta1 X + Theta2 Y] >= Var[theta1 X + theta2 Y]``), so the collected
variances overstate what deterministic inference sees, more so with depth. Recalibration runs
training images through the network with the joins at their expectations and BatchNorm gathering
fresh statistics (a cumulative average over the images, ``momentum=None``), then returns to eval.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from ..data.pipeline import TrainLoader, eval_batches
from ..layers import SwapoutJoin
from .inference import using_inference

__all__ = ["recalibrate_bn", "batchnorms_after_random_joins", "LAYER_CHOICES", "STAT_CHOICES"]

LAYER_CHOICES = ("all", "after-random-joins")
STAT_CHOICES = ("both", "variance")


def batchnorms_after_random_joins(model: nn.Module) -> List[str]:
    """Names of the BatchNorm layers registered after the first join with a random mask.

    In this project's networks modules are registered in the order they run, so these are the layers
    whose inputs deterministic inference changes; the ones before see the same data as in training.
    """
    names, seen = [], False
    for name, m in model.named_modules():
        if isinstance(m, SwapoutJoin) and m.random:
            seen = True
        elif seen and isinstance(m, nn.modules.batchnorm._BatchNorm):
            names.append(name)
    return names


def _checked(images: Union[np.ndarray, torch.Tensor], labels: Union[np.ndarray, torch.Tensor], layers: str,
             stats: str, batch_size: int) -> Tuple[np.ndarray, np.ndarray]:
    """The arguments of `recalibrate_bn`, checked; ``images`` and ``labels`` as numpy arrays."""
    got = f"{images.dtype} of shape {tuple(images.shape)}" if hasattr(images, "shape") else type(images).__name__
    array = images.detach().cpu().numpy() if torch.is_tensor(images) else images
    if not isinstance(array, np.ndarray) or array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3:
        raise TypeError(f"recalibrate_bn: images must be uint8 (N, H, W, 3) RGB images as CIFAR stores them (a numpy "
                        f"array or a torch tensor, not normalised), got {got}")
    if layers not in LAYER_CHOICES:
        raise ValueError(f"layers must be one of {', '.join(LAYER_CHOICES)}, got {layers!r}")
    if stats not in STAT_CHOICES:
        raise ValueError(f"stats must be one of {', '.join(STAT_CHOICES)}, got {stats!r}")
    if len(array) < 2 or batch_size < 2:
        raise ValueError(f"recalibration needs at least 2 images and batches of at least 2, got {len(array)} "
                         f"images and batch_size {batch_size}")
    return array, labels.detach().cpu().numpy() if torch.is_tensor(labels) else np.asarray(labels)


@torch.no_grad()
def recalibrate_bn(model: nn.Module, images: Union[np.ndarray, torch.Tensor], labels: Union[np.ndarray, torch.Tensor],
                   mean: Sequence[float], std: Sequence[float], device: Union[str, torch.device],
                   augment: bool = False, layers: str = "all", stats: str = "both", batch_size: int = 250,
                   seed: int = 0, progress: Optional[Callable[[int], None]] = None) -> Dict[str, object]:
    """Re-estimate BatchNorm statistics of ``model``, in place, for deterministic inference.

    Args:
        model: the network; left in ``eval()`` mode, its joins' inference modes unchanged.
        images: training images to gather statistics on, as CIFAR stores them: uint8 (N, H, W, 3), RGB,
            0..255, a numpy array or a torch tensor (normalised here with ``mean`` and ``std``; a float or
            (N, 3, H, W) tensor is refused with a TypeError). With ``augment`` a last batch smaller than
            ``batch_size`` is dropped, as in training.
        labels: their labels, an array or tensor of N (unused but for the loader).
        mean: the per-channel mean of the normalisation the model was trained with (0..1 scale).
        std: the per-channel standard deviation of that normalisation (0..1 scale).
        device: where to run (e.g. ``"cpu"``, ``"cuda"``).
        augment: apply the training augmentation (flips, 4-pixel translations, one per batch).
        layers: ``"all"`` BatchNorm layers, or ``"after-random-joins"`` (see
            `batchnorms_after_random_joins`); the others keep their statistics.
        stats: ``"both"`` (means and variances) or ``"variance"`` (new variances, the running means kept).
        batch_size: images per forward pass (BatchNorm's batch statistics are averaged over batches).
        seed: seed of the augmentation.
        progress: called with the number of images done after each batch.

    Returns:
        A description of what was done: ``{"images"`` (how many were used; a last single image is skipped),
        ``"augment", "layers", "stats", "batchnorms"`` (how many were recalibrated) ``}``.

    Raises:
        TypeError: if ``images`` are not uint8 (N, H, W, 3) RGB images (a numpy array or a torch tensor).
        ValueError: if ``layers`` or ``stats`` is not one of the choices, or there are fewer than 2 images
            or ``batch_size`` is below 2.
    """
    images, labels = _checked(images, labels, layers, stats, batch_size)
    chosen = set(batchnorms_after_random_joins(model)) if layers == "after-random-joins" else None
    bns = {n: m for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
           and (chosen is None or n in chosen)}
    saved = {n: (m.momentum, None if m.running_mean is None else m.running_mean.clone()) for n, m in bns.items()}
    model.eval()
    for m in bns.values():
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches
        m.train()
    batch_size, device = min(batch_size, len(images)), torch.device(device)
    if augment:
        batches = TrainLoader(images, labels, batch_size, mean, std, device, seed).batches(0)
    else:
        batches = eval_batches(images, labels, mean, std, device, batch_size)
    used = 0
    try:
        with using_inference(model, "deterministic"):
            for x, _ in batches:
                if len(x) >= 2:  # BatchNorm cannot take batch statistics of a single image
                    model(x)
                    used += len(x)
                    if progress:
                        progress(len(x))
    finally:
        for n, m in bns.items():
            m.momentum = saved[n][0]
            mean_before = saved[n][1]
            if stats == "variance" and m.running_mean is not None and mean_before is not None:
                m.running_mean.copy_(mean_before)
        model.eval()
    return {"images": used, "augment": augment, "layers": layers, "stats": stats,
            "batchnorms": len(bns)}

