"""What each run of a training writes: its config, metrics, checkpoints and results.

`TrainingRecords` is the part of `swapout.training.loop.Training` that turns the state of
the loop into files: ``config.json`` and ``metrics.jsonl`` of every run, a checkpoint per run (plain,
so that ``swapout eval`` and a solo resume read it) and one for a pack as a whole, and ``results.json``
after the final evaluation in both inference modes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional

import numpy as np
import torch
from torch import nn

from ..data.files import MEAN, STD
from ..evaluation.errors import evaluate_split
from ..progress import Progress, plural
from ..runs.config import TrainConfig
from ..runs.rundir import RunDir, read_json, read_pack, save_json
from .packing import unpack_optimizer_state, unpack_state

if TYPE_CHECKING:  # the loop's parts, for the declarations below; the loop imports this module
    from ..data.pipeline import TrainLoader
    from ..runs.distributed import Process
    from .hooks import Hooks
    from .step import TrainStep

__all__ = ["TrainingStopped", "TrainState", "Member", "TrainingRecords"]


class TrainingStopped(RuntimeError):
    """Training ended early and cannot go on as configured (a non-finite loss)."""


@dataclass
class TrainState:
    """Where the runs are; saved in every checkpoint."""

    epoch: int = 0              # epochs completed
    step: int = 0               # steps completed in the current epoch
    global_step: int = 0        # steps completed in the whole run
    train_time: float = 0.0     # seconds spent training, over every process start of the run
    sums: List[List[float]] = field(default_factory=list)  # per run, this epoch: loss sum, right, images
    failed: List[Optional[str]] = field(default_factory=list)  # per run: why it stopped early, or None


@dataclass
class Member:
    """One run of those trained together: its config, its directory and its plain network."""

    cfg: TrainConfig
    run: RunDir
    model: nn.Module


class TrainingRecords:
    """The files of the runs being trained; the loop (`swapout.training.loop.Training`) sets
    ``members``, ``pack_run``, ``runs``, ``proc``, ``state``, ``model``, ``optimizer``, ``step``,
    ``loaders``, ``splits``, ``precision``, ``compiled``, ``n_train``, ``progress`` and ``log``."""

    # set by the loop; declared here so that what this half reads is checked
    cfg: TrainConfig
    members: List[Member]
    pack_run: Optional[RunDir]
    runs: int
    proc: Process
    state: TrainState
    model: nn.Module
    optimizer: torch.optim.Optimizer
    step: TrainStep
    loaders: List[TrainLoader]
    splits: Dict[str, Dict[str, Any]]
    precision: str
    compiled: bool
    n_train: int
    progress: bool
    log: Callable[[str], None]
    hooks: Hooks

    def _fail(self, g: int, what: str, bar: Optional[Progress] = None) -> None:
        raise NotImplementedError  # the loop's: a solo run raises, a packed one stops alone

    def _pack_dir(self) -> str:
        if self.pack_run is None:
            raise RuntimeError("runs trained together always have a pack directory")
        return str(self.pack_run.path)

    def _start(self) -> None:
        if not self.proc.lead:
            return
        for g, m in enumerate(self.members):
            resolved = {"milestones": m.cfg.resolved_milestones(), "steps_per_epoch": len(self.loaders[0]),
                        "parameters": sum(p.numel() for p in m.model.parameters()), "train_images": self.n_train,
                        "processes": self.proc.world, "precision": self.precision, "compile": self.compiled}
            if self.pack_run is not None:
                resolved["pack"] = {"dir": str(self.pack_run.path), "runs": self.runs, "index": g}
            save_json({"config": m.cfg.to_dict(), "resolved": resolved}, m.run.config_path)
            m.run.write_metrics([])

    def _restarts(self, first: RunDir) -> bool:
        """Whether a run being resumed (its checkpoint in ``first``) stopped before its first checkpoint (killed,
        or a broken pipe): nothing trained was kept, so it trains again from the start; logged if so."""
        if not first.kept_nothing():
            return False
        self.log(f"{first.path} stopped before its first checkpoint, so nothing of it was kept; training it again "
                 f"from the start with its recorded config")
        return True

    def _record_stop(self) -> None:
        """On resuming: a run given another ``max_steps`` records it, so that its config (and a pack's record)
        says where it ends; the device, data folder and speed it resumes with are this invocation's alone."""
        if not self.proc.lead:
            return
        for m in self.members:
            saved = read_json(m.run.config_path, "a run's config") if m.run.config_path.exists() else None
            if saved is not None and saved["config"].get("max_steps") != m.cfg.max_steps:
                saved["config"]["max_steps"] = m.cfg.max_steps
                save_json(saved, m.run.config_path)
        if self.pack_run is not None:
            runs = read_pack(self.pack_run.path)
            if any(r["config"].get("max_steps") != self.cfg.max_steps for r in runs):
                for r in runs:
                    r["config"]["max_steps"] = self.cfg.max_steps
                save_json({"runs": runs}, self.pack_run.path / "pack.json")

    def plain_model(self, g: int) -> nn.Module:
        """Run ``g``'s own network with its current weights (a pack's group g, unpacked)."""
        if self.runs == 1:
            return self.model
        member = self.members[g].model
        member.load_state_dict(unpack_state(self.model.state_dict(), self.runs, g))
        return member

    def _checkpoint(self) -> None:
        state = self.state
        for g, finite in enumerate(self.step.weights_finite()):
            if not finite and not state.failed[g]:
                self._fail(g, f"the weights became non-finite by epoch {state.epoch + 1}, step {state.step}")
        # every process's random state and running sums, so a resumed run replays exactly
        rngs = self.proc.gather(self.proc.rng_state())
        sums = self.proc.gather(state.sums if self.runs > 1 else state.sums[0])
        if not self.proc.lead:
            return
        model, optimizer = self.model.state_dict(), self.optimizer.state_dict()
        common = {"epoch": state.epoch, "step": state.step, "global_step": state.global_step,
                  "train_time": state.train_time}
        if self.pack_run is not None:
            self.pack_run.save_checkpoint({"model": model, "optimizer": optimizer, "rng": rngs,
                                           "state": {**common, "sums": sums, "failed": state.failed},
                                           "config": [m.cfg.to_dict() for m in self.members]})
        for g, m in enumerate(self.members):
            if state.failed[g]:
                continue  # its last good checkpoint stays
            own = {"model": model, "optimizer": optimizer} if self.runs == 1 else {
                "model": unpack_state(model, self.runs, g), "pack": self._pack_dir(),
                "optimizer": unpack_optimizer_state(optimizer, self.runs, g)}
            sums_g = sums if self.runs == 1 else [s[g] for s in sums]
            m.run.save_checkpoint({**own, "state": {**common, "sums": sums_g}, "rng": rngs, "config": m.cfg.to_dict()})
        self.hooks.call("on_checkpoint", self)

    def _end_epoch(self, complete: bool) -> None:
        """Append each run's row to its metrics.jsonl (training figures over all processes, validation error)."""
        for g, m in enumerate(self.members):
            if self.state.failed[g]:
                continue
            self._metrics_row(g, m, complete)

    def _metrics_row(self, g: int, m: Member, complete: bool) -> None:
        state, cfg = self.state, m.cfg
        loss_sum, right, images = (sum(col) for col in zip(*self.proc.gather(state.sums[g])))
        row = {"epoch": state.epoch, "steps": state.step, "lr": cfg.learning_rate(state.epoch),
               "train_loss": round(loss_sum / max(images, 1), 6),
               "train_error": round(100.0 * (1 - right / max(images, 1)), 4),
               "train_time_s": round(state.train_time, 2)}
        if "val" in self.splits:
            val = self.splits["val"]
            row["val_error"] = evaluate_split(self.plain_model(g), val["images"], val["labels"], MEAN[cfg.dataset],
                                              STD[cfg.dataset], self.proc.device, samples=0)["deterministic_error"]
        if not complete:
            row["partial"] = True
        if self.proc.lead:  # this epoch's row replaces one written before an interruption
            m.run.write_metrics([r for r in m.run.read_metrics() if r["epoch"] < state.epoch] + [row])
        prefix = f"{m.run.path}: " if self.runs > 1 else ""
        self.log(f"{prefix}epoch {state.epoch + 1}: train loss {row['train_loss']:.4f}, train error "
                 f"{row['train_error']:.2f}%" + (f", val error {row['val_error']:.2f}% (deterministic)"
                                                 if "val_error" in row else ""))

    def _final_evaluation(self, g: int) -> Dict[str, Any]:
        """Evaluate run ``g`` on every split both ways and write its results.json."""
        cfg, state, m = self.cfg, self.state, self.members[g]
        model = self.plain_model(g)
        # stochastic inference draws from the run's own stream, so that its figures are the same whether
        # it trained alone or in a pack, and whatever happened to the pack's other runs
        torch.manual_seed(int(np.random.SeedSequence([m.cfg.seed, self.proc.rank, 1]).generate_state(1)[0]))
        results: Dict[str, Any] = {"preset": m.cfg.preset, "parameters": sum(p.numel() for p in m.model.parameters()),
                   "device": self.proc.describe(), "train_time_s": round(state.train_time, 1), "epochs": cfg.epochs,
                   "epochs_completed": round(state.epoch + state.step / len(self.loaders[0]), 4),
                   "steps": state.global_step, "splits": {}}
        if self.runs > 1:
            results["pack"] = {"dir": self._pack_dir(), "runs": self.runs, "index": g}
        for name, split in self.splits.items():
            bar = Progress(len(split["labels"]), f"evaluating {name}", enabled=self.progress)
            figures = evaluate_split(model, split["images"], split["labels"], MEAN[cfg.dataset], STD[cfg.dataset],
                                     self.proc.device, samples=cfg.eval_samples, progress=bar.update)
            bar.close()
            results["splits"][name] = {"note": split["note"], **figures}
            self.log(f"{f'{m.run.path}: ' if self.runs > 1 else ''}{name} ({split['note']}): deterministic error "
                     f"{figures['deterministic_error']:.2f}%"
                     + (f", stochastic error ({plural(cfg.eval_samples, 'pass')}) {figures['stochastic_error']:.2f}%"
                        if "stochastic_error" in figures else ""))
        if self.proc.lead:
            save_json(results, m.run.results_path)
        return results
