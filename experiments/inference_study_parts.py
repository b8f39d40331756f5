"""The measurements of ``inference_study.py``: uncertainty, adaptive inference, BatchNorm recalibration."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
from inference_study_readme import readme_stage  # noqa: F401  (re-exported for the driver)

from swapout.data import MEAN, STD
from swapout.data.pipeline import eval_batches
from swapout.evaluation.adaptive import adaptive_from_passes, adaptive_predict
from swapout.evaluation.errors import error_percent, split_logits
from swapout.evaluation.plots import plot_reliability
from swapout.evaluation.recalibrate import recalibrate_bn
from swapout.evaluation.uncertainty import entropy, mutual_information
from swapout.evaluation.uncertainty_report import uncertainty_report
from swapout.runs.rundir import save_json

DELTAS = (0.01, 0.02, 0.05, 0.1, 0.2)
CHOSEN_DELTA = 0.05
CIFAR10 = (MEAN["cifar10"], STD["cifar10"])


def uncertainty_stage(subjects, data, out: Path) -> None:
    """Calibration and OOD rows per model; reliability diagrams; entropy and MI histograms."""
    for s in subjects:
        d = data[s.key]
        report = uncertainty_report(d["test"], d["ood"], d.get("val"))
        per_image = report.pop("per_image")
        report.update(model=s.description, evaluated="9,980 exact CIFAR-10 test images",
                      ood_dataset="10,000 CIFAR-100 test images")
        save_json(report, out / f"uncertainty-{s.key}.json")
        panels = [{"label": k.replace("+T", " + temperature"), **v} for k, v in report["reliability"].items()]
        plot_reliability(panels, out / f"reliability-{s.key}.png", f"{s.label}: 9,980 exact CIFAR-10 test images")
        if "passes" in d["test"]:
            _histograms(s, d, per_image, out / f"entropy-mi-{s.key}.png")
        print(f"uncertainty: {s.key} done", flush=True)


def _histograms(s, d, per_image, path: Path) -> None:
    from matplotlib.figure import Figure

    ood_probs = d["ood"]["passes"].double().softmax(-1)
    values = {"predictive entropy (nats)": (per_image["entropy"], entropy(ood_probs.mean(0))),
              "mutual information (nats)": (per_image["mutual_information"], mutual_information(ood_probs))}
    fig = Figure(figsize=(9.6, 3.6), dpi=100)
    axes = fig.subplots(1, 2)
    for ax, (name, (inside, outside)) in zip(axes, values.items()):
        bins = np.linspace(0, float(max(inside.max(), outside.max())), 41)
        ax.hist(inside.numpy(), bins=bins, alpha=0.6, label="CIFAR-10 test (in)", density=True)
        ax.hist(outside.numpy(), bins=bins, alpha=0.6, label="CIFAR-100 test (OOD)", density=True)
        ax.set_xlabel(name)
        ax.set_yscale("log")
    axes[0].set_ylabel("density (log scale)")
    axes[0].legend(frameon=False)
    fig.suptitle(f"{s.label}: stochastic inference, 30 passes", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)


def adaptive_stage(subjects, data, test_split, out: Path) -> None:
    """Adaptive inference simulated on the cached 30 passes (same draws), and one real batched run."""
    path = out / "adaptive.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    for s in (s for s in subjects if s.stochastic and s.key not in results):
        d = data[s.key]["test"]
        probs, labels = d["passes"].softmax(-1), d["labels"]
        fixed = probs.mean(0).argmax(-1)
        row = {"model": s.label, "fixed": {k: error_percent(probs[:k].mean(0), labels) for k in (1, 5, 10, 20, 30)},
               "simulated": {}}
        for delta in DELTAS:
            r = adaptive_from_passes(probs, delta=delta)
            row["simulated"][str(delta)] = {
                "error": error_percent(r["prediction"], labels),
                "mean_passes": round(r["passes"].double().mean().item(), 4),
                "settled": round(100 * r["settled"].double().mean().item(), 2),
                "differs_from_30_passes": int((r["prediction"] != fixed).sum())}
        x, y = next(eval_batches(test_split["images"], test_split["labels"], *CIFAR10, "cpu",
                                 len(test_split["labels"])))
        torch.manual_seed(1)
        start = time.time()
        r = adaptive_predict(s.model, x, delta=CHOSEN_DELTA, max_passes=30)
        row["real"] = {"delta": CHOSEN_DELTA, "error": error_percent(r["prediction"], y),
                       "mean_passes": round(r["passes"].double().mean().item(), 4),
                       "settled": round(100 * r["settled"].double().mean().item(), 2),
                       "seconds": round(time.time() - start, 1),
                       "fixed_30_seconds": round(float(d["seconds"]), 1),
                       "passes_histogram": torch.bincount(r["passes"], minlength=31).tolist()}
        results[s.key] = row
        save_json(results, path)  # per model: a study run again skips the models already measured
        print(f"adaptive: {s.key} {row['real']}", flush=True)


def _variants(pool: int):
    """(name, images, seed, options) of every recalibration tried."""
    rows = [(f"{n:,} images", n, seed, {}) for n in (1000, 5000) for seed in ((0, 1, 2) if n == 1000 else (0, 1))]
    rows += [("10,000 images", 10000, 0, {}), (f"all {pool:,} training images", pool, 0, {})]
    rows += [("10,000 images, training augmentation", 10000, 0, {"augment": True}),
             ("10,000 images, only layers after a random join", 10000, 0, {"layers": "after-random-joins"}),
             ("10,000 images, variances only", 10000, 0, {"stats": "variance"})]
    return rows


def recalibration_stage(subjects, data, test_split, out: Path, cap=None) -> None:
    """Deterministic error after BatchNorm recalibration, per setting, against the stochastic error
    (``cap``: at most that many images per recalibration, for a quick check)."""
    path = out / "recalibration.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    for s in (s for s in subjects if s.stochastic):
        d = data[s.key]["test"]
        det = error_percent(d["deterministic"], d["labels"])
        sto = error_percent(d["passes"].softmax(-1).mean(0), d["labels"])
        row = results.get(s.key) or {"model": s.label, "deterministic": det, "stochastic_30": sto, "variants": []}
        done = {(v["name"], v["seed"]) for v in row["variants"]}
        pool = len(s.train_labels)
        for name, n, seed, options in _variants(pool):
            if (name, seed) in done:
                continue
            pick = np.sort(np.random.default_rng(seed).permutation(pool)[:min(n, cap or n)])
            model = copy.deepcopy(s.model)
            start = time.time()
            recalibrate_bn(model, s.train_images[pick], s.train_labels[pick], *CIFAR10, "cpu", seed=seed, **options)
            seconds = time.time() - start
            logits = split_logits(model, test_split["images"], test_split["labels"], *CIFAR10, "cpu", 0)
            err = error_percent(logits["deterministic"], logits["labels"])
            row["variants"].append({"name": name, "images": n, "seed": seed, **options, "error": err,
                                    "gap_closed": round((det - err) / (det - sto), 4) if det != sto else None,
                                    "seconds": round(seconds, 1)})
            results[s.key] = row
            save_json(results, path)  # after every variant: an interrupted study resumes where it stopped
            print(f"recalibration: {s.key} {name} seed {seed}: {det:.2f}% -> {err:.2f}% (stochastic {sto:.2f}%)",
                  flush=True)
