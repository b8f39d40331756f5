"""Training on real CIFAR-10, resuming, and the command line's handling of bad input (runs interrupted and
resumed exactly: test_faults.py)."""

import json

import pytest

from swapout.cli.main import main
from swapout.runs.config import TrainConfig
from swapout.runs.rundir import CheckpointError, RunDir, read_checkpoint, write_checkpoint
from swapout.training.train import train

needs_data = pytest.mark.needs_data  # skipped without CIFAR-10: see the conftest.py at the top

# A small, fast run: 1,000 training images (the rest held out), 31 steps of 32 per epoch.
TINY = ["--depth", "8", "--val-split", "49000", "--batch-size", "32", "--epochs", "4", "--checkpoint-every", "4",
        "--eval-samples", "2", "--eval-limit", "100", "--seed", "1", "--quiet"]


@needs_data
def test_few_hundred_steps_learn_real_cifar10(tmp_path):
    # 300 steps of 32 images (9,600 images, 0.2 epochs) of the 8-layer Swapout v2 W x 1, Linear(1, 0.5):
    # the whole recipe (data, crops and flips, masks, SGD, BatchNorm statistics) on a network small enough
    # to train in seconds. Held out: the last 1,000 training images; the test split is not needed.
    # Chance is 10%: the number right out of 1,000 is then Binomial(1000, 0.1), mean 100, standard
    # deviation 9.5; the 20% threshold (200 right) is 10.5 standard deviations above it, so no untrained
    # or broken model passes by luck. (Measured over seeds 0-3: 32-41% accuracy with deterministic
    # inference and 32-40% with 2 stochastic passes.)
    cfg = TrainConfig(depth=8, width=1, theta1="linear(1,0.5)", theta2="linear(1,0.5)", batch_size=32,
                      max_steps=300, val_split=1000, eval_samples=2, device="cpu")
    results = train(cfg, tmp_path / "run", progress=False, log=lambda s: None, test=False)
    val = results["splits"]["val"]
    assert val["images"] == 1000 and "test" not in results["splits"]
    assert 100 - val["stochastic_error"] > 20, val
    assert 100 - val["deterministic_error"] > 20, val
    assert results["steps"] == 300


def _run_main(args, capsys):
    code = main(args)
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize("args,message", [
    (["--preset", "table9/nothing"], "unknown preset"),
    (["--model", "vgg16"], "unknown model"),
    (["--theta1", "linear(1,x)"], "theta1"),
    (["--theta2", "1.5"], "theta2"),
    (["--depth", "21"], "6n\\+2"),
    (["--epochs", "0"], "epochs must be a positive integer"),
    (["--method", "magic"], "method must be one of"),
    (["--dataset", "mnist"], "dataset must be one of"),
    (["--crop", "random"], "crop must be one of"),
    (["--device", "cpu:7"], "device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'cpu:7'"),
])
def test_bad_config_is_one_line_exit_2_and_writes_nothing(args, message, tmp_path, capsys):
    out = tmp_path / "run"
    code, err = _run_main(["train", *args, "--out", str(out)], capsys)
    assert code == 2 and "\n" not in err and "error" in err
    assert __import__("re").search(message, err), err
    assert not out.exists()


def test_unknown_field_and_bad_value_on_the_command_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--colour", "red"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unrecognized arguments: --colour red" in err
    assert err.startswith("swapout train: error:") and err.endswith("(see 'swapout train --help')")  # its command's
    with pytest.raises(SystemExit):
        main(["--colour", "train"])  # before the command: the program's own
    assert capsys.readouterr().err.startswith("swapout: error: unrecognized arguments: --colour ")
    with pytest.raises(SystemExit):
        main(["train", "--epochs", "many"])
    assert "invalid int value" in capsys.readouterr().err


def test_unknown_field_in_a_config_is_refused():
    with pytest.raises(ValueError, match="unknown config field colour"):
        TrainConfig.from_dict({"colour": "red"})


def test_missing_or_corrupt_data(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "cifar10-train.npz").write_bytes(b"not an archive")
    code, err = _run_main(["train", "--data-dir", str(empty), "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and "cifar10-train" in err and "\n" not in err
    assert not (tmp_path / "run").exists()
    (tmp_path / "dirs" / "cifar-10-batches-py" / "data_batch_1").mkdir(parents=True)  # a folder where a file goes
    code, err = _run_main(["train", "--data-dir", str(tmp_path / "dirs"), "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and "data_batch_1: cannot be read as a file (Is a directory)" in err and "\n" not in err


@needs_data
def test_unwritable_output_directory(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, err = _run_main(["train", *TINY, "--out", str(blocker / "run")], capsys)
    assert code == 2 and "cannot write the run directory" in err
    code, err = _run_main(["train", *TINY, "--out", str(blocker)], capsys)
    assert code == 2 and f"cannot write the run directory {blocker}: it is a file" in err


@needs_data
def test_a_batch_larger_than_the_training_images_leaves_no_folder(tmp_path, capsys):
    # TINY trains on 1,000 images: a batch of 1,001 is refused when the loader sees the data, and the run's
    # folder (and its parent) must not be left behind empty
    out = tmp_path / "parent" / "run"
    code, err = _run_main(["train", *TINY, "--batch-size", "1001", "--out", str(out)], capsys)
    assert code == 2 and "number of training images (1000), got 1001" in err and "\n" not in err
    assert not (tmp_path / "parent").exists()


@needs_data
def test_ctrl_c_in_the_final_evaluation_says_the_training_is_kept_and_resume_evaluates(tmp_path, monkeypatch):
    from swapout.training.loop import Training

    def interrupted(self, g):
        raise KeyboardInterrupt

    run, lines = tmp_path / "run", []
    cfg = TrainConfig(depth=8, val_split=49000, batch_size=32, max_steps=2, eval_samples=1, eval_limit=20, device="cpu")
    with monkeypatch.context() as patch:
        patch.setattr(Training, "_final_evaluation", interrupted)
        with pytest.raises(KeyboardInterrupt):
            train(cfg, run, progress=False, log=lines.append)
    assert lines[-1] == (f"interrupted in the final evaluation: the training is done and its checkpoint written; "
                         f"to evaluate it: swapout train --resume {run}")
    assert not (run / "results.json").exists()
    results = train(cfg, run, resume=True, progress=False, log=lines.append)
    assert results["steps"] == 2 and results["splits"]["test"]["images"] == 20


@needs_data
def test_a_run_killed_before_its_first_checkpoint_is_trained_again_by_resume(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--max-steps", "3", "--out", str(run)]) == 0
    for name in ("checkpoint.pt", "checkpoint.prev.pt", "results.json"):  # as a kill in the first steps leaves it
        (run / name).unlink(missing_ok=True)
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert f"{run} stopped before its first checkpoint, so nothing of it was kept; training it again" in err
    assert json.loads((run / "results.json").read_text())["steps"] == 3
    assert len(RunDir(run).read_metrics()) == 1  # the first attempt's metrics are not kept beside the new ones
    # extended by two steps: its config then says where it ends
    assert main(["train", "--resume", str(run), "--max-steps", "5", "--quiet"]) == 0
    assert json.loads((run / "results.json").read_text())["steps"] == 5
    assert RunDir(run).read_config()["max_steps"] == 5
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--re-evaluate", "--quiet"]) == 0
    assert f"{run}: its training is done (5 steps); evaluating it" in capsys.readouterr().err


@needs_data
def test_resume_with_a_different_config_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--max-steps", "3", "--out", str(run)]) == 0
    capsys.readouterr()
    before = sorted(p.name for p in run.iterdir())
    code, err = _run_main(["train", "--resume", str(run), "--epochs", "9"], capsys)
    assert code == 2 and "epochs (run: 4, given: 9)" in err and "\n" not in err
    assert sorted(p.name for p in run.iterdir()) == before
    code, err = _run_main(["train", *TINY, "--out", str(run)], capsys)
    assert code == 2 and "already holds a run" in err
    # a damaged metrics.jsonl is named before any step is trained
    metrics = (run / "metrics.jsonl").read_text()
    (run / "metrics.jsonl").write_text(metrics + "garbage\n")
    code, err = _run_main(["train", "--resume", str(run), "--max-steps", "6"], capsys)
    assert code == 2 and "metrics.jsonl, line 2: not JSON" in err and "\n" not in err
    assert read_checkpoint(run / "checkpoint.pt")["state"]["global_step"] == 3
    (run / "metrics.jsonl").write_text(metrics)
    # a finished run's final weights alone cannot be trained on; what holds no weights is no checkpoint
    state = read_checkpoint(run / "checkpoint.pt")
    write_checkpoint({k: state[k] for k in ("model", "config")}, run / "checkpoint.pt")
    code, err = _run_main(["train", "--resume", str(run), "--max-steps", "6"], capsys)
    assert code == 2 and "holds final weights only" in err and "\n" not in err
    write_checkpoint({"config": state["config"]}, run / "other.pt")
    with pytest.raises(CheckpointError, match="other.pt: not a swapout checkpoint"):
        read_checkpoint(run / "other.pt")


@needs_data
def test_eval_writes_both_errors_and_figure_2_and_report_marks_the_run(tmp_path, capsys):
    from PIL import Image

    run = tmp_path / "run"
    assert main(["train", *TINY, "--max-steps", "20", "--out", str(run)]) == 0
    table = capsys.readouterr().out
    assert "| test |" in table and "of 256 epochs" in table and "9,980 exact test images" in table
    assert main(["eval", str(run), "--samples", "3", "--repeats", "2", "--limit", "60", "--quiet"]) == 0
    result = json.loads((run / "eval-test.json").read_text())
    assert result["images"] == 60 and result["samples"] == 3
    curve = json.loads((run / "figure2-test.json").read_text())
    assert curve["samples"] == [1, 2, 3] and len(curve["standard_error"]) == 3 and curve["repeats"] == 2
    with Image.open(run / "figure2-test.png") as png:  # drawn by matplotlib, 6.4 x 4.2 inches at 100 dpi
        assert png.size == (640, 420) and png.info.get("Software", "").startswith("Matplotlib")
    capsys.readouterr()
    assert main(["report", str(run)]) == 0
    assert "test (swapout eval)" in capsys.readouterr().out
    assert main(["eval", str(run), "--split", "val", "--samples", "0"]) == 2


@needs_data
def test_a_preset_run_resumes_with_or_without_its_preset(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--preset", "short/quickstart", *TINY, "--max-steps", "3", "--out", str(run)]) == 0
    before = read_checkpoint(run / "checkpoint.pt")["state"]["global_step"]
    rows = RunDir(run).read_metrics()
    for extra in ([], ["--preset", "short/quickstart"]):
        capsys.readouterr()
        assert main(["train", "--resume", str(run), *extra, "--quiet"]) == 0, capsys.readouterr().err
    # already at --max-steps: resuming trains no further
    assert read_checkpoint(run / "checkpoint.pt")["state"]["global_step"] == before == 3
    assert RunDir(run).read_metrics() == rows and len(rows) == 1  # the partial epoch's row is kept
    code, err = _run_main(["train", "--resume", str(run), "--preset", "short/cpu-20-w1-resnet"], capsys)
    assert code == 2 and "preset (run: 'short/quickstart', given: 'short/cpu-20-w1-resnet')" in err
