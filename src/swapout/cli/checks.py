"""What the ``swapout`` subcommands check before any work: a wrong request is refused in one line
(exit status 2) before data is loaded, a model trained or a directory written."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Dict, Optional, Tuple

__all__ = ["UsageError", "overrides", "train_config", "resume_note", "sweep_setup", "eval_options", "warn"]


class UsageError(ValueError):
    """A mistake in what the user asked for: reported in one line, exit status 2."""


def warn(command: str, text: str) -> None:
    """One line on standard error that does not stop the command."""
    print(f"swapout {command}: warning: {text}", file=sys.stderr)


def overrides(args: argparse.Namespace) -> Dict[str, Any]:
    """The config fields given on the command line."""
    from ..runs.config import TrainConfig

    return {k: v for k, v in vars(args).items() if k in TrainConfig.field_names() and k != "preset"}


def _join_sources(preset: Optional[str], values: Dict[str, Any], given: Dict[str, Any]) -> str:
    """Where the join fields of a config came from, e.g. "method from the command line; theta1 from preset P"."""
    from ..runs.config import JOIN_FIELDS

    parts = []
    for where, fields in (("the command line", given), (f"preset {preset}", values)):
        names = [k for k in JOIN_FIELDS if k in fields and (fields is given or k not in given)]
        if names:
            parts.append(f"{', '.join(names)} from {where}")
    return "; ".join(parts)


def _json_config(text: str) -> Dict[str, Any]:
    """The fields of ``--config-json``: a JSON object of config fields, as a sweep hands a run its config, or a
    file that holds one (a run's config.json, the best-config.json of ``swapout tune``)."""
    import json
    from pathlib import Path

    if not text.lstrip().startswith(("{", "[")) and Path(text).is_file():
        text = Path(text).read_text()
    try:
        values = json.loads(text)
    except ValueError as err:
        if not text.lstrip().startswith(("{", "[")):
            raise UsageError(f"--config-json {text}: neither a JSON object nor an existing file") from None
        raise UsageError(f"--config-json: not JSON ({err})") from None
    if isinstance(values, dict) and isinstance(values.get("config"), dict):
        values = values["config"]  # a run directory's config.json: the config beside what it resolved to
    if not isinstance(values, dict):
        raise UsageError(f"--config-json: expected an object of config fields, got {type(values).__name__}")
    return values


def train_config(args: argparse.Namespace):
    """The config of a new run: the preset (if any) with the command line's fields over it, checked."""
    from ..runs.config import TrainConfig, load_preset, merge_preset
    from ..runs.distributed import resolve_device

    given = overrides(args)
    values = _json_config(args.config_json) if getattr(args, "config_json", None) else \
        load_preset(args.preset) if args.preset else {}
    cfg = TrainConfig.from_dict(merge_preset(values, given)).validate()
    try:
        cfg.join()
    except ValueError as err:
        raise UsageError(f"{err} ({_join_sources(args.preset, values, given)})") from None
    if cfg.sync_bn and resolve_device(cfg.device).type == "cpu":
        raise UsageError("--sync-bn true: BatchNorm statistics are synchronised between GPUs only, and this run "
                         "is on the CPU; leave out --sync-bn (or give --sync-bn false)")
    late = [m for m in cfg.milestones or () if m >= cfg.epochs]
    if late and int(os.environ.get("RANK", "0")) == 0:  # a milestone at or past the last epoch never acts
        warn("train", f"milestones {','.join(map(str, late))} are not before the last epoch ({cfg.epochs}): the "
                      f"learning rate never drops there")
    return cfg


def resume_note(run_dir, cfg, re_evaluate: bool = False) -> Optional[str]:
    """A line saying that resuming the run ``run_dir`` (config ``cfg``) has nothing left to train, or None.

    ``re_evaluate``: the run is to be evaluated again (``--re-evaluate``); otherwise its results stand.
    """
    from ..runs.rundir import RunDir

    results = RunDir(run_dir).read_results()
    if not results or "epochs_completed" not in results:
        return None
    if results["epochs_completed"] >= cfg.epochs:
        why = f"all {cfg.epochs} epochs are done"
    elif cfg.max_steps is not None and results.get("steps", 0) >= cfg.max_steps:
        why = f"it stopped at --max-steps {cfg.max_steps} (give a larger --max-steps to train further)"
    else:
        return None
    if re_evaluate:
        return f"{run_dir} is finished ({why}): nothing is left to train; evaluating it again (--re-evaluate)"
    return (f"{run_dir} is finished ({why}): nothing is left to train, and its results stay as they are (give "
            f"--re-evaluate to evaluate it again)")


def check_data_dir(data_dir: Optional[str]) -> None:
    """UsageError unless ``data_dir`` (``--data-dir``) is None or an existing folder."""
    from pathlib import Path

    if data_dir is not None and not Path(data_dir).is_dir():
        what = "a file, not a folder" if Path(data_dir).exists() else "no such folder"
        raise UsageError(f"--data-dir {data_dir}: {what}; give the folder that holds the dataset, or leave it out "
                         f"for the default")


def sweep_setup(args: argparse.Namespace) -> Tuple[Optional[Dict[str, Any]], str, Optional[str]]:
    """The sweep's definition (None: continue the recorded one), device and data folder, all checked."""
    from ..training.sweep import slots
    from ..training.sweep_plan import definition_from
    given = overrides(args)
    device, data_dir = given.pop("device", "auto"), given.pop("data_dir", None)
    check_data_dir(data_dir)  # before any run is started with it, and fails
    if not getattr(args, "storage", None):
        unused = [f"--{name}" for name, default in (("study", None), ("workers", None), ("heartbeat", 10),
                                                     ("grace", 60)) if getattr(args, name, default) != default]
        if unused:
            raise UsageError(f"{', '.join(unused)}: options of a sweep that workers share through --storage; without "
                             f"it, a sweep runs --per-gpu runs at a time on this machine: leave them out")
    if getattr(args, "storage", None) and args.keep_finished != "checkpoints":
        raise UsageError("--keep-finished weights: the workers of a study (--storage) keep every checkpoint, so that "
                         "a retried trial can resume; leave it out, or run the sweep without --storage")
    definition = definition_from(args.presets, args.seeds, args.file, given, args.pack)
    on_cpu = slots(args.per_gpu, args.gpus, device)[0] is None
    if on_cpu and any(r["overrides"].get("sync_bn") for r in (definition or {"runs": []})["runs"]):
        raise UsageError("sync_bn true: BatchNorm statistics are synchronised between GPUs only, and this sweep's "
                         "runs are on the CPU; leave out sync_bn")
    return definition, device, data_dir


def eval_options(args: argparse.Namespace) -> Dict[str, Any]:
    """The keyword arguments of `swapout.runs.evaluate.evaluate_run` that ``swapout eval``'s options give."""
    return dict(split=args.split, samples=30 if args.samples is None else args.samples, repeats=args.repeats,
                limit=args.limit, device=args.device, data_dir=args.data_dir, progress=not args.quiet,
                uncertainty=args.uncertainty, adaptive=args.adaptive, delta=args.delta,
                recalibrate_bn=args.recalibrate_bn, shift=args.shift, corruptions=args.corruptions,
                severities=args.severities, samples_given=args.samples is not None, seed=args.seed)
