"""``swapout tune`` on one machine (SQLite): pruning at epoch ends, a search that never reads the test split,
one-line refusals that start nothing, preemption by SIGTERM, and the summary."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import optuna
import pytest

from swapout.cli.checks import train_config
from swapout.cli.main import build_parser, main
from swapout.cli.tune import _search
from swapout.data import files as data
from swapout.data.cifar import DataError
from swapout.runs.config import TrainConfig
from swapout.runs.rundir import read_checkpoint
from swapout.tuning.storage import storage_url
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
        argv = ["tune", "--preset", PRESET, "--out", str(tmp_path / name), "--trials", "2", "--epochs", "1",
                "--max-steps", "4", "--data-dir", str(folder), "--summary", "false", *TINY]
        assert main(argv) == 0
        study = optuna.load_study(study_name=f"tune-{PRESET.replace('/', '-')}",
                                  storage=storage_url(None, tmp_path / name))
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
])
def test_bad_input_is_refused_in_one_line_before_anything_starts(tmp_path, capsys, extra, message):
    out = tmp_path / "study"
    err = _one_line_and_nothing_started(capsys, ["tune", "--preset", PRESET, "--out", str(out), *extra], out)
    assert message in err
    assert not out.exists() or "--storage" not in extra  # a database that cannot be reached leaves no folder


@pytest.mark.parametrize("text, message", [("", "the file is empty"), ("{\"theta1\": [0.5", "--space .*space.json")])
def test_empty_or_malformed_space_files_are_refused(tmp_path, capsys, text, message):
    (tmp_path / "space.json").write_text(text)
    out = tmp_path / "study"
    err = _one_line_and_nothing_started(capsys, ["tune", "--preset", PRESET, "--out", str(out), "--space",
                                                 str(tmp_path / "space.json")], out)
    assert __import__("re").search(message, err) and not out.exists()


def test_an_existing_study_of_another_preset_or_space_is_refused(tmp_path, capsys):
    out = tmp_path / "study"
    study, _, _ = _search(_args(tmp_path, "--study", "s"))  # a study of PRESET with the default space and TINY
    (tmp_path / "s.json").write_text(json.dumps({"theta2": {"low": 0.7, "high": 1}}))
    for extra, differs in ((["--space", str(tmp_path / "s.json"), *TINY], "space"),
                           (["--preset", "table2/linear-1-0.5", *TINY], "preset"), ([], "config")):
        argv = ["tune", "--preset", PRESET, "--out", str(out), "--study", "s", *extra]
        err = _one_line_and_nothing_started(capsys, argv, out)
        assert "is another search" in err and f"{differs}:" in err
    err = _one_line_and_nothing_started(capsys, ["tune", "--preset", PRESET, "--out", str(out), *TINY], out)
    assert "holds the runs of study 's'" in err  # another study in the same folder
    assert len(study.trials) == 0


@needs_data
def test_sigterm_puts_the_trial_back_and_the_same_command_resumes_it(tmp_path):
    argv = [sys.executable, "-m", "swapout.cli", "tune", "--preset", PRESET, "--out", str(tmp_path / "study"),
            "--trials", "1", "--epochs", "1", "--max-steps", "12", "--checkpoint-every", "2", "--heartbeat", "1",
            "--pruner", "none", *TINY]
    worker = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    checkpoint = tmp_path / "study" / "trial-0000" / "checkpoint.pt"
    deadline = time.time() + 120
    while not checkpoint.exists() and worker.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    worker.send_signal(signal.SIGTERM)
    out = worker.communicate(timeout=120)[0]
    assert worker.returncode == 0, out
    assert "stopped by SIGTERM: trial 0 is checkpointed" in out
    assert "back in the queue. Rejoin with: swapout tune" in out
    study = optuna.load_study(study_name=f"tune-{PRESET.replace('/', '-')}",
                              storage=storage_url(None, tmp_path / "study"))
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.WAITING]  # neither failed nor retried
    step = read_checkpoint(checkpoint)["state"]["global_step"]
    assert 2 <= step < 12

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
