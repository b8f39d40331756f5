"""One trial of a study, trained in the worker's process: heartbeats, reports, pruning, and what it leaves.

The worker (`swapout.tuning.worker`) claims a trial and hands it here with its `Job`: the config to
train and the run directory. The run is an ordinary run directory (``swapout eval`` and ``swapout report`` read
it); a retried trial finds its predecessor's checkpoint there and resumes it exactly. Beside the run's files,
``trial.json`` says which trial trained it and how it ended, and ``train.log`` holds the training's lines.

A run directory has one writer at a time: the trial that holds its lease (``RUN_DIR/.lease``, `Lease`). Every
file written there (checkpoints, metrics, config, results, the log, trial.json) is written under a lock on
the lease after checking that this trial still holds it; a retry takes the lease under the same lock before
it reads the directory. A worker that stood still past the grace period while its trial was retried finds,
at its next write, that it lost the lease, and stops there (`TakenOver`) with nothing written; one that
stood still in the middle of a write finishes that write before the retry takes the lease, and the retry
resumes from it.
"""

from __future__ import annotations

import fcntl
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Dict, Iterator, Optional

from ..runs.config import TrainConfig
from ..runs.rundir import RunDir, guarded, save_json
from ..training.hooks import Hook
from .storage import storage_errors

__all__ = ["Job", "Heartbeat", "Reporter", "EngineClock", "train_trial", "Lease", "TakenOver"]


class TakenOver(RuntimeError):
    """Another trial took the run directory's lease: this worker's trial was retried elsewhere."""


class Lease:
    """Which trial writes into ``run_dir``: ``holder`` names this one (its trial and worker).

    `take` makes ``holder`` the writer; ``with lease():`` holds the lock around one write, and raises
    `TakenOver` (writing nothing) if another holder took the lease meanwhile. The lock is a ``flock`` on the
    lease file, which the kernel releases if the process dies.
    """

    def __init__(self, run_dir: Path, holder: str):
        self.path, self.holder = Path(run_dir) / ".lease", holder

    @contextmanager
    def _locked(self) -> Iterator[IO[str]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.seek(0)
            yield fh  # closing the file releases the lock

    def take(self) -> Optional[str]:
        """Make this trial the run directory's writer, once no write of the previous one is under way.

        Returns:
            The previous holder, or None.
        """
        with self._locked() as fh:
            previous = fh.read().strip() or None
            fh.truncate(0)
            fh.write(self.holder)
        return previous

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._locked() as fh:
            holder = fh.read().strip()
            if holder != self.holder:
                raise TakenOver(f"{holder or 'another trial'} took over its run directory")
            yield


@dataclass
class Job:
    """What a trial trains: ``cfg`` in ``run_dir``. ``report``: report the held-out error at every epoch end
    (and so be prunable); ``test``: evaluate the test split at the end (never during a search);
    ``objective``: the key of results.json's held-out figures that the trial's value is (None: no value)."""

    cfg: TrainConfig
    run_dir: Path
    report: bool
    test: bool
    objective: Optional[str]
    split: str = "val"


class EngineClock:
    """Seconds spent waiting for the study's database on the training's path (heartbeats run beside it), and
    the SQL statements this process sent it meanwhile (heartbeats included), counted at the engine."""

    def __init__(self, engine=None) -> None:
        self.seconds = 0.0
        self.calls = 0
        self.statements = 0
        self.engine = engine
        if engine is not None:
            from sqlalchemy import event

            event.listen(engine, "before_cursor_execute", self._count)

    def _count(self, *args) -> None:
        self.statements += 1

    def close(self) -> None:
        if self.engine is not None:
            from sqlalchemy import event

            event.remove(self.engine, "before_cursor_execute", self._count)
            self.engine = None

    @contextmanager
    def __call__(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - start
            self.calls += 1


class Heartbeat:
    """Records a heartbeat for ``trial_id`` every ``interval`` seconds, in a thread, from the moment it starts,
    so that no other worker takes the trial for dead. A failed write sets `lost` and ends the thread."""

    def __init__(self, storage, trial_id: int, interval: float):
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self.lost: Optional[BaseException] = None
        self._stop = threading.Event()
        self.storage.record_heartbeat(trial_id)  # before the thread starts: a claimed trial is never stale
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{trial_id}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.storage.record_heartbeat(self.trial_id)
            except storage_errors() as err:
                self.lost = err
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class Reporter(Hook):
    """Reports the held-out error at every epoch end to the trial, and stops the run when the pruner says so,
    when the study's database is lost (the run then keeps its checkpoint for whoever resumes it), or when the
    worker received SIGTERM or SIGINT while the training was setting up (``signals``: the worker's record)."""

    def __init__(self, trial, job: Job, heartbeat: Heartbeat, clock: EngineClock, say: Callable[[str], None],
                 signals: Optional[Dict[str, Optional[str]]] = None):
        self.trial, self.job, self.heartbeat, self.clock, self.say = trial, job, heartbeat, clock, say
        self.signals = signals or {"name": None}
        self.pruned: Optional[Dict[str, float]] = None
        self.lost: Optional[BaseException] = None

    def on_start(self, training) -> None:
        # the training's own handlers are installed only now; a signal before them was recorded by the worker's
        if self.signals["name"]:
            training.request_stop(self.signals["name"])

    def on_read(self, training, figures) -> None:
        if self.heartbeat.lost is not None and self.lost is None:
            self.lost = self.heartbeat.lost
            training.request_stop("the loss of the study's database")

    def on_epoch_end(self, training, complete: bool) -> None:
        if self.lost is not None or not self.job.report:
            return
        epoch, cfg = training.state.epoch, training.cfg
        error = training.members[0].run.read_metrics()[-1].get("val_error")
        if error is None:
            return
        import optuna

        try:
            with self.clock():
                self.trial.report(error, epoch)
                prune = self.trial.should_prune()
        except optuna.exceptions.UpdateFinishedTrialError:
            raise TakenOver("the study ended it") from None
        except storage_errors() as err:
            self.lost = err
            training.request_stop("the loss of the study's database")
            return
        self.say(f"trial {self.trial.number} epoch {epoch + 1}/{cfg.epochs}: {self.job.split} error {error:.2f}% "
                 f"(deterministic)" + ("; pruned" if prune else ""))
        if prune:
            self.pruned = {"epoch": epoch, "error": error}
            training.request_stop(f"the pruner (trial {self.trial.number}, {self.job.split} error {error:.2f}% at "
                                  f"epoch {epoch + 1})")


def _prepare(run: RunDir) -> bool:
    """Whether the run resumes: it has a checkpoint. A run directory with a config but no checkpoint (its worker
    died before the first one) loses nothing by starting again, so its files are cleared for train()."""
    if run.checkpoint_path.exists() or run.previous_checkpoint_path.exists():
        return True
    for name in ("config.json", "metrics.jsonl"):
        (run.path / name).unlink(missing_ok=True)
    return False


def train_trial(trial, job: Job, heartbeat: Heartbeat, clock: EngineClock, say: Callable[[str], None],
                retry_of: Optional[int], lease: Lease, signals: Optional[Dict[str, Optional[str]]] = None
                ) -> Dict[str, Any]:
    """Train (or resume) ``job`` for ``trial``, whose ``heartbeat`` is running, holding the run directory's lease.

    A run that already has results.json (its worker died after writing it) is not trained again.

    Args:
        trial: the Optuna trial.
        job: what it trains, and where.
        heartbeat: the trial's running `Heartbeat`.
        clock: where the time spent waiting for the database is counted.
        say: prints one line of the worker's.
        retry_of: the number of the failed trial that this one retries, or None.
        lease: the trial's `Lease` on the run directory, taken here.
        signals: the worker's record of SIGTERM and SIGINT (``{"name": ...}``): one received before the training's
            own handlers are in place stops the run at its first step, with a checkpoint.

    Returns:
        The run's results, with ``pruned`` or ``lost`` added when the run ended that way.

    Raises:
        TakenOver: if the trial was retried elsewhere meanwhile (nothing more is written into the run).
    """
    from ..training.train import train

    run = RunDir(job.run_dir)
    lease.take()
    with guarded(run.path, lease):
        done = run.read_results() if run.results_path.exists() else None
        if done and "splits" in done:
            say(f"trial {trial.number}: {run.path} already has its results; not trained again")
            return done
        with lease():
            resume = _prepare(run)
        if retry_of is not None:
            say(f"trial {trial.number} retries trial {retry_of}: " + (
                f"resuming {run.path} from its checkpoint" if resume else
                f"no checkpoint of it in {run.path} (not a shared --out?), so it starts over"))
        reporter = Reporter(trial, job, heartbeat, clock, say, signals)

        def log(line: str) -> None:
            with lease(), open(run.path / "train.log", "a") as fh:
                print(line, file=fh)

        results = train(job.cfg, run.path, resume=resume, progress=False, hooks=[reporter], test=job.test, log=log)
    if reporter.pruned:
        results = {**results, "pruned": reporter.pruned}
    if reporter.lost is not None:
        results = {**results, "lost": reporter.lost}
    return results


def record(job: Job, trial_number: int, state: str, value: Optional[float], params: Dict[str, Any],
           retry_of: Optional[int], wall_s: float, clock: EngineClock, lease: Lease) -> None:
    """``RUN_DIR/trial.json``: the trial that trained the run, how it ended, and the database's share of its time;
    written under ``lease`` (TakenOver if the trial lost it)."""
    with guarded(job.run_dir, lease):
        save_json({"trial": trial_number, "retry_of": retry_of, "state": state, "value": value, "params": params,
                   "wall_s": round(wall_s, 3), "engine_s": round(clock.seconds, 4), "engine_waits": clock.calls,
                   "sql_statements": clock.statements,
                   "engine_share": round(clock.seconds / wall_s, 6) if wall_s > 0 else None},
                  Path(job.run_dir) / "trial.json")
