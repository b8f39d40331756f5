"""What workers of one study draw and decide through its database, in one process and without training: the
same trials for the same seed, different trials for workers that share a seed, no trial drawn twice, a
trial put back by SIGTERM that nobody fails before its new heartbeat, one summary, and the run directory's
lease that fences a worker which lost its trial."""

import json
import threading
import time

import optuna
import pytest

from swapout.cli.main import build_parser
from swapout.cli.tune import _search
from swapout.runs.rundir import guarded, save_json
from swapout.tuning.storage import open_storage
from swapout.tuning.trial_run import Lease, TakenOver
from swapout.tuning.worker import Worker

PRESET = "short/cpu-20-w1-swapout"
TINY = ["--depth", "8", "--val-split", "49500", "--batch-size", "32", "--eval-samples", "2", "--eval-limit", "50"]


def _opened(out, *extra):
    argv = ["tune", "--preset", PRESET, "--out", str(out), "--heartbeat", "1", *TINY, *extra]
    args = build_parser().parse_args(argv)
    args.argv = argv
    return _search(args)


def _draws(worker, count, tell=True):
    """The parameters of ``count`` claims of ``worker``, each told complete (a value of its parameters) if
    ``tell``; None for a claim that found nothing to draw."""
    seen = []
    for _ in range(count):
        claimed = worker._claim()
        if claimed is None:
            seen.append(None)
            continue
        trial, _ = claimed
        seen.append(trial.params)
        if tell:
            worker.study.tell(trial, sum(v for v in trial.params.values() if isinstance(v, float)))
    return seen


def _key(params):
    return tuple(sorted(params.items()))


def test_one_worker_draws_the_same_trials_in_order_for_a_seed_and_never_one_twice(tmp_path):
    runs = []
    for name, seed, count in (("a", "0", 12), ("b", "0", 12), ("c", "1", 2)):
        study, storage, plan = _opened(tmp_path / name, "--trials", "12", "--sampler-seed", seed)
        runs.append(_draws(Worker(study, storage, plan, 1), count))
    assert runs[0] == runs[1]  # reproducible: same seed, same trials, same order (TPE's own past its 10 random ones)
    assert runs[0][:2] != runs[2]
    assert len({_key(p) for p in runs[0]}) == 12


def test_workers_that_share_a_seed_draw_different_trials(tmp_path):
    # two workers, each with its own connection and its own sampler seeded 0, drawing while the other's trials run
    first, second = (Worker(*_opened(tmp_path / "s", "--trials", "6"), 1) for _ in range(2))
    drawn = [params for _ in range(3) for worker in (first, second) for params in _draws(worker, 1, tell=False)]
    assert len({_key(p) for p in drawn}) == 6
    study = first.study
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.RUNNING] * 6  # no draw was discarded


def test_a_space_with_fewer_points_than_trials_ends_the_draws_in_one_line(tmp_path, capsys):
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"theta1": 1.0, "theta2": {"schedules": ["constant"], "low": 0.9, "high": 1.0,
                                                           "step": 0.05}}))
    study, storage, plan = _opened(tmp_path / "s", "--trials", "5", "--sampler", "random", "--space", str(space))
    assert plan.size == 3
    drawn = _draws(Worker(study, storage, plan, 1), 5)
    assert drawn[3:] == [None, None] and len({_key(p) for p in drawn[:3]}) == 3
    repeats = [t for t in study.trials if "repeats" in t.user_attrs]
    assert repeats and all(t.state == optuna.trial.TrialState.FAIL for t in repeats)  # discarded, then drawn again
    lines = [line for line in capsys.readouterr().out.splitlines() if "every one is drawn" in line]
    assert len(lines) == 1 and "holds 3 different trial(s)" in lines[0] and "3 of --trials 5" in lines[0]


def test_a_trial_put_back_by_sigterm_is_not_failed_as_stale_when_it_is_claimed_again(tmp_path):
    study, storage, plan = _opened(tmp_path / "s", "--trials", "1", "--grace", "2")
    trial = study.ask()
    storage.record_heartbeat(trial._trial_id)  # its worker's last heartbeat
    storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.WAITING)  # what SIGTERM does
    time.sleep(2.2)  # that heartbeat is now older than the grace period
    claimed, job = Worker(study, storage, plan, 1)._claim()
    assert claimed.number == trial.number and job is None
    # another worker looks for dead trials at once, before the claimer's heartbeat thread has started
    other = optuna.load_study(study_name=study.study_name, storage=open_storage(storage.url, 1, 2))
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        optuna.storages.fail_stale_trials(other)
    assert [t.state for t in other.trials] == [optuna.trial.TrialState.RUNNING]


class _Plan:
    """A search's plan whose summary only records who wrote it."""

    def __init__(self, plan, written, lacking=None):
        self.plan, self.written, self.lacking = plan, written, lacking

    def __getattr__(self, name):
        return getattr(self.plan, name)

    def summary_here(self, study):
        return self.lacking

    def finish(self, study, say):
        self.written.append(study)


def test_exactly_one_worker_writes_the_summary_and_the_others_say_who(tmp_path, capsys):
    written = []
    workers = []
    for _ in range(3):
        study, storage, plan = _opened(tmp_path / "s", "--trials", "1")
        workers.append(Worker(study, storage, _Plan(plan, written), 1))
    threads = [threading.Thread(target=w._finish) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(written) == 1
    by = workers[0].study.user_attrs["summary_by"]
    assert capsys.readouterr().out.count(f"the summary is written by worker {by}") == 2


def test_a_summary_that_fails_is_left_to_the_next_worker(tmp_path):
    study, storage, plan = _opened(tmp_path / "s", "--trials", "1")
    failing = _Plan(plan, [])
    failing.finish = lambda study, say: 1 / 0  # e.g. the test split cannot be read on this machine
    with pytest.raises(ZeroDivisionError):
        Worker(study, storage, failing, 1)._finish()
    written = []
    Worker(study, storage, _Plan(plan, written), 1)._finish()
    assert len(written) == 1


def test_a_worker_without_the_best_trials_run_leaves_the_summary_to_one_that_has_it(tmp_path, capsys):
    study, storage, plan = _opened(tmp_path / "s", "--trials", "1")
    trial = study.ask()
    trial.set_user_attr("run", "trial-0000")
    trial.set_user_attr("worker", "elsewhere:7")
    study.tell(trial, 12.5)  # trained on another machine: its run directory is not in this --out
    Worker(study, storage, plan, 1)._finish()
    out = capsys.readouterr().out
    assert "cannot write the summary: the best trial (0) trained in" in out and "on worker elsewhere:7" in out
    assert "summary_by" not in study.user_attrs and not (tmp_path / "s" / "summary.json").exists()


def test_a_worker_that_lost_the_lease_writes_nothing_even_if_it_was_writing_when_the_retry_came(tmp_path):
    run = tmp_path / "trial-0000"
    old, new = Lease(run, "trial 0"), Lease(run, "trial 1")
    old.take()
    writing, taken = threading.Event(), threading.Event()
    release = threading.Event()

    def write_slowly():
        with guarded(run, old):
            with old():  # a write under way, as a worker stopped in the middle of a checkpoint
                writing.set()
                release.wait(5)
                (run / "checkpoint.pt").write_text("old, complete")

    def take_over():
        new.take()
        taken.set()

    writer = threading.Thread(target=write_slowly)
    writer.start()
    writing.wait(5)
    retry = threading.Thread(target=take_over)
    retry.start()
    time.sleep(0.3)
    assert not taken.is_set()  # the retry waits for the write under way to finish
    release.set()
    writer.join()
    retry.join(5)
    assert taken.is_set() and (run / "checkpoint.pt").read_text() == "old, complete"
    with guarded(run, old), pytest.raises(TakenOver, match="trial 1 took over"):
        save_json({"late": True}, run / "results.json")  # every later write of the old holder is refused
    assert not (run / "results.json").exists() and not (run / "results.json.tmp").exists()
    with guarded(run, new):
        save_json({"ok": True}, run / "results.json")
    assert json.loads((run / "results.json").read_text()) == {"ok": True}
