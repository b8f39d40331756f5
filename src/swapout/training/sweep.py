"""``swapout sweep``: many training runs (presets x seeds), several at a time, resumable, within a time budget.

    SWEEP_DIR/sweep.json              the definition: {"runs": [{"name", "preset", "seeds", "overrides"}]}
    SWEEP_DIR/NAME/seed-S/            one run directory per entry and seed, written by ``swapout train``
    SWEEP_DIR/NAME/seed-S/train.log   the run's output, appended to by every invocation

Each run is a child process ``python -m swapout.cli train``. A run with results.json is done, one with a
checkpoint is resumed, one with neither is started afresh, so the same command continues a sweep. Children
are stopped the way ``swapout train`` expects: SIGTERM makes them checkpoint and exit 0.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Union

import torch

from ..progress import plural
from ..runs.rundir import RunDir
from .sweep_children import keep_priority
from .sweep_plan import Pack, Run, epochs_left, open_sweep, train_args, units

__all__ = ["slots", "run_sweep", "continue_command"]

DEVICES = ("auto", "cpu", "cuda")
KEEP_FINISHED = ("checkpoints", "weights")
ORDERS = ("definition", "longest-first")
# SIGTERM is ignored until train() installs its handler: one during start-up would otherwise kill the
# child before its first checkpoint. The sweep repeats SIGTERM until the child exits, and train()
# restores "ignored" afterwards, so a run that is already evaluating finishes and writes results.json.
# The child also follows its train.log by name (`swapout.training.sweep_children.follow_log`), which
# `_launch` gives it in the environment variable LOG_VARIABLE.
LOG_VARIABLE = "SWAPOUT_SWEEP_LOG"
_CHILD = "import os, signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); " \
         "from swapout.training.sweep_children import follow_log; " \
         f"follow_log(os.environ.pop({LOG_VARIABLE!r}, None)); from swapout.cli.main import run_process; run_process()"


def _gpu_count() -> int:
    return torch.cuda.device_count()


def slots(per_gpu: int, gpus: Optional[List[int]] = None, device: str = "auto") -> List[Optional[str]]:
    """One entry per child that may run at once: the GPU it sees (a CUDA_VISIBLE_DEVICES value), or None
    for the CPU. ``per_gpu`` children on each GPU of ``gpus`` (indices among the visible GPUs; default
    all), or ``per_gpu`` on the CPU when ``device`` is "cpu" or no GPU is visible."""
    if device not in DEVICES:
        raise ValueError(f"--device must be one of {', '.join(DEVICES)} for a sweep (choose GPUs with --gpus), "
                         f"got {device!r}")
    if per_gpu < 1:
        raise ValueError(f"--per-gpu must be at least 1, got {per_gpu}")
    count = 0 if device == "cpu" else _gpu_count()
    if not count and (device == "cuda" or gpus):
        raise ValueError(f"{'--gpus' if gpus else '--device cuda'}: no GPU is visible here")
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    ids = visible[:count] if len(visible) >= count else [str(i) for i in range(count)]
    chosen = gpus or list(range(count))
    if any(not 0 <= g < count for g in chosen) or len(set(chosen)) != len(chosen):
        raise ValueError(f"--gpus must list distinct GPUs among the {count} visible (0 to {count - 1}), got {gpus}")
    return [ids[g] for g in chosen for _ in range(per_gpu)] or [None] * per_gpu


def continue_command(sweep_dir: Union[str, os.PathLike[str]], per_gpu: int, gpus: Optional[List[int]] = None,
                     device: str = "auto", data_dir: Optional[str] = None, keep_finished: str = "checkpoints",
                     order: str = "definition") -> str:
    """The command that continues a sweep (its definition is in sweep.json). No budget: add one if needed."""
    parts = ["swapout", "sweep", "--out", str(sweep_dir), "--per-gpu", str(per_gpu)]
    parts += (["--gpus", ",".join(map(str, gpus))] if gpus else []) + (["--device", device] if device != "auto" else [])
    parts += ["--keep-finished", keep_finished] if keep_finished != "checkpoints" else []
    parts += ["--order", order] if order != "definition" else []
    return shlex.join(parts + (["--data-dir", str(data_dir)] if data_dir else []))


def _members(unit: Union[Run, Pack]) -> List[Run]:
    return unit.runs if isinstance(unit, Pack) else [unit]


def _launch(run: Union[Run, Pack], slot: Optional[str], threads: int, data_dir: Optional[str]) -> subprocess.Popen:
    """Start ``run`` (or a pack) as a child writing to its train.log, on GPU ``slot`` (None: the CPU) with
    ``threads``."""
    if run.state == "restart":  # no checkpoint to lose; train refuses a directory that holds a config
        for member in _members(run):
            for name in ("config.json", "metrics.jsonl"):
                (member.path / name).unlink(missing_ok=True)
    args = train_args(run, "cpu" if slot is None else "cuda", data_dir)
    run.path.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           LOG_VARIABLE: str((run.path / "train.log").resolve())}
    env.update({} if slot is None else {"CUDA_VISIBLE_DEVICES": slot})
    with open(run.path / "train.log", "a") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} swapout {shlex.join(args)}\n")
        log.flush()
        # its own session: Ctrl-C in a terminal reaches the sweep alone, which stops its children in order
        proc = subprocess.Popen([sys.executable, "-c", _CHILD, *args], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    keep_priority(proc.pid)
    return proc


def run_sweep(sweep_dir: Union[str, os.PathLike[str]], definition: Optional[Dict[str, Any]] = None, per_gpu: int = 1,
              gpus: Optional[List[int]] = None, device: str = "auto", data_dir: Optional[str] = None,
              budget_minutes: Optional[float] = None, stop_grace_s: float = 300.0, keep_finished: str = "checkpoints",
              order: str = "definition", out: Callable[[str], None] = lambda s: print(s, flush=True)) -> int:
    """Run (or continue) the sweep in ``sweep_dir``; returns the exit status: 0, or 1 if a run failed.

    Args:
        definition: from `make_definition`; None continues the one recorded in the directory.
        per_gpu: children at once on each GPU (on the CPU, in all, each with cores // per_gpu threads).
        gpus, device: where the children run (see `slots`); data_dir: passed to every child.
        budget_minutes: wall-clock minutes after which every child is stopped (it checkpoints) and no
            new one starts; SIGINT and SIGTERM to the sweep do the same, a second SIGINT kills them.
        stop_grace_s: seconds a stopped child may take (a step, a checkpoint, an evaluation under way)
            before it is killed; it then resumes from its last checkpoint next time.
        keep_finished: what a finished run keeps: "checkpoints" (to train on from them), or "weights": its
            final weights alone in ``weights.pt`` (`swapout.runs.rundir.RunDir.keep_weights_only`), which
            evaluation reads; a sweep kept in version control then holds no optimiser state.
        order: which unfinished run starts next: "definition" (the definition's order), or "longest-first": the
            one with the most epochs left (`epochs_left`; ties in the definition's order), so that within a
            budget, or at the end of a sweep, no long run is left training alone while the other slots idle.
            Epochs are the measure, so it balances best when the runs' epochs cost about the same.
        out: receives every line the sweep reports.
    """
    if keep_finished not in KEEP_FINISHED:
        raise ValueError(f"--keep-finished must be one of {', '.join(KEEP_FINISHED)}, got {keep_finished!r}")
    if order not in ORDERS:
        raise ValueError(f"--order must be one of {', '.join(ORDERS)}, got {order!r}")
    free = slots(per_gpu, gpus, device)
    work = units(open_sweep(sweep_dir, definition), sweep_dir)
    runs = [r for unit in work for r in _members(unit)]
    if keep_finished == "weights":  # runs that finished before, under a sweep that kept their checkpoints
        _keep_weights(work)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = max(1, cores // len(free))
    pending = _in_order(work, order)
    out(_opening(sweep_dir, work, per_gpu, free, threads, budget_minutes)
        + ("; the runs with the most epochs left first" if order == "longest-first" else ""))
    deadline = time.time() + 60 * budget_minutes if budget_minutes is not None else float("inf")
    running: Dict[int, tuple] = {}  # pid -> (run, process, slot, start time)
    failed: List[Run] = []
    stopped: List[Run] = []
    signals: List[int] = []
    stop_at: Optional[float] = None
    previous = {sig: signal.signal(sig, lambda signum, frame: signals.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while running or (pending and stop_at is None and not signals):
            now = time.time()
            if stop_at is None and (signals or now >= deadline):
                stop_at = now
                out((f"{signal.Signals(signals[0]).name} received" if signals else f"budget of {budget_minutes:g} "
                     f"min used") + f": stopping {len(running)} running run(s), each writes a checkpoint; "
                    "starting no more")
            while stop_at is None and pending and free:
                run, slot = pending.pop(0), free.pop(0)
                resumed = " (resumed)" if run.state == "resume" else ""
                proc = _launch(run, slot, threads, data_dir)
                running[proc.pid] = (run, proc, slot, now)
                out(f"[start] {run.label}{resumed} on {'the CPU' if slot is None else 'GPU ' + slot}")
            if stop_at is not None:  # again at every turn: a child ignores SIGTERM until its handler is in place
                kill = signals.count(signal.SIGINT) > 1 or now - stop_at > stop_grace_s
                for _, proc, _, _ in running.values():
                    proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            finished = _reap(running, free, stop_at is not None, stopped, failed, out)
            if keep_finished == "weights":
                _keep_weights(finished)
            time.sleep(0.2 if running else 0)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for _, proc, _, _ in running.values():  # only after an unexpected error: leave no orphans
            proc.kill()
    done = sum(r.state == "done" for r in runs)
    out(f"sweep {sweep_dir}: {done} of {plural(len(runs), 'run')} done, {len(stopped)} stopped, {len(failed)} failed, "
        f"{len(runs) - done - len(stopped) - len(failed)} not started")
    out(f"Continue with: {continue_command(sweep_dir, per_gpu, gpus, device, data_dir, keep_finished, order)}"
        if done < len(runs)
        else _final_report([str(r.path) for r in runs]))
    return 1 if failed else 0


def _in_order(work: List[Union[Run, Pack]], order: str) -> List[Union[Run, Pack]]:
    """The units of ``work`` not yet done, in the order they are to start (``order``: see `run_sweep`)."""
    pending = [u for u in work if u.state != "done"]
    # sorted() is stable: ties keep the definition's order
    return sorted(pending, key=epochs_left, reverse=True) if order == "longest-first" else pending


def _opening(sweep_dir, work: List[Union[Run, Pack]], per_gpu: int, free: List[Optional[str]], threads: int,
             budget_minutes: Optional[float]) -> str:
    """The sweep's first line: its runs, what is done or to resume, where and how many at a time."""
    runs, packs = [r for unit in work for r in _members(unit)], sum(isinstance(u, Pack) for u in work)
    return (f"sweep {sweep_dir}: {plural(len(runs), 'run')}" + (f" ({plural(packs, 'pack')})" if packs else "")
            + f", {sum(r.state == 'done' for r in runs)} done, "
            # runs, not units: a pack resumes all its runs that are not done
            f"{sum(r.state != 'done' for u in work if u.state == 'resume' for r in _members(u))} to resume; "
            f"{per_gpu} at a time on "
            + (f"each of GPUs {', '.join(sorted({s for s in free if s is not None}))}" if free[0] is not None
               else "the CPU")
            + f" with {threads} CPU thread(s) each" + (f"; budget {budget_minutes:g} min" if budget_minutes else ""))


def _keep_weights(units: List[Union[Run, Pack]]) -> None:
    """Each finished run keeps its final weights alone; a finished pack's packed checkpoints go."""
    for unit in units:
        if unit.state != "done":
            continue
        for member in _members(unit):
            RunDir(member.path).keep_weights_only()
        if isinstance(unit, Pack):
            for name in ("checkpoint.pt", "checkpoint.prev.pt"):
                (unit.path / name).unlink(missing_ok=True)


def _reap(running: Dict[int, tuple], free: List[Optional[str]], stopping: bool, stopped: List[Run],
          failed: List[Run], out: Callable[[str], None]) -> List[Union[Run, Pack]]:
    """Take the children that have exited off ``running``, free their slots and report each of their runs;
    the units whose children exited."""
    exited = []
    for pid, (run, proc, slot, started) in list(running.items()):
        if proc.poll() is None:
            continue
        del running[pid]
        free.append(slot)
        exited.append(run)
        took, code = f"{time.time() - started:.0f}s", proc.returncode
        for member in _members(run):
            if member.state == "done":
                out(f"[done] {member.label} ({took})")
            elif code == 0 or (code < 0 and stopping):  # stopped, or killed after the grace
                stopped.append(member)
                out(f"[stopped] {member.label} ({took}; "
                    + ("checkpoint written)" if code == 0 else "killed: it resumes from its last checkpoint)"))
            else:
                failed.append(member)
                out(f"[failed] {member.label}: exit status {code}; the end of {run.path / 'train.log'}:\n"
                    + "\n".join("    " + line for line in
                                (run.path / "train.log").read_text(errors="replace").splitlines()[-15:]))
    return exited


def _final_report(paths: List[str]) -> str:
    from ..runs.report import report_table, seed_table

    try:
        seeds = seed_table(paths)
    except ValueError as err:  # entries of the sweep that are the same experiment under two names
        seeds = f"none: {err}"
    return f"\n{report_table(paths)}\n\nMean ± standard deviation over seeds:\n\n{seeds}"
