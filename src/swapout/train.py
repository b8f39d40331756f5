"""Training with the paper's recipe: SGD with momentum, step learning rate, checkpoints, resume.

``train(config, run_dir)`` runs a whole experiment: it trains, checkpoints (at every epoch end, every
``checkpoint_every`` steps, and when interrupted by SIGINT or SIGTERM), evaluates with both inference
modes on every evaluated split, and writes ``results.json``. ``train(config, run_dir, resume=True)``
continues exactly where the run stopped: model, optimiser, learning rate, random generator states and
the position in the epoch's data order are all restored, so a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import datetime
import math
import os
import platform
import signal
import sys
import time
from contextlib import contextmanager
from typing import Any, Callable, Dict

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .config import TrainConfig, learning_rate
from .distributed import resolve_device
from .experiment import build_model, eval_splits
from .data import MEAN, NUM_CLASSES, STD, Split, load_split
from .evaluate import evaluate_split
from .models import create_model
from .pipeline import TrainLoader
from .progress import Progress
from .rundir import RunDir, save_json

__all__ = ["train", "build_model", "resolve_device", "init_distributed", "learning_rate", "eval_splits",
           "TrainingStopped"]


class TrainingStopped(RuntimeError):
    """Training ended early and cannot go on as configured (a non-finite loss)."""


def init_distributed(device_name: str):
    """Join the process group when launched by torchrun (WORLD_SIZE > 1): returns (rank, world size, device).

    The backend is NCCL for CUDA and gloo for the CPU. Each process uses the GPU of its LOCAL_RANK.
    ``SWAPOUT_DIST_TIMEOUT`` (seconds, default 300) bounds how long a collective waits for a process
    that has died, for launchers that do not stop the others themselves.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, resolve_device(device_name)
    device = resolve_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        timeout = datetime.timedelta(seconds=float(os.environ.get("SWAPOUT_DIST_TIMEOUT", "300")))
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timeout)
    return dist.get_rank(), dist.get_world_size(), device


@contextmanager
def _stop_on_signals():
    """SIGINT/SIGTERM set a flag instead of killing the process: the loop checkpoints and exits."""
    requested = {"signal": None}

    def handler(signum, frame):
        requested["signal"] = signal.Signals(signum).name

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: leave signals alone
            pass
    try:
        yield requested
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _rng_state(device: torch.device) -> Dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: Dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def train(cfg: TrainConfig, run_dir, resume: bool = False, progress: bool = True,
          log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> Dict[str, Any]:
    """Train (or resume) a run in ``run_dir`` and evaluate it; returns the contents of results.json.

    Raises ValueError for a bad config, unusable data or an unwritable directory (before writing
    anything), and :class:`TrainingStopped` if the loss stops being finite. Returns early, with a
    checkpoint written and ``results["stopped"]`` set, when SIGINT or SIGTERM arrives.
    """
    cfg.validate()
    rank, world, device = init_distributed(cfg.device)
    lead = rank == 0  # only the first process writes files, logs and draws the progress bar
    progress = progress and lead
    if not lead:
        log = lambda s: None  # noqa: E731
    run = RunDir(run_dir)
    train_split = load_split(cfg.dataset, "train", cfg.data_dir)
    test_split = load_split(cfg.dataset, "test", cfg.data_dir)
    if not resume and run.exists():
        raise ValueError(f"{run.path} already holds a run; resume it with --resume {run.path}, or choose another --out")
    if lead:
        run.create()

    torch.manual_seed(cfg.seed)
    model = build_model(cfg).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    if world > 1:
        if cfg.sync_bn:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        # masks: an independent stream per process (the initial weights above are the same everywhere)
        torch.manual_seed(int(np.random.SeedSequence([cfg.seed, rank]).generate_state(1)[0]))
    net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if world > 1 else model
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    n_train = len(train_split) - cfg.val_split
    loader = TrainLoader(train_split.images[:n_train], train_split.labels[:n_train], cfg.batch_size,
                         MEAN[cfg.dataset], STD[cfg.dataset], device, cfg.seed, cfg.crop, rank=rank, world_size=world)
    splits = eval_splits(cfg, train_split, test_split)

    state = {"epoch": 0, "step": 0, "global_step": 0, "train_time": 0.0, "sums": [0.0, 0, 0]}
    if resume:
        ckpt = run.load_checkpoint()
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        state = ckpt["state"]
        if len(ckpt["rng"]) != world:
            raise ValueError(f"{run.path} was checkpointed by {len(ckpt['rng'])} process(es); resume it with as many")
        _set_rng_state(ckpt["rng"][rank], device)
        state["sums"] = state["sums"][rank]
        if lead:
            run.write_metrics([m for m in run.read_metrics() if m["epoch"] < state["epoch"]])
        log(f"resuming {run.path} at epoch {state['epoch'] + 1}, step {state['step']} of {len(loader)}")
    elif lead:
        save_json({"config": cfg.to_dict(), "resolved": {"milestones": cfg.resolved_milestones(),
                                                         "steps_per_epoch": len(loader), "parameters": n_params,
                                                         "train_images": n_train, "processes": world}},
                  run.config_path)
        run.write_metrics([])

    def gather(obj):
        if world == 1:
            return [obj]
        out = [None] * world
        dist.all_gather_object(out, obj)
        return out

    def checkpoint():
        # every process's random state and running sums, so a resumed run replays exactly
        rngs, sums = gather(_rng_state(device)), gather(list(state["sums"]))
        if lead:
            run.save_checkpoint({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                 "state": {**state, "sums": sums}, "rng": rngs, "config": cfg.to_dict()})

    def agree(*flags: bool) -> list:
        """Every process learns whether any process raised each flag (a signal, a non-finite loss)."""
        if world == 1:
            return list(flags)
        t = torch.tensor([float(f) for f in flags], device=device)
        dist.all_reduce(t)
        return [bool(v) for v in t.tolist()]

    log(f"training {cfg.preset or cfg.model} ({n_params:,} parameters) on {device}, {n_train:,} images, "
        f"{cfg.epochs} epochs of {len(loader)} steps" + (f", stopping after {cfg.max_steps} steps" if cfg.max_steps else ""))
    stopped = None
    with _stop_on_signals() as signals:
        while state["epoch"] < cfg.epochs and stopped is None:
            epoch = state["epoch"]
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(cfg, epoch)
            model.train()
            bar = Progress(len(loader) * cfg.batch_size, f"epoch {epoch + 1}/{cfg.epochs}", enabled=progress)
            bar.done = state["step"] * cfg.batch_size
            started = time.time()
            for x, y in loader.batches(epoch, state["step"]):
                logits = net(x)
                loss = F.cross_entropy(logits, y)
                loss_value = loss.item()  # one read from the device serves the check and the running sums
                signalled, nonfinite = agree(bool(signals["signal"]), not math.isfinite(loss_value))
                if nonfinite:
                    bar.close()
                    raise TrainingStopped(
                        f"the loss became {loss_value} at epoch {epoch + 1}, step {state['step'] + 1}; training "
                        f"stopped. The last good checkpoint is {run.checkpoint_path}; try a lower --lr")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                sums = state["sums"]
                sums[0] += loss_value * len(y)
                sums[1] += int((logits.argmax(1) == y).sum())
                sums[2] += len(y)
                state["step"] += 1
                state["global_step"] += 1
                bar.update(len(y) * world, loss=sums[0] / sums[2], acc=sums[1] / sums[2])
                if cfg.max_steps is not None and state["global_step"] >= cfg.max_steps:
                    stopped = "max_steps"
                elif signalled:
                    stopped = signals["signal"] or "a signal to another process"
                if stopped or (cfg.checkpoint_every and state["global_step"] % cfg.checkpoint_every == 0):
                    state["train_time"] += time.time() - started
                    started = time.time()
                    if stopped != "max_steps":
                        checkpoint()
                if stopped:
                    break
            bar.close()
            state["train_time"] += time.time() - started
            complete = state["step"] >= len(loader)
            if not complete and stopped != "max_steps":
                break
            sums = [sum(col) for col in zip(*gather(list(state["sums"])))]
            row = {"epoch": epoch, "steps": state["step"], "lr": learning_rate(cfg, epoch),
                   "train_loss": sums[0] / max(sums[2], 1), "train_error": 100.0 * (1 - sums[1] / max(sums[2], 1)),
                   "train_time_s": round(state["train_time"], 2)}
            if "val" in splits:
                row["val_error"] = evaluate_split(model, splits["val"]["images"], splits["val"]["labels"],
                                                  MEAN[cfg.dataset], STD[cfg.dataset], device, samples=0)[
                    "deterministic_error"]
            if not complete:
                row["partial"] = True
            if lead:
                run.append_metrics(row)
            log(f"epoch {epoch + 1}: train loss {row['train_loss']:.4f}, train error {row['train_error']:.2f}%"
                + (f", val error {row['val_error']:.2f}% (deterministic)" if "val_error" in row else ""))
            if complete:
                state.update(epoch=epoch + 1, step=0, sums=[0.0, 0, 0])
            checkpoint()

    if stopped not in (None, "max_steps"):
        log(f"stopped by {stopped} at epoch {state['epoch'] + 1}, step {state['step']}; checkpoint written. "
            f"Resume with: swapout train --resume {run.path}")
        return {"stopped": stopped, "epoch": state["epoch"], "step": state["step"]}

    results = {"preset": cfg.preset, "parameters": n_params, "device": _describe(device, world),
               "train_time_s": round(state["train_time"], 1), "epochs": cfg.epochs,
               "epochs_completed": round(state["epoch"] + state["step"] / len(loader), 4),
               "steps": state["global_step"], "splits": {}}
    for name, split in splits.items():
        bar = Progress(len(split["labels"]) * (1 + cfg.eval_samples), f"evaluating {name}", enabled=progress)
        figures = evaluate_split(model, split["images"], split["labels"], MEAN[cfg.dataset], STD[cfg.dataset],
                                 device, samples=cfg.eval_samples, progress=bar.update)
        bar.close()
        results["splits"][name] = {"note": split["note"], **figures}
        log(f"{name} ({split['note']}): deterministic error {figures['deterministic_error']:.2f}%"
            + (f", stochastic error ({cfg.eval_samples} passes) {figures['stochastic_error']:.2f}%"
               if "stochastic_error" in figures else ""))
    if lead:
        save_json(results, run.results_path)
    return results


def _describe(device: torch.device, world: int = 1) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    return name if world == 1 else f"{world} processes, each {name}"
