"""``swapout tune`` and ``swapout sweep --storage``: workers of one Optuna study, on one machine or many."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .checks import UsageError, overrides
from .options import config_options, list_of, positive_int, seed_int
from .study import claim_folder, machine_checks, open_locked, visible_gpus, writable

__all__ = ["tune_parser", "storage_options", "tune_checks", "run_tune", "run_campaign"]

_WATCH = "watch it with: optuna-dashboard {url}"
_REJOIN = "SWAPOUT_REJOIN"  # set by a --workers N command for its workers: the command that rejoins is its own


def storage_options(parser: argparse.ArgumentParser, tune: bool) -> None:
    """The options that put a command's runs in a study that workers on many machines share."""
    group = parser.add_argument_group("the study (Optuna) that workers on any number of machines share")
    group.add_argument("--storage", metavar="URL", help="the study's database, e.g. postgresql://user@host/db "
                       "(its password from ~/.pgpass or PGPASSWORD, never printed): the same command with the same "
                       "URL on any machine joins the study" +
                       (" (if not given: a SQLite file STUDY_DIR/study.db, one machine)" if tune else
                        " (if not given: a one-machine sweep)"))
    group.add_argument("--study", metavar="NAME", help="the study's name in the storage (if not given: "
                       + ("tune-<preset>" if tune else "sweep-<SWEEP_DIR's name>") + ")")
    group.add_argument("--workers", type=positive_int, metavar="N", help="workers on this machine, one process "
                       "each (if not given: one per GPU of --gpus, else 1; on the CPU use --workers, not --gpus)")
    group.add_argument("--heartbeat", type=positive_int, default=10, metavar="SECONDS",
                       help="how often a worker tells the study that its trial is alive; default: 10")
    group.add_argument("--grace", type=positive_int, default=60, metavar="SECONDS",
                       help="a trial whose last heartbeat is older than this is failed and retried by another "
                            "worker, resuming from its checkpoint where its run directory can be reached; at least "
                            "twice --heartbeat; default: 60")


def tune_parser(sub) -> None:
    from ..tuning import OBJECTIVES, PRUNERS, SAMPLERS

    tu = sub.add_parser("tune", help="search a preset's keep probabilities (Optuna), on one machine or many",
                        description="Train trials of a preset with keep-probability schedules drawn from a space, "
                                    "prune the bad ones at epoch ends, judge them on held-out training images "
                                    "(never the test split), then evaluate the best on the test split and write "
                                    "the summary, plots and best-config.json into STUDY_DIR. The same command "
                                    "continues the study; with --storage it runs on any number of machines.")
    tu.add_argument("--preset", required=True, help="the preset whose joins are searched (see 'swapout presets')")
    tu.add_argument("--space", metavar="SPACE_FILE", help="a JSON file that holds the search space (if not given: "
                    "theta1 and theta2 each linear(start,end) or constant, in [0.5, 1] by 0.05); see docs/tuning.md")
    tu.add_argument("--trials", type=positive_int, default=16, metavar="N", help="trials in the study in all, "
                    "pruned ones included, fixed when the study is made; default: 16")
    tu.add_argument("--objective", choices=OBJECTIVES, default="deterministic", help="the held-out error to "
                    "minimise: deterministic, or stochastic (--eval-samples passes); default: deterministic")
    tu.add_argument("--sampler", choices=SAMPLERS, default="tpe", help="default: tpe")
    tu.add_argument("--sampler-seed", type=seed_int, default=0, metavar="S", help="the sampler's seed; default: 0")
    tu.add_argument("--pruner", choices=PRUNERS, default="median", help="default: median")
    tu.add_argument("--out", metavar="STUDY_DIR", help="the study's folder: its runs, summary and (without "
                    "--storage) its database (if not given: runs/<study>)")
    tu.add_argument("--gpus", type=list_of(int, "0,1"), help="one worker per listed GPU (if not given: one worker; "
                    "on the CPU, --workers N)")
    storage_options(tu, tune=True)
    config_options(tu, {"preset": argparse.SUPPRESS, "val_split": "the last N training images, held out to compare "
                        "the trials on (N >= 1; if not given: the preset's, else 5000)"})
    tu.set_defaults(func=run_tune)


def _say(line: str) -> None:
    print(line, flush=True)


def tune_checks(args: argparse.Namespace) -> Tuple[Dict[str, Any], Dict[str, Any], Any, Any, Dict[str, Any]]:
    """The search's parts, checked before anything is touched: its base config, space, sampler, pruner, and
    this machine's fields (device, data folder)."""
    from ..runs.config import load_preset, merge_preset
    from ..tuning.search import base_config, make_pruner, make_sampler
    from ..tuning.space import read_space, size
    from ..tuning.storage import import_optuna

    import_optuna()
    given = overrides(args)
    machine: Dict[str, Any] = {k: given.pop(k) for k in ("device", "data_dir") if k in given}
    machine_checks(machine.get("device"), machine.get("data_dir"))
    values = merge_preset(load_preset(args.preset), given)
    if given.get("val_split") == 0:
        raise UsageError("--val-split 0: a search compares its trials on held-out training images, never on the test "
                         "split; give at least 1 (the default: 5000)")
    if not values.get("val_split"):
        values["val_split"] = 5000
        _say("swapout tune: the preset holds no images out of training; the search holds out the last 5,000 "
             "(give --val-split to choose)")
    base = base_config(values, args.objective)
    space = read_space(args.space)
    if size(space, base) < 2:
        raise UsageError(f"the space searches nothing for preset {args.preset}: its method {base['method']!r} reads "
                         f"none of the space's thetas; give the space a method choice (e.g. \"method\": [\"swapout\", "
                         f"\"stochastic_depth\"]) or choose another preset")
    sampler = make_sampler(args.sampler, args.sampler_seed, space, base)
    pruner = make_pruner(args.pruner, base["epochs"])
    return base, space, sampler, pruner, machine


def _search(args: argparse.Namespace):
    """Everything checked before anything starts: the search, its storage and its study."""
    from ..tuning.search import Search
    from ..tuning.storage import check_study_name, shown, storage_url

    base, space, sampler, pruner, machine = tune_checks(args)
    name = check_study_name(args.study if args.study is not None else f"tune-{args.preset.replace('/', '-')}")
    study_dir = Path(args.out or f"runs/{name}")
    writable(study_dir, "--out")  # also refuses a file
    url = storage_url(args.storage, study_dir)
    identity = {"kind": "tune", "preset": args.preset, "config": base, "space": space, "objective": args.objective,
                "sampler": args.sampler, "sampler_seed": args.sampler_seed, "pruner": args.pruner,
                "trials": args.trials}
    made = not study_dir.exists()
    try:
        claim_folder(study_dir, name, url)
        storage, study, created = open_locked(url, args, name, identity, sampler, pruner)
        claim_folder(study_dir, name, url, write=True)
    except ValueError:
        if made:  # a refused start leaves nothing behind (a SQLite study's folder was made for its file)
            shutil.rmtree(study_dir, ignore_errors=True)
        raise
    plan = Search(base, space, args.objective, args.trials, study_dir, machine, _rejoin(args))
    _say(f"study {name} ({'new' if created else 'joined'}) in {shown(url)}: {args.trials} trials of {args.preset}, "
         f"{args.sampler} sampler (seed {args.sampler_seed}), {args.pruner} pruner, {args.objective} error on the "
         f"last {base['val_split']:,} training images" + (f" (the first {base['eval_limit']:,} of them)" if
                                                          base["eval_limit"] else "")
         + f"; runs in {study_dir}; " + _WATCH.format(url=shown(url)))
    return study, storage, plan


def _rejoin(args: argparse.Namespace) -> str:
    """The command that joins the study again: the one given (the parent's, in a worker that a --workers N
    command started), with any password in a URL masked."""
    from ..tuning.storage import shown

    return os.environ.get(_REJOIN) or shlex.join(["swapout", *(shown(a) if "://" in a else a for a in args.argv)])


def _work(args: argparse.Namespace, study, storage, plan, gpus: Optional[List[Optional[str]]]) -> None:
    """Run this machine's workers: here, or one process each when there are several."""
    from ..tuning.storage import StorageError
    from ..tuning.worker import Worker

    workers = args.workers or (len(gpus) if gpus else 1)
    try:
        if workers == 1 and not gpus:
            status = Worker(study, storage, plan, args.heartbeat, _say).run()
        else:
            status = _spawn(args, workers, gpus)
    except StorageError as err:
        print(f"swapout {args.command}: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    if status:
        raise SystemExit(status)


def _spawn(args: argparse.Namespace, workers: int, gpus: Optional[List[Optional[str]]]) -> int:
    """Start ``workers`` worker processes (one per GPU of ``gpus``, CUDA_VISIBLE_DEVICES values), wait for them;
    the worst exit status."""
    import signal

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    children: List[subprocess.Popen] = []
    argv = [*_without(args.argv, "--gpus", "--workers"), "--workers", "1"]
    # The workers start with Ctrl-C ignored until their own handlers are in place (a Ctrl-C in their first
    # seconds would otherwise end their start-up with a traceback); this process passes it on as SIGTERM, which
    # ends a worker that is still starting and puts a running worker's trial back.
    received: List[str] = []

    def forward(signum, frame):
        received.append(signal.Signals(signum).name)
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for i in range(workers):
            if received:
                break
            env = {**os.environ, "OMP_NUM_THREADS": str(max(1, cores // workers)), _REJOIN: _rejoin(args)}
            gpu = gpus[i % len(gpus)] if gpus else None
            if gpu is not None:
                env["CUDA_VISIBLE_DEVICES"] = gpu
            children.append(subprocess.Popen([sys.executable, "-m", "swapout.cli", *argv], env=env,
                                             preexec_fn=_ignore_interrupt))
        codes = [c.wait() for c in children]
        if received:
            _say(f"{received[0]}: passed on to this machine's workers, which stopped. Rejoin with: {_rejoin(args)}")
        # a worker that the signal ended while it was still starting had no trial: it stopped cleanly
        return max(0 if received and code == -signal.SIGTERM else code for code in codes)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _ignore_interrupt() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _without(argv: List[str], *options: str) -> List[str]:
    """``argv`` without ``options`` and their values."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in options:
            skip = True
        elif not a.startswith(tuple(f"{o}=" for o in options)):
            out.append(a)
    return out


def run_tune(args: argparse.Namespace) -> None:
    """``swapout tune``: make or join the search's study and work on it."""
    gpus = visible_gpus(args, "cuda") if args.gpus else None  # checked before the study is touched
    study, storage, plan = _search(args)
    _work(args, study, storage, plan, gpus)


def run_campaign(args: argparse.Namespace, definition: Optional[Dict[str, Any]], device: str,
                 data_dir: Optional[str]) -> None:
    """``swapout sweep --storage``: make or join the campaign's study and work on it."""
    from ..training.sweep_plan import open_sweep
    from ..tuning.campaign import Campaign, queue_runs
    from ..tuning.storage import check_study_name, import_optuna, shown, storage_url

    import_optuna()
    if args.pack or (definition or {}).get("pack"):
        raise UsageError("--pack trains on one machine: a sweep with --storage trains its runs one at a time per "
                         "worker")
    for given, option in ((args.budget_minutes, "--budget-minutes"), (args.per_gpu != 1, "--per-gpu"),
                          (args.order != "definition", "--order")):
        if given:
            raise UsageError(f"{option} belongs to the one-machine sweep: a sweep with --storage runs one worker per "
                             f"GPU of --gpus, or --workers N on the CPU; leave out {option}")
    free = visible_gpus(args, device)
    name = check_study_name(args.study if args.study is not None else f"sweep-{Path(args.out).resolve().name}")
    url = storage_url(args.storage, Path(args.out))
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise UsageError(f"--out {args.out} is a file: it must name a sweep's directory, new or existing")
    writable(Path(args.out), "--out")
    recorded = definition if definition is not None else open_sweep(args.out, None)
    storage, study, created = open_locked(url, args, name, {"kind": "sweep", "definition": recorded},
                                    fill=lambda s: queue_runs(s, recorded))
    open_sweep(args.out, recorded)  # recorded once the study is open: a storage refused leaves nothing behind
    machine = {"device": "cpu" if free[0] is None else "cuda", **({"data_dir": data_dir} if data_dir else {})}
    plan = Campaign(recorded, Path(args.out), machine, _rejoin(args))
    _say(f"campaign {name} ({'new' if created else 'joined'}) in {shown(url)}: {len(plan.runs)} runs in "
         f"{args.out}; " + _WATCH.format(url=shown(url)))
    gpus = free if free[0] is not None and len(free) > 1 else None
    _work(args, study, storage, plan, gpus)
