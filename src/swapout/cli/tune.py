"""``swapout tune`` and ``swapout sweep --storage``: workers of one Optuna study, on one machine or many."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .checks import UsageError, overrides
from .options import config_options, list_of, positive_int

__all__ = ["tune_parser", "storage_options", "tune_checks", "run_tune", "run_campaign"]

_WATCH = "watch it with: optuna-dashboard {url}"


def storage_options(parser: argparse.ArgumentParser, tune: bool) -> None:
    """The options that put a command's runs in a study that workers on many machines share."""
    group = parser.add_argument_group("the study (Optuna) that workers on any number of machines share")
    group.add_argument("--storage", metavar="URL", help="the study's database, e.g. postgresql://user:pw@host/db: "
                       "the same command with the same URL on any machine joins the study" +
                       (" (if not given: a SQLite file STUDY_DIR/study.db, one machine)" if tune else
                        " (if not given: a one-machine sweep)"))
    group.add_argument("--study", metavar="NAME", help="the study's name in the storage (if not given: "
                       + ("tune-<preset>" if tune else "sweep-<SWEEP_DIR's name>") + ")")
    group.add_argument("--workers", type=positive_int, metavar="N", help="workers on this machine, one process "
                       "each (if not given: one per GPU of --gpus, else 1)")
    group.add_argument("--heartbeat", type=positive_int, default=10, metavar="SECONDS",
                       help="how often a worker tells the study that its trial is alive; default: 10")
    group.add_argument("--grace", type=positive_int, default=60, metavar="SECONDS",
                       help="a trial whose last heartbeat is older than this is failed and retried by another "
                            "worker, resuming from its checkpoint where its run directory can be reached; default: 60")
    group.add_argument("--summary", type=lambda s: s.lower() in ("1", "true", "yes"), default=True,
                       help=argparse.SUPPRESS)  # False in the processes that a worker with --workers N starts


def tune_parser(sub) -> None:
    from ..tuning import OBJECTIVES, PRUNERS, SAMPLERS

    tu = sub.add_parser("tune", help="search a preset's keep probabilities (Optuna), on one machine or many",
                        description="Train trials of a preset with keep-probability schedules drawn from a space, "
                                    "prune the bad ones at epoch ends, judge them on held-out training images "
                                    "(never the test split), then evaluate the best on the test split and write "
                                    "the summary, plots and best-config.json into STUDY_DIR. The same command "
                                    "continues the study; with --storage it runs on any number of machines.")
    tu.add_argument("--preset", required=True, help="the preset whose joins are searched (see 'swapout presets')")
    tu.add_argument("--space", metavar="SPACE_JSON", help="the search space as JSON (if not given: theta1 and "
                    "theta2 each linear(start,end) or constant, in [0.5, 1] by 0.05); see the README")
    tu.add_argument("--trials", type=positive_int, default=16, metavar="N", help="trials in the study in all, "
                    "pruned ones included; default: 16")
    tu.add_argument("--objective", choices=OBJECTIVES, default="deterministic", help="the held-out error to "
                    "minimise: deterministic, or stochastic (--eval-samples passes); default: deterministic")
    tu.add_argument("--sampler", choices=SAMPLERS, default="tpe", help="default: tpe")
    tu.add_argument("--sampler-seed", type=int, default=0, metavar="S", help="the sampler's seed; default: 0")
    tu.add_argument("--pruner", choices=PRUNERS, default="median", help="default: median")
    tu.add_argument("--out", metavar="STUDY_DIR", help="the study's folder: its runs, summary and (without "
                    "--storage) its database (if not given: runs/tune-<preset>)")
    tu.add_argument("--gpus", type=list_of(int, "0,1"), help="one worker per listed GPU (if not given: one worker)")
    storage_options(tu, tune=True)
    config_options(tu, {"preset": argparse.SUPPRESS})
    tu.set_defaults(func=run_tune)


def _say(line: str) -> None:
    print(line, flush=True)


def tune_checks(args: argparse.Namespace) -> Tuple[Dict[str, Any], Dict[str, Any], Any, Any, Dict[str, Any]]:
    """The search's parts, checked before anything is touched: its base config, space, sampler, pruner, and
    this machine's fields (device, data folder)."""
    from ..runs.config import load_preset, merge_preset
    from ..tuning.search import base_config, make_pruner, make_sampler
    from ..tuning.space import read_space
    from ..tuning.storage import import_optuna

    import_optuna()
    given = overrides(args)
    machine = {k: given.pop(k) for k in ("device", "data_dir") if k in given}
    values = merge_preset(load_preset(args.preset), given)
    if not values.get("val_split"):
        values["val_split"] = 5000
        _say("swapout tune: the preset holds no images out of training; the search holds out the last 5,000 "
             "(give --val-split to choose)")
    base = base_config(values, args.objective)
    space = read_space(args.space)
    sampler = make_sampler(args.sampler, args.sampler_seed, space, base)
    pruner = make_pruner(args.pruner, base["epochs"])
    return base, space, sampler, pruner, machine


def _search(args: argparse.Namespace):
    """Everything checked before anything starts: the search, its storage and its study."""
    from ..tuning.search import Search
    from ..tuning.storage import open_storage, open_study, storage_url

    base, space, sampler, pruner, machine = tune_checks(args)
    name = args.study or f"tune-{args.preset.replace('/', '-')}"
    study_dir = Path(args.out or f"runs/{name}")
    if study_dir.exists() and not study_dir.is_dir():
        raise UsageError(f"--out {study_dir} is a file: it must name the study's folder")
    url = storage_url(args.storage, study_dir)
    _claim_folder(study_dir, name, url)
    storage = open_storage(url, args.heartbeat, args.grace)
    identity = {"kind": "tune", "preset": args.preset, "config": base, "space": space, "objective": args.objective,
                "sampler": args.sampler, "sampler_seed": args.sampler_seed, "pruner": args.pruner,
                "trials": args.trials}
    study, created = open_study(storage, name, identity, sampler, pruner)
    _claim_folder(study_dir, name, url, write=True)
    plan = Search(base, space, args.objective, args.trials, study_dir, machine, _rejoin(args), args.summary)
    _say(f"study {name} ({'new' if created else 'joined'}) in {_shown(url)}: {args.trials} trials of {args.preset}, "
         f"{args.sampler} sampler (seed {args.sampler_seed}), {args.pruner} pruner, {args.objective} error on the "
         f"last {base['val_split']:,} training images" + (f" (the first {base['eval_limit']:,} of them)" if
                                                          base["eval_limit"] else "")
         + f"; runs in {study_dir}; " + _WATCH.format(url=_shown(url)))
    return study, storage, plan


def _claim_folder(study_dir: Path, name: str, url: str, write: bool = False) -> None:
    """One folder, one study: its trial-NNNN directories would otherwise mix two studies' runs. Checked before
    the study is opened (``write`` False), recorded in STUDY_DIR/study.json once it is."""
    import json

    mark = study_dir / "study.json"
    here = {"study": name, "storage": _shown(url)}
    if mark.exists():
        saved = json.loads(mark.read_text())
        if saved != here:
            raise UsageError(f"--out {study_dir} holds the runs of study {saved['study']!r} in {saved['storage']}; "
                             f"give that study's --study and --storage to join it, or choose another --out")
    elif write:
        study_dir.mkdir(parents=True, exist_ok=True)
        mark.write_text(json.dumps(here) + "\n")
    elif url.startswith("sqlite"):
        study_dir.mkdir(parents=True, exist_ok=True)  # the database's own folder


def _shown(url: str) -> str:
    from ..tuning.storage import shown

    return shown(url)


def _rejoin(args: argparse.Namespace) -> str:
    return shlex.join(["swapout", *args.argv])


def _work(args: argparse.Namespace, study, storage, plan, gpus: Optional[List[str]]) -> None:
    """Run this machine's workers: here, or one process each when there are several."""
    from ..tuning.storage import StorageError
    from ..tuning.worker import Worker

    workers = args.workers or (len(gpus) if gpus else 1)
    try:
        if workers == 1 and not gpus:
            status = Worker(study, storage, plan, args.heartbeat, _say).run()
        else:
            status = _spawn(args, workers, gpus)
            if status == 0 and args.summary and not study.get_trials(deepcopy=False, states=_unfinished()):
                plan.finish(study, _say)
    except StorageError as err:
        print(f"swapout {args.command}: {err}", file=sys.stderr)
        raise SystemExit(1)
    if status:
        raise SystemExit(status)


def _unfinished():
    import optuna

    return (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)


def _spawn(args: argparse.Namespace, workers: int, gpus: Optional[List[str]]) -> int:
    """Start ``workers`` worker processes (one per GPU of ``gpus``, CUDA_VISIBLE_DEVICES values), wait for them;
    the worst exit status."""
    import signal

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    children = []
    for i in range(workers):
        env = {**os.environ, "OMP_NUM_THREADS": str(max(1, cores // workers))}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[i % len(gpus)]
        argv = [*args.argv, "--workers", "1", "--summary", "false"]
        children.append(subprocess.Popen([sys.executable, "-m", "swapout.cli", *_without_gpus(argv)], env=env))
    forward = {sig: signal.signal(sig, lambda s, f: [c.send_signal(s) for c in children if c.poll() is None])
               for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return max(c.wait() for c in children)
    finally:
        for sig, handler in forward.items():
            signal.signal(sig, handler)


def _without_gpus(argv: List[str]) -> List[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--gpus":
            skip = True
        elif not a.startswith("--gpus="):
            out.append(a)
    return out


def run_tune(args: argparse.Namespace) -> None:
    from ..training.sweep import slots

    gpus = slots(1, args.gpus, "cuda") if args.gpus else None  # checked before the study is touched
    study, storage, plan = _search(args)
    _work(args, study, storage, plan, gpus)


def run_campaign(args: argparse.Namespace, definition: Optional[Dict[str, Any]], device: str,
                 data_dir: Optional[str]) -> None:
    """``swapout sweep --storage``: make or join the campaign's study and work on it."""
    from ..training.sweep import slots
    from ..training.sweep_plan import open_sweep
    from ..tuning.campaign import Campaign, queue_runs
    from ..tuning.storage import import_optuna, open_storage, open_study, storage_url

    import_optuna()
    if args.pack or (definition or {}).get("pack"):
        raise UsageError("--pack trains on one machine: a sweep with --storage trains its runs one at a time per "
                         "worker")
    free = slots(1, args.gpus, device)
    definition = open_sweep(args.out, definition)
    name = args.study or f"sweep-{Path(args.out).resolve().name}"
    storage = open_storage(storage_url(args.storage, Path(args.out)), args.heartbeat, args.grace)
    study, created = open_study(storage, name, {"kind": "sweep", "definition": definition})
    if created:
        queue_runs(study, definition)
    machine = {"device": "cpu" if free[0] is None else "cuda", **({"data_dir": data_dir} if data_dir else {})}
    plan = Campaign(definition, Path(args.out), machine, _rejoin(args))
    _say(f"campaign {name} ({'new' if created else 'joined'}) in {_shown(args.storage)}: {len(plan.runs)} runs in "
         f"{args.out}; " + _WATCH.format(url=_shown(args.storage)))
    gpus = free if free[0] is not None and len(free) > 1 else None
    _work(args, study, storage, plan, gpus)
