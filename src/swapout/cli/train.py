"""``swapout train``: a run with the paper's recipe (or a preset), a resumed run, or a pack of runs."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Union

from .checks import UsageError, resume_note, train_config
from .checks import overrides as _overrides
from .options import config_options

__all__ = ["train_parser"]


def _train(args: argparse.Namespace) -> None:
    from ..runs.config import TrainConfig
    from ..runs.rundir import RunDir
    from ..training.train import TrainingStopped, train

    overrides = _overrides(args)
    if args.config_json and (args.preset or args.resume or args.pack_dir):
        raise UsageError("--config-json is a whole config: it goes with neither --preset, --resume nor --pack-dir "
                         "(config options may go over it)")
    if args.re_evaluate and not (args.resume or args.pack_dir):
        raise UsageError("--re-evaluate goes with --resume RUN_DIR or --pack-dir PACK_DIR: it evaluates a finished "
                         "run again")
    if args.pack_dir:
        return _train_pack(args, overrides)
    if args.resume:
        if args.out and Path(args.out).resolve() != Path(args.resume).resolve():
            raise UsageError(f"--resume {args.resume} goes on in that run's own directory: leave out --out (or copy "
                             f"the run directory there first and resume the copy)")
        run = RunDir(args.resume)
        saved = run.read_config()
        given = {**overrides, **({"preset": args.preset} if args.preset else {})}
        try:
            cfg = TrainConfig.for_resume(saved, given)
        except ValueError as err:
            raise UsageError(f"--resume {args.resume}: {err}") from None
        note = resume_note(run.path, cfg, args.re_evaluate)
        if note:
            print(f"swapout train: {note}", file=sys.stderr)
        out: Union[str, Path] = run.path
        if note and not args.re_evaluate:  # finished: its results stand, whichever command computed them
            from ..runs.report import report_table

            print(report_table([out]))
            return
        if run.kept_nothing():
            _never_checkpointed(run, args.re_evaluate)
    else:
        cfg = train_config(args)
        name = (cfg.preset or f"{cfg.model}-{cfg.depth}-w{cfg.width}-{cfg.method}").replace("/", "-")
        out = args.out or f"runs/{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        results = train(cfg, out, resume=bool(args.resume), progress=not args.quiet)
    except TrainingStopped as err:
        print(f"swapout train: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    if "stopped" in results or int(os.environ.get("RANK", "0")) != 0:
        return
    from ..runs.report import report_table

    print(report_table([out]))


def _never_checkpointed(run, re_evaluate: bool) -> None:
    """UsageError for a run with no checkpoint that ``--resume`` cannot train again from the start: a run of a
    pack (the pack holds its checkpoint), or one asked to be evaluated again."""
    from ..runs.rundir import read_json

    pack = read_json(run.config_path, "a run's config").get("resolved", {}).get("pack")
    if isinstance(pack, dict) and pack.get("dir"):
        raise UsageError(f"--resume {run.path}: this run trains in the pack {pack['dir']}, which holds its "
                         f"checkpoint: go on with swapout train --pack-dir {pack['dir']}")
    if re_evaluate:
        raise UsageError(f"--re-evaluate: {run.path} stopped before its first checkpoint, so it has nothing to "
                         f"evaluate; resume it without --re-evaluate to train it again from the start")


def _train_pack(args: argparse.Namespace, overrides: dict) -> None:
    from ..training.train import TrainingStopped, train_pack

    if args.preset or args.resume or args.out:
        raise UsageError("--pack-dir trains the pack recorded there (its pack.json): it takes no --preset, "
                         "--resume or --out")
    if not args.re_evaluate and _pack_finished(args.pack_dir, overrides):
        return
    try:
        results = train_pack(args.pack_dir, progress=not args.quiet, changes=overrides)
    except TrainingStopped as err:
        print(f"swapout train: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    failed = [r["failed"] for r in results if "failed" in r]
    if failed:
        print(f"swapout train: {len(failed)} of {len(results)} runs of the pack stopped: " + "; ".join(failed),
              file=sys.stderr)
        raise SystemExit(1)


def _pack_finished(pack_dir: str, overrides: dict) -> bool:
    """Whether every run of the pack in ``pack_dir`` is finished; if so, says so (one line) and shows their results."""
    from ..runs.config import TrainConfig
    from ..runs.report import report_table
    from ..training.train import read_pack

    runs = read_pack(pack_dir)
    try:
        notes = [resume_note(r["path"], TrainConfig.for_resume(r["config"], overrides)) for r in runs]
    except ValueError:
        return False  # a change that train_pack refuses: let it say why
    if not runs or not all(notes):
        return False
    print(f"swapout train: every run of the pack {pack_dir} is finished: nothing is left to train, and their results "
          f"stay as they are (give --re-evaluate to evaluate them again)", file=sys.stderr)
    print(report_table([r["path"] for r in runs]))
    return True


def train_parser(sub) -> None:
    """Add the ``train`` subcommand to ``sub``."""
    tr = sub.add_parser("train", help="train a model with the paper's recipe, then evaluate it both ways",
                        description="Train with the paper's recipe (or a preset), checkpointing as it goes, then "
                                    "evaluate with deterministic and stochastic inference. A --method given here "
                                    "drops the preset's thetas and granularity that the method does not take.")
    tr.add_argument("--preset", help="a row of the paper, e.g. table1/swapout-v2-w2 (see 'swapout presets')")
    tr.add_argument("--config-json", metavar="JSON", help="a whole config as a JSON object of its fields, as "
                    "'swapout sweep' gives its runs theirs, or a file holding one such as a run's config.json or the "
                    "best-config.json of 'swapout tune' (instead of --preset; config options go over it)")
    tr.add_argument("--out", help="run directory (if not given: runs/<preset>-<time>)")
    tr.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run exactly where it stopped")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.add_argument("--pack-dir", metavar="PACK_DIR", help="train (or continue) the packed runs recorded in "
                    "PACK_DIR/pack.json as one network; 'swapout sweep --pack' writes it")
    tr.add_argument("--re-evaluate", action="store_true", help="with --resume or --pack-dir: evaluate a finished "
                    "run again and rewrite its results.json (without it a finished run is reported as it is)")
    config_options(tr)
    tr.set_defaults(func=_train)
