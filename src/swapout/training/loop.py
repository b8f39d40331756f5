"""The training loop behind `swapout.training.train.train` and `swapout.training.train.train_pack`.

One loop trains G >= 1 runs: a solo run (G = 1, a plain network, data-parallel under torchrun if
launched so) or a pack (G > 1, one packed network in one process). Everything that is a run's own
lives in its `Member` (config, run directory, data order, epoch figures, failure); what the
runs share (steps, learning rate, signals, checkpoints) is the pack's.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from ..data.files import MEAN, STD, load_split
from ..data.pipeline import TrainLoader
from ..progress import Progress, plural
from ..runs.distributed import Process, stop_signals
from ..runs.experiment import eval_splits
from ..runs.rundir import RunDir
from .hooks import Hooks
from .packing import pack
from .records import Member, TrainingRecords, TrainingStopped, TrainState
from .step import TrainStep, prepare_model, resolve_speed

__all__ = ["READ_EVERY", "TrainingStopped", "TrainState", "Member", "Training"]

# How often (in steps) the loop reads the running figures back from the device: each read waits for
# it. On the CPU there is nothing to wait for, so it reads at every step.
READ_EVERY = {"cpu": 1, "cuda": 50}


class Training(TrainingRecords):
    """Set up, run and evaluate ``members`` (one, or a pack checkpointed in ``pack_run``)."""

    def __init__(self, members: Sequence[Member], pack_run: Optional[RunDir], proc: Process, progress: bool,
                 log: Callable[[str], None], hooks: Optional[Hooks] = None, test: bool = True):
        self.members, self.pack_run, self.proc, self.progress, self.log = list(members), pack_run, proc, progress, log
        self.hooks, self.test = hooks or Hooks(), test
        self.stop_request: Optional[str] = None
        self.cfg, self.runs = members[0].cfg, len(members)
        if self.runs > 1 and proc.world > 1:
            raise ValueError("a pack trains in one process; run data-parallel training without packing")
        self.state = TrainState(sums=[[0.0, 0, 0] for _ in members], failed=[None] * self.runs)

    # ---- setup ----------------------------------------------------------------------------------------

    def _setup(self, resume: bool) -> None:
        cfg, proc, device = self.cfg, self.proc, self.proc.device
        self.precision, self.compiled = resolve_speed(cfg.precision, cfg.compile, device)
        train_split = load_split(cfg.dataset, "train", cfg.data_dir)
        # a search never reads the test split: it is not even loaded
        test_split = load_split(cfg.dataset, "test", cfg.data_dir) if self.test else None
        restart = resume and self._restarts(self._checkpoint_runs()[0])
        for run in self._checkpoint_runs() if not resume else ():
            if run.exists() or run.checkpoint_path.exists():
                raise ValueError(f"{run.path} already holds a run; resume it (swapout train --resume {run.path}; "
                                 f"from Python, train(..., resume=True)), or choose another --out or run directory")
        if self.runs == 1:
            self.model = prepare_model(self.members[0].model.to(device))
        else:  # the runs' own networks stay beside the pack: their weights are unpacked into them to evaluate
            # in a solo run's layout: the fused kernel draws a unit's masks by its place in memory, so a run's
            # stochastic figures are then the same whether it was evaluated in its pack or alone
            self.model = prepare_model(pack([prepare_model(m.model.to(device)) for m in self.members]))
        if proc.world > 1:
            if cfg.sync_bn:
                self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            # masks: an independent stream per process (the initial weights above are the same everywhere)
            torch.manual_seed(int(np.random.SeedSequence([cfg.seed, proc.rank]).generate_state(1)[0]))
        # static_graph: some joins leave a term out altogether (theta 0 in the reference op: dropout's X,
        # so the projection shortcuts get no gradient; SkipForward's theta 1 or 0), and DDP would wait for
        # those gradients and fail at the second step. Which terms are left out is fixed for a run (thetas
        # are set when the network is built; the fused kernel or the reference op is chosen by device, dtype
        # and settings), so the unused parameters are the same at every step, as static_graph asks; DDP finds
        # them in the first step, eager or compiled. find_unused_parameters would walk the graph every step.
        net = DistributedDataParallel(self.model, device_ids=[device.index] if device.type == "cuda" else None,
                                      static_graph=True) if proc.world > 1 else self.model
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                         weight_decay=cfg.weight_decay)
        self.n_train = len(train_split) - cfg.val_split
        self.loaders = []
        for m in self.members:  # each run its own order, flips and crops; the images on the device once
            images, labels = (self.loaders[0].images, self.loaders[0].labels) if self.loaders else \
                (train_split.images[:self.n_train], train_split.labels[:self.n_train])
            self.loaders.append(TrainLoader(images, labels, cfg.batch_size, MEAN[cfg.dataset], STD[cfg.dataset],
                                            device, m.cfg.seed, cfg.crop, rank=proc.rank, world_size=proc.world))
        if proc.lead:  # once the loaders have accepted the batch size: a refused run leaves no folder behind
            for run in self._checkpoint_runs():
                run.create()
        self.splits = eval_splits(cfg, train_split, test_split)
        self._resume() if resume and not restart else self._start()
        self.step = TrainStep(net, self.optimizer, device, self.precision, self.compiled, self.state.sums,
                              runs=self.runs)
        self.first_step = self.state.global_step  # TrainStep counts its steps from here

    def _checkpoint_runs(self) -> List[RunDir]:
        """Where the pack's checkpoint goes (a solo run's own directory), then the runs' directories."""
        return ([self.pack_run] if self.pack_run is not None else []) + [m.run for m in self.members]

    def _resume(self) -> None:
        ckpt_run = self._checkpoint_runs()[0]
        ckpt = ckpt_run.load_checkpoint()
        if not {"optimizer", "rng", "state"} <= set(ckpt):
            raise ValueError(f"{ckpt_run.path}: its checkpoint holds final weights only, without the optimiser's state "
                             f"and random streams: it can be evaluated (swapout eval), not trained on")
        for m in self.members:
            m.run.read_metrics()  # a damaged metrics.jsonl is named now, not after an epoch of training
        if len(ckpt["rng"]) != self.proc.world:
            raise ValueError(f"{ckpt_run.path} was checkpointed by {plural(len(ckpt['rng']), 'process')}; "
                             f"resume it with as many")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        saved, rank = ckpt["state"], self.proc.rank
        sums = saved["sums"][rank] if self.runs > 1 else [saved["sums"][rank]]
        self.state = TrainState(**{**saved, "sums": sums, "failed": saved.get("failed", [None] * self.runs)})
        self.proc.set_rng_state(ckpt["rng"][rank])
        self._record_stop()
        done = self.state.epoch >= self.cfg.epochs or self._at_max_steps()
        self.log(f"{ckpt_run.path}: its training is done ({plural(self.state.global_step, 'step')}); evaluating it"
                 if done else f"resuming {ckpt_run.path} at epoch {self.state.epoch + 1}, step {self.state.step} of "
                              f"{len(self.loaders[0])}")

    # ---- the loop ---------------------------------------------------------------------------------------

    def run(self, resume: bool) -> List[Dict[str, Any]]:
        """Train to the end (or to a signal, or ``max_steps``) and evaluate; each run's results."""
        self._setup(resume)
        cfg, state = self.cfg, self.state
        self.log(self._describe())
        self.hooks.call("on_start", self)
        signalled = None
        self.max_steps_reached = self._at_max_steps()
        with stop_signals() as received:
            while state.epoch < cfg.epochs and not (signalled or self.max_steps_reached):
                signalled = self._epoch(received)
                if signalled:
                    break
                complete = state.step >= len(self.loaders[0])
                self._end_epoch(complete)
                self.hooks.call("on_epoch_end", self, complete)
                if complete:
                    state.epoch, state.step = state.epoch + 1, 0
                    state.sums = [[0.0, 0, 0] for _ in self.members]
                    self.step.reset_sums()
                self._checkpoint()
                signalled = self.stop_request
        if signalled:
            self.log(f"stopped by {signalled} at epoch {state.epoch + 1}, step {state.step}; checkpoint written. "
                     f"Resume with: {self._resume_command()}")
            results = [{"stopped": signalled, "epoch": state.epoch, "step": state.step}] * self.runs
        else:
            try:
                results = [self._final_evaluation(g) if not state.failed[g] else {"failed": state.failed[g]}
                           for g in range(self.runs)]
            except KeyboardInterrupt:  # a Ctrl-C outside the training loop's handler: say what is kept
                self.log(f"interrupted in the final evaluation: the training is done and its checkpoint written; "
                         f"to evaluate it: {self._resume_command()}")
                raise
        self.hooks.call("on_end", self, results)
        return results

    def _resume_command(self) -> str:
        return (f"swapout train --resume {self.members[0].run.path}" if self.pack_run is None
                else f"swapout train --pack-dir {self.pack_run.path}")

    def _at_max_steps(self) -> bool:
        return self.cfg.max_steps is not None and self.state.global_step >= self.cfg.max_steps

    def request_stop(self, why: str) -> None:
        """Stop at the next point where the figures are read (or at this epoch's end), with a checkpoint, as a
        signal would: how a hook (a pruner, a worker that lost its study) ends a run. ``why`` is logged and
        returned as the results' ``stopped``."""
        self.stop_request = why

    def _describe(self) -> str:
        cfg, n = self.cfg, len(self.loaders[0])
        what = cfg.preset or cfg.model
        if self.runs > 1:
            what = f"a pack of {self.runs} runs ({', '.join(str(m.run.path) for m in self.members)})"
        return (f"training {what} ({sum(p.numel() for p in self.model.parameters()):,} parameters) on "
                f"{self.proc.describe()}, {self.n_train:,} images, {plural(cfg.epochs, 'epoch')} of "
                f"{plural(n, 'step')}, {self.precision}" + (", compiled" if self.compiled else "")
                + (f", stopping after {plural(cfg.max_steps, 'step')}" if cfg.max_steps else ""))

    def _batches(self, epoch: int, start: int) -> Iterator[Tuple[Tensor, Tensor]]:
        """Each run's batch of its own order, flips and crops; a pack's stacked along channels."""
        if self.runs == 1:
            yield from self.loaders[0].batches(epoch, start)
            return
        for parts in zip(*(loader.batches(epoch, start) for loader in self.loaders)):
            yield torch.cat([x for x, _ in parts], 1), torch.stack([y for _, y in parts], 1)

    def _epoch(self, received: Dict[str, Optional[str]]) -> Optional[str]:
        """Train the rest of the current epoch; the signal that stopped it, if any."""
        cfg, state, n = self.cfg, self.state, len(self.loaders[0])
        for group in self.optimizer.param_groups:
            group["lr"] = cfg.learning_rate(state.epoch)
        self.model.train()
        images = cfg.batch_size * self.runs
        bar = Progress(n * images, f"epoch {state.epoch + 1}/{cfg.epochs}", initial=state.step * images,
                       enabled=self.progress)
        started, shown, signalled = time.time(), state.step, None
        read_every = READ_EVERY.get(self.proc.device.type, 1)
        for x, y in self._batches(state.epoch, state.step):
            self.step(x, y)
            state.step += 1
            state.global_step += 1
            self.max_steps_reached = self._at_max_steps()
            checkpoint_due = cfg.checkpoint_every and state.global_step % cfg.checkpoint_every == 0
            if not (checkpoint_due or self.max_steps_reached or state.step == n or state.global_step % read_every == 0):
                continue
            signal_seen = self._read(received, bar)
            bar.update((state.step - shown) * images, **self._bar_figures())
            shown = state.step
            if signal_seen and not self.max_steps_reached:
                signalled = received["name"] or self.stop_request or "a signal to another process"
            if signalled or (checkpoint_due and state.step < n):  # the epoch's end checkpoints anyway
                state.train_time += time.time() - started
                started = time.time()
                self._checkpoint()
            if signalled or self.max_steps_reached:
                break
        bar.close()
        state.train_time += time.time() - started
        return signalled

    def _read(self, received: Dict[str, Optional[str]], bar: Progress) -> bool:
        """Read the figures from the device; stop the runs whose loss was not finite; whether a signal came."""
        figures = self.step.read()
        signal_seen, bad = self.proc.any(bool(received["name"] or self.stop_request),
                                         any(f.first_bad >= 0 for f in figures))
        if bad:
            for g, f in enumerate(figures):
                if not self.state.failed[g] and (f.first_bad >= 0 or self.runs == 1):
                    self._fail(g, self._where_bad(f.first_bad), bar)
        self.state.sums = [[f.loss_sum, f.right, f.images] for f in figures]
        self.hooks.call("on_read", self, figures)
        return signal_seen

    def _bar_figures(self) -> Dict[str, float]:
        live = [s for s, failed in zip(self.state.sums, self.state.failed) if not failed and s[2]]
        loss = sum(s[0] / s[2] for s in live) / max(len(live), 1)
        error = sum(100.0 * (1 - s[1] / s[2]) for s in live) / max(len(live), 1)
        return {"loss": loss, "error": error}

    def _where_bad(self, first_bad: int) -> str:
        if first_bad < 0:
            return "the loss became non-finite in another process"
        bad, n = self.first_step + first_bad, len(self.loaders[0])
        return f"the loss became non-finite at epoch {bad // n + 1}, step {bad % n + 1}"

    def _fail(self, g: int, what: str, bar: Optional[Progress] = None) -> None:
        """Run ``g`` cannot go on: a solo run raises TrainingStopped, a packed one stops alone."""
        run = self.members[g].run
        last = f"The last good checkpoint is {run.checkpoint_path}" if run.checkpoint_path.exists() else \
            "No checkpoint was written before it"
        message = f"{what}; training stopped. {last}; try a lower --lr"
        self.state.failed[g] = message
        if self.runs == 1 or all(self.state.failed):
            if bar is not None:
                bar.close()
            raise TrainingStopped(message if self.runs == 1 else f"every run of the pack stopped; the last: {message}")
        self.log(f"{run.path}: {message}. The other runs of the pack go on.")
