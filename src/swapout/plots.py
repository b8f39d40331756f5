"""Figures, drawn with matplotlib's Agg renderer (no display needed): Figure 2 and reliability diagrams.

Each figure is a :class:`matplotlib.figure.Figure` saved directly, so nothing here touches pyplot's
global state or backend.
"""

from __future__ import annotations

import os
import textwrap
from typing import Dict, Sequence

import numpy as np

__all__ = ["plot_curve", "plot_reliability"]

# 6.4 x 4.2 inches at 100 dpi: a 640 x 420 PNG, wide enough for a README and small in the repository.
_DPI = 100


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=_DPI)


def plot_curve(curve: Dict, path: os.PathLike, title: str = "") -> None:
    """Write Figure 2 as a PNG: mean error (%) against passes, with a band of one standard error.

    Args:
        curve: the dict of :func:`swapout.evaluate.sample_curve` (``samples``, ``mean_error``,
            ``standard_error``, ``repeats``, ``images``).
        path: where to write the PNG (640 x 420 pixels).
        title: a title; by default the number of images and repetitions.
    """
    from matplotlib.ticker import MaxNLocator

    xs, mean, se = np.array(curve["samples"]), np.array(curve["mean_error"]), np.array(curve["standard_error"])
    fig = _figure(6.4, 4.2)
    ax = fig.subplots()
    ax.fill_between(xs, mean - se, mean + se, color="tab:blue", alpha=0.25, linewidth=0,
                    label="± 1 standard error")
    ax.plot(xs, mean, color="tab:blue", marker="o", markersize=3, label="mean error")
    ax.set_xlabel("number of stochastic passes averaged")
    ax.set_ylabel("test error (%)")
    ax.set_xlim(xs[0], max(xs[-1], xs[0] + 1))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", frameon=False)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    title = title or f"error over {curve['images']:,} images, mean of {curve['repeats']} repetitions"
    ax.set_title("\n".join(textwrap.wrap(title, 90)), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)


def plot_reliability(panels: Sequence[Dict], path: os.PathLike, title: str = "") -> None:
    """Write reliability diagrams as a PNG, one panel per prediction mode, side by side.

    Args:
        panels: dicts from :func:`swapout.uncertainty.reliability_bins` with a ``"label"`` added
            (for example ``"deterministic"``): per-bin ``confidence``, ``accuracy``, ``count``
            (empty bins have count 0), the bin ``edges`` and the ``ece`` (%).
        path: where to write the PNG.
        title: a title over all panels.

    Each panel shows the accuracy of every confidence bin against the diagonal of perfect
    calibration; the shaded gap is the calibration error of the bin.
    """
    if not panels:
        raise ValueError("plot_reliability needs at least one panel")
    fig = _figure(3.2 * len(panels), 3.6)
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, p in zip(axes[0], panels):
        edges, count = np.asarray(p["edges"]), np.asarray(p["count"])
        acc, conf = np.asarray(p["accuracy"]), np.asarray(p["confidence"])
        used = count > 0
        width = np.diff(edges)
        ax.bar(edges[:-1][used], acc[used], width=width[used], align="edge", color="tab:blue",
               edgecolor="white", label="accuracy")
        ax.bar(edges[:-1][used], conf[used] - acc[used], bottom=acc[used], width=width[used], align="edge",
               color="tab:red", alpha=0.3, edgecolor="none", label="gap to confidence")
        ax.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence (max probability)")
        ax.set_title(f"{p['label']}\nECE {p['ece']:.2f}%", fontsize=9)
        ax.set_aspect("equal")
    axes[0][0].set_ylabel("accuracy")
    axes[0][0].legend(loc="upper left", frameon=False, fontsize=8)
    if title:
        fig.suptitle("\n".join(textwrap.wrap(title, 45 * len(panels))), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
