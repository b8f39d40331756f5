"""Evaluation: deterministic and stochastic error on a split, and the paper's Figure 2 analysis.

Figure 2 plots the error of stochastic inference against the number of averaged passes, with the
standard error over repetitions. `sample_curve` computes it: each repetition draws ``n`` fresh
passes over the split, and the error after k passes is that of the mean of its first k.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Optional

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..data.pipeline import eval_batches
from ..layers import SwapoutJoin
from .inference import pass_logits
from .plots import plot_curve

__all__ = ["evaluate_split", "sample_curve", "plot_curve", "split_logits", "has_random_masks", "curve_errors",
           "error_percent", "rows_per_call"]


def has_random_masks(model: nn.Module) -> bool:
    """True if some join of ``model`` samples masks (a keep probability strictly between 0 and 1)."""
    return any(isinstance(m, SwapoutJoin) and m.random for m in model.modules())


def rows_per_call(device) -> int:
    """Rows (images times passes) per forward call when evaluating on ``device``.

    A GPU wants large calls. A CPU runs the 20-layer network about 1.6 to 1.9 times faster per image
    in calls of 128 rows than of 1,024 (``benchmarks/bench_swapout.py --only inference``): a call's
    activations then stay in cache between layers.
    """
    return 1024 if torch.device(device).type == "cuda" else 128


def split_logits(model: nn.Module, images: np.ndarray, labels: np.ndarray, mean, std, device, samples: int,
                 deterministic: bool = True, batch_size: int = 500,
                 progress: Optional[Callable[[int], None]] = None) -> Dict[str, Tensor]:
    """Logits of a whole split in one sweep, on the CPU.

    Args:
        model: the classifier; images: uint8 (N, 32, 32, 3); labels: int (N,); mean, std: the
            normalisation the model was trained with (per channel, 0..1 scale); device: where to run.
        samples: stochastic passes per image (0: none).
        deterministic: also compute one deterministic pass.
        batch_size: images per step (normalised at once); each step runs in forward calls of
            `rows_per_call` rows. progress: called with the number of images done at each step.

    Returns ``{"labels": (N,), "deterministic": (N, C) if asked, "passes": (samples, N, C) if samples}``.
    """
    det, sto, targets = [], [], []
    rows = rows_per_call(device)
    for x, y in eval_batches(images, labels, mean, std, device, batch_size):
        if deterministic:
            det.append(pass_logits(model, x, 0, max_batch=rows)[0].cpu())
        if samples:
            sto.append(pass_logits(model, x, samples, max_batch=rows).cpu())
        targets.append(y.cpu())
        if progress:
            progress(len(y))
    out = {"labels": torch.cat(targets)}
    if deterministic:
        out["deterministic"] = torch.cat(det)
    if samples:
        out["passes"] = torch.cat(sto, dim=1)
    return out


def evaluate_split(model: nn.Module, images: np.ndarray, labels: np.ndarray, mean, std, device,
                   samples: int = 30, batch_size: int = 500,
                   progress: Optional[Callable[[int], None]] = None) -> Dict[str, float]:
    """Error (%) of deterministic inference, and of stochastic inference with ``samples`` passes if > 0.

    One sweep over the split; ``progress`` is called with the number of images done. A model without
    random masks (every join keeps both inputs, as in a plain ResNet) has nothing to sample: its
    stochastic passes would all equal the deterministic one, so they are skipped. Errors are rounded
    to 4 decimals. In a distributed run (``torch.distributed`` initialised), each process evaluates a
    contiguous shard of the split and the counts are summed across processes; every process gets the
    result.
    """
    distributed = dist.is_available() and dist.is_initialized()
    if distributed:
        bounds = np.linspace(0, len(labels), dist.get_world_size() + 1).astype(int)
        lo, hi = bounds[dist.get_rank()], bounds[dist.get_rank() + 1]
        images, labels = images[lo:hi], labels[lo:hi]
    if not has_random_masks(model):
        samples = 0
    counts = torch.zeros(3, dtype=torch.float64)  # images, right (deterministic), right (stochastic)
    if len(labels):
        out = split_logits(model, images, labels, mean, std, device, samples, batch_size=batch_size,
                           progress=progress)
        y = out["labels"]
        counts[0], counts[1] = len(y), (out["deterministic"].argmax(-1) == y).sum().item()
        if samples:
            counts[2] = (out["passes"].softmax(-1).mean(0).argmax(-1) == y).sum().item()
    if distributed:
        counts = counts.to(device)
        dist.all_reduce(counts)
        counts = counts.cpu()
    n = int(counts[0])
    figures: Dict[str, float] = {"images": n, "deterministic_error": round(100.0 * (1 - counts[1].item() / n), 4)}
    if samples:
        figures["stochastic_error"] = round(100.0 * (1 - counts[2].item() / n), 4)
        figures["samples"] = samples
    return figures


def error_percent(scores: Tensor, labels: Tensor) -> float:
    """Top-1 error (%) against ``labels``, to 4 decimals: the one definition of error, for training and evaluation.

    ``scores``: (N, classes) probabilities or logits, or (N,) predicted classes.
    """
    predicted = scores.argmax(-1) if scores.dim() > 1 else scores
    return round(100.0 * (predicted != labels).double().mean().item(), 4)


def curve_errors(probs: Tensor, labels: Tensor) -> np.ndarray:
    """Error (%) of the mean of the first k passes, k = 1..n, for ``probs`` of shape (n, N, classes)."""
    running = probs.cumsum(0) / torch.arange(1, probs.shape[0] + 1).view(-1, 1, 1)
    return 100.0 * (running.argmax(-1) != labels).double().mean(1).numpy()


def sample_curve(model: nn.Module, images: np.ndarray, labels: np.ndarray, mean, std, device,
                 max_samples: int = 30, repeats: int = 30, batch_size: int = 500,
                 progress: Optional[Callable[[int], None]] = None, first: Optional[Tensor] = None) -> Dict:
    """Error (%) of stochastic inference against the number of passes 1..max_samples.

    Args:
        max_samples: passes per repetition n; repeats: independent repetitions r.
        progress: called with the number of images done, once per batch of every repetition.
        first: per-pass probabilities (n, N, classes) already drawn over the split (for instance by
            the stochastic evaluation); they are used as the first repetition instead of new draws.

    Returns ``{"samples": [1..n], "mean_error": [...], "standard_error": [...], "errors": [[...] x r],
    "repeats": r, "images": N}``, the standard error being that of the mean over the ``repeats`` independent
    repetitions (sample standard deviation with n - 1, divided by sqrt(r)), rounded to 4 decimals. ``errors``
    holds each repetition's curve, so that two pass counts can be compared paired: within a repetition the
    first k passes are also the first k of every larger count.
    """
    if max_samples < 1 or repeats < 1:
        raise ValueError(f"max_samples and repeats must be >= 1, got {max_samples} and {repeats}")
    if first is not None and first.shape[:2] != (max_samples, len(labels)):
        raise ValueError(f"first must hold {max_samples} passes over {len(labels)} images, got shape "
                         f"{tuple(first.shape)}")
    errors = np.zeros((repeats, max_samples))
    y = torch.as_tensor(labels, dtype=torch.long)
    for r in range(repeats):
        if r == 0 and first is not None:
            probs = first
        else:
            probs = split_logits(model, images, labels, mean, std, device, max_samples, deterministic=False,
                                 batch_size=batch_size, progress=progress)["passes"].softmax(-1)
        errors[r] = curve_errors(probs, y)
    se = errors.std(0, ddof=1) / math.sqrt(repeats) if repeats > 1 else np.zeros(max_samples)
    return {"samples": list(range(1, max_samples + 1)), "mean_error": errors.mean(0).round(4).tolist(),
            "standard_error": se.round(4).tolist(), "errors": errors.round(4).tolist(), "repeats": repeats,
            "images": int(len(labels))}
