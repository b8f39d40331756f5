"""``swapout sweep --storage URL``: the runs of a sweep (presets x seeds) as the queued trials of one study, so
that workers on many machines share the campaign.

The first worker makes the study and queues one trial per run, in the sweep's order; every worker (the first
included) then takes queued trials until none is left, and trains each in ``SWEEP_DIR/NAME/seed-S/``, the
directory a one-machine ``swapout sweep`` gives it, with the same config, so ``swapout report`` reads them
unchanged. A trial's value is its run's deterministic test error, as the sweep reports it. Packs stay with
the one-machine sweep.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

from ..training.sweep_packs import run_config
from ..training.sweep_plan import plan
from .trial_run import Job
from .worker import Plan

__all__ = ["Campaign", "queue_runs"]


def queue_runs(study, definition: Dict[str, Any]) -> None:
    """Queue one trial per run of ``definition``, then mark the queue complete (joining workers wait for it)."""
    for run in plan(definition, Path(".")):
        study.enqueue_trial({}, user_attrs={"run": run.label}, skip_if_exists=False)
    study.set_user_attr("queued", True)


class Campaign(Plan):
    """The plan of ``swapout sweep --storage``'s workers: the queued runs of ``definition``."""

    def __init__(self, definition: Dict[str, Any], sweep_dir: Path, machine: Dict[str, Any], rejoin: str):
        self.definition, self.sweep_dir, self.machine, self.rejoin = definition, Path(sweep_dir), machine, rejoin
        self.runs = {run.label: run for run in plan(definition, sweep_dir)}

    def ready(self, study) -> bool:
        return bool(study.user_attrs.get("queued"))

    def job(self, trial) -> Job:
        run = self.runs[trial.user_attrs["run"]]
        cfg = run_config(run.preset, run.overrides, run.seed)
        for field, value in self.machine.items():
            setattr(cfg, field, value)
        return Job(cfg, run.path, report=False, test=True, objective="deterministic_error", split="test")

    def value(self, job: Job, results: Dict[str, Any]) -> Optional[float]:
        return results["splits"]["test"]["deterministic_error"]

    def finish(self, study, say) -> None:
        from ..runs.report import report_table, seed_table

        paths = [str(r.path) for r in self.runs.values() if (r.path / "results.json").exists()]
        missing = len(self.runs) - len(paths)
        if missing:
            say(f"campaign {study.study_name} finished; {missing} of {len(self.runs)} runs have their results on "
                f"other machines (their --out is not shared)")
        if paths:
            try:
                seeds = seed_table(paths)
            except ValueError as err:
                seeds = f"none: {err}"
            say(f"campaign {study.study_name}:\n{report_table(paths)}\n\nMean ± standard deviation over seeds:\n\n"
                f"{seeds}")
