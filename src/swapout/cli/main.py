"""The ``swapout`` command line."""

from __future__ import annotations

import argparse
import atexit
import os
import signal
import sys
import threading
from typing import List, NoReturn, Optional, Union

from .checks import eval_options, sweep_setup, warn
from .options import config_options, list_of, positive_float, positive_int, seed_int
from .train import train_parser
from .tune import run_campaign, storage_options, tune_parser


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line gets one line: what was wrong and where to look."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _demo(args: argparse.Namespace) -> None:
    from .demo import demo

    demo(steps=args.steps, batch=args.batch, samples=args.samples, seed=args.seed)


def _eval(args: argparse.Namespace) -> None:
    from ..runs.evaluate import evaluate_run

    evaluate_run(args.target, **eval_options(args), warn=lambda text: warn("eval", text))


def _presets(args: argparse.Namespace) -> None:
    from ..runs.report import presets_table

    print(presets_table())


def _report(args: argparse.Namespace) -> None:
    from ..runs.report import report_table, seed_table

    print(seed_table(args.runs) if args.by_seed else report_table(args.runs))


def _sweep(args: argparse.Namespace) -> None:
    from ..training.sweep import run_sweep

    definition, device, data_dir = sweep_setup(args)
    if args.storage:
        return run_campaign(args, definition, device, data_dir)
    status = run_sweep(args.out, definition, per_gpu=args.per_gpu, gpus=args.gpus, device=device, data_dir=data_dir,
                       budget_minutes=args.budget_minutes, stop_grace_s=args.stop_grace,
                       keep_finished=args.keep_finished, order=args.order)
    if status:
        raise SystemExit(status)


_EVAL_DESCRIPTION = (
    "Evaluate a run directory or checkpoint file on a split. Each part has its own output beside the checkpoint, "
    "which a later call without that part leaves as it was: eval-<split>.json (deterministic and stochastic error; "
    "with --adaptive and --recalibrate-bn their blocks, kept from earlier calls when not computed again), "
    "figure2-<split>.json and .png (unless --repeats 0), uncertainty-<split>.json (--uncertainty) and "
    "shift-<split>.json (--shift). eval-<split>.json, its blocks and figure2-<split>.json name the checkpoint and the "
    "--seed they came from.")


def _eval_parser(sub) -> None:
    ev = sub.add_parser("eval", help="deterministic and stochastic error of a run, and the Figure 2 analysis",
                        description=_EVAL_DESCRIPTION)
    ev.add_argument("target", metavar="RUN_DIR_OR_CHECKPOINT")
    ev.add_argument("--split", default="test", choices=["test", "val"], help="default: test")
    ev.add_argument("--samples", type=int, default=None, help="stochastic passes; default: 30")
    ev.add_argument("--repeats", type=int, default=10, help="repetitions for the error-vs-passes curve (the paper "
                    "used 30; 0 skips the curve; at most 1,000); default: 10")
    ev.add_argument("--seed", type=seed_int, default=0, help="seed of the stochastic passes: the same seed gives the "
                    "same stochastic figures on one machine; default: 0")
    ev.add_argument("--limit", type=int, help="evaluate on the first N images of the split only")
    ev.add_argument("--uncertainty", action="store_true",
                    help="NLL, Brier score, calibration error (15 bins), temperature scaling, reliability diagram, "
                         "entropy and mutual information, OOD detection against the other CIFAR test set")
    ev.add_argument("--adaptive", action="store_true",
                    help="adaptive stochastic inference: per image, passes until the top-1 answer is settled "
                         "(at most --samples)")
    ev.add_argument("--delta", type=float, default=0.05, help="adaptive inference: per-image bound on the chance "
                    "of stopping with another answer than infinitely many passes would give; default: 0.05")
    ev.add_argument("--recalibrate-bn", type=int, default=0, metavar="N",
                    help="re-estimate BatchNorm statistics for deterministic inference on N >= 2 training images "
                         "(at most those the run trained on); writes checkpoint.bn-recalibrated-N.pt beside the "
                         "checkpoint, which stays untouched; default: 0 (none)")
    ev.add_argument("--shift", action="store_true",
                    help="calibration under dataset shift: error, NLL, Brier and ECE of every inference mode, with "
                         "and without a temperature fitted on clean held-out images, on corrupted copies of the split "
                         "(generated in the manner of CIFAR-10-C), every corruption x severity; writes "
                         "shift-<split>.json and .png")
    ev.add_argument("--corruptions", type=list_of(str, "gaussian_noise,fog"),
                    help="with --shift: comma-separated corruptions, or 'all' (if not given: the 14 of CIFAR-10-C's "
                         "15 generated here; 'all' adds speckle_noise, gaussian_blur, saturate)")
    ev.add_argument("--severities", type=list_of(int, "1,3,5"), help="with --shift: severities from 1 to 5 "
                    "(if not given: all five)")
    ev.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (if not given: the run's own setting)")
    ev.add_argument("--data-dir", default=None, help="folder with the data (if not given: the run's own setting)")
    ev.add_argument("--quiet", action="store_true", help="no progress bars")
    ev.set_defaults(func=_eval)


def _sweep_parser(sub) -> None:
    sw = sub.add_parser(
        "sweep", help="many runs (presets x seeds) at once, several per GPU, resumable, within a time budget",
        description="Every preset of --presets with every seed of --seeds (or the runs of --file), each in "
                    "SWEEP_DIR/<preset>/seed-<S>; --out SWEEP_DIR alone continues a sweep. At the end: the "
                    "runs' report and mean ± sd over seeds.")
    sw.add_argument("--out", required=True, metavar="SWEEP_DIR", help="the sweep's directory (required)")
    sw.add_argument("--presets", type=list_of(str, "table1/resnet-v2-ours-w1,table1/swapout-v2-w1"),
                    help="comma-separated presets (see 'swapout presets')")
    sw.add_argument("--seeds", type=list_of(int, "0,1,2"), help="comma-separated seeds; default: 0")
    sw.add_argument("--file", metavar="SWEEP_JSON",
                    help='runs as JSON: {"runs": [{"preset": P, "seeds": [0, 1], "overrides": {"epochs": 30}, '
                         '"name": DIR}]} (overrides and name optional); config options given here apply to all')
    sw.add_argument("--per-gpu", type=int, default=1, metavar="N",
                    help="runs at once on each GPU, or on the CPU if there is none; default: 1")
    sw.add_argument("--gpus", type=list_of(int, "0,2"), help="which visible GPUs to use (if not given: all)")
    sw.add_argument("--pack", type=positive_int, metavar="G",
                    help="train up to G runs that share data, architecture and schedule as one packed network "
                         "(grouped layers: every kernel does the work of G runs); each run keeps its own directory")
    sw.add_argument("--budget-minutes", type=positive_float, metavar="M",
                    help="after M minutes (wall clock) stop every run with a checkpoint, start no more, and "
                         "print the command that continues the sweep; exit 0")
    sw.add_argument("--stop-grace", type=positive_float, default=300.0, metavar="SECONDS",
                    help="how long a stopped run may take to finish its step or evaluation before it is killed; "
                         "default: 300")
    sw.add_argument("--keep-finished", choices=("checkpoints", "weights"), default="checkpoints",
                    help="what a finished run keeps beside its config, metrics and results: its checkpoints "
                         "(to train on from them), or weights: its final weights alone in weights.pt, without "
                         "the optimiser's state (half the size; swapout eval reads it); default: checkpoints")
    sw.add_argument("--order", choices=("definition", "longest-first"), default="definition",
                    help="which run starts next: the definition's order, or longest-first: the one with the most "
                         "epochs left, so that no long run ends a budget or the sweep training alone while the "
                         "other slots idle; default: definition")
    # a sweep takes its seeds from --seeds, and runs each child on a whole GPU chosen with --gpus
    config_options(sw, {"seed": argparse.SUPPRESS,
                        "device": "auto, cpu or cuda (choose GPUs with --gpus); default: 'auto'"})
    storage_options(sw, tune=False)
    sw.set_defaults(func=_sweep)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="swapout", description="Swapout (Singh et al., NeurIPS 2016) for PyTorch.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    train_parser(sub)
    _eval_parser(sub)
    sub.add_parser("presets", help="list the presets with the paper's reported errors",
                   description="List every preset (a row of the paper's Tables 1-5, or a short run) with its "
                               "dataset, model, method and the paper's reported errors, as a markdown table."
                   ).set_defaults(func=_presets)
    rp = sub.add_parser("report", help="a markdown table of runs beside the paper's figures")
    rp.add_argument("runs", nargs="+", metavar="RUN_DIR")
    rp.add_argument("--by-seed", action="store_true",
                    help="one row per group of runs that differ only in their seed: mean ± sd over the seeds")
    rp.set_defaults(func=_report)
    _sweep_parser(sub)
    tune_parser(sub)
    demo = sub.add_parser("demo", help="build the paper's models, train a few steps on random data, infer both ways")
    demo.add_argument("--steps", type=int, default=3, help="training steps; default: 3")
    demo.add_argument("--batch", type=int, default=32, help="batch size; default: 32")
    demo.add_argument("--samples", type=int, default=30, help="stochastic inference samples; default: 30")
    demo.add_argument("--seed", type=seed_int, default=0, help="default: 0")
    demo.set_defaults(func=_demo)
    for command in sub.choices.values():  # so that an unknown option is reported by its command's parser
        command.set_defaults(command_parser=command)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run the ``swapout`` command line: parse the arguments and run the chosen command.

    A ValueError of the command (a bad argument, unusable data or checkpoint) is reported on stderr in one
    line, as is an interruption by Ctrl-C.

    Args:
        argv: the arguments after the program name; None reads ``sys.argv[1:]``.

    Returns:
        The exit status: 0 on success, 2 for a ValueError of the command, 130 when interrupted.

    Raises:
        SystemExit: from argparse, for a bad command line (status 2) or ``--help`` (status 0), and from a
            command that ends with a status of its own (``swapout sweep``).
    """
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        given = list(sys.argv[1:] if argv is None else argv)
        before_command = given.index(args.command) > given.index(unknown[0]) if unknown[0] in given else False
        (parser if before_command else args.command_parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command, to say how to rejoin or continue it
    try:
        args.func(args)
    except ValueError as err:  # UsageError, DataError, CheckpointError and bad arguments are all ValueErrors
        print(f"swapout {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"swapout {args.command}: interrupted", file=sys.stderr)
        return 130
    except (MemoryError, RuntimeError) as err:
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        if not isinstance(err, MemoryError) and "allocate" not in text and "out of memory" not in text:
            raise
        print(f"swapout {args.command}: error: out of memory ({text[:200]}); choose a smaller network or batch, "
              f"or a device with more memory", file=sys.stderr)
        return 2
    return 0


def run_process(argv: Optional[List[str]] = None) -> NoReturn:
    """Run `main` as the whole process, then end the process with its exit status.

    The process ends as the interpreter would end it, up to the last step: the thread pools' exit hooks run
    and the other threads are joined, the ``atexit`` handlers run and the output is flushed (Python's and the C
    library's, which a run's compiled code or a distributed backend may print to); then, instead of tearing down
    every module one by one, it exits at once. With PyTorch's compiler stack loaded (every optimizer imports
    it) that teardown alone takes about half a second, at the end of every command and of every run a sweep or
    a study starts. Everything swapout writes is closed before `main` returns. Once it has returned, a Ctrl-C
    no longer changes the status. Under a profiler, a tracer or a debugger (``python -m cProfile``, coverage),
    which write what they found at the interpreter's end, the process ends the usual way.

    Args:
        argv: the arguments after the program name; None reads ``sys.argv[1:]``.
    """
    status: Union[int, str, None]
    try:
        status = main(argv)
    except SystemExit as stop:  # argparse's, or a command's own status
        status = stop.code
    if sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(status)
    if isinstance(status, str):  # as sys.exit("message") would: the message on stderr, status 1
        print(status, file=sys.stderr)
        status = 1
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    # the interpreter's own first steps of shutting down: the exit hooks of thread pools (concurrent.futures
    # wakes its idle workers there, which would otherwise never end) and the join of every other thread
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said
            pass
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)  # every stream of the C library
    except (OSError, AttributeError, TypeError, ValueError):
        pass
    os._exit(status or 0)


if __name__ == "__main__":
    run_process()
