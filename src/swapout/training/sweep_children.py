"""A sweep's children: each is a session of its own (Ctrl-C in a terminal reaches the sweep alone, which stops
them in order) that keeps the sweep's priority, and writes into its train.log by name."""

from __future__ import annotations

import atexit
import os
import threading
import time
from typing import Optional

__all__ = ["follow_log", "keep_priority"]


def follow_log(path: Optional[str], every_s: float = 1.0) -> None:
    """Keep this process's output going to the file named ``path``, even once that file is replaced.

    A child's stdout and stderr are its train.log, opened once. Anything that replaces the file under the
    same name while the run trains (restoring the directory from version control, a copy, a sync) would
    otherwise leave the run writing to a file that is no longer there, and its lines would be lost. A daemon
    thread checks the name every ``every_s`` seconds, and once more at exit, and points both descriptors (stderr
    only where it is the same file as stdout) at the file the name now holds. Output still in Python's buffers
    follows to the new file; only what reached the old one in the last ``every_s`` seconds stays there. While
    the name is missing the thread waits for it to come back (whatever replaces the file creates it), and the
    check at exit creates it. ``path`` None: nothing to follow.
    """
    try:
        first, second = os.fstat(1), os.fstat(2)
    except OSError:
        return
    if path is None:
        return
    fds = [1] + ([2] if _same_file(second, first) else [])

    def follow(create: bool) -> None:
        try:
            try:
                if _same_file(os.stat(path), os.fstat(1)):
                    return
            except FileNotFoundError:
                if not create:
                    return
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | (os.O_CREAT if create else 0), 0o644)
        except OSError:  # gone again, or its directory with it: nothing to follow for now
            return
        for target in fds:
            os.dup2(fd, target)
        os.close(fd)

    def loop() -> None:
        while True:
            time.sleep(every_s)
            follow(create=False)

    threading.Thread(target=loop, name="follow-train-log", daemon=True).start()
    atexit.register(follow, create=True)


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def keep_priority(pid: int) -> None:
    """Give child ``pid`` the sweep's own niceness where it counts. On Linux with autogroup scheduling, a new
    session is a scheduling group of its own, and the CPU is shared between groups whatever each process's
    niceness: a child of ``nice -n 19 swapout sweep`` would take as much as an interactive shell. The group's
    niceness (``/proc/PID/autogroup``) is what ranks it against the others."""
    niceness = os.nice(0)
    if niceness <= 0:
        return
    try:
        with open(f"/proc/{pid}/autogroup", "w") as fh:
            fh.write(str(niceness))
    except OSError:  # no autogroup (another OS, or a kernel without it): the process's niceness already counts
        pass
