"""Argument checks shared by the op, the layers, the schedules and the models.

Each returns the checked value or raises a ``ValueError`` that names the argument, what it got, and
what is allowed.
"""

from __future__ import annotations

__all__ = ["GRANULARITIES", "PRECISIONS", "check_theta", "check_granularity", "check_positive_int"]

GRANULARITIES = ("unit", "channel", "sample", "batch")
PRECISIONS = ("fp32", "bf16")


def check_theta(theta: float, name: str = "theta") -> float:
    """Return ``theta`` as a float after checking that it is a keep probability in [0, 1]."""
    if isinstance(theta, bool) or not isinstance(theta, (int, float)):
        raise ValueError(f"{name} must be a number in [0, 1], got {theta!r}")
    theta = float(theta)
    if not 0.0 <= theta <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be a keep probability in [0, 1], got {theta}")
    return theta


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
