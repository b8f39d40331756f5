"""The CPU replication's README, drawn from its committed runs: how far the campaign got, Table 2 at this
budget, the budget curve, Figure 2, implicit against explicit ensembles, and what each claim of the paper
looks like here.

    python experiments/cpu_replication/report.py            # writes results/cpu-replication/README.md and figures

Everything comes from ``results/cpu-replication/runs/`` (each run's config.json, metrics.jsonl, results.json
and train.log, the sweep's campaign.log) and from what phase 5 wrote beside the runs (``figure2-test.json``
of ``swapout eval --repeats``, ``ensembles.json`` of ``ensembles.py``). A figure whose runs are not finished
is shown as missing, never estimated. Every interval is a 95% interval; its kind is said where it is used.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "results" / "cpu-replication"
SCHEDULES = [  # name in the sweep, the paper's label, the paper's Table 2 (W x 2, 256 epochs): det, stoch
    ("theta-0.5-0.5", "theta1 = theta2 = 0.5", 10.36, 6.69),
    ("theta-0.2-0.8", "theta1 = 0.2, theta2 = 0.8", 10.14, 7.63),
    ("theta-0.8-0.2", "theta1 = 0.8, theta2 = 0.2", 7.58, 6.56),
    ("linear-0.5-1", "Linear(0.5, 1)", 7.34, 6.52),
    ("linear-1-0.5", "Linear(1, 0.5)", 6.43, 5.68),
]
RESNET_PAPER = {"w1": 8.27, "w2": 6.54}  # ResNet v2 Ours, Table 1 (256 epochs)
SWAPOUT_W1_PAPER = (8.58, 7.92)  # Swapout v2 (20) W x 1, Linear(1, 0.5), Table 3: det, stoch
BUDGETS = (16, 32, 64)
# two-sided 95% quantiles of Student's t for 1..10 degrees of freedom (standard tables)
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def t975(df: float) -> float:
    """The 97.5% quantile of Student's t; a fractional ``df`` is rounded down, which widens the interval.

    Beyond 10 degrees of freedom: the Cornish-Fisher expansion of t around the normal quantile in powers of
    1/df (Hill, "Algorithm 396: Student's t-quantiles", CACM 1970), whose first four terms are within 1e-4 of
    the exact quantile there (2.2010 at 11 df, 1.9600 in the limit).
    """
    d = max(1, int(math.floor(df)))
    if d in T975:
        return T975[d]
    z = 1.959964
    terms = ((z ** 3 + z) / 4, (5 * z ** 5 + 16 * z ** 3 + 3 * z) / 96,
             (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / 384,
             (79 * z ** 9 + 776 * z ** 7 + 1482 * z ** 5 - 1920 * z ** 3 - 945 * z) / 92160)
    return z + sum(g / d ** (k + 1) for k, g in enumerate(terms))


# ---- reading the runs ---------------------------------------------------------------------------------------


def read_run(path: Path) -> Dict[str, Any]:
    """One run's state: its config, epochs done, results if finished, its Figure 2 curve if drawn, and how often
    it was started."""
    cfg = json.loads((path / "config.json").read_text())["config"] if (path / "config.json").exists() else None
    metrics = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines() if line.strip()] \
        if (path / "metrics.jsonl").exists() else []
    results = json.loads((path / "results.json").read_text()) if (path / "results.json").exists() else None
    figure2 = json.loads((path / "figure2-test.json").read_text()) if (path / "figure2-test.json").exists() else None
    log = (path / "train.log").read_text(errors="replace") if (path / "train.log").exists() else ""
    complete = [m for m in metrics if not m.get("partial")]
    failed = None
    if results and "failed" in results:
        failed = results["failed"]
    elif re.search(r"^swapout train: .*(non-finite|Error|error)", log, re.M):
        failed = log.strip().splitlines()[-1]
    return {"path": path, "config": cfg, "metrics": metrics, "results": results, "figure2": figure2, "failed": failed,
            "epochs_done": len(complete), "starts": log.count("\n=== "),
            "train_time_s": (results or {}).get("train_time_s") or (metrics[-1]["train_time_s"] if metrics else 0.0)}


def read_campaign(runs_dir: Path) -> Dict[str, Any]:
    """The sweep's definition and every run of it, in order; the invocations from campaign.log."""
    definition = json.loads((runs_dir / "sweep.json").read_text())
    runs = []
    for entry in definition["runs"]:
        for seed in entry["seeds"]:
            run = read_run(runs_dir / entry["name"] / f"seed-{seed}")
            run.update(name=entry["name"], seed=seed, epochs=entry["overrides"]["epochs"])
            runs.append(run)
    invocations, machines, notes = [], set(), []
    log = runs_dir / "campaign.log"
    for line in (log.read_text().splitlines() if log.exists() else []):
        note = re.match(r"=== (\S+) note: (.*)", line)
        if note:  # what the sweep's lines cannot say, appended by whoever ran it (see TAIL)
            notes.append((note.group(1), note.group(2)))
        m = re.match(r"=== (\S+) (start|end): (.*)", line)
        if not m:
            continue
        when = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%SZ")
        if m.group(2) == "start":
            invocations.append({"start": when, "end": None, "what": m.group(3)})
            machines.add(m.group(3).split(", ", 1)[1] if ", " in m.group(3) else m.group(3))
        elif invocations and invocations[-1]["end"] is None:
            invocations[-1]["end"], invocations[-1]["status"] = when, m.group(3)
    return {"runs": runs, "invocations": invocations, "machines": sorted(machines), "notes": sorted(notes)}


def test_errors(runs: Sequence[Dict], mode: str) -> List[float]:
    """The finished runs' test errors (%) in ``mode``: deterministic or stochastic."""
    return [r["results"]["splits"]["test"][f"{mode}_error"] for r in runs
            if r["results"] and "splits" in r["results"] and f"{mode}_error" in r["results"]["splits"]["test"]]


def group(campaign: Dict, name: str) -> List[Dict]:
    return [r for r in campaign["runs"] if r["name"] == name]


# ---- statistics --------------------------------------------------------------------------------------------


def mean_sd(values: Sequence[float]) -> str:
    if not values:
        return "not yet"
    if len(values) == 1:  # one seed has no spread to give
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def test_images(runs: Sequence[Dict]) -> int:
    return next((r["results"]["splits"]["test"]["images"] for r in runs if r["results"] and "splits" in r["results"]),
                9980)


def pooled_spread(groups: Sequence[Sequence[float]]) -> Optional[Tuple[float, int]]:
    """The spread between seeds, pooled over every group that has two or more: its standard deviation (points)
    and degrees of freedom, sum(n_i - 1). It assumes the same seed spread for every method, which is what lets
    two seeds per method judge anything: Welch's t on 2 + 2 seeds has one or two degrees of freedom."""
    full = [g for g in groups if len(g) > 1]
    df = sum(len(g) - 1 for g in full)
    if not df:
        return None
    return math.sqrt(sum((len(g) - 1) * statistics.variance(g) for g in full) / df), df


def difference(a: Sequence[float], b: Sequence[float], n_images: int, pooled: Optional[Tuple[float, int]] = None,
               pooled_over: str = "the 32-epoch methods") -> Optional[Tuple[float, float, float, str]]:
    """Mean of ``a`` minus mean of ``b`` (errors in %) with a 95% interval. With the seeds' spread ``pooled``
    over methods (`pooled_spread`): Student's t on its degrees of freedom, an interval for these test images,
    as the paper's claims are made on them. Without it (no method has two seeds yet): the test set's sampling
    error alone (normal, two independent binomials over ``n_images``), which leaves the seeds' spread out and
    says so."""
    if not a or not b:
        return None
    d = statistics.mean(a) - statistics.mean(b)
    if pooled is None:
        pa, pb = statistics.mean(a) / 100, statistics.mean(b) / 100
        half = 1.96 * 100 * math.sqrt((pa * (1 - pa) + pb * (1 - pb)) / n_images)
        kind = f"test-set sampling only, {len(a)} and {len(b)} seed(s): seed spread not included"
    else:
        sd, df = pooled
        half = t975(df) * sd * math.sqrt(1 / len(a) + 1 / len(b))
        kind = f"t over seeds, spread pooled over {pooled_over} ({df} df), n = {len(a)} and {len(b)}"
    return d, d - half, d + half, kind


def paired(diffs: Sequence[float], n_images: int, p: float) -> Optional[Tuple[float, float, float, str]]:
    """Mean of per-run differences with a 95% t interval over runs (two or more), else the test set's
    sampling error of one error rate ``p`` (%) as a rough bound."""
    if not diffs:
        return None
    d = statistics.mean(diffs)
    if len(diffs) > 1:
        half = t975(len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
        return d, d - half, d + half, f"t over runs (n = {len(diffs)})"
    half = 1.96 * 100 * math.sqrt(p / 100 * (1 - p / 100) / n_images)
    return d, d - half, d + half, "one run: test-set sampling of one error rate, a rough bound"


def sign_count(diffs: Sequence[float]) -> str:
    """How many differences are below 0, with the two-sided p of a sign test: a description beside the t rule's
    verdict (which it does not change), since the runs' differences are far from one common size."""
    k, n = sum(1 for d in diffs if d < 0), sum(1 for d in diffs if d != 0)
    tail = sum(math.comb(n, i) for i in range(min(k, n - k) + 1)) / 2 ** n if n else 1.0
    ties = f", {len(diffs) - n} of exactly 0 left out" if len(diffs) > n else ""
    return (f"{k} of {n} below 0{ties} (sign test, two-sided p = {min(1.0, 2 * tail):.3f}; described, not the rule, "
            "and added after the runs were seen)")


def verdict(interval: Optional[Tuple[float, float, float, str]], better_below_zero: bool = True) -> str:
    """holds when the whole interval is on the claim's side of 0, does not hold when on the other."""
    if interval is None:
        return "cannot tell yet (runs not finished)"
    _, lo, hi, _ = interval
    if (hi < 0) if better_below_zero else (lo > 0):
        return "holds"
    if (lo > 0) if better_below_zero else (hi < 0):
        return "does not hold"
    return "cannot tell"


def fmt_interval(interval: Optional[Tuple[float, float, float, str]]) -> str:
    if interval is None:
        return "-"
    d, lo, hi, kind = interval
    return f"{d:+.2f} points [{lo:+.2f}, {hi:+.2f}] ({kind})"


# ---- sections ------------------------------------------------------------------------------------------------


def totals(campaign: Dict) -> List[str]:
    """How far the campaign got and what it cost: runs finished, invocations, stops and resumptions, hours, and
    the machines (the README's progress and the Results page both say it)."""
    runs, inv = campaign["runs"], campaign["invocations"]
    done = [r for r in runs if r["results"] and not r["failed"]]
    wall = sum(((i["end"] or i["start"]) - i["start"]).total_seconds() for i in inv)
    train = sum(r["train_time_s"] for r in runs)
    stops = sum(1 for i in inv if i["end"] is not None)
    lines = [f"**{len(done)} of {len(runs)} runs finished**, {sum(1 for r in runs if r['failed'])} failed; "
             f"{len(inv)} invocation(s) of the campaign, {stops} ended with checkpoints or finished, "
             f"{sum(max(r['starts'] - 1, 0) for r in runs)} resumption(s) of a run from its checkpoint. "
             f"Wall time {wall / 3600:.2f} h on {len(campaign['machines']) or 'no'} machine(s) "
             f"({2 * wall / 3600:.2f} core-hours: two runs at a time, one core each); training time of all runs "
             f"together {train / 3600:.2f} h.", ""]
    return (lines + [f"- machine: {machine}" for machine in campaign["machines"]]
            + [f"- note, {when}: {text}" for when, text in campaign.get("notes", [])])


def progress_section(campaign: Dict) -> List[str]:
    runs = campaign["runs"]
    lines = totals(campaign)
    nets = group(campaign, "linear-1-0.5-32ep")
    drawn = sum(1 for r in nets if curve_of(r)[0] is not None)
    ensembles = campaign["base"] / "ensembles.json"
    lines.append(f"- phase 5 (inference only): Figure 2 drawn for {drawn} of {len(nets)} Linear(1, 0.5) 32-epoch "
                 "networks; the ensembles " + (f"written ({json.loads(ensembles.read_text())['seconds'] / 60:.0f} min)"
                                               if ensembles.exists() else "not yet"))
    lines += ["", "| run | epochs | state | test det. / stoch. error (%) | started |",
              "| --- | --- | --- | --- | --- |"]
    for r in runs:
        if r["failed"]:
            state = f"failed: {r['failed'][:120]}"
        elif r["results"]:
            state = "finished"
        elif r["config"]:
            state = f"{r['epochs_done']} of {r['epochs']} epochs"
        else:
            state = "not started"
        t = (r["results"] or {}).get("splits", {}).get("test", {})
        err = f"{t['deterministic_error']:.2f} / " + (f"{t['stochastic_error']:.2f}" if "stochastic_error" in t
                                                       else "-") if t else "-"
        lines.append(f"| {r['name']}/seed-{r['seed']} | {r['epochs']} | {state} | {err} | {r['starts']} time(s) |")
    return lines


def table2_section(campaign: Dict) -> List[str]:
    lines = ["| method (W x 1, 32 epochs) | n | deterministic (%) | stochastic, 30 passes (%) | "
             "paper: W x 2, 256 epochs, det. / stoch. (%) |", "| --- | --- | --- | --- | --- |"]
    for name, label, p_det, p_sto in SCHEDULES:
        runs = group(campaign, f"{name}-32ep")
        det, sto = test_errors(runs, "deterministic"), test_errors(runs, "stochastic")
        lines.append(f"| Swapout, {label} | {len(det)} | {mean_sd(det)} | {mean_sd(sto)} | {p_det} / {p_sto} |")
    det = test_errors(group(campaign, "resnet-32ep"), "deterministic")
    lines.append(f"| ResNet v2 Ours (baseline) | {len(det)} | {mean_sd(det)} | - (no masks) | "
                 f"{RESNET_PAPER['w2']} (Table 1; W x 1: {RESNET_PAPER['w1']}) |")
    return lines


def budget_rows(campaign: Dict) -> Dict[str, Dict[int, List[float]]]:
    """Test error by method and budget: ResNet deterministic, swapout Linear(1, 0.5) stochastic."""
    out: Dict[str, Dict[int, List[float]]] = {"ResNet v2 Ours": {}, "Swapout Linear(1, 0.5), 30 passes": {},
                                              "Swapout Linear(1, 0.5), deterministic": {}}
    for epochs in BUDGETS:
        out["ResNet v2 Ours"][epochs] = test_errors(group(campaign, f"resnet-{epochs}ep"), "deterministic")
        swap = group(campaign, f"linear-1-0.5-{epochs}ep")
        out["Swapout Linear(1, 0.5), 30 passes"][epochs] = test_errors(swap, "stochastic")
        out["Swapout Linear(1, 0.5), deterministic"][epochs] = test_errors(swap, "deterministic")
    return out


def budget_section(campaign: Dict, figure: Path) -> List[str]:
    rows = budget_rows(campaign)
    lines = ["| method | " + " | ".join(f"{e} epochs" for e in BUDGETS) + " | paper, 256 epochs (W x 1) |",
             "| --- | " + " | ".join("---" for _ in BUDGETS) + " | --- |"]
    paper = {"ResNet v2 Ours": RESNET_PAPER["w1"], "Swapout Linear(1, 0.5), 30 passes": SWAPOUT_W1_PAPER[1],
             "Swapout Linear(1, 0.5), deterministic": SWAPOUT_W1_PAPER[0]}
    for method, by_budget in rows.items():
        cells = [f"{mean_sd(v)} (n = {len(v)})" if v else "not yet" for v in by_budget.values()]
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {paper[method]} |")
    if plot_budget(rows, paper, figure):
        lines += ["", f"![Test error against the training budget]({figure.name})"]
    gaps = budget_gaps(rows, test_images(campaign["runs"]))
    if gaps:
        lines += ["", "Swapout Linear(1, 0.5) with 30 passes minus the ResNet, by budget (described, no claim rests "
                  "on it; each interval says its kind): " + "; ".join(f"{e} epochs {fmt_interval(d)}" for e, d in gaps)]
    lines += ["", "Mean ± sd over seeds (one seed: its error alone), test error (%) on the 9,980 exact test images. "
              "The paper's 256-epoch "
              "figures (Tables 1 and 3, W x 1) are printed for reference only: nothing here was trained that long, "
              "and any line drawn from 64 to 256 epochs would be an **extrapolation**, which this report does not "
              "make."]
    return lines


def budget_gaps(rows: Dict[str, Dict[int, List[float]]], n_images: int) -> List[Tuple[int, Tuple]]:
    """Swapout (30 passes) minus the ResNet at each budget where both have a finished run, the seeds' spread pooled
    over the budget curve's ResNet and stochastic swapout groups (the deterministic ones are the same networks)."""
    res, swap = rows["ResNet v2 Ours"], rows["Swapout Linear(1, 0.5), 30 passes"]
    spread = pooled_spread([v for by_budget in (res, swap) for v in by_budget.values()])
    return [(e, d) for e in BUDGETS
            if (d := difference(swap[e], res[e], n_images, spread, "the budget curve")) is not None]


def plot_budget(rows: Dict[str, Dict[int, List[float]]], paper: Dict[str, float], path: Path) -> bool:
    """The budget curve: each seed a point, the mean a line; False (no figure) while no budget is finished."""
    if not any(v for by_budget in rows.values() for v in by_budget.values()):
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for (method, by_budget), colour in zip(rows.items(), ("tab:gray", "tab:blue", "tab:cyan")):
        xs = [e for e in BUDGETS if by_budget[e]]
        ax.plot(xs, [statistics.mean(by_budget[e]) for e in xs], "-o", color=colour, label=method)
        for e in xs:
            ax.scatter([e] * len(by_budget[e]), by_budget[e], color=colour, s=12, alpha=0.6)
        ax.axhline(paper[method], color=colour, ls=":", lw=1)
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(BUDGETS))
    ax.set_xticklabels([str(e) for e in BUDGETS])
    ax.set_xlabel("training epochs (learning rate divided by 10 at 196/256 and 224/256 of them)")
    ax.set_ylabel("test error (%)")
    ax.set_title("20-layer W x 1 on CIFAR-10, 2 CPU cores\n(dotted: the paper at 256 epochs, for reference)",
                 fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def figure2_section(campaign: Dict) -> List[str]:
    lines, base, drawn = [], campaign["base"], False
    for r in group(campaign, "linear-1-0.5-32ep"):
        c, why = curve_of(r)
        if c is None:
            lines.append(f"- {r['name']}/seed-{r['seed']}: {why} (phase 5: `swapout eval {rel(r['path'], ROOT)} "
                         f"--samples 30 --repeats 10 --seed {r['seed']}`)")
            continue
        drawn = True
        picks = [k for k in (1, 2, 3, 5, 10, 20, 30) if k <= len(c["mean_error"])]
        lines.append(f"- {r['name']}/seed-{r['seed']} ({c['repeats']} repetitions, {c['images']:,} images): "
                     + ", ".join(f"{k} pass{'es' if k > 1 else ''} {c['mean_error'][k - 1]:.2f} ± "
                                 f"{c['standard_error'][k - 1]:.2f}" for k in picks))
        png = r["path"] / "figure2-test.png"
        if png.exists():
            lines.append(f"\n  ![Figure 2, seed {r['seed']}]({rel(png, base)})\n")
    if drawn:
        lines.append("\nTest error (%) against the number of passes averaged, mean ± standard error over the "
                     "repetitions, each drawing its passes anew; the masks are seeded with the run's seed.")
    return lines


def ensembles_section(base: Path) -> List[str]:
    path = base / "ensembles.json"
    if not path.exists():
        return ["Not yet: phase 5 (`python experiments/cpu_replication/ensembles.py`, on the 32-epoch ResNet and "
                "Linear(1, 0.5) networks of both seeds) runs once every training run of the sweep is finished."]
    data = json.loads(path.read_text())
    lines = ["| contender | passes | " + " | ".join(data["sets"]) + " |",
             "| --- | --- | " + " | ".join("---" for _ in data["sets"]) + " |"]
    for row in data["rows"]:
        cells = [f"{row['sets'][s]['error']:.2f} / {row['sets'][s]['nll']:.3f} / {row['sets'][s]['ece']:.2f}"
                 for s in data["sets"]]
        lines.append(f"| {row['contender']} | {row['passes']} | " + " | ".join(cells) + " |")
    p, n = data["rows"][0]["sets"]["clean"]["error"] / 100, data["images"]
    se = 100 * math.sqrt(p * (1 - p) / n)
    lines += ["", "Each cell: error (%) / NLL (nats) / ECE (%, 15 bins); lower is better. " + data.get("note", "")
              + f" The standard error of an error rate from the test set's own sampling is about {se:.2f} points at "
              f"{100 * p:.1f}% on {n:,} images (binomial; 95%: ±{1.96 * se:.2f}); rows of one set share their "
              "images, so a difference between two rows is paired and its error smaller. The swapout rows average "
              "every group of passes of every seed, with masks drawn here (seeded with each run's seed), so its "
              "30-pass error differs by the masks' sampling from Table 2's, which is the evaluation that ended each "
              "run, and from Figure 2's, a mean over 10 fresh repetitions; the ResNet ensemble of 2 is the one pair "
              "of seeds there is."]
    if (base / "ensembles.png").exists():
        lines += ["", "![Implicit against explicit ensembles](ensembles.png)"]
    return lines


def claims_section(campaign: Dict) -> List[str]:
    n = test_images(campaign["runs"])
    # each 32-epoch schedule's test errors, by mode: what the claims compare and what their seeds' spread pools
    errors = {mode: {name: test_errors(group(campaign, f"{name}-32ep"), mode) for name, *_ in SCHEDULES}
              for mode in ("stochastic", "deterministic")}
    res_det = test_errors(group(campaign, "resnet-32ep"), "deterministic")
    spread = {mode: pooled_spread(list(by_name.values()) + [res_det]) for mode, by_name in errors.items()}
    swap_sto = errors["stochastic"]["linear-1-0.5"]
    beats = difference(swap_sto, res_det, n, spread["stochastic"])
    beats_det = difference(errors["deterministic"]["linear-1-0.5"], res_det, n, spread["deterministic"])
    best_rows = [(label, difference(swap_sto, errors["stochastic"][name], n, spread["stochastic"]))
                 for name, label, _, _ in SCHEDULES[:-1]]
    known = [d for _, d in best_rows if d is not None]
    if len(known) < len(best_rows):
        best = None
        best_text = "cannot tell yet (runs not finished)"
    else:
        best = all(d[2] < 0 for d in known)
        worse = any(d[1] > 0 for d in known)
        best_text = "holds" if best else "does not hold" if worse else "cannot tell"
    sto_det, sto_det_labels = [], []
    for name, label, _, _ in SCHEDULES:
        for r in group(campaign, f"{name}-32ep"):
            t = (r["results"] or {}).get("splits", {}).get("test", {})
            if "stochastic_error" in t:
                sto_det.append(t["stochastic_error"] - t["deterministic_error"])
                short = f"theta {name.split('-')[1]}/{name.split('-')[2]}" if name.startswith("theta") else label
                sto_det_labels.append(f"{short} seed {r['seed']}")
    sto = paired(sto_det, n, statistics.mean(swap_sto) if swap_sto else 10.0)
    early = difference(errors["stochastic"]["linear-0.5-1"], swap_sto, n, spread["stochastic"])
    few = few_passes(campaign)
    lines = ["| the paper's claim | at this budget (32 epochs, W x 1) | the interval it rests on |",
             "| --- | --- | --- |",
             f"| Swapout beats the same ResNet | {verdict(beats)} | Linear(1, 0.5) stochastic minus ResNet: "
             f"{fmt_interval(beats)}; deterministic: {fmt_interval(beats_det)} |",
             f"| Linear(1, 0.5) is the best schedule | {best_text} | stochastic error of Linear(1, 0.5) minus: "
             + "; ".join(f"{label} {fmt_interval(d)}" for label, d in best_rows) + " |",
             f"| Stochastic beats deterministic inference | {verdict(sto)} | stochastic minus deterministic, "
             f"every swapout run: {fmt_interval(sto)}"
             + (f"; each run: {', '.join(f'{lab}: {x:+.2f}' for lab, x in zip(sto_det_labels, sto_det))}"
                + f"; {sign_count(sto_det)}" if sto_det else "") + " |",
             f"| More stochasticity in early layers hurts | {verdict(early, better_below_zero=False)} | "
             f"Linear(0.5, 1) minus Linear(1, 0.5), stochastic: {fmt_interval(early)} |",
             f"| A few passes suffice | {few[0]} | {few[1]} |"]
    labels = {name: label for name, label, *_ in SCHEDULES}
    pools = []
    for mode, by_name in errors.items():
        if spread[mode] is None:
            continue
        parts = [f"{labels[name]}: {statistics.stdev(v):.2f}" for name, v in by_name.items() if len(v) > 1]
        parts += [f"ResNet (deterministic{', as it has no masks' if mode == 'stochastic' else ''})"
                  f": {statistics.stdev(res_det):.2f}"] if len(res_det) > 1 else []
        pools.append(f"{mode}, sd {spread[mode][0]:.2f} on {spread[mode][1]} df, from " + ", ".join(parts)
                     + dominant_share({labels[n]: v for n, v in by_name.items()}, res_det, spread[mode]))
    if pools:
        lines += ["", "The seeds' spread these t intervals pool (sd in points, of each method with two seeds or more): "
                  + "; ".join(pools) + "." + (" A method that gives most of a pooled variance widens every interval "
                                              "that pools it; that is described here, and the verdicts keep the "
                                              "rule fixed before the runs." if "pooled variance" in "".join(pools)
                                              else "")]
    return lines


def dominant_share(by_label: Dict[str, Sequence[float]], res_det: Sequence[float],
                   pooled: Tuple[float, int]) -> str:
    """A remark when one method gives most of a pooled spread: the equal-spread assumption then widens every
    interval by that method's instability; the remark says by how much (the pooled sd without it)."""
    groups = {**by_label, "the ResNet": res_det}
    sums = {k: (len(v) - 1) * statistics.variance(v) for k, v in groups.items() if len(v) > 1}
    total = pooled[0] ** 2 * pooled[1]
    top = max(sums, key=lambda k: sums[k]) if sums else None
    if top is None or not total or sums[top] <= total / 2:
        return ""
    rest = pooled_spread([v for k, v in groups.items() if k != top])
    without = f"; without it the pooled sd would be {rest[0]:.2f} on {rest[1]} df" if rest else ""
    return f" ({top} gives {100 * sums[top] / total:.0f}% of this pooled variance{without})"


def curve_of(run: Dict) -> Tuple[Optional[Dict], str]:
    """A finished run's Figure 2 curve on the whole exact test split, or None and why it does not count."""
    data = run["figure2"]
    if data is None:
        return None, "not yet"
    c = data.get("curve", data)
    wanted = test_images([run])
    if c.get("images") != wanted:
        return None, f"drawn on {c.get('images')} images, not the {wanted:,} exact test images: not counted"
    return c, ""


def few_passes(campaign: Dict) -> Tuple[str, str]:
    """Holds when, in every Figure 2 curve, 10 passes are worse than 30 by at most two standard errors.

    The difference is paired within each repetition (its first 10 passes are also the first 10 of its 30),
    and its standard error is that of the mean over the repetitions, which draw their passes anew.
    """
    finished = [r for r in group(campaign, "linear-1-0.5-32ep") if r["results"] and not r["failed"]]
    gaps = []
    for r in finished:
        c, why = curve_of(r)
        where = f"{r['name']}/seed-{r['seed']}"
        if c is None:
            return "cannot tell yet (phase 5 not run)" if why == "not yet" else "cannot tell", f"{where}: {why}"
        if len(c["mean_error"]) < 30 or len(c.get("errors", [])) < 2:
            return "cannot tell", (f"{where}: {len(c['mean_error'])} passes and {len(c.get('errors', []))} "
                                   "repetitions kept; the rule needs 30 passes and at least 2 repetitions")
        d = [row[9] - row[29] for row in c["errors"]]
        e = c["mean_error"]
        share = (e[0] - e[9]) / (e[0] - e[29]) if e[0] != e[29] else float("nan")
        gaps.append((statistics.mean(d), 2 * statistics.stdev(d) / math.sqrt(len(d)), len(d), share))
    if not gaps:
        return "cannot tell yet (phase 5 not run)", "-"
    holds = all(g <= tol for g, tol, _, _ in gaps)
    return ("holds" if holds else "does not hold",
            "error with 10 passes minus 30 passes, paired over repetitions: "
            + "; ".join(f"{g:+.2f} points (2 SE {tol:.2f}, {n} repetitions)" for g, tol, n, _ in gaps)
            + "; share of the gain from 1 to 30 passes that 10 passes reach: "
            + ", ".join(f"{100 * share:.0f}%" for *_, share in gaps))


def rel(path: Path, base: Path) -> str:
    """``path`` as the README in ``base`` links it."""
    return Path(os.path.relpath(Path(path).resolve(), base.resolve())).as_posix()


def summary(campaign: Dict) -> List[str]:
    """What the docs' Results page shows too: the tables, the figures and the claims."""
    return (["### Table 2 at this budget", ""] + table2_section(campaign)
            + ["", TABLE2_NOTE, "", "### The budget curve", ""]
            + budget_section(campaign, campaign["base"] / "budget-curve.png")
            + ["", "### What each claim of the paper looks like here", ""] + claims_section(campaign) + ["", RULES]
            + ["", "### Implicit against explicit ensembles", ""] + ensembles_section(campaign["base"])
            + ["", "### Figure 2", ""] + figure2_section(campaign)
            + ["", "### The campaign: its cost, its machine and its commands", ""] + campaign_section(campaign))


def campaign_section(campaign: Dict) -> List[str]:
    """How far it got, the hours and the machine, phase 1's benchmark, and the command that continues it."""
    lines = totals(campaign)
    bench = ROOT / "results" / "benchmarks" / "cpu_campaign.json"
    if bench.exists():
        data = json.loads(bench.read_text())
        lines += ["", f"Phase 1, the fastest exact way to use the cores (`python benchmarks/bench_cpu_campaign.py`, "
                  f"{data['cores']} cores, {data['cpu_capability']}, torch {data['torch']}; "
                  "`results/benchmarks/cpu_campaign.json`): training images a second of every contender, timed side "
                  "by side in one process, and each one's ratio to one run on all the cores.", "",
                  "| contender | images/s | ratio |", "| --- | --- | --- |"]
        lines += [f"| {c['contender']} | {c['images_per_s']:.1f} | {c['over_one_run_all_threads']:.3f} |"
                  for c in data["contenders"]]
        lines += ["", f"The campaign uses the fastest: {data['fastest']}."]
    lines += ["", "One command, from the repository's root, continues the campaign where it stopped (at most "
              "BUDGET_MINUTES, default 150, at the lowest priority; runs stopped by the budget write a checkpoint "
              "and resume exactly), and once everything is trained, draws phase 5 and this report:", "",
              "    experiments/cpu_replication/run.sh [BUDGET_MINUTES]", "",
              "Given a new directory, it runs the campaign again from nothing: "
              "`experiments/cpu_replication/run.sh 150 results/cpu-replication-again/runs`."]
    return lines


def write(runs_dir: Path, out: Path) -> str:
    campaign = read_campaign(runs_dir)
    campaign["base"] = out.parent
    text = "\n".join(HEAD + ["## How far it got", ""] + progress_section(campaign)
                     + ["", "## Results", "", "<!-- summary -->"] + summary(campaign) + ["<!-- /summary -->", ""]
                     + TAIL) + "\n"
    out.write_text(text)
    return text


TABLE2_NOTE = ("Test error (%) on the 9,980 exact test images, mean ± sd over seeds (n seeds per row; one seed: "
               "its error alone); the stochastic column is the 30-pass evaluation that ends each run. The paper's "
               "figures are for W x 2 at 256 epochs: the gap to them reflects at least the shorter budget and the "
               "narrower network, which this campaign cannot tell apart, and it says nothing of whether the paper's "
               "figures would be reached.")

RULES = ("Every interval is a 95% interval, but for the few-passes rule's two standard errors (below). A claim "
         "holds when its whole interval lies on the claim's side of 0, "
         "does not hold when it lies on the other side, and cannot be told otherwise. A difference between two "
         "methods, once any 32-epoch method has two seeds: Student's t with the spread between seeds pooled over "
         "the 32-epoch methods that have two seeds or more (listed above; the same spread assumed for each method, "
         "including those with one seed; degrees of freedom: each method's seeds beyond its first, summed). Like the "
         "paper's claims, it is about these 9,980 test images: the test set's own sampling error is not in it. "
         "Before any method has two seeds: that sampling error alone, which leaves out the seeds' spread. "
         "Stochastic against deterministic inference: t over every finished swapout run's own difference, the "
         "schedules together, so one schedule with a much larger gain widens the interval. A few passes: in each "
         "Figure 2 curve, the error with 10 passes exceeds that with 30 by at most two standard errors of that "
         "difference (paired within each repetition, whose first 10 passes are also the first 10 of its 30; the "
         "standard error of its mean over the repetitions). That rule asks whether 10 passes are as good as 30 "
         "within what the repetitions can resolve, so \"does not hold\" means 10 passes are measurably worse, by the "
         "gap it gives, however small; two standard errors are narrower than a 95% t interval on 10 repetitions "
         "(2.26). These rules were fixed before any seed-1 run had finished; the last was made exact (paired) "
         "before any Figure 2 curve was drawn.")


HEAD = """# The paper's claims at a budget two CPU cores can train

*Generated by `python experiments/cpu_replication/report.py` from the runs under `runs/`; do not edit by hand.*

The paper trains for 256 epochs at W x 2 on a GPU. This campaign measures the same claims on the 20-layer
"Ours" v2 network at **W x 1 for 16, 32 and 64 epochs** on two CPU cores: the paper's recipe otherwise (SGD,
batch 128, momentum 0.9, weight decay 1e-4, learning rate 0.1 divided by 10 at 196/256 and 224/256 of the
budget; flips and 4-pixel translations, one crop per batch), 45,000 training images with the last 5,000 held
out for validation, the 9,980 exact test images, deterministic and 30-pass stochastic inference. Nothing is
chosen on the test split. Every figure below states its budget; none is comparable to the paper's at face
value, and not even a direction carries over to 256 epochs: the budget curve shows the gap between swapout and
the ResNet changing with the budget. At W x 1 the paper's own margin is small: Swapout Linear(1, 0.5) beats
the ResNet by 0.35 points with stochastic inference, and loses to it by 0.31 with deterministic inference
(Table 3: 7.92 and 8.58 against 8.27).

What it runs (`experiments/cpu_replication/sweep.json`, in this order): Table 2's five schedules and the ResNet
baseline at 32 epochs, seed 0, then seed 1; the budget curve (ResNet and Linear(1, 0.5) at 16 epochs, seeds 0
and 1, and 64 epochs, seed 0); then, with no training, Figure 2 and implicit against explicit ensembles. From the
eighth invocation on, the sweep starts the runs with the most epochs left first (`--order longest-first`), so
that the 64-epoch runs go before the 16-epoch ones.

""".splitlines()

TAIL = """## How to continue it, or run it again

Every command here runs from the repository's root. One continues the campaign where it stopped (at most
BUDGET_MINUTES, default 150, at the lowest priority; every run stopped by the budget writes a checkpoint and
resumes exactly):

    experiments/cpu_replication/run.sh [BUDGET_MINUTES]

Given a new directory, `experiments/cpu_replication/run.sh 150 results/cpu-replication-again/runs` runs it again
from nothing. Before the machine goes, commit `results/cpu-replication/` as it is: unfinished runs keep their
latest `checkpoint.pt` (the one before it, `checkpoint.prev.pt`, is not committed), finished runs keep
`weights.pt`, their final weights without the optimiser's state (`swapout eval` reads it), beside their config,
metrics, results and log. Whatever the log's lines cannot say (work done by hand beside the sweep, an accident)
is appended to `results/cpu-replication/runs/campaign.log` as a line `=== 2026-01-31T12:00:00Z note: TEXT`, with
the time it refers to, and listed under "How far it got". Then, to draw this README again:

    python experiments/cpu_replication/report.py

Phase 5, once the 32-epoch runs of both seeds are finished (`run.sh` starts it by itself when the sweep is done):

    swapout eval results/cpu-replication/runs/linear-1-0.5-32ep/seed-S --samples 30 --repeats 10 --seed S   # S = 0, 1
    python experiments/cpu_replication/ensembles.py       # ensembles.json and ensembles.png

Phase 1, the choice between one run on both cores and two runs on one core each, writes
`results/benchmarks/cpu_campaign.json` (its output: `cpu_campaign.txt` beside it):

    python benchmarks/bench_cpu_campaign.py
""".splitlines()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=HERE / "runs", help="the campaign's sweep directory")
    parser.add_argument("--out", type=Path, default=HERE / "README.md", help="the README to write")
    args = parser.parse_args()
    if not (args.runs / "sweep.json").exists():
        parser.error(f"{args.runs} holds no sweep.json: start the campaign with experiments/cpu_replication/run.sh")
    write(args.runs, args.out)
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
