"""``python -m swapout.cli ...``, as torchrun needs it."""

from .main import run_process

run_process()
