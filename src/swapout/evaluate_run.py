"""``swapout eval``: evaluate a run directory or a checkpoint file, both ways, with the Figure 2 curve,
and optionally uncertainty, adaptive inference and BatchNorm recalibration (see :mod:`swapout.eval_extras`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple


from .config import TrainConfig
from .data import MEAN, STD, load_split
from .distributed import resolve_device
from .evaluate import error_percent, has_random_masks, plot_curve, sample_curve, split_logits
from .experiment import build_model, eval_splits
from .progress import Progress, plural
from .rundir import RunDir, read_checkpoint, save_json

__all__ = ["evaluate_run", "load_target"]


def load_target(target: str) -> Tuple[Dict[str, Any], Path, str, Optional[str]]:
    """The checkpoint behind ``target`` (a run directory or a checkpoint file).

    Returns ``(state, out_dir, file_name, fallback)``: ``fallback`` is a one-line note when the
    latest checkpoint of a run is damaged and the previous one is used instead, else None.
    """
    path = Path(target)
    if path.is_dir():
        state, used, skipped = RunDir(path).latest_checkpoint()
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


def evaluate_run(target: str, split: str = "test", samples: int = 30, repeats: int = 10, limit: Optional[int] = None,
                 device: Optional[str] = None, data_dir: Optional[str] = None, progress: bool = True,
                 uncertainty: bool = False, adaptive: bool = False, delta: float = 0.05,
                 recalibrate_bn: int = 0, shift: bool = False, corruptions: Optional[Sequence[str]] = None,
                 severities: Optional[Sequence[int]] = None, samples_given: bool = False) -> Dict[str, Any]:
    """Evaluate ``target`` (a run directory or a checkpoint file) on ``split``.

    Writes ``eval-<split>.json`` (deterministic and stochastic error, the file evaluated) and, with
    ``repeats`` > 0, ``figure2-<split>.json`` and ``figure2-<split>.png`` (error against the number of
    passes 1..samples, mean and standard error over ``repeats`` repetitions, the first of which is
    the stochastic evaluation itself) beside the checkpoint. Options:

    * ``uncertainty``: calibration, temperature scaling and OOD detection, see
      :func:`swapout.eval_extras.run_uncertainty`;
    * ``adaptive``: adaptive stochastic inference with error bound ``delta`` per image and at most
      ``samples`` passes, see :mod:`swapout.adaptive`;
    * ``recalibrate_bn`` > 0: BatchNorm recalibration on that many training images, written to
      ``checkpoint.bn-recalibrated-<N>.pt`` beside the checkpoint, see :mod:`swapout.recalibrate`;
    * ``shift``: every inference mode on corrupted copies of the split (``corruptions`` x ``severities``),
      see :func:`swapout.eval_extras.run_shift`. ``samples_given``: ``samples`` was asked for explicitly,
      which a model without random masks cannot honour under ``shift``.
    """
    from . import eval_extras

    if samples < 1:
        raise ValueError(f"--samples must be >= 1, got {samples}")
    if repeats < 0:
        raise ValueError(f"--repeats must be >= 0, got {repeats}")
    if recalibrate_bn < 0:
        raise ValueError(f"--recalibrate-bn must be a number of training images >= 0, got {recalibrate_bn}")
    if not 0 < delta < 1:
        raise ValueError(f"--delta must be in (0, 1), got {delta}")
    if shift:
        corruptions, severities = eval_extras.shift_grid(corruptions, severities)
    elif corruptions or severities:
        raise ValueError("--corruptions and --severities go with --shift")
    state, out_dir, file_name, fallback = load_target(target)
    if fallback:
        print(fallback)
    cfg = TrainConfig.from_dict(state["config"])
    if data_dir:
        cfg.data_dir = data_dir
    if limit is not None:
        if limit < 1:
            raise ValueError(f"--limit must be >= 1, got {limit}")
        cfg.eval_limit = limit
    dev = resolve_device(device or cfg.device)
    model = build_model(cfg).to(dev)
    model.load_state_dict(state["model"])
    if shift and samples_given and not has_random_masks(model):
        raise ValueError(f"--samples {samples} with --shift: this model has no random masks, so it has no stochastic "
                         f"figures (its stochastic inference equals deterministic); leave out --samples")
    train_split = load_split(cfg.dataset, "train", cfg.data_dir)
    splits = eval_splits(cfg, train_split, load_split(cfg.dataset, "test", cfg.data_dir))
    if split not in splits:
        raise ValueError(f"split {split!r} is not available for this run (it held out no validation images); "
                         f"choose from {', '.join(splits)}")
    chosen, suffix = splits[split], _suffix(file_name)
    mean, std = MEAN[cfg.dataset], STD[cfg.dataset]
    n, passes = len(chosen["labels"]), samples if has_random_masks(model) else 0
    what = f"deterministic and {plural(passes, 'pass')}" if passes else "deterministic"
    bar = Progress(n, f"evaluating {split} ({what})", unit="img", enabled=progress)
    logits = split_logits(model, chosen["images"], chosen["labels"], mean, std, dev, passes, progress=bar.update)
    bar.close()
    y = logits["labels"]
    result: Dict[str, Any] = {"note": chosen["note"], "checkpoint": file_name, "images": n,
                              "deterministic_error": error_percent(logits["deterministic"], y)}
    if fallback:
        result["checkpoint_note"] = fallback
    line = f"{split} ({chosen['note']}): deterministic error {result['deterministic_error']:.2f}%"
    if not passes:
        print(line + "; the model has no random masks, so stochastic inference equals deterministic"
              + (" (and adaptive inference needs one pass)" if adaptive else ""))
    else:
        pass_probs = logits["passes"].softmax(-1)
        result.update(stochastic_error=error_percent(pass_probs.mean(0), y), samples=passes)
        print(line + f", stochastic error ({plural(passes, 'pass')}) {result['stochastic_error']:.2f}%")
        if repeats:
            result["curve"] = _curve(model, cfg, chosen, dev, passes, repeats, pass_probs, out_dir / f"figure2-{split}"
                                     f"{suffix}", result["stochastic_error"], progress)
        if adaptive:
            result["adaptive"] = eval_extras.run_adaptive(model, chosen, mean, std, dev, delta, passes,
                                                          result["stochastic_error"], progress)
    if uncertainty:
        eval_extras.run_uncertainty(model, cfg, splits, split, logits, dev, passes, out_dir, suffix, progress)
    if shift:
        eval_extras.run_shift(model, cfg, splits, split, logits, dev, passes, out_dir, suffix, corruptions, severities,
                              progress)
    if recalibrate_bn:
        result["bn_recalibrated"] = eval_extras.run_recalibration(
            model, state, cfg, train_split, chosen, dev, recalibrate_bn, out_dir, file_name, result, progress)
    save_json({k: v for k, v in result.items() if k != "curve"}, out_dir / f"eval-{split}{suffix}.json")
    return result


def _curve(model, cfg, chosen, dev, samples, repeats, first, stem: Path, evaluated: float, progress) -> Dict:
    n = len(chosen["labels"])
    bar = Progress(n * (repeats - 1), f"figure 2: {repeats - 1} more sweeps over {n:,} images, "
                                      f"{plural(samples, 'pass')} each", unit="img", enabled=progress and repeats > 1)
    curve = sample_curve(model, chosen["images"], chosen["labels"], MEAN[cfg.dataset], STD[cfg.dataset], dev, samples,
                         repeats, progress=bar.update, first=first)
    bar.close()
    curve["note"] = chosen["note"]
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
