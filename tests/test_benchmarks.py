"""The benchmarks' harness: processes side by side end together when one fails or time runs out."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"

# side_by_side starts its processes with "spawn": their worker must come from a module they can import
WORKERS = '''
import os
import time


def _note(rank, folder):
    with open(os.path.join(folder, f"{rank}.pid"), "w") as f:
        f.write(str(os.getpid()))


def dies(rank, folder, barrier, results):
    _note(rank, folder)
    if rank == 1:
        os._exit(3)  # before the barrier, where the others wait for it
    barrier.wait()
    results[rank] = 1.0


def hangs(rank, folder, barrier, results):
    _note(rank, folder)
    time.sleep(3600)
'''

DRIVER = '''
import os
import sys

sys.path[:0] = [sys.argv[1], sys.argv[2]]
from bench_train_gpu import side_by_side
import side_by_side_workers as workers

folder = sys.argv[4]
try:
    side_by_side(3, getattr(workers, sys.argv[3]), folder, timeout=float(sys.argv[5]))
    print("no error")
except RuntimeError as err:
    print("error:", err)
for name in sorted(os.listdir(folder)):
    pid = int(open(os.path.join(folder, name)).read())
    try:
        os.kill(pid, 0)
        print("still running:", pid)
    except ProcessLookupError:
        pass
'''


def _side_by_side(tmp_path, worker, timeout):
    """Run side_by_side(3, worker) in a process of its own, which a hang cannot take the tests down with."""
    (tmp_path / "side_by_side_workers.py").write_text(WORKERS)
    pids = tmp_path / "pids"
    pids.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(BENCHMARKS), str(tmp_path), worker, str(pids),
                             str(timeout)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the processes it started
        proc.communicate()
        pytest.fail(f"side_by_side({worker}) did not return")
    assert proc.returncode == 0, err[-3000:]
    return out


def test_a_process_that_dies_ends_the_others(tmp_path):
    out = _side_by_side(tmp_path, "dies", timeout=600)
    assert "error: 1 of 3 concurrent processes failed (process 1 exit code 3); 2 other(s) were ended" in out, out
    assert "still running" not in out, out


def test_processes_that_do_not_finish_in_time_are_ended(tmp_path):
    out = _side_by_side(tmp_path, "hangs", timeout=3)
    assert "error: 3 of 3 concurrent processes had not finished after 3 s; they were ended" in out, out
    assert "still running" not in out, out
