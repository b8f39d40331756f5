"""The README of ``results/inference``: every table of the study, generated from its JSON files."""

from __future__ import annotations

import json
from pathlib import Path

COMMAND = ("python experiments/inference_study.py --swapout-state SHARED/swapout-v2-20-w1-linear-1-0.5.pt "
           "--resnet-state SHARED/resnet-v2-ours-20-w1.pt --run RUN_DIR --cache /tmp/inference-cache "
           "--out results/inference")


def _load(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def _cell(value, digits=2):
    return "-" if value is None else f"{value:.{digits}f}"


def _uncertainty_table(subjects, out: Path) -> list:
    lines = ["| model | inference | T | error % | NLL | Brier | ECE % | AUROC max prob % | AUROC entropy % | "
             "AUROC MI % | FPR95 max prob % |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    fits = []
    for s in subjects:
        rep = _load(out / f"uncertainty-{s.key}.json")
        if not rep:
            continue
        fits.append(f"{s.label}: {s.description}; temperature {rep['temperature_fit']}")
        for mode, r in rep["rows"].items():
            t = r["temperature"]
            t = "/".join(f"{x:.2f}" for x in t) if isinstance(t, list) else f"{t:.2f}"
            ood = r["ood"]
            lines.append(f"| {s.label} | {mode.replace('+T', ' + T')} | {t} | {r['error']:.2f} | {r['nll']:.4f} | "
                         f"{r['brier']:.4f} | {r['ece']:.2f} | {ood['max_probability']['auroc']:.2f} | "
                         f"{ood['entropy']['auroc']:.2f} | {_cell(ood.get('mutual_information', {}).get('auroc'))} | "
                         f"{ood['max_probability']['fpr95']:.2f} |")
    return lines + [""] + [f"- {f}" for f in fits]


def _adaptive_table(adaptive) -> list:
    lines = ["| model | inference | error % | mean passes | answers differing from fixed 30 passes | "
             "settled by the test % |", "| --- | --- | --- | --- | --- | --- |"]
    for row in adaptive.values():
        for k, err in row["fixed"].items():
            lines.append(f"| {row['model']} | fixed {k} of the 30 passes | {err:.2f} | {k} | - | - |")
        for delta, r in row["simulated"].items():
            lines.append(f"| {row['model']} | adaptive, delta {delta}, on the same 30 passes | {r['error']:.2f} | "
                         f"{r['mean_passes']:.2f} | {r['differs_from_30_passes']} | {r['settled']:.1f} |")
        r = row["real"]
        lines.append(f"| {row['model']} | adaptive, delta {r['delta']}, new passes (batched run) | {r['error']:.2f} | "
                     f"{r['mean_passes']:.2f} | - | {r['settled']:.1f} |")
    return lines


def _recalibration_table(recal) -> list:
    lines = ["| model | recalibration | seed | deterministic error % | change (points) | share of the gap to "
             "stochastic closed |", "| --- | --- | --- | --- | --- | --- |"]
    for row in recal.values():
        lines.append(f"| {row['model']} | none (deterministic) | - | {row['deterministic']:.2f} | - | - |")
        lines.append(f"| {row['model']} | none (stochastic, 30 passes) | - | {row['stochastic_30']:.2f} | "
                     f"{row['stochastic_30'] - row['deterministic']:+.2f} | 100% |")
        for v in row["variants"]:
            gap = "-" if v["gap_closed"] is None else f"{100 * v['gap_closed']:.0f}%"
            lines.append(f"| {row['model']} | {v['name']} | {v['seed']} | {v['error']:.2f} | "
                         f"{v['error'] - row['deterministic']:+.2f} | {gap} |")
    return lines


def _versus(name: str, a: float, b: float, lower_is_better: bool, unit: str = "") -> str:
    better = (a < b) == lower_is_better
    if unit == "%":
        return f"{name} {a:.2f}% vs {b:.2f}% ({'better' if better else 'worse'} by {abs(a - b):.2f} points)"
    return f"{name} {a:.4f} vs {b:.4f} ({'better' if better else 'worse'} by {abs(a - b):.4f})"


def _compare(ra: dict, rb: dict) -> str:
    return "; ".join([
        _versus("error", ra["error"], rb["error"], True, "%"), _versus("ECE", ra["ece"], rb["ece"], True, "%"),
        _versus("NLL", ra["nll"], rb["nll"], True), _versus("Brier", ra["brier"], rb["brier"], True),
        _versus("OOD AUROC (max prob)", ra["ood"]["max_probability"]["auroc"], rb["ood"]["max_probability"]["auroc"],
                False, "%"),
        _versus("OOD AUROC (entropy)", ra["ood"]["entropy"]["auroc"], rb["ood"]["entropy"]["auroc"], False, "%")])


def _findings(subjects, out: Path, adaptive, recal) -> list:
    """One line per comparison the study was asked to make, with its numbers."""
    reports = {s.key: (s, _load(out / f"uncertainty-{s.key}.json")) for s in subjects}
    resnet = next((r for s, r in reports.values() if r and not s.stochastic), None)
    lines = []
    for s, rep in reports.values():
        if not rep or not s.stochastic:
            continue
        rows = rep["rows"]
        pairs = [("stochastic", rows["stochastic"], "deterministic", rows["deterministic"]),
                 ("stochastic + T", rows["stochastic+T"], "deterministic + T", rows["deterministic+T"])]
        if resnet and s.key.startswith("shared"):  # the same recipe and length of training
            pairs += [("stochastic", rows["stochastic"], "the ResNet", resnet["rows"]["deterministic"]),
                      ("stochastic + T", rows["stochastic+T"], "the ResNet + T", resnet["rows"]["deterministic+T"])]
        lines += [f"- {s.label}, {a} against {b}: {_compare(ra, rb)}." for a, ra, b, rb in pairs]
    for row in (adaptive or {}).values():
        fixed = row["fixed"]["30"]
        met = [(float(d), r) for d, r in row["simulated"].items()
               if abs(r["error"] - fixed) <= 0.05 and r["mean_passes"] <= 10]
        r = row["simulated"].get("0.05")
        line = (f"- {row['model']}, adaptive inference on the same draws as fixed 30 passes ({fixed:.2f}%): delta 0.05 "
                f"gives {r['error']:.2f}% with {r['mean_passes']:.2f} passes on average; goal (within 0.05 points at "
                f"10 passes or fewer) {'met' if r in [m[1] for m in met] else 'missed'} at delta 0.05")
        if met:
            d, best = min(met, key=lambda m: m[0])
            line += (f"; the smallest delta tested that meets it: {d:g} ({best['error']:.2f}%, "
                     f"{best['mean_passes']:.2f} passes)")
        lines.append(line + f". New draws, batched (delta {row['real']['delta']}): {row['real']['error']:.2f}% with "
                            f"{row['real']['mean_passes']:.2f} passes, {row['real']['seconds']:.0f} s against "
                            f"{row['real']['fixed_30_seconds']:.0f} s for 30 passes (wall-clock on a shared, "
                            f"busy 2-core machine: indicative only).")
    for row in (recal or {}).values():
        plain = [v for v in row["variants"] if "augment" not in v and "layers" not in v and "stats" not in v]
        closed = {size: [100 * v["gap_closed"] for v in plain if (v["images"] >= 5000) == (size == "5k")]
                  for size in ("1k", "5k")}
        lines.append(f"- {row['model']}, BatchNorm recalibration (means and variances, all layers, no augmentation): "
                     f"deterministic {row['deterministic']:.2f}% becomes "
                     f"{min(v['error'] for v in plain):.2f}-{max(v['error'] for v in plain):.2f}% (stochastic "
                     f"{row['stochastic_30']:.2f}%); share of the gap closed {min(closed['1k']):.0f}-"
                     f"{max(closed['1k']):.0f}% with 1,000 images (3 seeds), {min(closed['5k']):.0f}-"
                     f"{max(closed['5k']):.0f}% with 5,000 images or more.")
    return lines


def readme_stage(subjects, out: Path, adaptive=None, notes: str = "") -> None:
    """Write ``out/README.md`` from the study's JSON files, with ``notes`` (findings) on top."""
    parts = ["# Inference beyond the paper: calibration, OOD detection, adaptive inference, BatchNorm "
             "recalibration", "",
             "Generated by `experiments/inference_study.py` (CPU). Reproduce with", "", f"    {COMMAND}", "",
             "where SHARED holds the two shared GPU-trained CIFAR-10 models and RUN_DIR is a run of "
             "`swapout train --preset short/cpu-20-w1-swapout` (15 epochs, the last 5,000 training images held out; "
             "its config, per-epoch metrics and results are in `run-cpu-20-w1-swapout/`). "
             "In-distribution: the 9,980 exact CIFAR-10 test images; OOD: the 10,000 CIFAR-100 test images. "
             "Stochastic inference averages the softmax of 30 passes; ECE uses 15 equal-width bins; Brier is the "
             "squared distance to the one-hot label summed over classes; NLL in nats; AUROC and FPR at 95% TPR "
             "treat CIFAR-10 as positive, scored by the max probability, the negated predictive entropy and the "
             "negated mutual information between prediction and masks.", ""]
    findings = _findings(subjects, out, adaptive, _load(out / "recalibration.json"))
    if notes or findings:
        parts += ["## Findings", ""] + ([notes.strip(), ""] if notes else []) + findings + [""]
    parts += ["## Calibration and OOD detection", ""] + _uncertainty_table(subjects, out) + [""]
    parts += ["Reliability diagrams: " + ", ".join(f"`reliability-{s.key}.png`" for s in subjects) +
              "; entropy and mutual information histograms: " +
              ", ".join(f"`entropy-mi-{s.key}.png`" for s in subjects if s.stochastic) + ".", ""]
    if adaptive:
        parts += ["## Adaptive stochastic inference (at most 30 passes)", "",
                  "`swapout.adaptive_predict` (`swapout eval --adaptive`): the first pass names a candidate class "
                  "a; later passes bet on H0: E[p_a] <= 1/2 (a test by betting, Waudby-Smith and Ramdas 2023); the "
                  "image stops with answer a once the wealth reaches 1/delta. Since the mean probabilities sum to 1, "
                  "E[p_a] > 1/2 makes a the infinite-pass top-1, so by Ville's inequality each image stops early "
                  "with another answer with probability at most delta. Passes come in rounds: first as many as the "
                  "rule needs to be able to stop (6 at delta 0.05), then 2 at a time for the images still pending, "
                  "sampled together in one batch; images unsettled after 30 passes take the top-1 of their mean. "
                  "'On the same 30 passes' replays the cached passes in order (a paired comparison); 'new passes' "
                  "is a real batched run.", ""] + _adaptive_table(adaptive) + [""]
    recal = _load(out / "recalibration.json")
    if recal:
        parts += ["## BatchNorm recalibration for deterministic inference", "",
                  "`swapout.recalibrate_bn` (`swapout eval --recalibrate-bn N`): N training images (a seeded random "
                  "choice) run through the network with every join at its expectation and BatchNorm gathering new "
                  "statistics (cumulative average), then deterministic inference as usual: one pass per test image "
                  "against 30 for stochastic inference, plus a one-time N forward passes. Evaluated on the 9,980 exact "
                  "test images; differences of 0.1 point are 10 images.", ""] + _recalibration_table(recal) + [""]
    (out / "README.md").write_text("\n".join(parts) + "\n")
