"""A one-line progress bar on standard error: done/total, speed, time left, and any figures given."""

from __future__ import annotations

import sys
import time
from typing import Optional


class Progress:
    """``Progress(total, "epoch 3/256")``; call ``update(n, loss=..., acc=...)``, then ``close()``.

    Redraws at most ``rate`` times a second on a terminal; elsewhere (a log file) writes a line at
    every tenth of the way.
    """

    def __init__(self, total: int, label: str = "", unit: str = "img", rate: float = 4.0, stream=None,
                 enabled: bool = True):
        self.total, self.label, self.unit = total, label, unit
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.done, self.start, self.last, self.interval = 0, time.time(), 0.0, 1.0 / rate
        self.next_tenth = 1
        self.figures = ""

    def update(self, n: int, **figures: float) -> None:
        self.done += n
        if figures:
            self.figures = "  ".join(f"{k} {v:.4g}" for k, v in figures.items())
        if not self.enabled:
            return
        now = time.time()
        if self.tty and now - self.last >= self.interval:
            self.last = now
            self.stream.write("\r" + self.line(now) + "\x1b[K")
            self.stream.flush()
        elif not self.tty and self.total and self.done * 10 >= self.next_tenth * self.total:
            self.next_tenth = self.done * 10 // self.total + 1
            self.stream.write(self.line(now) + "\n")
            self.stream.flush()

    def line(self, now: Optional[float] = None) -> str:
        elapsed = max((now or time.time()) - self.start, 1e-9)
        speed = self.done / elapsed
        left = (self.total - self.done) / speed if speed > 0 and self.total else 0.0
        share = f"{self.done}/{self.total}" if self.total else str(self.done)
        return (f"{self.label} {share} {self.unit}  {speed:,.0f} {self.unit}/s  {_clock(elapsed)} elapsed, "
                f"{_clock(left)} left  {self.figures}").strip()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\r" + self.line() + "\x1b[K\n")
            self.stream.flush()


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"
