"""Figures, drawn with matplotlib's Agg renderer (no display needed): Figure 2 and reliability diagrams.

Each figure is a `matplotlib.figure.Figure` saved directly, so nothing here touches pyplot's
global state or backend.
"""

from __future__ import annotations

import os
import textwrap
from typing import Any, Dict, Sequence, Union

import numpy as np

__all__ = ["plot_curve", "plot_reliability"]

# 6.4 x 4.2 inches at 100 dpi: a 640 x 420 PNG, wide enough for a README and small in the repository.
_DPI = 100


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # constrained layout makes room for titles and labels, so none is cut at the picture's edge
    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)  # a renderer, to measure titles
    return fig


def _title(fig, set_title, text: str, fontsize: float = 9) -> None:
    """``set_title(text)``, wrapped into lines that fit the figure's width, measured with its renderer."""
    width = int(fig.get_figwidth() * 72 / (0.5 * fontsize))  # characters: narrow ones, at first
    while True:
        title = set_title("\n".join(textwrap.wrap(text, width)), fontsize=fontsize)
        if title.get_window_extent(fig.canvas.get_renderer()).width <= 0.95 * fig.bbox.width or width <= 10:
            return
        width -= 4


def plot_curve(curve: Dict, path: Union[str, os.PathLike[str]], title: str = "") -> None:
    """Write Figure 2 as a PNG: mean error (%) against passes, with a band of one standard error.

    Args:
        curve: the dict of `swapout.evaluation.errors.sample_curve` (``samples``, ``mean_error``,
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
    _title(fig, ax.set_title, title or f"error over {curve['images']:,} images, mean of {curve['repeats']} repetitions")
    fig.savefig(path, dpi=_DPI)


def plot_reliability(panels: Sequence[Dict], path: Union[str, os.PathLike[str]], title: str = "") -> None:
    """Write reliability diagrams as a PNG, one panel per prediction mode, side by side.

    Args:
        panels: dicts from `swapout.evaluation.uncertainty.reliability_bins` with a ``"label"`` added
            (for example ``"deterministic"``): per-bin ``confidence``, ``accuracy``, ``count``
            (empty bins have count 0), the bin ``edges`` and the ``ece`` (%).
        path: where to write the PNG.
        title: a title over all panels.

    Each panel shows the accuracy of every confidence bin against the diagonal of perfect
    calibration; the gap of a bin to its confidence (its calibration error) is shaded red above the
    bar when the model is overconfident, hatched on the bar when it is underconfident.
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    if not panels:
        raise ValueError("plot_reliability needs at least one panel")
    fig = _figure(3.2 * len(panels), 3.6)
    axes = fig.subplots(1, len(panels), squeeze=False)
    over_style: Dict[str, Any] = dict(facecolor="tab:red", alpha=0.3, edgecolor="none")
    under_style: Dict[str, Any] = dict(facecolor="none", edgecolor="white", hatch="////", linewidth=0)
    for ax, p in zip(axes[0], panels):
        edges, count = np.asarray(p["edges"]), np.asarray(p["count"])
        acc, conf = np.asarray(p["accuracy"]), np.asarray(p["confidence"])
        left, width = edges[:-1], np.diff(edges)
        ax.bar(left[count > 0], acc[count > 0], width=width[count > 0], align="edge", color="tab:blue",
               edgecolor="white")
        for shown, low, high, style in ((count > 0) & (conf > acc), acc, conf, over_style),\
                ((count > 0) & (acc > conf), conf, acc, under_style):
            ax.bar(left[shown], (high - low)[shown], bottom=low[shown], width=width[shown], align="edge", **style)
        ax.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=1)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (max probability)")
        ax.set_title(f"{p['label']}\nECE {p['ece']:.2f}%", fontsize=9)
    axes[0][0].set_ylabel("accuracy")
    handles = [Patch(facecolor="tab:blue", label="accuracy"), Patch(label="confidence above accuracy", **over_style),
               Patch(facecolor="tab:blue", label="accuracy above confidence",
                     **{k: v for k, v in under_style.items() if k != "facecolor"}),
               Line2D([], [], color="black", linestyle="--", linewidth=1, label="perfect calibration")]
    axes[0][0].legend(handles=handles, loc="upper left", frameon=False, fontsize=7)
    if title:
        _title(fig, fig.suptitle, title)
    fig.savefig(path, dpi=_DPI)
