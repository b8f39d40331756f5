"""Argument checks shared by the op, the layers, the schedules and the models.

Each returns the checked value or raises a ``ValueError`` that names the argument, what it got, and
what is allowed.
"""

from __future__ import annotations

import numbers
from typing import Any, Sequence, Tuple

__all__ = ["GRANULARITIES", "PRECISIONS", "check_theta", "check_thetas", "check_generator", "check_granularity",
           "check_positive_int"]

GRANULARITIES = ("unit", "channel", "sample", "batch")
PRECISIONS = ("fp32", "bf16")


def check_theta(theta: float, name: str = "theta") -> float:
    """Return ``theta`` as a float after checking that it is a keep probability in [0, 1]."""
    # numbers.Real: Python's int and float, and NumPy's scalars (np.float32(0.5), np.int64(1)) too
    if isinstance(theta, bool) or not isinstance(theta, numbers.Real):
        raise ValueError(f"{name} must be a number in [0, 1], got {theta!r}")
    theta = float(theta)
    if not 0.0 <= theta <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be a keep probability in [0, 1], got {theta}")
    return theta


def check_thetas(thetas: Sequence[float], what: str = "thetas") -> Tuple[float, ...]:
    """Return ``thetas``, a non-empty sequence of keep probabilities (a list, a tuple, a 1-d NumPy array...), as
    a tuple of floats after checking each; ``what`` names the argument in the message."""
    if isinstance(thetas, (str, bytes, numbers.Number)) or not hasattr(thetas, "__len__") or \
            not hasattr(thetas, "__iter__"):
        raise ValueError(f"{what} must be a list or tuple of numbers in [0, 1], got {_kind(thetas)}")
    thetas = [t.item() if hasattr(t, "item") and getattr(t, "ndim", None) == 0 and not isinstance(t, numbers.Number)
              else t for t in thetas]
    if len(thetas) == 0:
        raise ValueError(f"{what} must hold at least one theta, got none")
    return tuple(check_theta(t, f"theta{i + 1}") for i, t in enumerate(thetas))


def _kind(value: Any) -> str:
    return f"{type(value).__name__} {value!r}" if isinstance(value, (str, bytes, numbers.Number)) else \
        type(value).__name__


def check_generator(generator: Any) -> Any:
    """Return ``generator`` after checking that it is a ``torch.Generator`` or None."""
    import torch

    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {_kind(generator)}")
    return generator


def check_granularity(granularity: str) -> str:
    """Return ``granularity`` after checking that it is one of `GRANULARITIES`."""
    if granularity not in GRANULARITIES:
        raise ValueError(
            f"granularity must be one of {', '.join(repr(g) for g in GRANULARITIES)}, got {granularity!r}")
    return granularity


def check_positive_int(value: int, name: str) -> int:
    """Return ``value`` after checking that it is an integer >= 1 (booleans are refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value
