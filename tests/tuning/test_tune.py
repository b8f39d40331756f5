"""``swapout tune`` on one machine (SQLite): pruning at epoch ends, a search that never reads the test split,
one-line refusals that start nothing, preemption by SIGTERM, and the summary."""

import importlib.util
import json
import re
import signal
import subprocess
import sys
import time

import numpy as np
import optuna
import pytest
import torch

from swapout.cli.checks import train_config
from swapout.cli.main import build_parser, main
from swapout.cli.tune import _search
from swapout.data import files as data
from swapout.data.cifar import DataError
from swapout.runs.config import TrainConfig
from swapout.runs.rundir import read_checkpoint
from swapout.tuning.storage import open_study, storage_url
from swapout.tuning.worker import Worker

needs_data = pytest.mark.needs_data  # skipped without CIFAR-10: see the conftest.py at the top
PRESET = "short/cpu-20-w1-swapout"
# A trial in seconds: depth 8, 500 training images (the rest held out, 50 of them evaluated), batches of 32.
TINY = ["--depth", "8", "--val-split", "49500", "--batch-size", "32", "--eval-samples", "2", "--eval-limit", "50"]


def _args(tmp_path, *extra):
    argv = ["tune", "--preset", PRESET, "--out", str(tmp_path / "study"), "--heartbeat", "1", *TINY, *extra]
    args = build_parser().parse_args(argv)
    args.argv = argv
    return args


def _fake_trials(study, error):
    """Four complete trials that reported ``error`` at both epochs: the median pruner's yardstick."""
    for _ in range(4):
        study.add_trial(optuna.trial.create_trial(value=error, intermediate_values={0: error, 1: error}))


@needs_data
@pytest.mark.parametrize("others, pruned", [(0.0, True), (100.0, False)])
def test_a_run_worse_than_the_median_at_an_epoch_end_is_pruned_there(tmp_path, others, pruned, capsys):
    args = _args(tmp_path, "--trials", "5", "--epochs", "2")
    study, storage, plan = _search(args)
    _fake_trials(study, others)
    plan.summary = False
    assert Worker(study, storage, plan, 1).run() == 0
    trial = study.trials[-1]
    run = tmp_path / "study" / trial.user_attrs["run"]
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    record = json.loads((run / "trial.json").read_text())
    if pruned:  # worse than 0% at the first epoch's end: stopped there, its directory and checkpoint kept
        assert trial.state == optuna.trial.TrialState.PRUNED and list(trial.intermediate_values) == [0]
        assert len(metrics) == 1 and not (run / "results.json").exists() and record["state"] == "PRUNED"
        assert read_checkpoint(run / "checkpoint.pt")["state"]["epoch"] == 1
        assert f"trial {trial.number} pruned" in capsys.readouterr().out
    else:
        assert trial.state == optuna.trial.TrialState.COMPLETE and list(trial.intermediate_values) == [0, 1]
        assert len(metrics) == 2 and trial.value == json.loads((run / "results.json").read_text())["splits"]["val"][
            "deterministic_error"]


def _poisoned(tmp_path):
    """A data folder whose test labels are shuffled: reading them would fail its checksum, and using them would
    change any figure that came from them."""
    folder = tmp_path / "poisoned"
    folder.mkdir()
    source = data.default_data_dir()
    for f in source.glob("cifar10-train*"):
        (folder / f.name).symlink_to(f)
    for f in source.glob("cifar10-test*.webp"):
        (folder / f.name).symlink_to(f)
    test = dict(np.load(source / "cifar10-test.npz"))
    test["labels"] = np.random.default_rng(0).permutation(test["labels"])
    np.savez(folder / "cifar10-test.npz", **test)
    with pytest.raises(DataError):
        data.load_split("cifar10", "test", folder)
    return folder


@needs_data
def test_the_search_never_reads_the_test_split(tmp_path):
    poisoned = _poisoned(tmp_path)
    seen = []
    for name, folder in (("clean", data.default_data_dir()), ("poisoned", poisoned)):
        args = build_parser().parse_args(["tune", "--preset", PRESET, "--out", str(tmp_path / name), "--trials", "2",
                                          "--epochs", "1", "--max-steps", "4", "--data-dir", str(folder), *TINY])
        args.argv = []
        study, storage, plan = _search(args)
        plan.summary = False  # the summary is the one reader of the test split
        assert Worker(study, storage, plan, 10).run() == 0
        seen.append([(t.params, t.value, t.intermediate_values, t.state) for t in study.trials])
    assert seen[0] == seen[1] and len(seen[0]) == 2


def _one_line_and_nothing_started(capsys, argv, out):
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse's refusals
        code = exit.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert not out.exists() or not any(out.glob("trial-*"))
    return err


@pytest.mark.parametrize("extra, message", [
    (["--trials", "0"], "--trials: expected an integer >= 1"),
    (["--sampler", "cma"], "invalid choice: 'cma'"),
    (["--pruner", "patient"], "invalid choice: 'patient'"),
    (["--storage", "postgresql://nobody@127.0.0.1:9/none"], "cannot reach the database"),
    (["--storage", "not-a-url"], "must be a database URL"),
    (["--objective", "stochastic", "--eval-samples", "0"], "needs stochastic passes"),
    (["--val-split", "0"], "--val-split 0: a search compares its trials on held-out training images"),
    (["--storage", "sqlite://"], "an in-memory SQLite database lives in this process alone"),
])
def test_bad_input_is_refused_in_one_line_before_anything_starts(tmp_path, capsys, extra, message):
    out = tmp_path / "study"
    err = _one_line_and_nothing_started(capsys, ["tune", "--preset", PRESET, "--out", str(out), *extra], out)
    assert message in err
    assert not out.exists() or "--storage" not in extra  # a database that cannot be reached leaves no folder


@pytest.mark.parametrize("extra, message", [
    (["--storage", "postgres://nobody:topsecret@127.0.0.1:9/none"], "cannot reach the database"),  # the common spelling
    (["--storage", "foo://x"], "unknown database 'foo'"),
    (["--storage", "postgresql://u:topsecret@h:port/db"], "its port is not a number"),
    pytest.param(["--storage", "mysql://u:topsecret@127.0.0.1/db"], "pip install PyMySQL",
                 marks=pytest.mark.skipif(bool(importlib.util.find_spec("MySQLdb")), reason="MySQLdb is installed")),
    (["--study", ""], "--study must name the study"),
    (["--study", "s" * 600], "at most 512 characters"),
    (["--heartbeat", "10", "--grace", "5"], "at least twice --heartbeat"),
    (["--device", "tpu"], "--device: device must be"),
    (["--data-dir", "no-such-folder"], "--data-dir no-such-folder: no such folder"),
    pytest.param(["--gpus", "0"], "on the CPU, give --workers N",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible here")),
    (["--preset", "short/cpu-20-w1-resnet"], "the space searches nothing for preset short/cpu-20-w1-resnet"),
    (["--out", "/proc/swapout-study"], "--out /proc/swapout-study: /proc cannot be written|cannot be written"),
])
def test_bad_input_names_what_is_wrong_and_leaves_nothing_behind(tmp_path, capsys, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "study"
    err = _one_line_and_nothing_started(capsys, ["tune", "--preset", PRESET, "--out", str(out), *TINY, *extra], out)
    assert re.search(message, err) and "topsecret" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no folder, no database file, no lock


@pytest.mark.parametrize("extra, message", [
    (["--budget-minutes", "5"], "--budget-minutes belongs to the one-machine sweep"),
    (["--per-gpu", "2"], "--per-gpu belongs to the one-machine sweep"),
    (["--order", "longest-first"], "--order belongs to the one-machine sweep"),
    (["--storage", "postgresql://nobody@127.0.0.1:9/none"], "cannot reach the database"),
])
def test_a_campaign_refused_leaves_no_sweep_behind(tmp_path, capsys, extra, message):
    out = tmp_path / "sweep"
    argv = ["sweep", "--out", str(out), "--presets", PRESET, "--device", "cpu", *extra]
    if "--storage" not in extra:
        argv += ["--storage", "postgresql://nobody@127.0.0.1:9/none"]
    err = _one_line_and_nothing_started(capsys, argv, out)
    assert message in err and not out.exists()


def test_a_method_choice_over_a_preset_with_both_thetas_draws_valid_configs(tmp_path):
    (tmp_path / "space.json").write_text(json.dumps({"method": ["swapout", "stochastic_depth"],
                                                     "theta2": {"schedules": ["linear"], "low": 0.5, "high": 1}}))
    study, storage, plan = _search(_args(tmp_path, "--trials", "6", "--space", str(tmp_path / "space.json")))
    worker, methods = Worker(study, storage, plan, 1), set()
    for _ in range(6):
        trial, job = worker._claim()  # a config that cannot be trained would raise here
        methods.add(job.cfg.method)
        assert job.cfg.theta1 is None if job.cfg.method == "stochastic_depth" else job.cfg.theta1 is not None
        study.tell(trial, 50.0)
    assert methods == {"swapout", "stochastic_depth"}


@pytest.mark.parametrize("text, message", [("", "the file is empty"), ("{\"theta1\": [0.5", "--space .*space.json")])
def test_empty_or_malformed_space_files_are_refused(tmp_path, capsys, text, message):
    (tmp_path / "space.json").write_text(text)
    out = tmp_path / "study"
    err = _one_line_and_nothing_started(capsys, ["tune", "--preset", PRESET, "--out", str(out), "--space",
                                                 str(tmp_path / "space.json")], out)
    assert re.search(message, err) and not out.exists()


def test_an_existing_study_of_another_preset_or_space_is_refused(tmp_path, capsys):
    out = tmp_path / "study"
    study, storage, _ = _search(_args(tmp_path, "--study", "s"))  # a study of PRESET, the default space, TINY
    (tmp_path / "s.json").write_text(json.dumps({"theta2": {"low": 0.7, "high": 1}}))
    for extra, differs in ((["--space", str(tmp_path / "s.json"), *TINY], "space.theta2.low: study 0.5, given 0.7"),
                           (["--preset", "table2/linear-1-0.5", *TINY], "preset:"),
                           ([*TINY, "--lr", "0.05"], "config.lr: study 0.1, given 0.05")):
        argv = ["tune", "--preset", PRESET, "--out", str(out), "--study", "s", *extra]
        err = _one_line_and_nothing_started(capsys, argv, out)
        assert "is another search" in err and differs in err
    assert len(err) < 250  # a one-field difference names that field, not two whole configs
    err = _one_line_and_nothing_started(capsys, ["tune", "--preset", PRESET, "--out", str(out), "--study", "s", *TINY,
                                                 "--trials", "32"], out)
    assert "made for --trials 16" in err and "fixed when it is made" in err
    open_study(storage, "campaign", {"kind": "sweep", "definition": {"runs": []}})
    other = tmp_path / "other"
    err = _one_line_and_nothing_started(capsys, ["tune", "--preset", PRESET, "--out", str(other), "--storage",
                                                 f"sqlite:///{out / 'study.db'}", "--study", "campaign", *TINY], other)
    assert "is a campaign (swapout sweep --storage), not a search (swapout tune)" in err and not other.exists()
    err = _one_line_and_nothing_started(capsys, ["tune", "--preset", PRESET, "--out", str(out), *TINY], out)
    assert "holds the runs of study 's'" in err  # another study in the same folder
    mark = out / "study.json"
    for text in ("[1]", "{}"):  # a damaged record of the folder's study
        mark.write_text(text)
        err = _one_line_and_nothing_started(capsys, ["tune", "--preset", PRESET, "--out", str(out), *TINY], out)
        assert "study.json: not a study's record" in err
    assert len(study.trials) == 0


@needs_data
def test_sigterm_puts_the_trial_back_and_the_same_command_resumes_it(tmp_path):
    argv = [sys.executable, "-m", "swapout.cli", "tune", "--preset", PRESET, "--out", str(tmp_path / "study"),
            "--trials", "1", "--epochs", "1", "--max-steps", "12", "--checkpoint-every", "2", "--heartbeat", "1",
            "--pruner", "none", *TINY]
    worker = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    checkpoint = tmp_path / "study" / "trial-0000" / "checkpoint.pt"
    seen = []
    for line in worker.stdout:  # the hardest moment: the trial has started, the training's handlers are not in place
        seen.append(line)
        if "trial 0 start" in line:
            worker.send_signal(signal.SIGTERM)
            break
    out = "".join(seen) + worker.communicate(timeout=120)[0]
    assert worker.returncode == 0, out
    assert "stopped by SIGTERM: trial 0 is checkpointed" in out
    assert "back in the queue. Rejoin with: swapout tune" in out
    study = optuna.load_study(study_name=f"tune-{PRESET.replace('/', '-')}",
                              storage=storage_url(None, tmp_path / "study"))
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.WAITING]  # neither failed nor retried
    step = read_checkpoint(checkpoint)["state"]["global_step"]
    assert 1 <= step < 12

    again = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert [t.state for t in optuna.load_study(study_name=study.study_name, storage=storage_url(
        None, tmp_path / "study")).trials] == [optuna.trial.TrialState.COMPLETE]
    assert f"at epoch 1, step {step} of" in (checkpoint.parent / "train.log").read_text()  # resumed, not restarted
    summary = json.loads((tmp_path / "study" / "summary.json").read_text())
    assert summary["best"]["trial"] == 0 and summary["best"]["test"]["images"] == 50
    best = json.loads((tmp_path / "study" / "best-config.json").read_text())
    assert best["preset"] == PRESET and best["epochs"] == 15  # the preset's recipe with the best joins
    assert {best["theta1"], best["theta2"]} == {summary["best"]["joins"]["theta1"], summary["best"]["joins"]["theta2"]}
    args = build_parser().parse_args(["train", "--config-json", str(tmp_path / "study" / "best-config.json")])
    assert train_config(args).to_dict() == TrainConfig.from_dict(best).to_dict()  # the file trains as it stands
    for name in ("history.png", "thetas.png", "summary.md"):
        assert (tmp_path / "study" / name).stat().st_size > 0


def test_the_rejoin_command_is_the_one_given_without_its_password(monkeypatch):
    from swapout.cli.tune import _REJOIN, _rejoin, _without

    monkeypatch.delenv(_REJOIN, raising=False)
    argv = ["tune", "--preset", PRESET, "--workers", "2", "--gpus=0,1", "--storage", "postgresql://u:hunter2@h/db"]
    args = build_parser().parse_args(argv)
    args.argv = argv
    assert _rejoin(args) == (f"swapout tune --preset {PRESET} --workers 2 --gpus=0,1 --storage "
                             f"'postgresql://u:***@h/db'")
    # the workers that a --workers N command starts: one worker each, and the parent's command to rejoin
    assert _without(argv, "--gpus", "--workers") == ["tune", "--preset", PRESET, "--storage", argv[-1]]
    monkeypatch.setenv(_REJOIN, _rejoin(args))
    args.argv = [*_without(argv, "--gpus", "--workers"), "--workers", "1"]
    assert _rejoin(args).startswith(f"swapout tune --preset {PRESET} --workers 2 ")


@needs_data
def test_ctrl_c_while_the_workers_of_workers_n_start_stops_them_cleanly(tmp_path):
    import os

    argv = [sys.executable, "-m", "swapout.cli", "tune", "--preset", PRESET, "--out", str(tmp_path / "study"),
            "--workers", "2", "--trials", "2", "--epochs", "1", "--max-steps", "4", "--heartbeat", "1", *TINY]
    group = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
    seen = []
    for line in group.stdout:
        seen.append(line)
        if line.startswith("study "):  # printed just before the workers start: they are importing now
            time.sleep(0.5)
            os.killpg(group.pid, signal.SIGINT)  # Ctrl-C at a terminal reaches the whole group
            break
    out = "".join(seen) + group.communicate(timeout=120)[0]
    assert group.returncode == 0 and "Traceback" not in out, out
    assert "SIGINT: passed on to this machine's workers, which stopped. Rejoin with: swapout tune" in out
    study = optuna.load_study(study_name=f"tune-{PRESET.replace('/', '-')}",
                              storage=storage_url(None, tmp_path / "study"))
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
