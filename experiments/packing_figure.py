"""The packed-against-solo comparison as a figure: each seed's test and held-out error, deterministic and
stochastic, trained in one pack against trained alone, from the runs' ``results.json``:

    python experiments/packing_figure.py results/packing/two-epochs results/packing/packed-vs-solo.png

Points on the diagonal are seeds whose packed run scored what their solo run scored; the spread along it is
the seeds' own.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

PANELS = [("test", "deterministic_error", "test, deterministic"), ("test", "stochastic_error", "test, stochastic"),
          ("val", "deterministic_error", "held-out, deterministic"),
          ("val", "stochastic_error", "held-out, stochastic")]


def errors(folder: Path, split: str, key: str) -> dict:
    """{seed: error (%)} of the runs ``folder/seed-S/results.json``."""
    return {int(p.parent.name.split("-")[1]): json.loads(p.read_text())["splits"][split][key]
            for p in sorted(folder.glob("seed-*/results.json"))}


def main(root: Path, out: Path) -> None:
    fig, axes = plt.subplots(1, len(PANELS), figsize=(12, 3.8), constrained_layout=True)
    for ax, (split, key, title) in zip(axes, PANELS):
        packed, solo = errors(root / "packed", split, key), errors(root / "solo", split, key)
        seeds = sorted(packed.keys() & solo.keys())
        xs, ys = [solo[s] for s in seeds], [packed[s] for s in seeds]
        low, high = min(xs + ys) - 2, max(xs + ys) + 2
        ax.plot([low, high], [low, high], color="0.6", linewidth=1, zorder=0)
        ax.scatter(xs, ys, color="tab:blue", zorder=1)
        for s, x, y in zip(seeds, xs, ys):
            ax.annotate(f"seed {s}", (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
        ax.set(xlim=(low, high), ylim=(low, high), aspect="equal", title=title, xlabel="solo run, error (%)")
        ax.title.set_fontsize(9)
    axes[0].set_ylabel("packed run, error (%)")
    fig.suptitle("4 seeds of short/quickstart, 2 epochs: one pack of 4 against 4 solo runs (first 2,000 images)",
                 fontsize=9)
    fig.savefig(out, dpi=100)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
