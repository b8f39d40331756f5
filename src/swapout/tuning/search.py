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
from typing import Any, Callable, Dict, Optional

from ..runs.config import TrainConfig
from . import OBJECTIVES, PRUNERS, SAMPLERS
from .space import grid, size, suggest
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
    """Optuna's sampler ``name``: TPE, a grid over the space's steps (in a seeded order), or random.

    Workers that share a study each hold a sampler with the same ``seed``. So that they do not draw the same
    trials, TPE and random draw trial N from a stream of its own, seeded by ``seed`` and N: one worker gives
    the same trials in the same order for the same seed, and N workers draw N different ones. TPE counts the
    trials still running as if they had the worst value so far (Optuna's ``constant_liar``), so that it does
    not draw beside them; once it has settled it may repeat an earlier trial, which the worker discards and
    draws again at random (``explore()``). The grid gives trial N the N-th point of its seeded order.

    Args:
        name: one of `SAMPLERS`.
        seed: the study's sampler seed.
        space: the search space, as `swapout.tuning.space.check_space` returns it.
        base: the preset's config.

    Returns:
        An ``optuna.samplers.BaseSampler``.

    Raises:
        ValueError: for an unknown ``name``, or a space that the grid cannot enumerate.
    """
    import optuna

    if name == "tpe":
        return _per_trial(lambda s: optuna.samplers.TPESampler(seed=s, constant_liar=True), seed)
    if name == "grid":
        return optuna.samplers.GridSampler(grid(space, base), seed=seed)
    if name == "random":
        return _per_trial(lambda s: optuna.samplers.RandomSampler(seed=s), seed)
    raise ValueError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {name!r}")


def trial_seed(seed: int, number: int) -> int:
    """The seed of trial ``number``'s draw in a study whose sampler seed is ``seed``.

    Args:
        seed: the study's sampler seed.
        number: the trial's number in the study.

    Returns:
        A 32-bit seed, different for every trial number.
    """
    import numpy as np

    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


def _per_trial(make: Callable[[int], Any], seed: int):
    """A sampler that makes ``make(trial_seed(seed, N))`` afresh for trial N and draws with it; after
    ``explore()``, the next trial is drawn at random from its own seed instead."""
    import optuna

    class PerTrialSeed(optuna.samplers.BaseSampler):
        def __init__(self) -> None:
            self.sampler, self.random_next = make(seed), False

        def explore(self) -> None:
            self.random_next = True

        def before_trial(self, study, trial) -> None:
            own = trial_seed(seed, trial.number)
            self.sampler = optuna.samplers.RandomSampler(seed=own) if self.random_next else make(own)
            self.random_next = False
            self.sampler.before_trial(study, trial)

        def infer_relative_search_space(self, study, trial):
            return self.sampler.infer_relative_search_space(study, trial)

        def sample_relative(self, study, trial, search_space):
            return self.sampler.sample_relative(study, trial, search_space)

        def sample_independent(self, study, trial, param_name, param_distribution):
            return self.sampler.sample_independent(study, trial, param_name, param_distribution)

        def after_trial(self, study, trial, state, values) -> None:
            self.sampler.after_trial(study, trial, state, values)

        def reseed_rng(self) -> None:
            self.sampler.reseed_rng()

    return PerTrialSeed()


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
                 machine: Dict[str, Any], rejoin: str):
        self.base, self.space, self.objective, self.wanted = base, space, objective, trials
        self.study_dir, self.machine, self.rejoin = Path(study_dir), machine, rejoin
        self.size = size(space, base)
        self.summary = True  # False: a worker that is to leave the summary alone (tests of the search alone)

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

    def summary_here(self, study) -> Optional[str]:
        """None if the best trial's run directory is in this worker's study folder (its network is evaluated on the
        test split for the summary), else where that run is."""
        from .summary import best_trial

        if not self.summary:
            return "this worker leaves it to others"
        best = best_trial(study)
        if best is None or (self.study_dir / best.user_attrs["run"] / "config.json").exists():
            return None
        return (f"the best trial ({best.number}) trained in {self.study_dir / best.user_attrs['run']} on worker "
                f"{best.user_attrs.get('worker', '?')}, not in this machine's --out; a worker there writes it (the "
                f"same command there, once the others end, writes it if none did)")

    def finish(self, study, say) -> None:
        from .summary import write_summary

        write_summary(study, self, say)
