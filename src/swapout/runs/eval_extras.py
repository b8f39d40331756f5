"""The optional parts of ``swapout eval``: ``--uncertainty``, ``--adaptive``, ``--recalibrate-bn N`` and ``--shift``."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Dict

import numpy as np
import torch
from torch import nn

from ..evaluation.adaptive import adaptive_predict, min_passes
from .config import TrainConfig
from ..data.files import MEAN, STD, Split, load_split
from ..evaluation.errors import error_percent, split_logits
from ..data.pipeline import eval_batches
from ..evaluation.plots import plot_reliability
from ..progress import Progress, plural
from ..evaluation.recalibrate import recalibrate_bn
from .rundir import save_json, write_checkpoint
from ..evaluation.uncertainty_report import uncertainty_report

__all__ = ["run_adaptive", "run_uncertainty", "run_recalibration", "check_recalibration", "run_shift", "shift_grid",
           "OOD_DATASET", "RECALIBRATION"]

OOD_DATASET = {"cifar10": "cifar100", "cifar100": "cifar10"}
# The recalibration settings that `swapout eval --recalibrate-bn` uses (see results/inference/README.md).
RECALIBRATION = {"augment": False, "layers": "all", "stats": "both"}


def run_adaptive(model: nn.Module, chosen: Dict[str, Any], mean, std, device, delta: float, max_passes: int,
                 fixed_error: float, progress: bool) -> Dict[str, Any]:
    """Adaptive stochastic inference over a whole split (all pending images sampled together); prints
    and returns its error (%) and mean passes beside fixed ``max_passes`` inference's ``fixed_error``."""
    x, y = next(eval_batches(chosen["images"], chosen["labels"], mean, std, device, len(chosen["labels"])))
    bar = Progress(len(y), f"adaptive inference (delta {delta:g}, at most {plural(max_passes, 'pass')})", unit="img",
                   enabled=progress)
    out = adaptive_predict(model, x, delta=delta, max_passes=max_passes, progress=bar.update)
    bar.close()
    result = {"delta": delta, "max_passes": max_passes, "first_round": min(min_passes(delta), max_passes),
              "round_size": 2, "error": round(100.0 * (out["prediction"] != y.cpu()).double().mean().item(), 4),
              "mean_passes": round(out["passes"].double().mean().item(), 4),
              "settled": round(out["settled"].double().mean().item(), 4), "fixed_error": fixed_error}
    print(f"adaptive stochastic inference (delta {delta:g}): error {result['error']:.2f}% with "
          f"{result['mean_passes']:.2f} passes per image on average ({100 * result['settled']:.1f}% of the images "
          f"settled by the test, the others stopped at {max_passes}); fixed {plural(max_passes, 'pass')}: "
          f"{fixed_error:.2f}%")
    return result


def _logits(model, images, labels, mean, std, device, samples, label, progress):
    bar = Progress(len(labels), label, unit="img", enabled=progress)
    out = split_logits(model, images, labels, mean, std, device, samples, progress=bar.update)
    bar.close()
    return out


def run_uncertainty(model: nn.Module, cfg: TrainConfig, splits: Dict[str, Dict], split: str,
                    logits: Dict[str, torch.Tensor], device, samples: int, out_dir: Path, suffix: str,
                    progress: bool) -> Dict[str, Any]:
    """Calibration and OOD report of ``swapout eval --uncertainty``, written beside the checkpoint.

    Files: ``uncertainty-<split>.json`` (see :func:`swapout.evaluation.uncertainty_report.uncertainty_report`),
    ``reliability-<split>.png`` and ``uncertainty-<split>-per-image.csv`` (label, prediction,
    predictive entropy and mutual information of every image). Temperatures are fitted on the run's
    held-out images when it has some and ``split`` is ``test``, else by 2-fold cross-fitting. OOD
    images: the exact test images of the other CIFAR dataset, normalised as the model's own data.
    """
    mean, std = MEAN[cfg.dataset], STD[cfg.dataset]
    ood_name = OOD_DATASET[cfg.dataset]
    ood_split: Split = load_split(ood_name, "test", cfg.data_dir)
    images, labels = ood_split.images[ood_split.exact], ood_split.labels[ood_split.exact]
    if cfg.eval_limit:
        images, labels = images[:cfg.eval_limit], labels[:cfg.eval_limit]
    ood = _logits(model, images, labels, mean, std, device, samples, f"{ood_name} test images (OOD)", progress)
    calibration = None
    if split == "test" and "val" in splits:
        val = splits["val"]
        calibration = _logits(model, val["images"], val["labels"], mean, std, device, samples,
                              "held-out images (temperature)", progress)
    report = uncertainty_report(logits, ood, calibration)
    per_image = report.pop("per_image")
    report.update(note=splits[split]["note"], ood_dataset=f"{ood_name} test ({len(labels):,} images)")
    save_json(report, out_dir / f"uncertainty-{split}{suffix}.json")
    rows = np.stack([np.arange(len(per_image["label"])), per_image["label"].numpy(), per_image["prediction"].numpy(),
                     per_image["entropy"].numpy(), per_image["mutual_information"].numpy()], 1)
    np.savetxt(out_dir / f"uncertainty-{split}{suffix}-per-image.csv", rows, delimiter=",",
               fmt=["%d", "%d", "%d", "%.6f", "%.6f"], header="index,label,prediction,entropy,mutual_information",
               comments="")
    panels = [{"label": k.replace("+T", " + temperature"), **v} for k, v in report["reliability"].items()]
    plot_reliability(panels, out_dir / f"reliability-{split}{suffix}.png",
                     f"{cfg.preset or cfg.model}, {splits[split]['note']}")
    print(f"uncertainty ({splits[split]['note']}; OOD: {report['ood_dataset']}; temperature "
          f"{report['temperature_fit']}):")
    print(f"  {'mode':<18} {'error %':>8} {'NLL':>7} {'Brier':>7} {'ECE %':>7} {'AUROC maxp':>11} "
          f"{'AUROC ent':>10} {'AUROC MI':>9}")
    for name, r in report["rows"].items():
        ood_cols = [r["ood"][k]["auroc"] if k in r["ood"] else None for k in
                    ("max_probability", "entropy", "mutual_information")]
        print(f"  {name:<18} {r['error']:>8.2f} {r['nll']:>7.4f} {r['brier']:>7.4f} {r['ece']:>7.2f} "
              + " ".join(f"{v:>{w}.2f}" if v is not None else f"{'-':>{w}}" for v, w in zip(ood_cols, (11, 10, 9))))
    print(f"written to {out_dir / f'uncertainty-{split}{suffix}.json'}, reliability-{split}{suffix}.png and "
          f"the per-image CSV")
    return report


def check_recalibration(images: int, train: Split, cfg: TrainConfig) -> int:
    """The number of training images the run trained on; ValueError if ``images`` is more."""
    pool = len(train.labels) - (cfg.val_split or 0)
    if images > pool:
        raise ValueError(f"--recalibrate-bn {images}: the run trained on {pool:,} images only; give at most {pool:,}")
    return pool


def run_recalibration(model: nn.Module, state: Dict[str, Any], cfg: TrainConfig, train: Split, chosen: Dict[str, Any],
                      device, images: int, out_dir: Path, file_name: str, result: Dict[str, Any], progress: bool,
                      seed: int = 0) -> Dict[str, Any]:
    """BatchNorm recalibration on ``images`` training images (a seeded random choice among those the
    run trained on) of a copy of ``model``, written to ``checkpoint.bn-recalibrated-<N>.pt`` beside the
    evaluated file (which is not touched), then its deterministic error on the evaluated split."""
    pool = check_recalibration(images, train, cfg)
    pick = np.sort(np.random.default_rng(seed).permutation(pool)[:images])
    mean, std = MEAN[cfg.dataset], STD[cfg.dataset]
    fresh = copy.deepcopy(model)
    bar = Progress(images, "recalibrating BatchNorm", unit="img", enabled=progress)
    info = recalibrate_bn(fresh, train.images[pick], train.labels[pick], mean, std, device, seed=seed,
                          progress=bar.update, **RECALIBRATION)
    bar.close()
    path = out_dir / f"checkpoint.bn-recalibrated-{images}.pt"
    write_checkpoint({**state, "model": fresh.state_dict(), "bn_recalibration": {**info, "from": file_name,
                                                                                 "seed": seed}}, path)
    det = _logits(fresh, chosen["images"], chosen["labels"], mean, std, device, 0, "deterministic, recalibrated",
                  progress)
    error = error_percent(det["deterministic"], det["labels"])
    sto = f"; stochastic {result['stochastic_error']:.2f}%" if "stochastic_error" in result else ""
    print(f"BatchNorm recalibrated on {info['images']:,} training images: deterministic error {error:.2f}% "
          f"(was {result['deterministic_error']:.2f}%{sto}). Written to {path}; {file_name} is unchanged")
    return {**info, "deterministic_error": error, "file": path.name, "seed": seed}


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


def run_shift(model: nn.Module, cfg: TrainConfig, splits: Dict[str, Dict], split: str, logits: Dict[str, torch.Tensor],
              device, samples: int, out_dir: Path, suffix: str, corruptions, severities,
              progress: bool, seed: int = 0) -> Dict[str, Any]:
    """``swapout eval --shift``: :func:`swapout.evaluation.shift.evaluate_shift` on the evaluated split, written beside
    the checkpoint as ``shift-<split>.json`` and ``shift-<split>.png``.

    Temperatures are fitted on the run's held-out images when it has some and ``split`` is ``test``,
    else by 2-fold cross-fitting on the clean copies of the evaluated images. ``seed`` seeds the
    corruptions, the masks and the folds.
    """
    from ..evaluation.shift import evaluate_shift, plot_shift

    chosen = splits[split]
    calibration = None
    if split == "test" and "val" in splits:
        calibration = (splits["val"]["images"], splits["val"]["labels"])
    result = evaluate_shift(model, chosen["images"], chosen["labels"], dataset=cfg.dataset, corruptions=corruptions,
                            severities=severities, samples=samples, seed=seed, calibration=calibration, clean=logits,
                            device=device, progress=progress)
    result["note"] = chosen["note"]
    name = cfg.preset or cfg.model
    save_json(result, out_dir / f"shift-{split}{suffix}.json")
    plot_shift({name: result}, out_dir / f"shift-{split}{suffix}.png",
               f"{name}, corrupted copies of {chosen['note']} (in the manner of CIFAR-10-C), "
               f"{plural(samples, 'pass') if samples else 'deterministic only'}")
    modes = list(result["summary"]["0"])
    print(f"dataset shift ({len(corruptions)} corruptions, mean over them; {chosen['note']}; temperature "
          f"{next(iter(result['temperature'].values()))['how']}): error % / NLL / ECE %")
    print(f"  {'severity':<9}" + "".join(f"{m:>24}" for m in modes))
    for s, row in result["summary"].items():
        cells = "".join(f"{row[m]['error']:>9.2f} {row[m]['nll']:>6.3f} {row[m]['ece']:>6.2f}" + " " * 2
                        for m in modes)
        print(f"  {'clean' if s == '0' else s:<9}{cells}")
    print(f"  {result['intervals']['note']}")
    print(f"written to {out_dir / f'shift-{split}{suffix}.json'} and shift-{split}{suffix}.png")
    return result
