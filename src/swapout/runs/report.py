"""``swapout report``: runs beside the paper's figures for the same preset, as a markdown table."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple, Union

from ..progress import plural
from .config import PAPER_EPOCHS, list_presets
from .rundir import RunDir, read_json

__all__ = ["report_table", "seed_table"]


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def _paper_text(paper: dict) -> str:
    return ", ".join(f"{k.replace('_error', '').replace('error', 'reported')} {v}" for k, v in paper.items()) or "-"


def _run_name(run_dir) -> str:
    """The run directory's name; a sweep's ``NAME/seed-S`` keeps its entry's name too."""
    path = Path(run_dir)
    return f"{path.parent.name}/{path.name}" if path.name.startswith("seed-") else path.name


def presets_table() -> str:
    """Every preset with its row of the paper and the paper's error, as a markdown table."""
    rows = ["| preset | paper row | dataset | model | depth | width | method | paper error (%) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, p in list_presets().items():
        c = p["config"]
        rows.append(f"| {name} | {p['row']} | {c.get('dataset', 'cifar10')} | {c.get('model')} | {c.get('depth')} | "
                    f"{c.get('width')} | {c.get('method')} | {_paper_text(p['paper'])} |")
    return "\n".join(rows)


# Fields of a config that change the network or its training, and so the figure the paper's row can be set
# beside; the others say how a run was carried out (its seed, device, speed, stops, evaluation), and the
# epochs and the evaluated images are marked on their own.
_NOT_RECIPE = ("seed", "device", "data_dir", "preset", "precision", "compile", "checkpoint_every", "eval_samples",
               "eval_limit", "max_steps", "epochs", "sync_bn")
# Fields whose change makes another network than the paper's row: its figure is then not shown beside the run.
_NETWORK = ("dataset", "model", "depth", "width", "method", "theta1", "theta2", "granularity", "skipforward_on")


def _against_preset(cfg: Dict[str, Any], presets: Dict[str, Any]) -> Tuple[List[str], Dict[str, Any]]:
    """The recipe fields in which a run's config differs from its preset (``field=value``), and the paper's
    figures for the preset: none when the run has no preset or trains another network than the preset's."""
    from .config import TrainConfig

    preset = presets.get(cfg.get("preset") or "")
    if preset is None:
        return [], {}
    base_cfg = TrainConfig.from_dict({**preset["config"], "preset": cfg["preset"]})
    base, joins = base_cfg.to_dict(), set()
    try:  # both in one form (a config written by an older version may store a field otherwise)
        run_cfg = TrainConfig.from_dict(cfg)
        cfg = run_cfg.to_dict()
        if run_cfg.join() == base_cfg.join():  # thetas written out as the method's defaults are no change
            joins = {"theta1", "theta2", "granularity", "skipforward_on"}
    except ValueError:
        pass
    changed = [k for k, v in cfg.items() if k not in _NOT_RECIPE and k not in joins and base.get(k) != v]
    paper = {} if any(k in _NETWORK for k in changed) else preset["paper"]
    return [f"{k}={cfg[k]}" + (" (the paper's, scaled to the epochs)" if k == "milestones" and cfg[k] is None
                               else "") for k in changed], paper


def _paper_beside(cfg: Dict[str, Any], presets: Dict[str, Any], paper: Dict[str, Any]) -> str:
    """The paper column: its figures, or why a preset that has some shows none."""
    own = presets.get(cfg.get("preset") or "", {}).get("paper")
    return "- (not the preset's network)" if own and not paper else _paper_text(paper)


def report_table(run_dirs: Sequence[Union[str, os.PathLike[str]]]) -> str:
    """One row per evaluated split of each run: its errors, the paper's for its preset, and what differs from
    the paper (the epochs, the evaluated images, and the recipe fields changed from the preset's). A run that
    changes the preset's network (its dataset, model, depth, width, method or thetas) is not set beside the
    paper's figure."""
    presets = list_presets()
    rows = ["| run | preset | epochs | split | deterministic error (%) | stochastic error (%) | paper (%) "
            "| differs from the paper |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for run_dir in run_dirs:
        run = RunDir(run_dir)
        cfg, results = _finished(run)
        changed, paper = _against_preset(cfg, presets)
        paper_text = _paper_beside(cfg, presets, paper)
        epochs = results.get("epochs_completed", cfg["epochs"])
        splits = dict(results["splits"])
        for extra in sorted(run.path.glob("eval-*.json")):
            splits[f"{extra.stem[5:]} (swapout eval)"] = _figures(read_json(extra, "an evaluation's figures"), extra)
        for split, fig in splits.items():
            marks = list(changed)
            if epochs < PAPER_EPOCHS:
                marks.append(f"{epochs:g} of {PAPER_EPOCHS} epochs")
            note = fig.get("note", split)
            # the whole official test split needs no note; a part of it, or the exact images, do
            if not split.startswith("test") or not note.startswith("10,000") or "first" in note:
                marks.append(note)
            sto = _fmt(fig.get("stochastic_error"))
            if "samples" in fig:
                sto += f" ({plural(fig['samples'], 'pass')})"
            rows.append(f"| {_run_name(run_dir)} | {cfg.get('preset') or '-'} | {epochs:g} | {split} | "
                        f"{_fmt(fig['deterministic_error'])} | {sto} | {paper_text} | {'; '.join(marks) or '-'} |")
    return "\n".join(rows)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _figures(fig: Dict[str, Any], where: Any) -> Dict[str, Any]:
    """One split's figures, checked: the errors are numbers (the stochastic one may be absent)."""
    if not _number(fig.get("deterministic_error")) or \
            not (fig.get("stochastic_error") is None or _number(fig["stochastic_error"])) or \
            not (fig.get("samples") is None or isinstance(fig["samples"], int)) or \
            not isinstance(fig.get("note", ""), str):
        raise ValueError(f"{where}: not a split's figures (a number deterministic_error, and stochastic_error and "
                         f"samples numbers if given)")
    return fig


def _finished(run: RunDir) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """A finished run's config and results, checked as far as the tables read them; ValueError naming the file."""
    cfg, results = run.read_config(), run.read_results()
    if results is None:
        raise ValueError(f"{run.path} has no results.json yet: the run is unfinished (resume it with "
                         f"swapout train --resume {run.path})")
    if not isinstance(results.get("splits"), dict) or not _number(results.get("epochs_completed", cfg.get("epochs"))):
        raise ValueError(f"{run.results_path}: not a run's results (its splits and epochs_completed are missing)")
    if not isinstance(cfg.get("seed"), int) or not _number(cfg.get("epochs")):
        raise ValueError(f"{run.config_path}: not a run's config (its seed and epochs are missing)")
    for split, fig in results["splits"].items():
        _figures(fig, f"{run.results_path}, split {split!r}")
    return cfg, results


# Fields that tell the seeds of one experiment apart, or where they ran: not part of what is compared.
_SEED_FIELDS = ("seed", "device", "data_dir")


def _spread(values: Sequence[float]) -> str:
    import statistics

    sd = f"{statistics.stdev(values):.2f}" if len(values) > 1 else "-"
    return f"{statistics.mean(values):.2f} ± {sd}"


def seed_table(run_dirs: Sequence[Union[str, os.PathLike[str]]]) -> str:
    """Runs that differ only in their seed, aggregated: one row per such group and evaluated split.

    Each row gives the preset, the config fields that differ from it, the seeds, the deterministic and
    stochastic errors (%) as mean ± sample standard deviation over the seeds ("-" with one seed), the
    paper's figure for the preset and the mean minus that figure (test split only). Splits are those
    evaluated by every run of the group; a stochastic error is shown only if every run has one. Two runs
    of one group with the same seed are refused (ValueError).
    """
    import statistics

    from .config import TrainConfig

    presets = list_presets()
    groups: Dict[str, List[Any]] = {}
    dirs: Dict[str, List[Any]] = {}
    for run_dir in run_dirs:
        cfg, results = _finished(RunDir(run_dir))
        key = json.dumps({k: v for k, v in cfg.items() if k not in _SEED_FIELDS}, sort_keys=True)
        twin = next((d for d, (c, _) in zip(dirs.get(key, []), groups.get(key, [])) if c["seed"] == cfg["seed"]), None)
        if twin is not None:  # its spread would be a machine's, or a copy's, not the seeds'
            raise ValueError(f"{twin} and {run_dir} are the same experiment with the same seed {cfg['seed']}: "
                             f"--by-seed needs runs that differ in their seed; leave one out")
        groups.setdefault(key, []).append((cfg, results))
        dirs.setdefault(key, []).append(run_dir)
    rows = ["| preset | differs from the preset | seeds | split | deterministic error (%) | stochastic error (%) "
            "| paper (%) | mean - paper |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for members in groups.values():
        cfg = members[0][0]
        preset = presets.get(cfg.get("preset") or "")
        base = TrainConfig.from_dict({**preset["config"], "preset": cfg["preset"]} if preset else {}).to_dict()
        changed = ", ".join(f"{k}={v}" for k, v in cfg.items()
                            if k not in _SEED_FIELDS + ("preset",) and base.get(k) != v) or "-"
        paper = _against_preset(cfg, presets)[1]
        paper_text = _paper_beside(cfg, presets, paper)
        seeds = f"{len(members)} ({', '.join(str(c['seed']) for c, _ in members)})"
        split_names = [s for s in members[0][1]["splits"] if all(s in r["splits"] for _, r in members)]
        for split in split_names:
            figs = [r["splits"][split] for _, r in members]
            det = [f["deterministic_error"] for f in figs]
            sto = [f["stochastic_error"] for f in figs] if all(f.get("stochastic_error") is not None for f in figs) \
                else None
            sto_text = "-" if sto is None else _spread(sto)
            passes = {f.get("samples") for f in figs}
            if sto is not None and len(passes) == 1 and None not in passes:
                sto_text += f" ({plural(passes.pop(), 'pass')})"
            diffs = []
            if split == "test":
                ours = {"deterministic_error": ("det", det), "stochastic_error": ("stoch", sto),
                        "error": ("stoch", sto) if sto else ("det", det)}
                for k, v in paper.items():
                    mode, values = ours.get(k, (None, None))
                    if values:
                        diffs.append(f"{mode} {statistics.mean(values) - v:+.2f}")
            rows.append(f"| {cfg.get('preset') or '-'} | {changed} | {seeds} | {split} | {_spread(det)} | "
                        f"{sto_text} | {paper_text} | {', '.join(diffs) or '-'} |")
    return "\n".join(rows)
