"""The ``swapout`` command line."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from typing import List, Optional


class UsageError(ValueError):
    """A mistake in what the user asked for: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line gets one line: what was wrong and where to look."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _demo(args: argparse.Namespace) -> None:
    from .demo import demo

    demo(steps=args.steps, batch=args.batch, samples=args.samples, seed=args.seed)


_SCHEDULE_HELP = "a schedule: 0.8, linear(1,0.5) or 0.2,0.5,0.8 (one per block); None: linear(1,0.5); "
_HELP = {"theta1": _SCHEDULE_HELP, "theta2": _SCHEDULE_HELP, "device": "auto, cpu, cuda or cuda:N; ",
         "sync_bn": "true or false; ", "milestones": "epochs after which lr is divided by 10, e.g. 196,224; None: "
         "the paper's scaled to --epochs; "}


def _config_options(parser: argparse.ArgumentParser) -> None:
    """One --option per TrainConfig field; only options actually given end up in the namespace."""
    from .config import TrainConfig
    from .models import list_models

    group = parser.add_argument_group("config fields (override the preset or the paper's defaults)")
    for f in dataclasses.fields(TrainConfig):
        if f.name == "preset":
            continue
        kind = {"int": int, "float": float, "bool": _boolean}.get(str(f.type).replace("Optional[", "").rstrip("]"), str)
        if f.name == "milestones":
            kind = _list_of(int, "196,224")
        choices = TrainConfig.CHOICES.get(f.name) or (list_models() if f.name == "model" else None)
        text = f"one of {', '.join(choices)}; " if choices else _HELP.get(f.name, "")
        group.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=kind, default=argparse.SUPPRESS,
                           metavar=f.name.upper(), help=f"{text}default: {f.default!r}")


def _boolean(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _overrides(args: argparse.Namespace) -> dict:
    from .config import TrainConfig

    return {k: v for k, v in vars(args).items() if k in TrainConfig.field_names() and k != "preset"}


def _train(args: argparse.Namespace) -> None:
    from .config import TrainConfig, load_preset
    from .rundir import RunDir
    from .train import TrainingStopped, train

    overrides = _overrides(args)
    if args.pack_dir:
        return _train_pack(args, overrides)
    if args.resume:
        run = RunDir(args.resume)
        saved = run.read_config()
        given = {**overrides, **({"preset": args.preset} if args.preset else {})}
        try:
            cfg = TrainConfig.for_resume(saved, given)
        except ValueError as err:
            raise UsageError(f"--resume {args.resume}: {err}") from None
        out = run.path
    else:
        values = load_preset(args.preset) if args.preset else {}
        cfg = TrainConfig.from_dict({**values, **overrides})
        name = (cfg.preset or f"{cfg.model}-{cfg.depth}-w{cfg.width}-{cfg.method}").replace("/", "-")
        out = args.out or f"runs/{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        results = train(cfg, out, resume=bool(args.resume), progress=not args.quiet)
    except TrainingStopped as err:
        print(f"swapout train: {err}", file=sys.stderr)
        raise SystemExit(1)
    if "stopped" in results or int(os.environ.get("RANK", "0")) != 0:
        return
    from .report import report_table

    print(report_table([out]))


def _train_pack(args: argparse.Namespace, overrides: dict) -> None:
    from .train import TrainingStopped, train_pack

    if args.preset or args.resume or args.out:
        raise UsageError("--pack-dir trains the pack recorded there (its pack.json): it takes no --preset, "
                         "--resume or --out")
    try:
        results = train_pack(args.pack_dir, progress=not args.quiet, changes=overrides)
    except TrainingStopped as err:
        print(f"swapout train: {err}", file=sys.stderr)
        raise SystemExit(1)
    failed = [r["failed"] for r in results if "failed" in r]
    if failed:
        print(f"swapout train: {len(failed)} of {len(results)} runs of the pack stopped: " + "; ".join(failed),
              file=sys.stderr)
        raise SystemExit(1)


def _eval(args: argparse.Namespace) -> None:
    from .evaluate_run import evaluate_run

    evaluate_run(args.target, split=args.split, samples=30 if args.samples is None else args.samples,
                 repeats=args.repeats, limit=args.limit,
                 device=args.device, data_dir=args.data_dir, progress=not args.quiet, uncertainty=args.uncertainty,
                 adaptive=args.adaptive, delta=args.delta, recalibrate_bn=args.recalibrate_bn, shift=args.shift,
                 corruptions=args.corruptions, severities=args.severities, samples_given=args.samples is not None)


def _presets(args: argparse.Namespace) -> None:
    from .report import presets_table

    print(presets_table())


def _report(args: argparse.Namespace) -> None:
    from .report import report_table, seed_table

    print(seed_table(args.runs) if args.by_seed else report_table(args.runs))


def _list_of(kind, example: str):
    """An argparse type: a comma-separated list of ``kind``."""
    def parse(text: str) -> list:
        try:
            values = [kind(v.strip()) for v in text.split(",") if v.strip()]
        except ValueError:
            values = []
        if not values or (kind is int and min(values) < 0):
            raise argparse.ArgumentTypeError(f"expected a comma-separated list like {example}, got {text!r}")
        return values
    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _sweep(args: argparse.Namespace) -> None:
    from .sweep import run_sweep
    from .sweep_plan import definition_from

    overrides = _overrides(args)
    device, data_dir = overrides.pop("device", "auto"), overrides.pop("data_dir", None)
    definition = definition_from(args.presets, args.seeds, args.file, overrides, args.pack)
    status = run_sweep(args.out, definition, per_gpu=args.per_gpu, gpus=args.gpus, device=device, data_dir=data_dir,
                       budget_minutes=args.budget_minutes, stop_grace_s=args.stop_grace)
    if status:
        raise SystemExit(status)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="swapout", description="Swapout (Singh et al., NeurIPS 2016) for PyTorch.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    tr = sub.add_parser("train", help="train a model with the paper's recipe, then evaluate it both ways",
                        description="Train with the paper's recipe (or a preset), checkpointing as it goes, then "
                                    "evaluate with deterministic and stochastic inference.")
    tr.add_argument("--preset", help="a row of the paper, e.g. table1/swapout-v2-w2 (see 'swapout presets')")
    tr.add_argument("--out", help="run directory (default: runs/<preset>-<time>)")
    tr.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run exactly where it stopped")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.add_argument("--pack-dir", metavar="PACK_DIR", help="train (or continue) the packed runs recorded in "
                    "PACK_DIR/pack.json as one network; 'swapout sweep --pack' writes it")
    _config_options(tr)
    tr.set_defaults(func=_train)

    ev = sub.add_parser("eval", help="deterministic and stochastic error of a run, and the Figure 2 analysis")
    ev.add_argument("target", metavar="RUN_DIR_OR_CHECKPOINT")
    ev.add_argument("--split", default="test", choices=["test", "val"], help="default: test")
    ev.add_argument("--samples", type=int, default=None, help="stochastic passes (default 30)")
    ev.add_argument("--repeats", type=int, default=10,
                    help="repetitions for the error-vs-passes curve (the paper used 30; 0 skips the curve)")
    ev.add_argument("--limit", type=int, help="evaluate on the first N images of the split only")
    ev.add_argument("--uncertainty", action="store_true",
                    help="NLL, Brier score, calibration error (15 bins), temperature scaling, reliability diagram, "
                         "entropy and mutual information, OOD detection against the other CIFAR test set")
    ev.add_argument("--adaptive", action="store_true",
                    help="adaptive stochastic inference: per image, passes until the top-1 answer is settled "
                         "(at most --samples)")
    ev.add_argument("--delta", type=float, default=0.05, help="adaptive inference: per-image bound on the chance "
                    "of stopping with another answer than infinitely many passes would give (default 0.05)")
    ev.add_argument("--recalibrate-bn", type=int, default=0, metavar="N",
                    help="re-estimate BatchNorm statistics for deterministic inference on N training images; writes "
                         "checkpoint.bn-recalibrated-N.pt beside the checkpoint, which stays untouched")
    ev.add_argument("--shift", action="store_true",
                    help="calibration under dataset shift: error, NLL, Brier and ECE of every inference mode, with "
                         "and without a temperature fitted on clean held-out images, on corrupted copies of the split "
                         "(generated in the manner of CIFAR-10-C), every corruption x severity; writes "
                         "shift-<split>.json and .png")
    ev.add_argument("--corruptions", type=_list_of(str, "gaussian_noise,fog"),
                    help="with --shift: comma-separated corruptions, or 'all' (default: the 14 of CIFAR-10-C's 15 "
                         "generated here; 'all' adds speckle_noise, gaussian_blur, saturate)")
    ev.add_argument("--severities", type=_list_of(int, "1,3,5"), help="with --shift: severities from 1 to 5 "
                    "(default: 1,2,3,4,5)")
    ev.add_argument("--device", default=None, help="default: the run's device setting")
    ev.add_argument("--data-dir", default=None)
    ev.add_argument("--quiet", action="store_true")
    ev.set_defaults(func=_eval)

    sub.add_parser("presets", help="list the presets with the paper's reported errors").set_defaults(func=_presets)

    rp = sub.add_parser("report", help="a markdown table of runs beside the paper's figures")
    rp.add_argument("runs", nargs="+", metavar="RUN_DIR")
    rp.add_argument("--by-seed", action="store_true",
                    help="one row per group of runs that differ only in their seed: mean ± sd over the seeds")
    rp.set_defaults(func=_report)

    sw = sub.add_parser(
        "sweep", help="many runs (presets x seeds) at once, several per GPU, resumable, within a time budget",
        description="Every preset of --presets with every seed of --seeds (or the runs of --file), each in "
                    "SWEEP_DIR/<preset>/seed-<S>; --out SWEEP_DIR alone continues a sweep. At the end: the "
                    "runs' report and mean ± sd over seeds. --device: auto, cpu or cuda.")
    sw.add_argument("--out", required=True, metavar="SWEEP_DIR", help="the sweep's directory (required)")
    sw.add_argument("--presets", type=_list_of(str, "table1/resnet-v2-ours-w1,table1/swapout-v2-w1"),
                    help="comma-separated presets (see 'swapout presets')")
    sw.add_argument("--seeds", type=_list_of(int, "0,1,2"), help="comma-separated seeds (default: 0)")
    sw.add_argument("--file", metavar="SWEEP_JSON",
                    help='runs as JSON: {"runs": [{"preset": P, "seeds": [0, 1], "overrides": {"epochs": 30}, '
                         '"name": DIR}]} (overrides and name optional); config options given here apply to all')
    sw.add_argument("--per-gpu", type=int, default=1, metavar="N",
                    help="runs at once on each GPU, or on the CPU if there is none (default 1)")
    sw.add_argument("--gpus", type=_list_of(int, "0,2"), help="which visible GPUs to use (default: all)")
    sw.add_argument("--pack", type=_positive_int, metavar="G",
                    help="train up to G runs that share data, architecture and schedule as one packed network "
                         "(grouped layers: every kernel does the work of G runs); each run keeps its own directory")
    sw.add_argument("--budget-minutes", type=_positive_float, metavar="M",
                    help="after M minutes (wall clock) stop every run with a checkpoint, start no more, and "
                         "print the command that continues the sweep; exit 0")
    sw.add_argument("--stop-grace", type=_positive_float, default=300.0, metavar="SECONDS",
                    help="how long a stopped run may take to finish its step or evaluation before it is killed "
                         "(default 300)")
    _config_options(sw)
    sw.set_defaults(func=_sweep)

    demo = sub.add_parser("demo", help="build the paper's models, train a few steps on random data, infer both ways")
    demo.add_argument("--steps", type=int, default=3, help="training steps (default 3)")
    demo.add_argument("--batch", type=int, default=32, help="batch size (default 32)")
    demo.add_argument("--samples", type=int, default=30, help="stochastic inference samples (default 30)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except ValueError as err:  # UsageError, DataError, CheckpointError and bad arguments are all ValueErrors
        print(f"swapout {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"swapout {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
