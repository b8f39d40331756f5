"""``swapout report``: runs beside the paper's figures for the same preset, as a markdown table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from .config import PAPER_EPOCHS, list_presets
from .rundir import RunDir

__all__ = ["report_table"]


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def report_table(run_dirs: Sequence[str]) -> str:
    """One row per evaluated split of each run: its errors, the paper's, and what differs from the paper."""
    presets = list_presets()
    rows = ["| run | preset | epochs | split | deterministic error (%) | stochastic error (%) | paper (%) | differs from the paper |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for run_dir in run_dirs:
        run = RunDir(run_dir)
        cfg = run.read_config()
        results = run.read_results()
        if results is None:
            raise ValueError(f"{run.path} has no results.json yet: the run is unfinished (resume it with "
                             f"swapout train --resume {run.path})")
        paper = presets.get(cfg.get("preset") or "", {}).get("paper", {})
        paper_text = ", ".join(f"{k.replace('_error', '').replace('error', 'reported')} {v}" for k, v in paper.items()) or "-"
        epochs = results.get("epochs_completed", cfg["epochs"])
        splits = dict(results["splits"])
        for extra in sorted(run.path.glob("eval-*.json")):
            splits[f"{extra.stem[5:]} (swapout eval)"] = json.loads(extra.read_text())
        for split, fig in splits.items():
            marks = []
            if epochs < PAPER_EPOCHS:
                marks.append(f"{epochs:g} of {PAPER_EPOCHS} epochs")
            if not split.startswith("test") or fig.get("note", "").split(" ")[0] != "10,000":
                marks.append(fig.get("note", split))
            sto = _fmt(fig.get("stochastic_error"))
            if "samples" in fig:
                sto += f" ({fig['samples']} passes)"
            rows.append(f"| {Path(run_dir).name} | {cfg.get('preset') or '-'} | {epochs:g} | {split} | "
                        f"{_fmt(fig['deterministic_error'])} | {sto} | {paper_text} | {'; '.join(marks) or '-'} |")
    return "\n".join(rows)
