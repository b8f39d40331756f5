"""What a finished search shows: the best trial on the test split, the top trials, importances, plots, and the
best configuration as a file that ``swapout train --config-json`` runs.

    STUDY_DIR/summary.md, summary.json   best parameters, top trials, importances, test figures, overhead
    STUDY_DIR/history.png                each trial's held-out error in order, and the best so far
    STUDY_DIR/thetas.png                 each searched parameter against the held-out error
    STUDY_DIR/best-config.json           the preset's own recipe with the best trial's joins
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, List

from ..runs.config import JOIN_FIELDS, load_preset
from ..runs.rundir import save_json
from .space import describe

__all__ = ["write_summary", "importances", "best_trial"]


def best_trial(study):
    """The best trial of ``study``.

    Args:
        study: an Optuna study of ``swapout tune``.

    Returns:
        The complete trial of least value (the first of equals; Optuna's ``FrozenTrial``), or None if no trial
        is complete.
    """
    import optuna

    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if t.value is not None]
    return min(done, key=lambda t: (t.value, t.number)) if done else None


def importances(study) -> Dict[str, float]:
    """Optuna's PED-ANOVA importances of the parameters every complete trial has (no extra dependency, unlike
    fANOVA's scikit-learn); empty when there are too few trials to say."""
    import warnings

    import optuna

    try:
        evaluator = optuna.importance.PedAnovaImportanceEvaluator()
        with warnings.catch_warnings():  # "too few trials": the summary then shows no importances
            warnings.simplefilter("ignore")
            return {k: round(float(v), 4) for k, v in
                    optuna.importance.get_param_importances(study, evaluator=evaluator).items()}
    except (ValueError, RuntimeError, ZeroDivisionError):
        return {}


def _rows(study) -> List[Dict[str, Any]]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        if "repeats" in t.user_attrs:  # a draw discarded before it ran: not a trial of the search
            continue
        last = t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None
        rows.append({"trial": t.number, "state": t.state.name, "value": t.value, "last_report": last,
                     "epochs_reported": len(t.intermediate_values), "params": t.params, "run": t.user_attrs.get("run"),
                     "retry_of": t.system_attrs.get("failed_trial"), "engine_s": t.user_attrs.get("engine_s"),
                     "wall_s": t.user_attrs.get("wall_s")})
    return rows


def _plots(rows: List[Dict[str, Any]], out: Path, objective: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r["state"] == "COMPLETE"]
    pruned = [r for r in rows if r["state"] == "PRUNED" and r["last_report"] is not None]
    fig, ax = plt.subplots(figsize=(6.4, 4))
    ax.plot([r["trial"] for r in done], [r["value"] for r in done], "o", label=f"complete ({objective})")
    ax.plot([r["trial"] for r in pruned], [r["last_report"] for r in pruned], "x", color="C3",
            label="pruned (last report)")
    best, xs, ys = float("inf"), [], []
    for r in sorted(done, key=lambda r: r["trial"]):
        best = min(best, r["value"])
        xs.append(r["trial"])
        ys.append(best)
    ax.step(xs, ys, where="post", color="C2", label="best so far")
    ax.set(xlabel="trial", ylabel="held-out error (%)", title="Optimisation history")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "history.png", dpi=120)
    plt.close(fig)
    names = {k for r in rows for k, v in r["params"].items() if isinstance(v, float)}
    grid = [[f"{t}_{k}" for k in ("start", "end", "value") if f"{t}_{k}" in names] for t in ("theta1", "theta2")]
    grid = [row for row in grid if row]
    if not grid:
        return
    cols = max(len(row) for row in grid)
    fig, axes = plt.subplots(len(grid), cols, figsize=(3.3 * cols, 3.0 * len(grid)), sharey=True, squeeze=False)
    for i, row in enumerate(grid):
        for j in range(cols):
            ax = axes[i][j]
            if j >= len(row):
                ax.axis("off")
                continue
            for group, marker, label in ((done, "o", f"complete ({objective})"),
                                         (pruned, "x", "pruned (last report)")):
                pts = [(r["params"][row[j]], r["value"] if r["state"] == "COMPLETE" else r["last_report"])
                       for r in group if row[j] in r["params"]]
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker, linestyle="", label=label,
                        color="C0" if marker == "o" else "C3")
            ax.set(xlabel=row[j])
        axes[i][0].set(ylabel="held-out error (%)")
    axes[0][0].legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out / "thetas.png", dpi=120)
    plt.close(fig)


def _test_figures(search, best_run: Path) -> Dict[str, Any]:
    """The best trial's network on the test split, both inference modes: the search's one look at it."""
    from ..runs.evaluate import evaluate_run

    cfg = json.loads((best_run / "config.json").read_text())["config"]
    result = evaluate_run(str(best_run), split="test", samples=cfg["eval_samples"], repeats=0,
                          limit=cfg["eval_limit"], device=search.machine.get("device"),
                          data_dir=search.machine.get("data_dir"), progress=False, seed=cfg["seed"])
    return {k: result[k] for k in ("note", "images", "deterministic_error", "stochastic_error", "samples")
            if k in result}


def write_summary(study, search, say: Callable[[str], None] = print) -> Dict[str, Any]:
    """Write the summary files of a finished search into its study folder; returns summary.json's contents."""
    out = search.study_dir
    out.mkdir(parents=True, exist_ok=True)
    rows = _rows(study)
    done = sorted((r for r in rows if r["state"] == "COMPLETE"), key=lambda r: r["value"])
    summary: Dict[str, Any] = {"study": study.study_name, "objective": f"{search.objective} error on the held-out "
                               f"images (%)", "trials": len(rows),
                               "states": {s: sum(r["state"] == s for r in rows) for s in
                                          ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")},
                               "importances": importances(study), "top": done[:5], "all": rows}
    walls = [r for r in rows if r["wall_s"] and r["engine_s"] is not None]
    if walls:
        summary["engine_share"] = round(sum(r["engine_s"] for r in walls) / sum(r["wall_s"] for r in walls), 6)
    if done:
        best_run = out / done[0]["run"]
        joins = {k: v for k, v in json.loads((best_run / "config.json").read_text())["config"].items()
                 if k in JOIN_FIELDS}
        summary["best"] = {**done[0], "joins": joins, "held_out_error": done[0]["value"],
                           "test": _test_figures(search, best_run)}
        preset = search.base.get("preset")
        recipe = {**(load_preset(preset) if preset else search.base), **joins}
        save_json(recipe, out / "best-config.json")
    _plots(rows, out, search.objective)
    save_json(summary, out / "summary.json")
    (out / "summary.md").write_text(_markdown(summary))
    say(f"study {study.study_name} finished: summary in {out / 'summary.md'}")
    return summary


def _markdown(s: Dict[str, Any]) -> str:
    lines = [f"# Study {s['study']}", "", f"Objective: {s['objective']}. Trials: {s['trials']} "
             f"({', '.join(f'{v} {k.lower()}' for k, v in s['states'].items() if v)}).", ""]
    if "best" in s:
        b, t = s["best"], s["best"]["test"]
        joins = {k: v for k, v in b["joins"].items() if v is not None and (k != "skipforward_on" or
                                                                            b["joins"]["method"] == "skipforward")}
        lines += [f"**Best: trial {b['trial']}**, {', '.join(f'{k} {v}' for k, v in joins.items())}: "
                  f"held-out error {b['held_out_error']:.2f}%; test ({t['note']}): deterministic "
                  f"{t['deterministic_error']:.2f}%" + (f", stochastic {t['stochastic_error']:.2f}% ({t['samples']} "
                                                        f"passes)" if "stochastic_error" in t else ""), ""]
        lines += ["| trial | held-out error (%) | parameters |", "| --- | --- | --- |"]
        lines += [f"| {r['trial']} | {r['value']:.2f} | {describe(r['params'])} |" for r in s["top"]]
    if s["importances"]:
        lines += ["", "Importances (PED-ANOVA): " + ", ".join(f"{k} {v:.2f}" for k, v in s["importances"].items())]
    if "engine_share" in s:
        lines += ["", f"Time waiting for the study's database: {100 * s['engine_share']:.3f}% of the trials' wall "
                      f"time."]
    lines += ["", "![history](history.png)", "", "![parameters](thetas.png)", ""]
    return "\n".join(lines)

