"""The ``swapout`` command line: ``train``, ``eval``, ``report``, ``sweep``, ``presets`` and ``demo``."""

from .main import main

__all__ = ["main"]
