"""Evaluation: deterministic and stochastic error on a split, and the paper's Figure 2 analysis.

Figure 2 plots the error of stochastic inference against the number of averaged passes, with the
standard error over repetitions. :func:`sample_curve` computes it: each repetition draws ``n`` fresh
passes over the split, and the error after k passes is that of the mean of its first k.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .inference import stochastic_passes
from .layers import SwapoutJoin
from .pipeline import eval_batches

__all__ = ["evaluate_split", "sample_curve", "plot_curve"]


def _passes(model: nn.Module, images: np.ndarray, labels: np.ndarray, mean, std, device, samples: int,
            batch_size: int, progress=None):
    """Per-pass probabilities for the whole split, (passes, N, classes) on the CPU, and the labels."""
    chunks, targets = [], []
    for x, y in eval_batches(images, labels, mean, std, device, batch_size):
        chunks.append(stochastic_passes(model, x, samples, max_batch=max(batch_size, 1024)).cpu())
        targets.append(y.cpu())
        if progress:
            progress(len(y) * max(samples, 1))
    return torch.cat(chunks, dim=1), torch.cat(targets)


def evaluate_split(model: nn.Module, images: np.ndarray, labels: np.ndarray, mean, std, device,
                   samples: int = 30, batch_size: int = 500, progress=None) -> Dict[str, float]:
    """Error (%) of deterministic inference, and of stochastic inference with ``samples`` passes if > 0.

    A model without random masks (every join keeps both inputs, as in a plain ResNet) has nothing to
    sample: its stochastic passes would all equal the deterministic one, so they are skipped.
    In a distributed run (``torch.distributed`` initialised), each process evaluates a contiguous
    shard of the split and the counts are summed across processes; every process gets the result.
    """
    distributed = dist.is_available() and dist.is_initialized()
    if distributed:
        bounds = np.linspace(0, len(labels), dist.get_world_size() + 1).astype(int)
        lo, hi = bounds[dist.get_rank()], bounds[dist.get_rank() + 1]
        images, labels = images[lo:hi], labels[lo:hi]
    if not any(isinstance(m, SwapoutJoin) and any(0.0 < t < 1.0 for t in m.thetas) for m in model.modules()):
        samples = 0
    counts = torch.zeros(3, dtype=torch.float64)  # images, right (deterministic), right (stochastic)
    if len(labels):
        det, y = _passes(model, images, labels, mean, std, device, 0, batch_size, progress)
        counts[0], counts[1] = len(y), (det[0].argmax(-1) == y).sum().item()
        if samples:
            sto, _ = _passes(model, images, labels, mean, std, device, samples, batch_size, progress)
            counts[2] = (sto.mean(0).argmax(-1) == y).sum().item()
    if distributed:
        counts = counts.to(device)
        dist.all_reduce(counts)
        counts = counts.cpu()
    n = int(counts[0])
    out = {"images": n, "deterministic_error": 100.0 * (1 - counts[1].item() / n)}
    if samples:
        out["stochastic_error"] = 100.0 * (1 - counts[2].item() / n)
        out["samples"] = samples
    return out


def sample_curve(model: nn.Module, images: np.ndarray, labels: np.ndarray, mean, std, device,
                 max_samples: int = 30, repeats: int = 30, batch_size: int = 500, progress=None) -> Dict:
    """Error (%) of stochastic inference against the number of passes 1..max_samples.

    Returns ``{"samples": [1..n], "mean_error": [...], "standard_error": [...], "repeats": r, "images": N}``,
    the standard error being that of the mean over ``repeats`` independent repetitions.
    """
    if max_samples < 1 or repeats < 1:
        raise ValueError(f"max_samples and repeats must be >= 1, got {max_samples} and {repeats}")
    errors = np.zeros((repeats, max_samples))
    ks = torch.arange(1, max_samples + 1).view(-1, 1, 1)
    for r in range(repeats):
        probs, y = _passes(model, images, labels, mean, std, device, max_samples, batch_size, progress)
        running = probs.cumsum(0) / ks
        errors[r] = 100.0 * (running.argmax(-1) != y).float().mean(1).numpy()
    se = errors.std(0, ddof=1) / math.sqrt(repeats) if repeats > 1 else np.zeros(max_samples)
    return {"samples": list(range(1, max_samples + 1)), "mean_error": errors.mean(0).round(4).tolist(),
            "standard_error": se.round(4).tolist(), "repeats": repeats, "images": int(len(labels))}


def plot_curve(curve: Dict, path: Path, title: str = "") -> None:
    """Write Figure 2 as a PNG: mean error against passes, with a band of one standard error."""
    from PIL import Image, ImageDraw

    w, h, left, right, top, bottom = 640, 420, 70, 20, 40, 50
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    xs, mean, se = curve["samples"], np.array(curve["mean_error"]), np.array(curve["standard_error"])
    lo, hi = float((mean - se).min()), float((mean + se).max())
    pad = max((hi - lo) * 0.08, 0.05)
    lo, hi = lo - pad, hi + pad
    x_max = max(xs[-1], 2)

    def px(x: float, y: float):
        return (left + (x - 1) / (x_max - 1) * (w - left - right), top + (hi - y) / (hi - lo) * (h - top - bottom))

    band = [px(x, m + s) for x, m, s in zip(xs, mean, se)] + [px(x, m - s) for x, m, s in
                                                                reversed(list(zip(xs, mean, se)))]
    if len(band) > 2:
        draw.polygon(band, fill=(190, 210, 240))
    draw.line([px(x, m) for x, m in zip(xs, mean)], fill=(20, 60, 160), width=2)
    draw.rectangle([left, top, w - right, h - bottom], outline="black")
    for i in range(5):
        y = lo + (hi - lo) * i / 4
        _, yy = px(1, y)
        draw.line([left - 4, yy, left, yy], fill="black")
        draw.text((5, yy - 6), f"{y:.2f}", fill="black")
    for x in sorted({1, *range(5, x_max + 1, 5), x_max}):
        xx, _ = px(x, lo)
        draw.line([xx, h - bottom, xx, h - bottom + 4], fill="black")
        draw.text((xx - 6, h - bottom + 8), str(x), fill="black")
    draw.text((left, h - 20), "number of stochastic passes averaged", fill="black")
    draw.text((5, 10), title or f"error (%) over {curve['images']:,} images, mean +- s.e. of {curve['repeats']} "
                                f"repetitions", fill="black")
    img.save(path)
