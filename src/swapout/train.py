"""Training with the paper's recipe: SGD with momentum, step learning rate, checkpoints, exact resume.

``train(config, run_dir)`` runs a whole experiment: it trains, checkpoints (at every epoch end, every
``checkpoint_every`` steps, and when interrupted by SIGINT or SIGTERM), evaluates with both inference
modes on every evaluated split, and writes ``results.json``. ``train(config, run_dir, resume=True)``
continues where the run stopped: model, optimiser, learning rate, random generator states and the
position in the epoch's data order are all restored, so on the CPU a resumed run equals an
uninterrupted one bit for bit (on a GPU, to the rounding of kernels that sum in varying order).
The same code runs one process or many under torchrun (:mod:`swapout.distributed`).
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .config import TrainConfig
from .data import MEAN, STD, load_split
from .distributed import Process, process_group, stop_signals
from .evaluate import evaluate_split
from .experiment import build_model, eval_splits
from .pipeline import TrainLoader
from .progress import Progress, plural
from .rundir import RunDir, save_json
from .step import TrainStep, prepare_model, resolve_speed

__all__ = ["train", "TrainState", "TrainingStopped"]

# How often (in steps) the loop reads the running figures back from the device: each read waits for
# it. On the CPU there is nothing to wait for, so it reads at every step.
READ_EVERY = {"cpu": 1, "cuda": 50}


class TrainingStopped(RuntimeError):
    """Training ended early and cannot go on as configured (a non-finite loss)."""


@dataclass
class TrainState:
    """Where a run is; saved in every checkpoint."""

    epoch: int = 0              # epochs completed
    step: int = 0               # steps completed in the current epoch
    global_step: int = 0        # steps completed in the whole run
    train_time: float = 0.0     # seconds spent training, over every process start of the run
    sums: List[float] = field(default_factory=lambda: [0.0, 0, 0])  # this epoch: loss sum, right, images


def train(cfg: TrainConfig, run_dir, resume: bool = False, progress: bool = True,
          log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> Dict[str, Any]:
    """Train (or resume) a run in ``run_dir`` and evaluate it; returns the contents of results.json.

    Raises ValueError for a bad config, unusable data or an unwritable directory (before writing
    anything), and :class:`TrainingStopped` if the loss stops being finite. Returns early, with a
    checkpoint written and ``results["stopped"]`` naming the signal, when SIGINT or SIGTERM arrives.
    """
    torch.manual_seed(cfg.seed)  # the initial weights follow the seed
    model = build_model(cfg)  # checks the config first, so a bad one writes nothing
    with process_group(cfg.device) as proc:
        return _train(cfg, model, RunDir(run_dir), resume, progress and proc.lead,
                      log if proc.lead else (lambda s: None), proc)


def _train(cfg: TrainConfig, model: nn.Module, run: RunDir, resume: bool, progress: bool,
           log: Callable[[str], None], proc: Process) -> Dict[str, Any]:
    device = proc.device
    precision, compiled = resolve_speed(cfg.precision, cfg.compile, device)
    train_split = load_split(cfg.dataset, "train", cfg.data_dir)
    test_split = load_split(cfg.dataset, "test", cfg.data_dir)
    if not resume and run.exists():
        raise ValueError(f"{run.path} already holds a run; resume it with --resume {run.path}, or choose another --out")
    if proc.lead:
        run.create()

    model = prepare_model(model.to(device), device)
    n_params = sum(p.numel() for p in model.parameters())
    if proc.world > 1:
        if cfg.sync_bn:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        # masks: an independent stream per process (the initial weights above are the same everywhere)
        torch.manual_seed(int(np.random.SeedSequence([cfg.seed, proc.rank]).generate_state(1)[0]))
    net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if proc.world > 1 else model
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    n_train = len(train_split) - cfg.val_split
    loader = TrainLoader(train_split.images[:n_train], train_split.labels[:n_train], cfg.batch_size,
                         MEAN[cfg.dataset], STD[cfg.dataset], device, cfg.seed, cfg.crop, rank=proc.rank,
                         world_size=proc.world)
    splits = eval_splits(cfg, train_split, test_split)

    state = TrainState()
    if resume:
        ckpt = run.load_checkpoint()
        if len(ckpt["rng"]) != proc.world:
            raise ValueError(f"{run.path} was checkpointed by {plural(len(ckpt['rng']), 'process')}; "
                             f"resume it with as many")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        state = TrainState(**{**ckpt["state"], "sums": ckpt["state"]["sums"][proc.rank]})
        proc.set_rng_state(ckpt["rng"][proc.rank])
        log(f"resuming {run.path} at epoch {state.epoch + 1}, step {state.step} of {len(loader)}")
    elif proc.lead:
        save_json({"config": cfg.to_dict(), "resolved": {
            "milestones": cfg.resolved_milestones(), "steps_per_epoch": len(loader), "parameters": n_params,
            "train_images": n_train, "processes": proc.world, "precision": precision, "compile": compiled}},
            run.config_path)
        run.write_metrics([])
    step = TrainStep(net, optimizer, device, precision, compiled, state.sums)
    first_step = state.global_step  # TrainStep counts its steps from here

    def checkpoint() -> None:
        if not step.weights_finite():
            raise TrainingStopped(f"the weights became non-finite by epoch {state.epoch + 1}, step {state.step}; "
                                  f"training stopped. {_last_checkpoint(run)}; try a lower --lr")
        # every process's random state and running sums, so a resumed run replays exactly
        rngs, sums = proc.gather(proc.rng_state()), proc.gather(state.sums)
        if proc.lead:
            run.save_checkpoint({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                 "state": {**asdict(state), "sums": sums}, "rng": rngs, "config": cfg.to_dict()})

    read_every = READ_EVERY.get(device.type, 1)
    log(f"training {cfg.preset or cfg.model} ({n_params:,} parameters) on {proc.describe()}, {n_train:,} images, "
        f"{plural(cfg.epochs, 'epoch')} of {plural(len(loader), 'step')}, {precision}"
        + (", compiled" if compiled else "")
        + (f", stopping after {plural(cfg.max_steps, 'step')}" if cfg.max_steps else ""))
    signalled, max_steps_reached = None, cfg.max_steps is not None and state.global_step >= cfg.max_steps
    with stop_signals() as received:
        while state.epoch < cfg.epochs and not (signalled or max_steps_reached):
            epoch = state.epoch
            for group in optimizer.param_groups:
                group["lr"] = cfg.learning_rate(epoch)
            model.train()
            bar = Progress(len(loader) * cfg.batch_size, f"epoch {epoch + 1}/{cfg.epochs}",
                           initial=state.step * cfg.batch_size, enabled=progress)
            started, shown = time.time(), state.step
            for x, y in loader.batches(epoch, state.step):
                step(x, y)
                state.step += 1
                state.global_step += 1
                max_steps_reached = cfg.max_steps is not None and state.global_step >= cfg.max_steps
                checkpoint_due = cfg.checkpoint_every and state.global_step % cfg.checkpoint_every == 0
                if not (checkpoint_due or max_steps_reached or state.step == len(loader)
                        or state.global_step % read_every == 0):
                    continue
                figures = step.read()
                signal_seen, bad = proc.any(bool(received["name"]), figures.first_bad >= 0)
                if bad:
                    bar.close()
                    raise TrainingStopped(_bad_step_message(figures, first_step, len(loader), run))
                state.sums = [figures.loss_sum, figures.right, figures.images]
                bar.update((state.step - shown) * cfg.batch_size, loss=figures.loss, error=figures.error)
                shown = state.step
                if signal_seen and not max_steps_reached:
                    signalled = received["name"] or "a signal to another process"
                if signalled or (checkpoint_due and state.step < len(loader)):  # the epoch's end checkpoints anyway
                    state.train_time += time.time() - started
                    started = time.time()
                    checkpoint()
                if signalled or max_steps_reached:
                    break
            bar.close()
            state.train_time += time.time() - started
            if signalled:
                break
            _end_epoch(cfg, model, run, state, proc, splits, log, complete=state.step >= len(loader))
            if state.step >= len(loader):
                state.epoch, state.step, state.sums = epoch + 1, 0, [0.0, 0, 0]
                step.reset_sums()
            checkpoint()

    if signalled:
        log(f"stopped by {signalled} at epoch {state.epoch + 1}, step {state.step}; checkpoint written. "
            f"Resume with: swapout train --resume {run.path}")
        return {"stopped": signalled, "epoch": state.epoch, "step": state.step}
    return _final_evaluation(cfg, model, run, state, proc, splits, len(loader), n_params, progress, log)


def _bad_step_message(figures, first_step: int, steps_per_epoch: int, run: RunDir) -> str:
    if figures.first_bad < 0:
        where = "in another process"
    else:
        bad = first_step + figures.first_bad
        where = f"at epoch {bad // steps_per_epoch + 1}, step {bad % steps_per_epoch + 1}"
    return f"the loss became non-finite {where}; training stopped. {_last_checkpoint(run)}; try a lower --lr"


def _last_checkpoint(run: RunDir) -> str:
    if run.checkpoint_path.exists():
        return f"The last good checkpoint is {run.checkpoint_path}"
    return "No checkpoint was written before it"


def _end_epoch(cfg: TrainConfig, model: nn.Module, run: RunDir, state: TrainState, proc: Process,
               splits: Dict[str, Dict[str, Any]], log: Callable[[str], None], complete: bool) -> None:
    """Append the epoch's row to metrics.jsonl (training figures over all processes, validation error)."""
    loss_sum, right, images = (sum(col) for col in zip(*proc.gather(state.sums)))
    row = {"epoch": state.epoch, "steps": state.step, "lr": cfg.learning_rate(state.epoch),
           "train_loss": round(loss_sum / max(images, 1), 6),
           "train_error": round(100.0 * (1 - right / max(images, 1)), 4), "train_time_s": round(state.train_time, 2)}
    if "val" in splits:
        val = splits["val"]
        row["val_error"] = evaluate_split(model, val["images"], val["labels"], MEAN[cfg.dataset], STD[cfg.dataset],
                                          proc.device, samples=0)["deterministic_error"]
    if not complete:
        row["partial"] = True
    if proc.lead:  # this epoch's row replaces one written before an interruption
        run.write_metrics([m for m in run.read_metrics() if m["epoch"] < state.epoch] + [row])
    log(f"epoch {state.epoch + 1}: train loss {row['train_loss']:.4f}, train error {row['train_error']:.2f}%"
        + (f", val error {row['val_error']:.2f}% (deterministic)" if "val_error" in row else ""))


def _final_evaluation(cfg: TrainConfig, model: nn.Module, run: RunDir, state: TrainState, proc: Process,
                      splits: Dict[str, Dict[str, Any]], steps_per_epoch: int, n_params: int, progress: bool,
                      log: Callable[[str], None]) -> Dict[str, Any]:
    """Evaluate every split both ways and write results.json."""
    results = {"preset": cfg.preset, "parameters": n_params, "device": proc.describe(),
               "train_time_s": round(state.train_time, 1), "epochs": cfg.epochs,
               "epochs_completed": round(state.epoch + state.step / steps_per_epoch, 4),
               "steps": state.global_step, "splits": {}}
    for name, split in splits.items():
        bar = Progress(len(split["labels"]), f"evaluating {name}", enabled=progress)
        figures = evaluate_split(model, split["images"], split["labels"], MEAN[cfg.dataset], STD[cfg.dataset],
                                 proc.device, samples=cfg.eval_samples, progress=bar.update)
        bar.close()
        results["splits"][name] = {"note": split["note"], **figures}
        log(f"{name} ({split['note']}): deterministic error {figures['deterministic_error']:.2f}%"
            + (f", stochastic error ({plural(cfg.eval_samples, 'pass')}) {figures['stochastic_error']:.2f}%"
               if "stochastic_error" in figures else ""))
    if proc.lead:
        save_json(results, run.results_path)
    return results
