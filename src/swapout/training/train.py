"""Training with the paper's recipe: SGD with momentum, step learning rate, checkpoints, exact resume.

``train(config, run_dir)`` runs a whole experiment: it trains, checkpoints (at every epoch end, every
``checkpoint_every`` steps, and when interrupted by SIGINT or SIGTERM), evaluates with both inference
modes on every evaluated split, and writes ``results.json``. ``train(config, run_dir, resume=True)``
continues where the run stopped: model, optimiser, learning rate, random generator states and the
position in the epoch's data order are all restored, so on the CPU a resumed run equals an
uninterrupted one bit for bit (on a GPU, to the rounding of kernels that sum in varying order).
The same code runs one process or many under torchrun (`swapout.runs.distributed`).

``train_pack(pack_dir)`` trains G runs at once as one packed network (`swapout.training.packing`) by the
same loop: a solo run is a pack of one. Each run keeps what a solo run has: its seed's weights and
data order, its own masks, its run directory with a plain checkpoint, metrics and results. The pack
checkpoints and resumes as a whole (``PACK_DIR/checkpoint.pt``), and a run whose loss stops being
finite stops alone while the others go on.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from ..runs.config import TrainConfig
from ..runs.distributed import process_group
from ..runs.experiment import build_model
from ..runs.rundir import RunDir, read_pack, write_pack
from .hooks import Hook, Hooks
from .loop import READ_EVERY, Member, Training, TrainingStopped, TrainState

__all__ = ["train", "train_pack", "write_pack", "read_pack", "TrainState", "TrainingStopped", "READ_EVERY"]

_Log = Callable[[str], None]


def _stderr(s: str) -> None:
    print(s, file=sys.stderr)


def train(cfg: TrainConfig, run_dir: Union[str, os.PathLike[str]], resume: bool = False, progress: bool = True,
          log: _Log = _stderr, hooks: Sequence[Hook] = (), test: bool = True) -> Dict[str, Any]:
    """Train (or resume) a run in ``run_dir`` and evaluate it; returns the contents of results.json.

    Returns early, with a checkpoint written and ``results["stopped"]`` naming the signal, when SIGINT or
    SIGTERM arrives.

    Args:
        cfg: the run's configuration.
        run_dir: the run's directory, where its config, metrics, checkpoints and results.json are written.
        resume: continue the run from the checkpoint in ``run_dir`` (model, optimiser, learning rate, random
            generator states and position in the epoch's data order are restored); a run that stopped before
            its first checkpoint is trained again from the start.
        progress: show progress bars.
        log: called with each line of the training log (default: written to stderr).
        hooks: `swapout.training.hooks.Hook` instances, called at the loop's named points; one may
            end the run early with ``training.request_stop(why)`` (results then hold ``"stopped": why``).
        test: False leaves the test split unread, not even loaded (a search reports on held-out images only).

    Returns:
        The contents of results.json: the run's ``"preset"``, ``"parameters"``, ``"device"``, ``"train_time_s"``,
        ``"epochs"``, ``"epochs_completed"``, ``"steps"`` and, under ``"splits"``, the figures of both inference
        modes on every evaluated split; or, when stopped early, ``{"stopped": why, "epoch", "step"}``.

    Raises:
        ValueError: for a bad config, unusable data or an unwritable directory (before writing anything).
        TrainingStopped: if the loss stops being finite.

    Examples:
        The quick start's preset on an 8-layer network, cut short to two steps (it reads CIFAR-10, which it
        downloads where it finds none):

        >>> import tempfile
        >>> from swapout.runs.config import TrainConfig, load_preset
        >>> from swapout.training.train import train
        >>> config = TrainConfig.from_dict({**load_preset("short/quickstart"), "depth": 8, "max_steps": 2,
        ...                                 "eval_limit": 64, "eval_samples": 2, "device": "cpu"})
        >>> with tempfile.TemporaryDirectory() as run_dir:
        ...     results = train(config, run_dir, progress=False, log=lambda line: None)
        >>> results["steps"], sorted(results["splits"])
        (2, ['test', 'val'])
    """
    return _run([cfg], [run_dir], None, resume, progress, log, hooks, test)[0]


def train_pack(pack_dir, resume: Optional[bool] = None, progress: bool = True, log: _Log = _stderr,
               changes: Optional[Dict[str, Any]] = None) -> List[Dict[str, Any]]:
    """Train (or resume) the pack recorded in ``pack_dir``; returns each run's results.

    Args:
        resume: continue from the pack's checkpoint; None: if it has one.
        changes: config fields to set in every run, among `TrainConfig.RESUMABLE_CHANGES` (the
            device and data folder of this machine, say).

    A run stopped by a non-finite loss returns ``{"failed": message}``; TrainingStopped only when every
    run of the pack has failed.
    """
    runs = read_pack(pack_dir)
    cfgs = [TrainConfig.for_resume(r["config"], changes or {}) for r in runs]
    if resume is None:
        resume = RunDir(pack_dir).checkpoint_path.exists() or RunDir(pack_dir).previous_checkpoint_path.exists()
    return _run(cfgs, [r["path"] for r in runs], Path(pack_dir), resume, progress, log)


def _run(cfgs: Sequence[TrainConfig], run_dirs: Sequence[Any], pack_dir: Optional[Path], resume: bool,
         progress: bool, log: _Log, hooks: Sequence[Hook] = (), test: bool = True) -> List[Dict[str, Any]]:
    models = []
    for cfg in cfgs:
        torch.manual_seed(cfg.seed)  # the initial weights follow the seed, as in a solo run
        models.append(build_model(cfg))  # checks the config first, so a bad one writes nothing
    if pack_dir is not None:
        TrainConfig.check_pack(cfgs)
        # the pack's masks: one stream for all runs, from all their seeds
        torch.manual_seed(int(np.random.SeedSequence([c.seed for c in cfgs]).generate_state(1)[0]))
    members = [Member(cfg, RunDir(path), model) for cfg, path, model in zip(cfgs, run_dirs, models)]
    with process_group(cfgs[0].device) as proc:
        training = Training(members, RunDir(pack_dir) if pack_dir is not None else None, proc,
                            progress and proc.lead, log if proc.lead else (lambda s: None), Hooks(hooks, proc.lead),
                            test)
        return training.run(resume)
