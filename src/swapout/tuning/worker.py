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
  rejoining continues the study, and the trial is retried from that checkpoint once its heartbeat is stale;
- paused past the grace period (a long stop, a swapped-out process, a network partition): its trial is failed
  and retried elsewhere, and the retry takes the run directory's lease (`swapout.tuning.trial_run.Lease`);
  the paused worker, once it runs again, writes nothing more there, says so, and goes on.

Workers started together draw different trials: each draw happens under the storage's lock
(`swapout.tuning.storage.study_lock`), from a stream seeded by the trial's number
(`swapout.tuning.search.make_sampler`), and a draw that repeats an earlier trial's parameters is discarded.
When no trial is left, one worker, chosen through the database, writes the study's summary.
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
from .storage import StorageError, import_optuna, storage_errors, study_lock
from .trial_run import EngineClock, Heartbeat, Job, Lease, TakenOver, record, train_trial

__all__ = ["Plan", "Worker"]


def _key(params: Dict[str, Any]) -> tuple:
    return tuple(sorted(params.items()))


class Plan:
    """What the workers of one study do; `swapout.tuning.search.Search` and
    `swapout.tuning.campaign.Campaign` fill it in."""

    wanted: Optional[int] = None   # trials to draw from the sampler in all (None: only queued ones are run)
    size: Optional[int] = None     # how many different trials the sampler can draw (None: no limit known)
    rejoin: str = ""               # the command that joins the study again
    repeats = 20                   # draws in a row that repeat earlier trials before the worker stops drawing

    def job(self, trial) -> Job:
        """What ``trial`` trains (its suggestions are drawn here, on its first start)."""
        raise NotImplementedError

    def value(self, job: Job, results: Dict[str, Any]) -> Optional[float]:
        """The trial's value, from its run's results."""
        raise NotImplementedError

    def ready(self, study) -> bool:
        """Whether the study's queue is complete (a campaign's creator may still be filling it)."""
        return True

    def summary_here(self, study) -> Optional[str]:
        """None if this worker can write the study's summary, else why not (what it lacks, and where that is)."""
        return None

    def finish(self, study, say: Callable[[str], None]) -> None:
        """Once no trial is left to run or running: the study's summary, by one worker of all."""


class Worker:
    """One worker: ``run()`` until the study has nothing left for it; returns the exit status."""

    def __init__(self, study, storage, plan: Plan, heartbeat: float, say: Callable[[str], None] = print):
        self.optuna = import_optuna()
        self.study, self.storage, self.plan, self.interval = study, storage, plan, heartbeat
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self._say = say
        self.waiting_for: Optional[int] = None
        self.signals: Dict[str, Optional[str]] = {"name": None}
        self.exhausted = False  # the space's every point is drawn (said once)

    def say(self, line: str) -> None:
        self._say(f"[{self.name}] {line}")

    def run(self) -> int:
        """Claim and train trials until none is left; 0, or raises StorageError when the database goes away."""
        try:
            # SIGTERM and SIGINT between trials are recorded, so that the worker stops before claiming another;
            # during a trial the training's own handlers take over (a checkpoint, then the trial goes back)
            with stop_signals() as received:
                self.signals = received
                while not self.plan.ready(self.study) and not received["name"]:
                    time.sleep(self.interval)
                while not received["name"]:
                    claimed = self._claim()
                    if claimed is None:
                        if self._others_running():
                            time.sleep(self.interval)
                            continue
                        break
                    if not self._one(*claimed):
                        return 0
                if received["name"]:
                    self.say(f"{received['name']}: no trial is running here; stopped. Rejoin with: {self.plan.rejoin}")
                    return 0
                self._finish()  # a signal meanwhile waits for the summary: it is short, and never half-written
            return 0
        except storage_errors() as err:
            raise StorageError(f"lost the study's database ({str(err).splitlines()[0]}); run directories are "
                               f"intact and rejoining continues the study: {self.plan.rejoin}") from None

    # ---- claiming ---------------------------------------------------------------------------------------

    def _trials(self, *states) -> List[Any]:
        return self.study.get_trials(deepcopy=False, states=states or None)

    def _claim(self):
        """``(trial, job)``: a queued trial (a retry, a preempted one, a campaign's run; its job is made when it
        starts), else a new draw if the plan wants more; None if there is nothing to take."""
        TrialState = self.optuna.trial.TrialState
        with warnings.catch_warnings():  # fail_stale_trials is marked experimental
            warnings.simplefilter("ignore", self.optuna.exceptions.ExperimentalWarning)
            self.optuna.storages.fail_stale_trials(self.study)
        for frozen in self._trials(TrialState.WAITING):
            # a trial put back by a stopped worker keeps that worker's last heartbeat: without a fresh one before
            # the claim, another worker could fail it as stale between the claim and the first new heartbeat
            self.storage.record_heartbeat(frozen._trial_id)
            try:
                if self.storage.set_trial_state_values(frozen._trial_id, TrialState.RUNNING):
                    return self.optuna.trial.Trial(self.study, frozen._trial_id), None
            except self.optuna.exceptions.UpdateFinishedTrialError:
                continue
        if self.plan.wanted is None:
            return None
        with study_lock(self.storage.url):
            return self._draw()

    def _draw(self):
        """A new trial and its job, drawn while this worker holds the storage's lock, so that it sees every earlier
        draw; a draw that repeats one is failed (user attribute ``repeats``: the earlier trial) and drawn again, at
        random where the sampler can (a settled TPE would repeat itself)."""
        TrialState = self.optuna.trial.TrialState
        for _ in range(self.plan.repeats):
            trials = self._trials()
            counted = [t for t in trials if t.state != TrialState.FAIL or "failed" in t.user_attrs]
            if len(counted) >= self.plan.wanted:
                return None
            drawn = {_key(t.params): t for t in trials if t.params and "repeats" not in t.user_attrs}
            if self.plan.size is not None and len(drawn) >= self.plan.size:
                if not self.exhausted:
                    self.say(f"the space holds {self.plan.size} different trial(s), and every one is drawn: no more "
                             f"are drawn, so the study ends with {len(counted)} of --trials {self.plan.wanted}")
                self.exhausted = True
                return None
            trial = self.study.ask()
            try:
                job = self.plan.job(trial)
            except Exception as err:  # a draw that no config can take must not stay in the queue
                trial.set_user_attr("failed", str(err).splitlines()[0] if str(err) else type(err).__name__)
                self.study.tell(trial, state=TrialState.FAIL)
                raise
            earlier = drawn.get(_key(trial.params))
            if earlier is None or "fixed_params" in self.storage.get_trial_system_attrs(trial._trial_id):
                return trial, job
            trial.set_user_attr("repeats", earlier.number)
            self.study.tell(trial, state=TrialState.FAIL)
            getattr(self.study.sampler, "explore", lambda: None)()
        self.say(f"{self.plan.repeats} draws in a row repeated earlier trials (the space is nearly exhausted); no more "
                 f"are drawn")
        return None

    def _others_running(self) -> bool:
        running = len(self._trials(self.optuna.trial.TrialState.RUNNING))
        if running and running != self.waiting_for:
            self.say(f"waiting for {running} trial(s) running elsewhere (a dead worker's trial is retried "
                     f"{self.storage.grace_period}s after its last heartbeat)")
        self.waiting_for = running
        return bool(running)

    # ---- one trial --------------------------------------------------------------------------------------

    def _one(self, trial, job: Optional[Job]) -> bool:
        """Train ``trial`` (``job``: its job, if drawn already) and tell the study how it ended; False if the worker
        must stop (a signal)."""
        clock, start = EngineClock(getattr(self.storage, "engine", None)), time.perf_counter()
        try:
            return self._timed(trial, job, clock, start)
        finally:
            clock.close()

    def _timed(self, trial, job: Optional[Job], clock: EngineClock, start: float) -> bool:
        with clock():
            heartbeat = Heartbeat(self.storage, trial._trial_id, self.interval)
        try:
            with clock():
                job = job or self.plan.job(trial)
                retry_of = self.storage.get_trial(trial._trial_id).system_attrs.get("failed_trial")
                trial.set_user_attr("worker", self.name)
            self.say(f"trial {trial.number} start: {describe(trial.params) or 'a queued run'} -> {job.run_dir}")
            lease = Lease(job.run_dir, f"trial {trial.number} of worker {self.name}")
            try:
                results = train_trial(trial, job, heartbeat, clock, self.say, retry_of, lease, self.signals)
            except TrainingStopped as err:
                return self._end(trial, job, lease, "FAIL", None, clock, start, retry_of, failed=str(err))
            except TakenOver as err:
                self.say(f"trial {trial.number} was failed for a stale heartbeat (this worker stood still past "
                         f"--grace) and {err}; this worker writes nothing more into {job.run_dir} and goes on")
                return True
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
            return self._end(trial, job, lease, "PRUNED", None, clock, start, retry_of)
        if "stopped" in results:
            with clock():
                self.storage.set_trial_state_values(trial._trial_id, self.optuna.trial.TrialState.WAITING)
            self.say(f"stopped by {results['stopped']}: trial {trial.number} is checkpointed in {job.run_dir} and back "
                     f"in the queue. Rejoin with: {self.plan.rejoin}")
            return False
        return self._end(trial, job, lease, "COMPLETE", self.plan.value(job, results), clock, start, retry_of)

    def _end(self, trial, job: Job, lease: Lease, state: str, value: Optional[float], clock: EngineClock,
             start: float, retry_of: Optional[int], failed: Optional[str] = None) -> bool:
        TrialState = self.optuna.trial.TrialState
        wall = time.perf_counter() - start
        try:
            record(job, trial.number, state, value, trial.params, retry_of, wall, clock, lease)
        except TakenOver as err:
            self.say(f"trial {trial.number} was failed for a stale heartbeat and {err}; its ending is not recorded")
            return True
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

    def _finish(self) -> None:
        """The summary, by exactly one worker: the first, under the storage's lock, that can write it."""
        with study_lock(self.storage.url):
            by = self.study.user_attrs.get("summary_by")
            lacking = None if by else self.plan.summary_here(self.study)
            if by is None and lacking is None:
                self.study.set_user_attr("summary_by", self.name)
        if by is not None:
            self.say(f"no trial is left; the summary is written by worker {by}")
        elif lacking is not None:
            self.say(f"no trial is left; this worker cannot write the summary: {lacking}")
        else:
            try:
                self.plan.finish(self.study, self.say)
            except BaseException:  # left to the next worker or command that ends the study, not lost
                self.study.set_user_attr("summary_by", None)
                raise

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

