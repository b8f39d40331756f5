"""``swapout eval``: evaluate a run directory or a checkpoint file, both ways, with the Figure 2 curve,
and optionally uncertainty, adaptive inference and BatchNorm recalibration (see :mod:`swapout.runs.eval_extras`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import torch

from .config import TrainConfig
from ..data.files import MEAN, STD, load_split
from .distributed import resolve_device
from ..evaluation.errors import error_percent, has_random_masks, plot_curve, sample_curve, split_logits
from .experiment import build_model, eval_splits
from ..progress import Progress, plural
from .rundir import RunDir, read_checkpoint, save_json

__all__ = ["evaluate_run", "load_target", "check_options"]

# Blocks of eval-<split>.json that only some calls compute: a call without their option keeps them.
_OPTION_BLOCKS = ("adaptive", "bn_recalibrated")


def _warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr)


def load_target(target: str) -> Tuple[Dict[str, Any], Path, str, Optional[str]]:
    """The checkpoint behind ``target`` (a run directory or a checkpoint file).

    Returns ``(state, out_dir, file_name, fallback)``: ``fallback`` is a one-line note when the
    latest checkpoint of a run is damaged and the previous one is used instead, else None.
    """
    path = Path(target)
    if path.is_dir():
        run = RunDir(path)
        if not (run.checkpoint_path.exists() or run.previous_checkpoint_path.exists()):
            raise ValueError(f"no checkpoint in {path}: nothing to evaluate (a run directory holds checkpoint.pt; "
                             f"or give a checkpoint file)")
        state, used, skipped = run.latest_checkpoint()
        fallback = None
        if skipped:
            name, reason = skipped[0].split(": ", 1)
            s = state.get("state") or {}
            where = f" (epoch {s['epoch'] + 1}, step {s['step']})" if {"epoch", "step"} <= set(s) else ""
            fallback = f"{name} is damaged ({reason}); evaluating {used.name}{where}"
        return state, path, used.name, fallback
    if path.is_file():
        return read_checkpoint(path), path.parent, path.name, None
    raise ValueError(f"{target}: no such run directory or checkpoint file")


def _suffix(file_name: str) -> str:
    """Outputs of a run's own checkpoint are ``eval-test.json``; of another file, ``eval-test.<its name>.json``."""
    if file_name in ("checkpoint.pt", "checkpoint.prev.pt"):
        return ""
    stem = Path(file_name).stem
    return "." + (stem[len("checkpoint."):] if stem.startswith("checkpoint.") else stem)


def check_options(samples: int, repeats: int, limit: Optional[int], recalibrate_bn: int, delta: float, shift: bool,
                  corruptions: Optional[Sequence[str]], severities: Optional[Sequence[int]], seed: int):
    """ValueError for options of ``swapout eval`` that cannot work, before anything is loaded; returns the
    corruptions and severities of ``shift``, resolved (None without it)."""
    from .eval_extras import shift_grid

    for name, value, low in (("--samples", samples, 1), ("--repeats", repeats, 0), ("--seed", seed, 0),
                             ("--limit", 1 if limit is None else limit, 1)):
        if value < low:
            raise ValueError(f"{name} must be >= {low}, got {value}")
    if recalibrate_bn < 0 or recalibrate_bn == 1:  # BatchNorm needs two images for batch statistics
        raise ValueError(f"--recalibrate-bn must be 0 (none) or a number of training images >= 2, got {recalibrate_bn}")
    if not 0 < delta < 1:
        raise ValueError(f"--delta must be in (0, 1), got {delta}")
    if shift:
        return shift_grid(corruptions, severities)
    if corruptions or severities:
        raise ValueError("--corruptions and --severities go with --shift")
    return None, None


def _save_eval(result: Dict[str, Any], path: Path) -> None:
    """Write the eval JSON: this call's figures, with the blocks of options it did not run kept from the file."""
    try:
        old = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        old = {}
    kept = {k: old[k] for k in _OPTION_BLOCKS if isinstance(old, dict) and k in old and k not in result}
    save_json({**{k: v for k, v in result.items() if k != "curve"}, **kept}, path)


def _data(cfg: TrainConfig, split: str, recalibrate_bn: int):
    """The training split and the evaluated ones; ValueError for a split or a recalibration the run cannot give."""
    from .eval_extras import check_recalibration

    train_split = load_split(cfg.dataset, "train", cfg.data_dir)
    if recalibrate_bn:
        check_recalibration(recalibrate_bn, train_split, cfg)
    splits = eval_splits(cfg, train_split, load_split(cfg.dataset, "test", cfg.data_dir))
    if split not in splits:
        raise ValueError(f"split {split!r} is not available for this run (it held out no validation images); "
                         f"choose from {', '.join(splits)}")
    return train_split, splits


def _model(state: Dict[str, Any], cfg: TrainConfig, device: Optional[str], shift: bool, samples: Optional[int]):
    dev = resolve_device(device or cfg.device)
    model = build_model(cfg).to(dev, memory_format=torch.channels_last)  # the layout training used
    model.load_state_dict(state["model"])
    if shift and samples is not None and not has_random_masks(model):
        raise ValueError(f"--samples {samples} with --shift: this model has no random masks, so it has no stochastic "
                         f"figures (its stochastic inference equals deterministic); leave out --samples")
    return model, dev


def evaluate_run(target: str, split: str = "test", samples: int = 30, repeats: int = 10, limit: Optional[int] = None,
                 device: Optional[str] = None, data_dir: Optional[str] = None, progress: bool = True,
                 uncertainty: bool = False, adaptive: bool = False, delta: float = 0.05,
                 recalibrate_bn: int = 0, shift: bool = False, corruptions: Optional[Sequence[str]] = None,
                 severities: Optional[Sequence[int]] = None, samples_given: bool = False, seed: int = 0,
                 warn: Callable[[str], None] = _warn) -> Dict[str, Any]:
    """Evaluate ``target`` (a run directory or a checkpoint file) on ``split``.

    Writes ``eval-<split>.json`` (deterministic and stochastic error, the file evaluated, the seed) and,
    with ``repeats`` > 0, ``figure2-<split>.json`` and ``figure2-<split>.png`` (error against the number of
    passes 1..samples, mean and standard error over ``repeats`` repetitions, the first of which is
    the stochastic evaluation itself) beside the checkpoint. Masks are drawn from ``seed``, so the same
    call gives the same figures. Options: ``uncertainty`` (:func:`swapout.runs.eval_extras.run_uncertainty`);
    ``adaptive`` inference with bound ``delta`` per image and at most ``samples`` passes
    (:mod:`swapout.evaluation.adaptive`); ``recalibrate_bn`` > 0 training images for BatchNorm, written to
    ``checkpoint.bn-recalibrated-<N>.pt`` (:mod:`swapout.evaluation.recalibrate`); ``shift``, every mode on corrupted
    copies (``corruptions`` x ``severities``, :func:`swapout.runs.eval_extras.run_shift`). ``samples_given``:
    ``samples`` was asked for, which a model without random masks cannot honour under ``shift``.

    Blocks of ``eval-<split>.json`` that this call does not compute (``adaptive``, ``bn_recalibrated``) stay
    from earlier calls; each names its checkpoint and seed, as the Figure 2 JSON does. ``warn``: one-line warnings.
    """
    from . import eval_extras

    corruptions, severities = check_options(samples, repeats, limit, recalibrate_bn, delta, shift, corruptions,
                                            severities, seed)
    state, out_dir, file_name, fallback = load_target(target)
    if fallback:
        warn(fallback)
    cfg = TrainConfig.from_dict(state["config"])
    cfg.data_dir, cfg.eval_limit = data_dir or cfg.data_dir, limit or cfg.eval_limit
    model, dev = _model(state, cfg, device, shift, samples if samples_given else None)
    train_split, splits = _data(cfg, split, recalibrate_bn)
    chosen, suffix, stamp = splits[split], _suffix(file_name), {"checkpoint": file_name, "seed": seed}
    passes = samples if has_random_masks(model) else 0
    if uncertainty and not passes:
        warn("--uncertainty: this model has no random masks, so only deterministic inference is reported (no "
             "stochastic rows, no mutual information)")
    torch.manual_seed(seed)  # every mask drawn from here on
    result, logits = _figures(model, cfg, chosen, split, dev, passes, file_name, seed, adaptive, progress)
    if fallback:
        result["checkpoint_note"] = fallback
    if passes and repeats:
        result["curve"] = _curve(model, cfg, chosen, dev, passes, repeats, logits["passes"].softmax(-1),
                                 out_dir / f"figure2-{split}{suffix}", result["stochastic_error"], progress, stamp)
    if passes and adaptive:
        result["adaptive"] = {**eval_extras.run_adaptive(model, chosen, MEAN[cfg.dataset], STD[cfg.dataset], dev,
                                                         delta, passes, result["stochastic_error"], progress), **stamp}
    if uncertainty:
        eval_extras.run_uncertainty(model, cfg, splits, split, logits, dev, passes, out_dir, suffix, progress)
    if shift:
        eval_extras.run_shift(model, cfg, splits, split, logits, dev, passes, out_dir, suffix, corruptions, severities,
                              progress, seed)
    if recalibrate_bn:
        result["bn_recalibrated"] = {**eval_extras.run_recalibration(
            model, state, cfg, train_split, chosen, dev, recalibrate_bn, out_dir, file_name, result, progress, seed),
            **stamp}
    _save_eval(result, out_dir / f"eval-{split}{suffix}.json")
    return result


def _figures(model, cfg, chosen, split, dev, passes, file_name, seed, adaptive, progress):
    """Deterministic and stochastic error of the split, printed; the result dict and the logits."""
    n = len(chosen["labels"])
    what = f"deterministic and {plural(passes, 'pass')}" if passes else "deterministic"
    bar = Progress(n, f"evaluating {split} ({what})", unit="img", enabled=progress)
    logits = split_logits(model, chosen["images"], chosen["labels"], MEAN[cfg.dataset], STD[cfg.dataset], dev, passes,
                          progress=bar.update)
    bar.close()
    y = logits["labels"]
    result: Dict[str, Any] = {"note": chosen["note"], "checkpoint": file_name, "seed": seed, "images": n,
                              "deterministic_error": error_percent(logits["deterministic"], y)}
    line = f"{split} ({chosen['note']}): deterministic error {result['deterministic_error']:.2f}%"
    if not passes:
        print(line + "; the model has no random masks, so stochastic inference equals deterministic"
              + (" (and adaptive inference needs one pass)" if adaptive else ""))
    else:
        result.update(stochastic_error=error_percent(logits["passes"].softmax(-1).mean(0), y), samples=passes)
        print(line + f", stochastic error ({plural(passes, 'pass')}) {result['stochastic_error']:.2f}%")
    return result, logits


def _curve(model, cfg, chosen, dev, samples, repeats, first, stem: Path, evaluated: float, progress,
           stamp: Dict[str, Any]) -> Dict:
    n = len(chosen["labels"])
    bar = Progress(n * (repeats - 1), f"figure 2: {repeats - 1} more sweeps over {n:,} images, "
                                      f"{plural(samples, 'pass')} each", unit="img", enabled=progress and repeats > 1)
    curve = sample_curve(model, chosen["images"], chosen["labels"], MEAN[cfg.dataset], STD[cfg.dataset], dev, samples,
                         repeats, progress=bar.update, first=first)
    bar.close()
    curve.update(note=chosen["note"], **stamp)
    curve["first_repetition"] = "the stochastic evaluation of eval JSON (same draws)"
    save_json(curve, stem.parent / (stem.name + ".json"))
    plot_curve(curve, stem.parent / (stem.name + ".png"),
               f"{cfg.preset or cfg.model}: error vs passes, {chosen['note']}, {repeats} repetitions")
    for k in sorted({1, 2, 5, 10, samples} & set(curve["samples"])):
        print(f"  {plural(k, 'pass'):>10}: {curve['mean_error'][k - 1]:.2f}% +- {curve['standard_error'][k - 1]:.2f} "
              f"(mean +- standard error of {repeats} repetitions)")
    print(f"repetition 1 of the curve is the stochastic evaluation above ({evaluated:.2f}%); the curve at "
          f"{plural(samples, 'pass')} is the mean of all {repeats}. Written to {stem}.png and .json")
    return curve
