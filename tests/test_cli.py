import subprocess
import sys


def test_demo_runs_and_reports_both_inference_modes():
    out = subprocess.run([sys.executable, "-m", "swapout.cli", "demo", "--steps", "1", "--batch", "8",
                          "--samples", "4"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "273,066" in out.stdout and "deterministic" in out.stdout and "stochastic (4 samples)" in out.stdout
