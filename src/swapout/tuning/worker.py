"""A worker of a study: claims a trial, trains it in this process, tells the study how it ended, and repeats.

Any number of workers, on any number of machines, share one study through its database
(`swapout.tuning.storage`). What a worker does with a trial comes from its `Plan`: a search
(`swapout.tuning.search`) draws new trials from a sampler until it has enough; a campaign
(`swapout.tuning.campaign`) only takes the runs queued when the study was made.

Faults:

- killed outright (SIGKILL, a lost machine): the trial's heartbeat stops; after the grace period the next
  worker to look fails it and queues a copy, which resumes the run from its checkpoint where the run
  directory can be reached (a shared ``--out``), else starts it over and says so;
- SIGTERM or SIGINT (preemption): the run checkpoints, the trial goes back to the queue as it was (neither
  failed nor retried), and the worker exits 0 saying how to rejoin;
- the database goes away: the run checkpoints and the worker stops with one line (`StorageError`);
  rejoining continues the study, and the trial is retried from that checkpoint once its heartbeat is stale.
"""

from __future__ import annotations

import os
import socket
import time
import warnings
from typing import Any, Callable, Dict, List, Optional

from ..runs.distributed import stop_signals
from ..training.records import TrainingStopped
from .space import describe
from .storage import StorageError, import_optuna, storage_errors
from .trial_run import EngineClock, Heartbeat, Job, record, train_trial

__all__ = ["Plan", "Worker"]


class Plan:
    """What the workers of one study do; `swapout.tuning.search.Search` and
    `swapout.tuning.campaign.Campaign` fill it in."""

    wanted: Optional[int] = None   # trials to draw from the sampler in all (None: only queued ones are run)
    rejoin: str = ""               # the command that joins the study again

    def job(self, trial) -> Job:
        """What ``trial`` trains (its suggestions are drawn here, on its first start)."""
        raise NotImplementedError

    def value(self, job: Job, results: Dict[str, Any]) -> Optional[float]:
        """The trial's value, from its run's results."""
        raise NotImplementedError

    def ready(self, study) -> bool:
        """Whether the study's queue is complete (a campaign's creator may still be filling it)."""
        return True

    def finish(self, study, say: Callable[[str], None]) -> None:
        """Once no trial is left to run or running: the study's summary."""


class Worker:
    """One worker: ``run()`` until the study has nothing left for it; returns the exit status."""

    def __init__(self, study, storage, plan: Plan, heartbeat: float, say: Callable[[str], None] = print):
        self.optuna = import_optuna()
        self.study, self.storage, self.plan, self.interval = study, storage, plan, heartbeat
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self._say = say
        self.waiting_for: Optional[int] = None

    def say(self, line: str) -> None:
        self._say(f"[{self.name}] {line}")

    def run(self) -> int:
        """Claim and train trials until none is left; 0, or raises StorageError when the database goes away."""
        try:
            # SIGTERM and SIGINT between trials are recorded, so that the worker stops before claiming another;
            # during a trial the training's own handlers take over (a checkpoint, then the trial goes back)
            with stop_signals() as received:
                while not self.plan.ready(self.study):
                    time.sleep(self.interval)
                while not received["name"]:
                    trial = self._claim()
                    if trial is None:
                        if self._others_running():
                            time.sleep(self.interval)
                            continue
                        break
                    if not self._one(trial):
                        return 0
                if received["name"]:
                    self.say(f"{received['name']}: no trial is running here; stopped. Rejoin with: {self.plan.rejoin}")
                    return 0
            self.plan.finish(self.study, self.say)
            return 0
        except storage_errors() as err:
            raise StorageError(f"lost the study's database ({str(err).splitlines()[0]}); run directories are "
                               f"intact and rejoining continues the study: {self.plan.rejoin}") from None

    # ---- claiming ---------------------------------------------------------------------------------------

    def _trials(self, *states) -> List[Any]:
        return self.study.get_trials(deepcopy=False, states=states or None)

    def _claim(self):
        """A queued trial (a retry, a preempted one, a campaign's run), else a new one if the plan wants more."""
        TrialState = self.optuna.trial.TrialState
        with warnings.catch_warnings():  # fail_stale_trials is marked experimental
            warnings.simplefilter("ignore", self.optuna.exceptions.ExperimentalWarning)
            self.optuna.storages.fail_stale_trials(self.study)
        for frozen in self._trials(TrialState.WAITING):
            try:
                if self.storage.set_trial_state_values(frozen._trial_id, TrialState.RUNNING):
                    return self.optuna.trial.Trial(self.study, frozen._trial_id)
            except self.optuna.exceptions.UpdateFinishedTrialError:
                continue
        counted = [t for t in self._trials() if t.state != TrialState.FAIL or "failed" in t.user_attrs]
        if self.plan.wanted is not None and len(counted) < self.plan.wanted:
            return self.study.ask()
        return None

    def _others_running(self) -> bool:
        running = len(self._trials(self.optuna.trial.TrialState.RUNNING))
        if running and running != self.waiting_for:
            self.say(f"waiting for {running} trial(s) running elsewhere (a dead worker's trial is retried "
                     f"{self.storage.grace_period}s after its last heartbeat)")
        self.waiting_for = running
        return bool(running)

    # ---- one trial --------------------------------------------------------------------------------------

    def _one(self, trial) -> bool:
        """Train ``trial`` and tell the study how it ended; False if the worker must stop (a signal)."""
        clock, start = EngineClock(getattr(self.storage, "engine", None)), time.perf_counter()
        try:
            return self._timed(trial, clock, start)
        finally:
            clock.close()

    def _timed(self, trial, clock: EngineClock, start: float) -> bool:
        with clock():
            heartbeat = Heartbeat(self.storage, trial._trial_id, self.interval)
        try:
            with clock():
                job = self.plan.job(trial)
                retry_of = self.storage.get_trial(trial._trial_id).system_attrs.get("failed_trial")
                trial.set_user_attr("worker", self.name)
            self.say(f"trial {trial.number} start: {describe(trial.params) or 'a queued run'} -> {job.run_dir}")
            try:
                results = train_trial(trial, job, heartbeat, clock, self.say, retry_of)
            except TrainingStopped as err:
                return self._end(trial, job, "FAIL", None, clock, start, retry_of, failed=str(err))
            except BaseException:
                self.storage.set_trial_state_values(trial._trial_id, self.optuna.trial.TrialState.WAITING)
                raise  # a bad config or unusable data: the trial goes back to the queue, and the worker stops
        finally:
            heartbeat.stop()
        if "lost" in results:
            raise StorageError(f"lost the study's database during trial {trial.number} "
                               f"({str(results['lost']).splitlines()[0]}); {job.run_dir} keeps its checkpoint, and "
                               f"the trial resumes from it once a worker rejoins: {self.plan.rejoin}")
        if "pruned" in results:
            return self._end(trial, job, "PRUNED", None, clock, start, retry_of)
        if "stopped" in results:
            with clock():
                self.storage.set_trial_state_values(trial._trial_id, self.optuna.trial.TrialState.WAITING)
            self.say(f"stopped by {results['stopped']}: trial {trial.number} is checkpointed in {job.run_dir} and back "
                     f"in the queue. Rejoin with: {self.plan.rejoin}")
            return False
        return self._end(trial, job, "COMPLETE", self.plan.value(job, results), clock, start, retry_of)

    def _end(self, trial, job: Job, state: str, value: Optional[float], clock: EngineClock, start: float,
             retry_of: Optional[int], failed: Optional[str] = None) -> bool:
        TrialState = self.optuna.trial.TrialState
        wall = time.perf_counter() - start
        record(job, trial.number, state, value, trial.params, retry_of, wall, clock)
        try:
            with clock():
                if failed:
                    trial.set_user_attr("failed", failed)
                trial.set_user_attr("engine_s", clock.seconds)
                trial.set_user_attr("wall_s", wall)
                self.study.tell(trial, value if state == "COMPLETE" else None, state=getattr(TrialState, state))
        except (self.optuna.exceptions.UpdateFinishedTrialError, ValueError) as err:
            self.say(f"trial {trial.number} was ended elsewhere meanwhile ({err}); its run stays in {job.run_dir}")
            return True
        self.say(f"trial {trial.number} {state.lower()}" + (f": {job.split} error {value:.2f}%" if value is not None
                                                           else f": {failed}" if failed else "")
                 + f" ({wall:.0f} s, database {100 * clock.seconds / wall:.2f}%); {self._progress()}")
        return True

    def _progress(self) -> str:
        TrialState = self.optuna.trial.TrialState
        trials = self._trials()
        ended = {s: sum(t.state == getattr(TrialState, s) for t in trials) for s in ("COMPLETE", "PRUNED", "FAIL")}
        line = f"study: {ended['COMPLETE']} complete, {ended['PRUNED']} pruned, {ended['FAIL']} failed"
        complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
        if complete:
            best = min(complete, key=lambda t: t.value)
            line += f"; best {best.value:.2f}% (trial {best.number})"
        return line

