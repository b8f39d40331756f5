"""``swapout eval``: evaluate a run directory or a checkpoint file, both ways, with the Figure 2 curve."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, Optional

from .config import TrainConfig
from .data import MEAN, STD, load_split
from .distributed import resolve_device
from .evaluate import evaluate_split, plot_curve, sample_curve
from .experiment import build_model, eval_splits
from .progress import Progress
from .rundir import RunDir, read_checkpoint, save_json

__all__ = ["evaluate_run"]


def evaluate_run(target: str, split: str = "test", samples: int = 30, repeats: int = 10, limit: Optional[int] = None,
                 device: Optional[str] = None, data_dir: Optional[str] = None, progress: bool = True) -> Dict[str, Any]:
    """Evaluate ``target`` (a run directory or a checkpoint file) on ``split``.

    Writes ``eval-<split>.json`` (deterministic and stochastic error) and, with ``repeats`` > 0,
    ``figure2-<split>.json`` and ``figure2-<split>.png`` (error against the number of passes 1..samples,
    mean and standard error over ``repeats`` repetitions) beside the checkpoint.
    """
    if samples < 1:
        raise ValueError(f"--samples must be >= 1, got {samples}")
    if repeats < 0:
        raise ValueError(f"--repeats must be >= 0, got {repeats}")
    path = Path(target)
    if path.is_dir():
        state, out_dir = RunDir(path).load_checkpoint(), path
    elif path.is_file():
        state, out_dir = read_checkpoint(path), path.parent
    else:
        raise ValueError(f"{target}: no such run directory or checkpoint file")
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
    splits = eval_splits(cfg, load_split(cfg.dataset, "train", cfg.data_dir), load_split(cfg.dataset, "test", cfg.data_dir))
    if split not in splits:
        raise ValueError(f"split {split!r} is not available for this run (it held out no validation images); "
                         f"choose from {', '.join(splits)}")
    chosen = splits[split]
    mean, std = MEAN[cfg.dataset], STD[cfg.dataset]
    n = len(chosen["labels"])
    bar = Progress(n * (1 + samples), f"evaluating {split}", enabled=progress)
    result = {"note": chosen["note"], **evaluate_split(model, chosen["images"], chosen["labels"], mean, std, dev,
                                                       samples=samples, progress=bar.update)}
    bar.close()
    save_json(result, out_dir / f"eval-{split}.json")
    line = f"{split} ({chosen['note']}): deterministic error {result['deterministic_error']:.2f}%"
    if "stochastic_error" not in result:
        print(line + "; the model has no random masks, so stochastic inference equals deterministic")
        return result
    print(line + f", stochastic error ({samples} passes) {result['stochastic_error']:.2f}%")
    if repeats:
        bar = Progress(n * samples * repeats, f"figure 2 ({repeats} repetitions)", enabled=progress)
        curve = sample_curve(model, chosen["images"], chosen["labels"], mean, std, dev, samples, repeats,
                             progress=bar.update)
        bar.close()
        curve["note"] = chosen["note"]
        save_json(curve, out_dir / f"figure2-{split}.json")
        plot_curve(curve, out_dir / f"figure2-{split}.png",
                   f"{cfg.preset or cfg.model}: error (%) vs passes, {chosen['note']}, {repeats} repetitions")
        for k in sorted({1, 2, 5, 10, samples} & set(curve["samples"])):
            print(f"  {k:3d} passes: {curve['mean_error'][k - 1]:.2f}% +- {curve['standard_error'][k - 1]:.2f}",
                  file=sys.stdout)
        print(f"curve written to {out_dir / f'figure2-{split}.png'} and .json")
        result["curve"] = curve
    return result
