"""``swapout tune``: a search over a preset's keep probabilities, on Optuna.

Each trial trains the preset with the joins its sampler draws from the space (`swapout.tuning.space`), in
``STUDY_DIR/trial-NNNN/``, an ordinary run directory. The trial reports its held-out error (deterministic,
cheap) at every epoch end, so that the pruner can stop a run that is worse than the others were at that
epoch; its value is the held-out error that ``--objective`` names, from the final evaluation. The test split
is never read during the search: trials do not load it. When the study has nothing left to run, the best
trial is evaluated on the test split, once, and the summary is written (`swapout.tuning.summary`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

from ..runs.config import TrainConfig
from . import OBJECTIVES, PRUNERS, SAMPLERS
from .space import grid, suggest
from .trial_run import Job
from .worker import Plan

__all__ = ["Search", "SAMPLERS", "PRUNERS", "OBJECTIVES", "make_sampler", "make_pruner", "base_config"]

MACHINE_FIELDS = ("device", "data_dir")  # chosen by each worker, not part of the study


def base_config(values: Dict[str, Any], objective: str) -> Dict[str, Any]:
    """The config every trial starts from (a preset with options over it), checked for a search.

    ValueError if it holds no images out of training (``val_split``: the search's only yardstick) or, for the
    stochastic objective, no stochastic passes.
    """
    cfg = TrainConfig.from_dict(values).validate()
    cfg.join()
    if objective not in OBJECTIVES:
        raise ValueError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if not cfg.val_split:
        raise ValueError("a search is judged on held-out training images, never on the test split: give "
                         "--val-split N (e.g. 5000)")
    if objective == "stochastic" and not cfg.eval_samples:
        raise ValueError("--objective stochastic needs stochastic passes: give --eval-samples N >= 1")
    return {k: v for k, v in cfg.to_dict().items() if k not in MACHINE_FIELDS}


def make_sampler(name: str, seed: int, space: Dict[str, Any], base: Dict[str, Any]):
    """Optuna's sampler ``name``, seeded: TPE, a grid over the space's steps (in a seeded order), or random."""
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "grid":
        return optuna.samplers.GridSampler(grid(space, base), seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {name!r}")


def make_pruner(name: str, epochs: int):
    """Optuna's pruner ``name``; a trial's steps are its epochs. Median prunes from the 5th trial on."""
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=0)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1))
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"--pruner must be one of {', '.join(PRUNERS)}, got {name!r}")


class Search(Plan):
    """The plan of ``swapout tune``'s workers: ``trials`` trials of ``base`` with joins drawn from ``space``."""

    def __init__(self, base: Dict[str, Any], space: Dict[str, Any], objective: str, trials: int, study_dir: Path,
                 machine: Dict[str, Any], rejoin: str, summary: bool = True):
        self.base, self.space, self.objective, self.wanted = base, space, objective, trials
        self.study_dir, self.machine, self.rejoin, self.summary = Path(study_dir), machine, rejoin, summary

    def job(self, trial) -> Job:
        fields = suggest(trial, self.space, self.base)
        run = trial.user_attrs.get("run")
        if run is None:  # a retry inherits its predecessor's, and so its checkpoint
            run = f"trial-{trial.number:04d}"
            trial.set_user_attr("run", run)
        cfg = TrainConfig.from_dict({**self.base, **fields, **self.machine})
        return Job(cfg, self.study_dir / run, report=True, test=False, objective=f"{self.objective}_error")

    def value(self, job: Job, results: Dict[str, Any]) -> Optional[float]:
        return results["splits"]["val"][job.objective]

    def finish(self, study, say) -> None:
        if self.summary:
            from .summary import write_summary

            write_summary(study, self, say)
