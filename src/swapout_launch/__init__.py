"""The ``swapout`` command's entry point. It lives outside the package so that it runs before the package's
imports: a Ctrl-C while PyTorch and the rest load (a few seconds) ends the command in one line once they
have loaded, instead of a traceback, or of nothing at all when a library's import swallows the interrupt."""

import signal
import sys
from typing import List


def main() -> int:
    """Import the command line and run it as the whole process (``swapout.cli.main.run_process``, which ends
    the process with the command's status); 130 with one line on stderr if interrupted while importing."""
    received: List[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        from swapout.cli.main import run_process
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        if received:
            raise KeyboardInterrupt
        run_process()  # a command reports its own interruption; this covers reading the command line
    except KeyboardInterrupt:
        print("swapout: interrupted while starting; nothing was done", file=sys.stderr)
        return 130
