"""The optional parts of ``swapout eval``: ``--uncertainty``, ``--adaptive``, ``--recalibrate-bn N`` and ``--shift``."""

from __future__ import annotations

import copy
from typing import Any, Dict

import numpy as np

from ..data.files import Split, load_split
from ..data.pipeline import eval_batches
from ..evaluation.adaptive import adaptive_predict, min_passes
from ..evaluation.errors import error_percent
from ..evaluation.plots import plot_reliability
from ..evaluation.recalibrate import recalibrate_bn
from ..evaluation.uncertainty_report import uncertainty_report
from ..progress import Progress, plural
from .config import TrainConfig
from .eval_context import EvalContext
from .rundir import save_json, write_checkpoint

__all__ = ["run_adaptive", "run_uncertainty", "run_recalibration", "check_recalibration", "run_shift", "shift_grid",
           "OOD_DATASET", "RECALIBRATION"]

OOD_DATASET = {"cifar10": "cifar100", "cifar100": "cifar10"}
# The recalibration settings that `swapout eval --recalibrate-bn` uses (see results/inference/README.md).
RECALIBRATION: Dict[str, Any] = {"augment": False, "layers": "all", "stats": "both"}


def run_adaptive(ctx: EvalContext, delta: float, fixed_error: float) -> Dict[str, Any]:
    """Adaptive stochastic inference over the evaluated split (all pending images sampled together), with
    at most ``ctx.passes`` passes; prints and returns its error (%) and mean passes beside fixed
    inference's ``fixed_error``."""
    chosen, max_passes = ctx.chosen, ctx.passes
    mean, std = ctx.normalisation
    x, y = next(eval_batches(chosen["images"], chosen["labels"], mean, std, ctx.device, len(chosen["labels"])))
    bar = Progress(len(y), f"adaptive inference (delta {delta:g}, at most {plural(max_passes, 'pass')})", unit="img",
                   enabled=ctx.progress)
    out = adaptive_predict(ctx.model, x, delta=delta, max_passes=max_passes, progress=bar.update)
    bar.close()
    result = {"delta": delta, "max_passes": max_passes, "first_round": min(min_passes(delta), max_passes),
              "round_size": 2, "error": error_percent(out["prediction"], y.cpu()),
              "mean_passes": round(out["passes"].double().mean().item(), 4),
              "settled": round(out["settled"].double().mean().item(), 4), "fixed_error": fixed_error}
    print(f"adaptive stochastic inference (delta {delta:g}): error {result['error']:.2f}% with "
          f"{result['mean_passes']:.2f} passes per image on average ({100 * result['settled']:.1f}% of the images "
          f"settled by the test, the others stopped at {max_passes}); fixed {plural(max_passes, 'pass')}: "
          f"{fixed_error:.2f}%")
    return result


def run_uncertainty(ctx: EvalContext) -> Dict[str, Any]:
    """Calibration and OOD report of ``swapout eval --uncertainty``, written beside the checkpoint.

    Files: ``uncertainty-<split>.json`` (see `swapout.evaluation.uncertainty_report.uncertainty_report`),
    ``reliability-<split>.png`` and ``uncertainty-<split>-per-image.csv`` (label, prediction,
    predictive entropy and mutual information of every image). Temperatures are fitted on the run's
    held-out images when it has some and ``split`` is ``test``, else by 2-fold cross-fitting. OOD
    images: the exact test images of the other CIFAR dataset, normalised as the model's own data.
    """
    cfg, samples = ctx.cfg, ctx.passes
    ood_name = OOD_DATASET[cfg.dataset]
    ood_split: Split = load_split(ood_name, "test", cfg.data_dir)
    images, labels = ood_split.images[ood_split.exact], ood_split.labels[ood_split.exact]
    if cfg.eval_limit:
        images, labels = images[:cfg.eval_limit], labels[:cfg.eval_limit]
    ood = ctx.logits_of(images, labels, samples, f"{ood_name} test images (OOD)")
    calibration = None
    if ctx.split == "test" and "val" in ctx.splits:
        val = ctx.splits["val"]
        calibration = ctx.logits_of(val["images"], val["labels"], samples, "held-out images (temperature)")
    assert ctx.logits is not None, "the split's logits come first (evaluate_run computes them)"
    report = uncertainty_report(ctx.logits, ood, calibration)
    per_image = report.pop("per_image")
    report.update(note=ctx.chosen["note"], ood_dataset=f"{ood_name} test ({len(labels):,} images)")
    save_json(report, ctx.path("uncertainty", ".json"))
    rows = np.stack([np.arange(len(per_image["label"])), per_image["label"].numpy(), per_image["prediction"].numpy(),
                     per_image["entropy"].numpy(), per_image["mutual_information"].numpy()], 1)
    np.savetxt(ctx.path("uncertainty", "-per-image.csv"), rows, delimiter=",",
               fmt=["%d", "%d", "%d", "%.6f", "%.6f"], header="index,label,prediction,entropy,mutual_information",
               comments="")
    panels = [{"label": k.replace("+T", " + temperature"), **v} for k, v in report["reliability"].items()]
    plot_reliability(panels, ctx.path("reliability", ".png"), f"{ctx.name}, {ctx.chosen['note']}")
    print(f"uncertainty ({ctx.chosen['note']}; OOD: {report['ood_dataset']}; temperature "
          f"{report['temperature_fit']}):")
    print(f"  {'mode':<18} {'error %':>8} {'NLL':>7} {'Brier':>7} {'ECE %':>7} {'AUROC maxp':>11} "
          f"{'AUROC ent':>10} {'AUROC MI':>9}")
    for name, r in report["rows"].items():
        ood_cols = [r["ood"][k]["auroc"] if k in r["ood"] else None for k in
                    ("max_probability", "entropy", "mutual_information")]
        print(f"  {name:<18} {r['error']:>8.2f} {r['nll']:>7.4f} {r['brier']:>7.4f} {r['ece']:>7.2f} "
              + " ".join(f"{v:>{w}.2f}" if v is not None else f"{'-':>{w}}" for v, w in zip(ood_cols, (11, 10, 9))))
    print(f"written to {ctx.path('uncertainty', '.json')}, {ctx.path('reliability', '.png').name} and "
          f"the per-image CSV")
    return report


def check_recalibration(images: int, train: Split, cfg: TrainConfig) -> int:
    """The number of training images the run trained on; ValueError if ``images`` is more."""
    pool = len(train.labels) - (cfg.val_split or 0)
    if images > pool:
        raise ValueError(f"--recalibrate-bn {images}: the run trained on {pool:,} images only; give at most {pool:,}")
    return pool


def run_recalibration(ctx: EvalContext, state: Dict[str, Any], train: Split, images: int,
                      result: Dict[str, Any]) -> Dict[str, Any]:
    """BatchNorm recalibration on ``images`` training images (a seeded random choice among those the
    run trained on) of a copy of the model, written to ``checkpoint.bn-recalibrated-<N>.pt`` beside the
    evaluated file (which is not touched), then its deterministic error on the evaluated split;
    ``result``: the evaluation's figures, printed beside it."""
    pool = check_recalibration(images, train, ctx.cfg)
    pick = np.sort(np.random.default_rng(ctx.seed).permutation(pool)[:images])
    mean, std = ctx.normalisation
    fresh = copy.deepcopy(ctx.model)
    bar = Progress(images, "recalibrating BatchNorm", unit="img", enabled=ctx.progress)
    info = recalibrate_bn(fresh, train.images[pick], train.labels[pick], mean, std, ctx.device, seed=ctx.seed,
                          progress=bar.update, **RECALIBRATION)
    bar.close()
    path = ctx.out_dir / f"checkpoint.bn-recalibrated-{images}.pt"
    write_checkpoint({**state, "model": fresh.state_dict(), "bn_recalibration": {**info, "from": ctx.file_name,
                                                                                 "seed": ctx.seed}}, path)
    det = ctx.logits_of(ctx.chosen["images"], ctx.chosen["labels"], 0, "deterministic, recalibrated", model=fresh)
    error = error_percent(det["deterministic"], det["labels"])
    sto = f"; stochastic {result['stochastic_error']:.2f}%" if "stochastic_error" in result else ""
    print(f"BatchNorm recalibrated on {info['images']:,} training images: deterministic error {error:.2f}% "
          f"(was {result['deterministic_error']:.2f}%{sto}). Written to {path}; {ctx.file_name} is unchanged")
    return {**info, "deterministic_error": error, "file": path.name, "seed": ctx.seed}


def shift_grid(corruptions, severities):
    """The corruptions and severities of ``--shift``, checked: defaults, ``all``, or a ValueError in one line."""
    from ..data.corruptions import BENCHMARK, CORRUPTIONS, SEVERITIES, check_corruptions, check_severities

    if not corruptions:
        corruptions = BENCHMARK
    elif list(corruptions) == ["all"]:
        corruptions = tuple(CORRUPTIONS)
    try:
        corruptions = check_corruptions(list(corruptions))
        severities = check_severities(list(severities or SEVERITIES))
    except ValueError as err:
        raise ValueError(f"--shift: {err}") from None
    return corruptions, severities


def run_shift(ctx: EvalContext, corruptions, severities) -> Dict[str, Any]:
    """``swapout eval --shift``: `swapout.evaluation.shift.evaluate_shift` on the evaluated split, written beside
    the checkpoint as ``shift-<split>.json`` and ``shift-<split>.png``.

    Temperatures are fitted on the run's held-out images when it has some and ``split`` is ``test``,
    else by 2-fold cross-fitting on the clean copies of the evaluated images. ``seed`` seeds the
    corruptions, the masks and the folds.
    """
    from ..evaluation.shift import evaluate_shift, plot_shift

    chosen, samples = ctx.chosen, ctx.passes
    calibration = None
    if ctx.split == "test" and "val" in ctx.splits:
        calibration = (ctx.splits["val"]["images"], ctx.splits["val"]["labels"])
    result = evaluate_shift(ctx.model, chosen["images"], chosen["labels"], dataset=ctx.cfg.dataset,
                            corruptions=corruptions, severities=severities, samples=samples, seed=ctx.seed,
                            calibration=calibration, clean=ctx.logits, device=ctx.device, progress=ctx.progress)
    result["note"] = chosen["note"]
    save_json(result, ctx.path("shift", ".json"))
    # the label names the training seed, so that the figures of two runs of one preset tell them apart; the
    # title stays short enough for one line (the JSON has the full note on the images)
    checkpoint = "" if ctx.file_name == "checkpoint.pt" else f" ({ctx.file_name})"
    plot_shift({f"{ctx.name}, seed {ctx.cfg.seed}": result}, ctx.path("shift", ".png"),
               f"{ctx.out_dir.name}{checkpoint}: corrupted copies of {len(chosen['labels']):,} {ctx.split} images "
               f"(in the manner of CIFAR-10-C), {plural(samples, 'pass') if samples else 'deterministic only'}")
    modes = list(result["summary"]["0"])
    print(f"dataset shift ({plural(len(corruptions), 'corruption')}, mean over them; {chosen['note']}; temperature "
          f"{next(iter(result['temperature'].values()))['how']}): error % / NLL / ECE %")
    print(f"  {'severity':<9}" + "".join(f"{m:>24}" for m in modes))
    for s, row in result["summary"].items():
        cells = "".join(f"{row[m]['error']:>9.2f} {row[m]['nll']:>6.3f} {row[m]['ece']:>6.2f}" + " " * 2
                        for m in modes)
        print(f"  {'clean' if s == '0' else s:<9}{cells}")
    print(f"  {result['intervals']['note']}")
    print(f"written to {ctx.path('shift', '.json')} and {ctx.path('shift', '.png').name}")
    return result
