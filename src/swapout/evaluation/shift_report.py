"""The figures of a shift study: intervals of errors and of means over corruptions, its table and its plot.

Split from `swapout.evaluation.shift`, which measures; this module only summarises what was measured. A
single error carries a 95% Wilson interval; a mean over corruptions carries a basic bootstrap interval
over images, the same resample serving every corruption and mode so that differences are paired.
"""

from __future__ import annotations

import math
import os
from typing import Any, Dict, Sequence, Union

import torch
from torch import Tensor

from .uncertainty import calibration_metrics

__all__ = ["wilson_interval", "error_halfwidth", "bootstrap_means", "shift_table", "plot_shift", "MODES", "METRICS"]

MODES = ("deterministic", "deterministic+T", "stochastic", "stochastic+T")
METRICS = ("error", "nll", "brier", "ece")
Z95 = 1.959964


def wilson_interval(errors: int, n: int, z: float = Z95) -> list:
    """95% Wilson score interval (%, low and high) of an error rate seen as ``errors`` of ``n``."""
    p = errors / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return [round(100 * max(centre - half, 0.0), 3), round(100 * min(centre + half, 1.0), 3)]


def error_halfwidth(n: int, p: float = 0.5) -> float:
    """Half-width (percentage points) of the normal 95% interval of an error rate ``p`` measured on ``n`` images."""
    return 100 * Z95 * math.sqrt(p * (1 - p) / n)


def bootstrap_means(cells: Sequence[Dict[str, Tensor]], labels: Tensor, resamples: int = 200, seed: int = 0,
                    reference: str = "stochastic") -> Dict[str, Dict]:
    """95% bootstrap intervals of the mean over ``cells`` (one dict mode -> probabilities (N, C) per
    corruption, all on the same images) of every metric of every mode, and of each mode's difference
    from ``reference`` if present (paired: one resample of the images serves every cell and mode).

    The intervals are basic (reflected) bootstrap intervals, 2 * estimate - the 97.5% and 2.5% quantiles:
    resampling with replacement inflates the ECE of a resample, and reflecting corrects that bias.
    """
    if resamples <= 0:
        return {}
    gen = torch.Generator().manual_seed(seed)
    n, modes = len(labels), list(cells[0])

    def means(idx):
        return torch.tensor([[[calibration_metrics(c[m][idx], labels[idx])[k] for k in METRICS] for c in cells]
                             for m in modes], dtype=torch.float64).mean(1)  # (modes, metrics)

    estimate = means(torch.arange(n))
    draws = torch.stack([means(torch.randint(n, (n,), generator=gen)) for _ in range(resamples)])
    probs = torch.tensor([0.975, 0.025], dtype=torch.float64)

    def basic(est, d):
        return [round(v, 5) for v in (2 * est - torch.quantile(d, probs)).tolist()]

    out = {}
    for j, mode in enumerate(modes):
        out[mode] = {f"{k}_interval": basic(estimate[j, i], draws[:, j, i]) for i, k in enumerate(METRICS)}
        if reference in modes and mode != reference:
            r = modes.index(reference)
            out[mode].update({f"{k}_minus_{reference}_interval": basic(estimate[j, i] - estimate[r, i],
                                                                        draws[:, j, i] - draws[:, r, i])
                              for i, k in enumerate(METRICS)})
    return out


def intervals_note(n: int) -> Dict[str, Any]:
    return {"error_95_halfwidth_at_50_percent": round(error_halfwidth(n), 2),
            "error_95_halfwidth_at_10_percent": round(error_halfwidth(n, 0.1), 2),
            "note": f"every set holds the same {n:,} images: a single error carries a 95% Wilson interval "
                    f"(error_interval), at most +-{error_halfwidth(n):.1f} points; the per-severity means over "
                    f"corruptions carry 95% bootstrap intervals over images (*_interval), and differences "
                    f"from stochastic inference paired intervals (*_minus_stochastic_interval)"}


def shift_table(result: Dict[str, Any], metrics=("error", "nll", "ece")) -> str:
    """A markdown table: one row per severity (0 = clean), for each mode the mean of ``metrics`` over
    corruptions, with the bootstrap interval of the mean when there is one."""
    modes = list(result["summary"]["0"])
    head = "| severity | " + " | ".join(f"{m} {k.upper() if k != 'error' else 'error %'}"
                                       for m in modes for k in metrics) + " |"
    lines = [head, "|" + " --- |" * (1 + len(modes) * len(metrics))]
    for s, row in result["summary"].items():
        cells = []
        for m in modes:
            for k in metrics:
                v, iv = row[m][k], row[m].get(f"{k}_interval")
                fmt = "{:.3f}" if k in ("nll", "brier") else "{:.2f}"
                cells.append(fmt.format(v) + (f" ({fmt.format(iv[0])}-{fmt.format(iv[1])})" if iv else ""))
        lines.append(f"| {'clean' if s == '0' else s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


MARKERS = {"deterministic": "o", "deterministic+T": "s", "stochastic": "^", "stochastic+T": "D"}


def _broken(xs: Sequence[float], ys: Sequence[float], sev: Sequence[int]):
    """``xs``, ``ys`` with a NaN between severities that are not neighbours, so that a line is drawn only from
    one evaluated severity to the next, never across one that was not evaluated."""
    bx, by = [], []
    for j, (x, y) in enumerate(zip(xs, ys)):
        if j and sev[j] != sev[j - 1] + 1:
            bx.append(float("nan"))
            by.append(float("nan"))
        bx.append(x)
        by.append(y)
    return bx, by


def plot_shift(results: Dict[str, Dict[str, Any]], path: Union[str, os.PathLike[str]], title: str = "") -> None:
    """ECE and error (mean over corruptions) against severity, 0 = clean, written as a PNG.

    The figure style of Ovadia et al., one line per model and mode. Each line's marks are shifted sideways by a
    few hundredths of a severity, so that lines with equal values (deterministic inference with and without a
    temperature have the same error) stay visible; a vertical bar is the 95% bootstrap interval of the mean,
    where the result holds one. The axis has ticks only at the evaluated severities, and lines join
    neighbouring severities only.

    Args:
        results: label -> `evaluate_shift` result; the labels name the lines, so they should tell the
            models or runs apart (say, the run's folder and seed).
        path: where to write the PNG (960 x 480 pixels).
        title: a title over both panels, best kept to one line.

    Raises:
        ValueError: if ``results`` holds no result (no line to draw).
    """
    from matplotlib.lines import Line2D

    from .plots import _figure, _title

    lines = [(label, mode) for label, res in results.items() for mode in res["summary"]["0"]]
    if not lines:
        raise ValueError("plot_shift needs at least one result")
    fig = _figure(9.6, 4.8)
    axes = fig.subplots(1, 2)
    step = min(0.08, 0.5 / max(len(lines) - 1, 1))  # every line's marks within half a severity
    handles, shown = [], set()
    for i, (label, mode) in enumerate(lines):
        res = results[label]
        sev = sorted(int(s) for s in res["summary"])
        shown.update(sev)
        style: Dict[str, Any] = dict(color=f"C{i % 10}", marker=MARKERS.get(mode, "o"), markersize=4,
                     linestyle=["-", "--", ":", "-."][list(results).index(label) % 4])
        xs = [s + (i - (len(lines) - 1) / 2) * step for s in sev]
        for ax, k in zip(axes, ("ece", "error")):
            rows = [res["summary"][str(s)][mode] for s in sev]
            ax.plot(*_broken(xs, [r[k] for r in rows], sev), **style)
            bars = [(x, *r[f"{k}_interval"]) for x, r in zip(xs, rows) if r.get(f"{k}_interval")]
            if bars:
                bx, low, high = zip(*bars)
                ax.vlines(bx, low, high, color=style["color"], linewidth=1, alpha=0.6)
        handles.append(Line2D([], [], **style, label=f"{label}: {mode.replace('+T', ' + temperature')}"))
    if any(r.get("ece_interval") for res in results.values() for row in res["summary"].values()
           for r in row.values()):
        handles.append(Line2D([], [], color="grey", marker="|", markersize=10, linestyle="none",
                              label="95% bootstrap interval of the mean (images resampled)"))
    ticks = sorted(shown)
    for ax, k in zip(axes, ("expected calibration error (%, 15 bins)", "error (%)")):
        ax.set_xticks(ticks, ["clean" if s == 0 else str(s) for s in ticks])
        ax.set_xlim(ticks[0] - 0.5, ticks[-1] + 0.5)
        ax.set_xlabel("corruption severity")
        ax.set_ylabel(k)
        ax.grid(True, axis="y", alpha=0.3)
    for ncol in range(min(3, len(handles)), 0, -1):  # as many columns as fit the width: long labels get fewer
        legend = fig.legend(handles=handles, loc="outside lower center", ncol=ncol, frameon=False, fontsize=8)
        if ncol == 1 or legend.get_window_extent(fig.canvas.get_renderer()).width <= 0.98 * fig.bbox.width:
            break
        legend.remove()
    if title:
        _title(fig, fig.suptitle, title)
    fig.savefig(path)
