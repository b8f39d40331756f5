"""Fault handling: SIGKILL or SIGTERM then resume, truncated checkpoints, a non-finite loss."""

import json
import os
import random
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from swapout.runs.config import TrainConfig
from swapout.runs.rundir import CheckpointError, RunDir, read_checkpoint
from swapout.training.train import TrainingStopped, train

needs_data = pytest.mark.needs_data  # skipped without CIFAR-10: see the conftest.py at the top

# 500 training images (the rest held out) in batches of 16: 31 steps per epoch, which the steps named below
# count on, at half the cost of batches of 32. Three epochs: an interruption in the second is followed by an
# epoch end and, in the third, the first drop of the learning rate (milestones 2 and 3 for 3 epochs).
TINY = dict(depth=8, val_split=49500, batch_size=16, epochs=3, checkpoint_every=4, eval_samples=2, eval_limit=100,
            seed=1, device="cpu")
TINY_ARGS = [a for k, v in TINY.items() for a in (f"--{k.replace('_', '-')}", str(v))] + ["--quiet"]


def _cli(args):
    # One thread per run: at this size more threads only add synchronisation, the uninterrupted run trains beside
    # an interrupted one, and runs compared bit for bit must all have the same number of threads.
    return subprocess.Popen([sys.executable, "-m", "swapout.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _signal_when(proc, run: Path, step: int, sig) -> dict:
    """Send ``sig`` once a checkpoint at or past ``step`` exists; returns that checkpoint's state."""
    deadline = time.time() + 600
    while proc.poll() is None and time.time() < deadline:
        try:
            state = read_checkpoint(run / "checkpoint.pt")["state"]
        except (CheckpointError, FileNotFoundError):
            state = None
        if state and state["global_step"] >= step:
            proc.send_signal(sig)
            return state
        time.sleep(0.01)
    raise AssertionError("the run ended before the signal could be sent")


@pytest.fixture(scope="module")
def whole_run_started(tmp_path_factory):
    """The uninterrupted run that every interrupted one must equal, started once for the module: it trains beside
    the first test that needs it. Call it for the run's directory once it has finished."""
    run = tmp_path_factory.mktemp("whole") / "run"
    proc = _cli(["train", *TINY_ARGS, "--out", str(run)])

    def finished() -> Path:
        assert proc.wait(timeout=600) == 0, proc.stderr.read()
        return run

    yield finished
    if proc.poll() is None:  # no test waited for it
        proc.kill()
        proc.wait()


@pytest.fixture
def whole_run(whole_run_started) -> Path:
    return whole_run_started()


def _same_run(a: Path, b: Path) -> None:
    strip = lambda rows: [{k: v for k, v in r.items() if k != "train_time_s"} for r in rows]  # noqa: E731
    assert strip(RunDir(a).read_metrics()) == strip(RunDir(b).read_metrics())
    assert len(RunDir(a).read_metrics()) == TINY["epochs"]
    splits = [json.loads((run / "results.json").read_text())["splits"] for run in (a, b)]
    assert splits[0] == splits[1]
    ca, cb = read_checkpoint(a / "checkpoint.pt"), read_checkpoint(b / "checkpoint.pt")
    assert ca["state"]["global_step"] == cb["state"]["global_step"] == 31 * TINY["epochs"]
    wa, wb = ca["model"], cb["model"]
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@needs_data
def test_sigterm_mid_epoch_checkpoints_exits_0_and_resume_equals_uninterrupted(whole_run_started, tmp_path):
    run = tmp_path / "run"
    proc = _cli(["train", *TINY_ARGS, "--out", str(run)])
    # the first checkpoint of the second epoch (31 steps each) is at step 32: the signal has 29 steps to land
    # before the epoch ends
    _signal_when(proc, run, 32, signal.SIGTERM)
    assert proc.wait(timeout=120) == 0
    err = proc.stderr.read()
    assert "stopped by SIGTERM" in err and f"swapout train --resume {run}" in err
    state = read_checkpoint(run / "checkpoint.pt")["state"]
    assert 0 < state["step"] < 31 and not (run / "results.json").exists()  # mid-epoch
    resumed = _cli(["train", "--resume", str(run), "--quiet"])
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()
    _same_run(whole_run_started(), run)


@needs_data
def test_killed_mid_epoch_then_resumed_equals_uninterrupted(whole_run_started, tmp_path):
    # SIGKILL leaves no chance to checkpoint: the run resumes from the last periodic one (every 4 steps)
    run = tmp_path / "killed"
    proc = _cli(["train", *TINY_ARGS, "--out", str(run)])
    _signal_when(proc, run, 32, signal.SIGKILL)  # in the second epoch, as above
    assert proc.wait(timeout=120) == -signal.SIGKILL
    assert not (run / "results.json").exists()
    resumed = _cli(["train", "--resume", str(run), "--quiet"])
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()
    _same_run(whole_run_started(), run)


@needs_data
def test_checkpoint_truncated_at_random_bytes_falls_back_to_the_previous_one(whole_run, tmp_path):
    import shutil

    rng = random.Random(0)
    previous = read_checkpoint(whole_run / "checkpoint.prev.pt")
    size = (whole_run / "checkpoint.pt").stat().st_size
    for cut in [0, 10, size - 1] + [rng.randrange(size) for _ in range(7)]:
        run = tmp_path / f"cut{cut}"
        shutil.copytree(whole_run, run)
        with open(run / "checkpoint.pt", "r+b") as fh:
            fh.truncate(cut)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            state = RunDir(run).load_checkpoint()
        assert len(caught) == 1 and "using the previous checkpoint checkpoint.prev.pt" in str(caught[0].message)
        assert state["state"] == previous["state"]
    # with both damaged, a clear error instead of a crash
    with open(run / "checkpoint.prev.pt", "r+b") as fh:
        fh.truncate(100)
    with pytest.raises(CheckpointError, match="truncated"):
        RunDir(run).load_checkpoint()


@needs_data
def test_corrupt_checkpoint_is_reported_when_resuming(whole_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(whole_run, run)
    (run / "results.json").unlink()
    raw = bytearray((run / "checkpoint.pt").read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one flipped byte
    (run / "checkpoint.pt").write_bytes(bytes(raw))
    proc = _cli(["train", "--resume", str(run), "--quiet"])
    assert proc.wait(timeout=600) == 0
    assert "truncated or corrupt" in proc.stderr.read() and (run / "results.json").exists()


def _poison_loss(monkeypatch, at_call: int) -> dict:
    """Make the training loss NaN at its ``at_call``-th computation; returns the call counter."""
    import swapout.training.step as step_module

    calls = {"n": 0}
    real = step_module.F.cross_entropy

    def poisoned(logits, target):
        calls["n"] += 1
        loss = real(logits, target)
        return loss * float("nan") if calls["n"] == at_call else loss

    monkeypatch.setattr(step_module.F, "cross_entropy", poisoned)
    return calls


@needs_data
def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    _poison_loss(monkeypatch, at_call=42)
    run = tmp_path / "run"
    with pytest.raises(TrainingStopped, match=r"the loss became non-finite at epoch 2, step 11; training stopped"):
        train(TrainConfig(**TINY), run, progress=False, log=lambda s: None)
    state = RunDir(run).load_checkpoint()  # intact, and from before the bad step
    assert state["state"]["global_step"] == 40
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert not (run / "results.json").exists()


def test_checkpoint_that_would_run_code_is_refused(tmp_path):
    # A file in the checkpoint format, with a valid checksum, whose pickle calls a function on load.
    # Loading it with pickle's full powers (torch.load(weights_only=False)) would create the marker file.
    import hashlib
    import io

    from swapout.runs import rundir

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    buffer = io.BytesIO()
    torch.save({"model": {}, "evil": Payload()}, buffer, pickle_protocol=2)
    payload = buffer.getvalue()
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(rundir._MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)
    with pytest.raises(CheckpointError, match="refused to load"):
        read_checkpoint(path)
    assert not marker.exists()
    # and through the command line: one line, exit 2, nothing created
    proc = subprocess.run([sys.executable, "-m", "swapout.cli", "eval", str(path)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "refused to load" in proc.stderr and not marker.exists()


@needs_data
def test_a_non_finite_loss_found_at_a_later_read_leaves_no_later_checkpoint(tmp_path, monkeypatch):
    # As on a GPU, the loop reads the device every few steps (here 7) and at epoch ends (31 steps);
    # checkpoints only at epoch ends. The 40th step's loss is NaN: the read after step 42 finds it,
    # names step 40, and the only checkpoint is the epoch end at step 31.
    import swapout.training.loop as train_module

    calls = _poison_loss(monkeypatch, at_call=40)
    monkeypatch.setattr(train_module, "READ_EVERY", {"cpu": 7})
    run = tmp_path / "run"
    with pytest.raises(TrainingStopped, match=r"non-finite at epoch 2, step 9; training stopped"):
        train(TrainConfig(**{**TINY, "checkpoint_every": 0}), run, progress=False, log=lambda s: None)
    assert calls["n"] == 42  # found at the read after step 42, not at once
    state = RunDir(run).load_checkpoint()
    assert state["state"]["global_step"] == 31 and not (run / "checkpoint.prev.pt").exists()
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
