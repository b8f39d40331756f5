"""Progress of long work on standard error: a tqdm bar on a terminal, a line per tenth in a log file."""

from __future__ import annotations

import sys
import time
from typing import Dict, Optional, TextIO

from tqdm.auto import tqdm

__all__ = ["Progress", "plural"]


def plural(n: int, word: str) -> str:
    """``plural(1, "epoch")`` is "1 epoch", ``plural(30, "pass")`` is "30 passes"."""
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}{'es' if word.endswith('s') else 's'}"


class Progress:
    """``Progress(total, "epoch 3/256", initial=done)``; call ``update(n, loss=..., acc=...)``, then ``close()``.

    Args:
        total: units of work in all (images, say).
        label: what is being done, shown first.
        unit: name of one unit.
        initial: units already done before this bar started (a resumed epoch); they count towards the
            share done but not towards the speed or the time left.
        stream: where to write; standard error by default.
        enabled: False draws nothing.

    On a terminal the bar redraws in place; elsewhere (a log file) a line is written at every tenth of
    the way, so logs stay readable.
    """

    def __init__(self, total: int, label: str = "", unit: str = "img", initial: int = 0,
                 stream: Optional[TextIO] = None, enabled: bool = True):
        self.stream = stream or sys.stderr
        tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.log_lines = enabled and not tty
        self.total, self.label, self.unit, self.initial = total, label, unit, initial
        self.bar = tqdm(total=total, initial=initial, desc=label, unit=unit, unit_scale=True, file=self.stream,
                        disable=not tty, dynamic_ncols=True, smoothing=0.1)
        self.done, self.start = initial, time.time()
        self.figures: Dict[str, str] = {}
        self.next_tenth = initial * 10 // total + 1 if total else 1

    def update(self, n: int, **figures: float) -> None:
        """``n`` more units done; ``figures`` (loss, accuracy, ...) are shown beside the bar."""
        self.done += n
        if figures:
            self.figures = {k: f"{v:.4g}" for k, v in figures.items()}
            self.bar.set_postfix(self.figures, refresh=False)
        self.bar.update(n)
        if self.log_lines and self.total and self.done * 10 >= self.next_tenth * self.total:
            self.next_tenth = self.done * 10 // self.total + 1
            self.stream.write(self.line() + "\n")
            self.stream.flush()

    def line(self) -> str:
        """The bar as one line of plain text."""
        return tqdm.format_meter(self.done, self.total, time.time() - self.start, prefix=self.label, ascii=True,
                                 unit=self.unit, unit_scale=True, initial=self.initial, ncols=100,
                                 postfix=", ".join(f"{k}={v}" for k, v in self.figures.items()) or None)

    def close(self) -> None:
        self.bar.close()
