"""Many workers, one study, on a real PostgreSQL server: workers started together on an empty database all join
and draw different trials, one writes the summary, and no password reaches what they print or write; a worker
killed mid-trial costs only its last steps; one paused past the grace period writes nothing more once its
trial is retried; the paper's campaign on the engine equals the one-machine sweep; and a database that goes
away stops a worker in one line with its run intact."""

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch

from swapout.runs.config import TrainConfig
from swapout.runs.rundir import read_checkpoint
from swapout.training.train import train
from swapout.tuning.storage import open_storage, storage_url, study_lock

pytestmark = pytest.mark.needs_data  # skipped without CIFAR-10: see the conftest.py at the top
PRESET, RESNET = "short/cpu-20-w1-swapout", "short/cpu-20-w1-resnet"
TINY = ["--depth", "8", "--val-split", "49500", "--batch-size", "32", "--eval-samples", "2", "--eval-limit", "50"]
FAST_FAULTS = ["--heartbeat", "1", "--grace", "3"]


def _cli(*args):
    return [sys.executable, "-m", "swapout.cli", *args]


def _study(url, name):
    return optuna.load_study(study_name=name, storage=storage_url(url, Path(".")))


def _wait_for(condition, what, timeout=180):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _weights(path):
    return read_checkpoint(path)["model"]


def _with_password(url, password):
    return url.replace("postgresql://postgres@", f"postgresql://postgres:{password}@")


@pytest.mark.parametrize("workers", [2, 4])
def test_workers_started_together_on_an_empty_database_join_draw_different_trials_and_one_sums_up(tmp_path, postgres,
                                                                                                   workers):
    secret = "pw-never-shown-7"
    url, out = _with_password(postgres.database(), secret), tmp_path / "study"  # the test server trusts any password
    argv = _cli("tune", "--preset", PRESET, "--storage", url, "--study", "s", "--out", str(out), "--trials",
                str(workers), "--epochs", "1", "--max-steps", "1", "--pruner", "none", "--heartbeat", "1", "--grace",
                "20", *TINY)
    started = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for _ in range(workers)]  # at the same moment, as a job array starts them
    texts = [p.communicate(timeout=600)[0] for p in started]
    assert [p.returncode for p in started] == [0] * workers, "\n".join(texts)
    joined = [re.search(r"^study s \((new|joined)\)", t, re.M) for t in texts]
    assert all(joined) and sorted(m.group(1) for m in joined) == ["joined"] * (workers - 1) + ["new"]

    trials = _study(url, "s").trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * workers  # none drawn twice, none lost
    assert len({tuple(sorted(t.params.items())) for t in trials}) == workers

    writers = [t for t in texts if "finished: summary in" in t]
    assert len(writers) == 1 and (out / "summary.json").exists()
    by = re.search(r"^\[(\S+)\] study s finished", writers[0], re.M).group(1)
    assert sum(f"the summary is written by worker {by}" in t for t in texts) == workers - 1

    files = [p for p in out.rglob("*") if p.is_file()]
    assert "Traceback" not in "".join(texts) and "Warning" not in "".join(texts) and secret not in "".join(texts)
    assert files and not [p for p in files if secret.encode() in p.read_bytes()]
    assert "postgresql+psycopg://postgres:***@" in texts[0]


def test_the_password_comes_from_pgpassword_or_pgpass(tmp_path, postgres, monkeypatch):
    url = storage_url(postgres.database(owner=postgres.password_role("s3cret")), tmp_path)
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-such-file"))
    with pytest.raises(ValueError, match="cannot reach the database .*password"):
        open_storage(url)
    monkeypatch.setenv("PGPASSWORD", "s3cret")
    with study_lock(url):
        open_storage(url)
    monkeypatch.delenv("PGPASSWORD")
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"127.0.0.1:{postgres.port}:*:*:s3cret\n")
    pgpass.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(pgpass))  # ~/.pgpass, where libpq looks unless told otherwise
    with study_lock(url):
        assert open_storage(url).get_all_studies() == []


def test_a_worker_paused_past_the_grace_period_writes_nothing_more_and_the_run_ends_as_if_uninterrupted(tmp_path,
                                                                                                        postgres):
    url, out = postgres.database(), tmp_path / "study"
    argv = _cli("tune", "--preset", PRESET, "--storage", url, "--study", "s", "--out", str(out), "--trials", "1",
                "--epochs", "1", "--checkpoint-every", "2", "--pruner", "none", *FAST_FAULTS, *TINY[:2], "--val-split",
                "49360", *TINY[4:])  # one epoch of 20 steps
    paused = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run = out / "trial-0000"
    _wait_for(lambda: (run / "checkpoint.pt").exists(), "the first checkpoint")
    paused.send_signal(signal.SIGSTOP)  # as a long pause, a swapped-out process or a partition would
    try:
        with open(tmp_path / "retry.log", "w") as log:
            retry = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, text=True)
            _wait_for(lambda: "trial 1 start" in (tmp_path / "retry.log").read_text(), "the retry's start")
    finally:
        paused.send_signal(signal.SIGCONT)
    text = paused.communicate(timeout=600)[0]
    retry.wait(timeout=600)
    retried = (tmp_path / "retry.log").read_text()
    assert paused.returncode == 0 and retry.returncode == 0, text + retried
    assert "Traceback" not in text + retried
    lost = [line for line in text.splitlines() if "writes nothing more into" in line]
    assert len(lost) == 1 and "trial 0 was failed for a stale heartbeat" in lost[0], text
    assert "trial 1 retries trial 0: resuming" in retried
    assert [t.state.name for t in _study(url, "s").trials] == ["FAIL", "COMPLETE"]

    log = (run / "train.log").read_text()
    assert log.count("epoch 1: train loss") == 1, log
    assert log.count("resuming") == 1 and log.count("): deterministic error") == 1, log
    assert json.loads((run / "trial.json").read_text())["trial"] == 1
    cfg = TrainConfig.from_dict(json.loads((run / "config.json").read_text())["config"])
    train(cfg, tmp_path / "alone", progress=False, log=lambda s: None, test=False)
    alone, resumed = _weights(tmp_path / "alone" / "checkpoint.pt"), _weights(run / "checkpoint.pt")
    assert alone.keys() == resumed.keys() and all(torch.equal(alone[k], resumed[k]) for k in alone)
    assert _comparable(tmp_path / "alone")[1:] == _comparable(run)[1:]  # the same metrics and results


def test_two_workers_share_a_study_and_a_killed_workers_trial_resumes_elsewhere(tmp_path, postgres):
    url, out = postgres.database(), tmp_path / "study"
    argv = _cli("tune", "--preset", PRESET, "--storage", url, "--study", "s", "--out", str(out), "--trials", "4",
                "--epochs", "1", "--max-steps", "12", "--checkpoint-every", "3", "--pruner", "none", *FAST_FAULTS,
                *TINY)
    victim = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for(lambda: list(out.glob("trial-*/checkpoint.pt")), "the first checkpoint")
    survivor = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed_run = next(out.glob("trial-*/checkpoint.pt")).parent
    _wait_for(lambda: read_checkpoint(killed_run / "checkpoint.pt")["state"]["global_step"] >= 3, "a mid-trial step")
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not (killed_run / "results.json").exists()  # killed in the middle of its trial
    killed_at = read_checkpoint(killed_run / "checkpoint.pt")["state"]["global_step"]
    text = survivor.communicate(timeout=600)[0]
    assert survivor.returncode == 0, text

    trials = _study(url, "s").trials
    states = [t.state for t in trials]
    assert states.count(optuna.trial.TrialState.FAIL) == 1  # the killed worker's, failed for its stale heartbeat
    assert states.count(optuna.trial.TrialState.COMPLETE) == 4 and len(trials) == 5
    failed = next(t for t in trials if t.state == optuna.trial.TrialState.FAIL)
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == failed.number)
    assert retry.state == optuna.trial.TrialState.COMPLETE and retry.params == failed.params
    assert retry.user_attrs["run"] == failed.user_attrs["run"] == killed_run.name
    assert f"trial {retry.number} retries trial {failed.number}: resuming {killed_run}" in text
    assert re.search(rf"resuming {killed_run} at epoch 1, step {killed_at} of", (killed_run / "train.log").read_text())
    for run in out.glob("trial-*"):  # no trial was trained to the end twice
        assert (run / "train.log").read_text().count("): deterministic error") == 1, run
    assert len(list(out.glob("trial-*"))) == 4

    # the resumed run's final weights equal an uninterrupted run's
    cfg = TrainConfig.from_dict(json.loads((killed_run / "config.json").read_text())["config"])
    train(cfg, tmp_path / "alone", progress=False, log=lambda s: None, test=False)
    alone, resumed = _weights(tmp_path / "alone" / "checkpoint.pt"), _weights(killed_run / "checkpoint.pt")
    assert alone.keys() == resumed.keys() and all(torch.equal(alone[k], resumed[k]) for k in alone)
    assert json.loads((out / "summary.json").read_text())["states"]["COMPLETE"] == 4


def _comparable(run):
    """What a run directory says about the run, without the times and the machine's device name."""
    results = json.loads((run / "results.json").read_text())
    for key in ("train_time_s", "device"):
        results.pop(key)
    metrics = [{k: v for k, v in json.loads(line).items() if k != "train_time_s"}
               for line in (run / "metrics.jsonl").read_text().splitlines()]
    return json.loads((run / "config.json").read_text()), metrics, results


def test_the_campaign_on_the_engine_equals_the_one_machine_sweep(tmp_path, postgres, swapout_here):
    grid = ["--presets", f"{RESNET},{PRESET}", "--seeds", "0,1", "--device", "cpu", "--epochs", "1", "--max-steps",
            "4", *TINY]
    today = swapout_here("sweep", "--out", str(tmp_path / "one"), "--per-gpu", "2", *grid)
    assert today.returncode == 0, today.stdout + today.stderr
    url = postgres.database()
    engine = subprocess.run(_cli("sweep", "--out", str(tmp_path / "many"), "--storage", url, "--workers", "2",
                                 *FAST_FAULTS, *grid), capture_output=True, text=True, timeout=600)
    assert engine.returncode == 0, engine.stdout + engine.stderr
    runs = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").glob("*/seed-*"))
    assert len(runs) == 4
    assert runs == sorted(p.relative_to(tmp_path / "many") for p in (tmp_path / "many").glob("*/seed-*"))
    for run in runs:
        assert _comparable(tmp_path / "one" / run) == _comparable(tmp_path / "many" / run), run
    workers = set(re.findall(r"^\[(\S+)\] trial \d+ start", engine.stdout, re.M))
    assert len(workers) == 2  # both workers took runs
    trials = _study(url, "sweep-many").trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 4
    assert "Mean ± standard deviation over seeds" in engine.stdout


def test_a_database_that_goes_away_stops_the_worker_in_one_line_and_rejoining_continues(tmp_path, postgres):
    url, out = postgres.database(), tmp_path / "study"
    argv = _cli("tune", "--preset", PRESET, "--storage", url, "--study", "s", "--out", str(out), "--trials", "1",
                "--epochs", "3", "--max-steps", "40", "--checkpoint-every", "2", "--pruner", "none", *FAST_FAULTS,
                *TINY)
    worker = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint = out / "trial-0000" / "checkpoint.pt"
    _wait_for(checkpoint.exists, "the first checkpoint")
    postgres.stop("immediate")
    try:
        stdout, stderr = worker.communicate(timeout=120)
    finally:
        postgres.start()
    assert worker.returncode == 1, stdout + stderr
    assert len(stderr.strip().splitlines()) == 1 and "lost the study's database" in stderr, stderr
    assert "Traceback" not in stdout + stderr
    state = read_checkpoint(checkpoint)["state"]  # intact: its checksum holds
    assert 2 <= state["global_step"] < 40 and not (checkpoint.parent / "results.json").exists()

    again = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert [t.state.name for t in _study(url, "s").trials] == ["FAIL", "COMPLETE"]  # retried once stale
    log = (checkpoint.parent / "train.log").read_text()
    assert f"resuming {checkpoint.parent} at epoch {state['epoch'] + 1}, step {state['step']} of" in log
