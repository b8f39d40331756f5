"""``swapout eval``: evaluate a run directory or a checkpoint file, both ways, with the Figure 2 curve,
and optionally uncertainty, adaptive inference and BatchNorm recalibration (see `swapout.runs.eval_extras`)."""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import torch

from ..data.files import load_split
from ..evaluation.errors import error_percent, has_random_masks, plot_curve, sample_curve
from ..progress import Progress, plural
from .config import TrainConfig
from .distributed import resolve_device
from .eval_context import EvalContext
from .experiment import build_model, eval_splits
from .rundir import RunDir, read_checkpoint, save_json

__all__ = ["evaluate_run", "load_target", "load_run", "check_options"]

# Blocks of eval-<split>.json that only some calls compute: a call without their option keeps them.
_OPTION_BLOCKS = ("adaptive", "bn_recalibrated")
# the most repetitions of the error-vs-passes curve: 1,000 x 30 passes is far past any use
MAX_REPEATS = 1000


def _warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr)


def load_target(target: str) -> Tuple[Dict[str, Any], Path, str, Optional[str]]:
    """The checkpoint behind ``target`` (a run directory or a checkpoint file).

    Returns ``(state, out_dir, file_name, fallback)``: ``fallback`` is a one-line note when the
    latest checkpoint of a run is damaged and the previous one is used instead, else None.
    """
    path = Path(target)
    _refuse_pack(path)
    if path.is_dir():
        run = RunDir(path)
        if not (run.checkpoint_path.exists() or run.previous_checkpoint_path.exists()):
            if run.weights_path.exists():  # a finished run that kept its final weights alone
                return read_checkpoint(run.weights_path), path, run.weights_path.name, None
            raise ValueError(f"no checkpoint in {path}: nothing to evaluate (a run directory holds checkpoint.pt "
                             f"or, once finished, weights.pt; or give a checkpoint file)")
        state, used, skipped = run.latest_checkpoint()
        fallback = None
        if skipped:
            name, reason = skipped[0].split(": ", 1)
            s = state.get("state") or {}
            where = f" (epoch {s['epoch'] + 1}, step {s['step']})" if {"epoch", "step"} <= set(s) else ""
            fallback = f"{name} is damaged ({reason}); evaluating {used.name}{where}"
        return state, path, used.name, fallback
    if path.is_file():
        state = read_checkpoint(path)
        if isinstance(state.get("config"), list):  # a pack's checkpoint file outside its folder
            raise ValueError(f"{path} is the checkpoint of a pack of {len(state['config'])} runs (one packed network): "
                             f"evaluate its runs' own directories instead; each holds its plain checkpoint")
        return state, path.parent, path.name, None
    raise ValueError(f"{target}: no such run directory or checkpoint file")


def _refuse_pack(path: Path) -> None:
    """ValueError naming the runs when ``path`` is a pack's folder (or its checkpoint): the packed network is
    G runs in one, which ``swapout eval`` does not take; each run keeps a plain checkpoint in its own directory."""
    from .rundir import read_pack

    folder = path if path.is_dir() else path.parent
    if not (folder / "pack.json").exists():
        return
    try:
        runs = [str(r["path"]) for r in read_pack(folder)]
    except (ValueError, KeyError, TypeError):
        runs = []
    names = f": {', '.join(runs)}" if runs else ""
    what = "a pack's folder" if path.is_dir() else "the checkpoint of a pack"
    raise ValueError(f"{path} is {what} (one packed network of {len(runs) or 'several'} runs), not a run: "
                     f"evaluate each of its runs instead{names}")


def load_run(target: Union[str, os.PathLike[str]], device: Optional[str] = None) -> torch.nn.Module:
    """The trained network of a run, ready for `swapout.predict` on your own images.

    Checkpoints carry a checksum header, so ``torch.load`` alone does not read them; this builds the network
    that the run's config describes and loads its weights into it.

    Args:
        target: a run directory (its latest checkpoint, else the previous one, else its final ``weights.pt``)
            or a checkpoint file.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``; None: the run's own setting.

    Returns:
        The network in ``eval()`` mode (deterministic inference), in the channels-last layout it trained in.
        Its inputs are normalised as in training (`swapout.data.cifar.MEAN` and ``STD`` of its dataset).

    Raises:
        ValueError: for a target that is not a run or a checkpoint (a pack's folder: load each run), or
            weights that do not fit the network of its config.

    Warns:
        RuntimeWarning: when a run's latest checkpoint is damaged and the previous one is loaded instead.
    """
    state, _, _, fallback = load_target(str(target))
    if fallback:
        warnings.warn(fallback.replace("; evaluating ", "; loading "), RuntimeWarning, stacklevel=2)
    model, _ = _model(state, TrainConfig.from_dict(state["config"]), device, False, None)
    return model.eval()


def check_options(samples: int, repeats: int, limit: Optional[int], recalibrate_bn: int, delta: float, shift: bool,
                  corruptions: Optional[Sequence[str]], severities: Optional[Sequence[int]], seed: int):
    """ValueError for options of ``swapout eval`` that cannot work, before anything is loaded; returns the
    corruptions and severities of ``shift``, resolved (None without it)."""
    from .eval_extras import shift_grid

    for name, value, low in (("--samples", samples, 1), ("--repeats", repeats, 0), ("--seed", seed, 0),
                             ("--limit", 1 if limit is None else limit, 1)):
        if value < low:
            raise ValueError(f"{name} must be >= {low}, got {value}")
    if repeats > MAX_REPEATS:  # refused now rather than after the evaluation, when the curve would not fit
        raise ValueError(f"--repeats must be at most {MAX_REPEATS:,} (each repetition is --samples more passes over "
                         f"the split; the paper used 30), got {repeats:,}")
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
    # the layout training used; nn.Module.to passes memory_format on, though its overloads omit it
    model = build_model(cfg).to(dev, memory_format=torch.channels_last)  # type: ignore[call-overload]
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:  # weights of another network than the config describes
        raise ValueError(f"the checkpoint's weights do not fit the network its config describes "
                         f"({str(err).splitlines()[0][:200]})") from None
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
    call gives the same figures. Options: ``uncertainty`` (`swapout.runs.eval_extras.run_uncertainty`);
    ``adaptive`` inference with bound ``delta`` per image and at most ``samples`` passes
    (`swapout.evaluation.adaptive`); ``recalibrate_bn`` > 0 training images for BatchNorm, written to
    ``checkpoint.bn-recalibrated-<N>.pt`` (`swapout.evaluation.recalibrate`); ``shift``, every mode on corrupted
    copies (``corruptions`` x ``severities``, `swapout.runs.eval_extras.run_shift`). ``samples_given``:
    ``samples`` was asked for, which a model without random masks cannot honour under ``shift``.

    Blocks of ``eval-<split>.json`` that this call does not compute (``adaptive``, ``bn_recalibrated``) stay
    from earlier calls; each names its checkpoint and seed, as the Figure 2 JSON does. ``warn``: one-line warnings.
    """
    from . import eval_extras

    corruptions, severities = check_options(samples, repeats, limit, recalibrate_bn, delta, shift, corruptions,
                                            severities, seed)
    if uncertainty or shift:  # their metrics need torchmetrics: a broken install is said before any work
        from ..evaluation.uncertainty import classification_metrics

        classification_metrics()
    state, out_dir, file_name, fallback = load_target(target)
    if fallback:
        warn(fallback)
    cfg = TrainConfig.from_dict(state["config"])
    if not data_dir and cfg.data_dir and not Path(cfg.data_dir).is_dir():
        # the folder the run trained from is gone (another machine, a moved checkout): look where data is looked for
        # when none is named ($SWAPOUT_DATA first), rather than download into a folder that no longer exists
        warn(f"the run's data folder {cfg.data_dir} does not exist here; reading the data from the default folder "
             f"(--data-dir names another)")
        cfg.data_dir = None
    cfg.data_dir, cfg.eval_limit = data_dir or cfg.data_dir, limit or cfg.eval_limit
    model, dev = _model(state, cfg, device, shift, samples if samples_given else None)
    train_split, splits = _data(cfg, split, recalibrate_bn)
    ctx = EvalContext(model, cfg, dev, splits, split, out_dir, file_name, seed, progress,
                      passes=samples if has_random_masks(model) else 0)
    if uncertainty and not ctx.passes:
        warn("--uncertainty: this model has no random masks, so only deterministic inference is reported (no "
             "stochastic rows, no mutual information)")
    torch.manual_seed(seed)  # every mask drawn from here on
    result = _figures(ctx, adaptive)
    if fallback:
        result["checkpoint_note"] = fallback
    if ctx.passes and repeats:
        result["curve"] = _curve(ctx, repeats, result["stochastic_error"])
    if ctx.passes and adaptive:
        result["adaptive"] = {**eval_extras.run_adaptive(ctx, delta, result["stochastic_error"]), **ctx.stamp}
    if uncertainty:
        eval_extras.run_uncertainty(ctx)
    if shift:
        eval_extras.run_shift(ctx, corruptions, severities)
    if recalibrate_bn:
        result["bn_recalibrated"] = {**eval_extras.run_recalibration(ctx, state, train_split, recalibrate_bn, result),
                                     **ctx.stamp}
    _save_eval(result, ctx.path("eval", ".json"))
    return result


def _figures(ctx: EvalContext, adaptive: bool) -> Dict[str, Any]:
    """Deterministic and stochastic error of the split, printed; keeps the logits in ``ctx``."""
    chosen, passes = ctx.chosen, ctx.passes
    what = f"deterministic and {plural(passes, 'pass')}" if passes else "deterministic"
    ctx.logits = ctx.logits_of(chosen["images"], chosen["labels"], passes, f"evaluating {ctx.split} ({what})")
    y = ctx.logits["labels"]
    result: Dict[str, Any] = {"note": chosen["note"], **ctx.stamp, "images": len(y),
                              "deterministic_error": error_percent(ctx.logits["deterministic"], y)}
    line = f"{ctx.split} ({chosen['note']}): deterministic error {result['deterministic_error']:.2f}%"
    if not passes:
        print(line + "; the model has no random masks, so stochastic inference equals deterministic"
              + (" (and adaptive inference needs one pass)" if adaptive else ""))
    else:
        result.update(stochastic_error=error_percent(ctx.logits["passes"].softmax(-1).mean(0), y), samples=passes)
        print(line + f", stochastic error ({plural(passes, 'pass')}) {result['stochastic_error']:.2f}%")
    return result


def _curve(ctx: EvalContext, repeats: int, evaluated: float) -> Dict:
    """Figure 2 over ``repeats`` repetitions, the first being the stochastic evaluation's own passes."""
    chosen, samples, n = ctx.chosen, ctx.passes, len(ctx.chosen["labels"])
    bar = Progress(n * (repeats - 1), f"figure 2: {repeats - 1} more sweeps over {n:,} images, "
                                      f"{plural(samples, 'pass')} each", unit="img",
                   enabled=ctx.progress and repeats > 1)
    mean, std = ctx.normalisation
    assert ctx.logits is not None, "the curve's first repetition is the stochastic evaluation's"
    curve = sample_curve(ctx.model, chosen["images"], chosen["labels"], mean, std, ctx.device, samples, repeats,
                         progress=bar.update, first=ctx.logits["passes"].softmax(-1))
    bar.close()
    curve.update(note=chosen["note"], **ctx.stamp)
    curve["first_repetition"] = "the stochastic evaluation of eval JSON (same draws)"
    save_json(curve, ctx.path("figure2", ".json"))
    plot_curve(curve, ctx.path("figure2", ".png"),
               f"{ctx.name}: error vs passes, {chosen['note']}, {repeats} repetitions")
    for k in sorted({1, 2, 5, 10, samples} & set(curve["samples"])):
        print(f"  {plural(k, 'pass'):>10}: {curve['mean_error'][k - 1]:.2f}% +- {curve['standard_error'][k - 1]:.2f} "
              f"(mean +- standard error of {repeats} repetitions)")
    print(f"repetition 1 of the curve is the stochastic evaluation above ({evaluated:.2f}%); the curve at "
          f"{plural(samples, 'pass')} averages all {repeats} repetitions. Written to {ctx.path('figure2', '.png')} "
          f"and .json")
    return curve
