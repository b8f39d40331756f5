import os
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path

import pytest

from swapout.cli.main import main


def test_demo_runs_and_shows_both_inference_modes_meaningfully():
    out = subprocess.run([sys.executable, "-m", "swapout.cli", "demo", "--steps", "1", "--batch", "8",
                          "--samples", "4"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "273,066" in out.stdout and "stochastic (4 samples)" in out.stdout
    # no accuracy-like figure from an untrained net on random data (it read as a failure)
    assert "agreement" not in out.stdout
    assert "two passes equal: True" in out.stdout


def test_ctrl_c_while_the_command_starts_is_one_line_and_status_130():
    # the console script as pip installs it: a Ctrl-C half a second in arrives while PyTorch loads (a library's
    # import used to swallow it, or print a traceback), and a later one while the command works
    script = Path(sysconfig.get_path("scripts")) / "swapout"
    if not script.exists():
        pytest.skip("the swapout command is not installed beside this Python (pip install -e .)")
    for working in (False, True):
        proc = subprocess.Popen([str(script), "demo", "--steps", "100000"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        if working:  # once it trains
            watchdog = threading.Timer(120, proc.kill)  # a demo that never prints a step ends the test
            watchdog.start()
            while "training step" not in proc.stdout.readline():
                assert proc.poll() is None, proc.stderr.read()
            watchdog.cancel()
        else:
            time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 130 and "Traceback" not in err and err.count("\n") == 1, (working, err)
        assert "interrupted" in err


def test_train_help_lists_the_allowed_values(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for listed in ["one of resnet, swapout, dropout, residual_dropout, stochastic_depth, skipforward",
                   "one of batch, image", "one of unit, channel, sample, batch", "auto, cpu, cuda or cuda:N",
                   "one of preact_resnet, resnet_v1, resnet_v1_ours, resnet_v2_ours", "one of auto, fp32, bf16"]:
        assert listed in text, listed


def test_the_process_ends_with_the_commands_status_and_all_it_printed_even_under_a_profiler(tmp_path, capsys,
                                                                                           monkeypatch):
    # python -m swapout.cli skips the interpreter's teardown: the status, all that was printed into a pipe (a
    # help text stays in the buffer) and what a profiler writes at the very end must come through all the same
    monkeypatch.setenv("COLUMNS", "100")  # the help's width, here and in the processes below
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert 1000 < len(text) < 8000  # less than a pipe's buffer: written only when flushed
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    bad = subprocess.run([sys.executable, "-m", "swapout.cli", "train", "--preset", "nope"], capture_output=True,
                         text=True, timeout=120, env=env)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "unknown preset" in bad.stderr
    plain = subprocess.run([sys.executable, "-m", "swapout.cli", "train", "--help"], capture_output=True, text=True,
                           timeout=120, env=env)
    assert plain.returncode == 0 and plain.stdout == text and plain.stderr == ""
    profile = tmp_path / "help.prof"
    profiled = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "swapout.cli", "train",
                               "--help"], capture_output=True, text=True, timeout=120, env=env)
    assert profiled.stdout == text and profile.stat().st_size > 0
