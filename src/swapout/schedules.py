"""Stochastic training schedules: the keep probability of each block (Table 2 of the paper).

A schedule is written in the paper's notation and resolved for a network of L blocks:

* ``"0.8"`` or ``0.8``: the same theta for every block;
* ``"linear(1, 0.5)"``: ``Linear(a, b)``, interpolated from the first block (``a``) to the last
  (``b``), both ends included: block i of L gets ``a + (b - a) * i / (L - 1)``;
* ``"0.2,0.5,0.8"`` or ``[0.2, 0.5, 0.8]``: one theta per block, listed explicitly.
"""

from __future__ import annotations

import numbers
import re
from dataclasses import dataclass
from typing import List, Sequence, Tuple, Union

from .checks import check_theta, check_thetas

__all__ = ["Schedule", "Constant", "Linear", "Explicit", "parse_schedule", "ScheduleLike"]


class Schedule:
    """A keep probability per block; `values` resolves it for ``num_blocks`` blocks."""

    def values(self, num_blocks: int) -> List[float]:
        """The keep probability of each block, first to last.

        Args:
            num_blocks: number of blocks of the network, at least 1.

        Returns:
            ``num_blocks`` keep probabilities in [0, 1].

        Raises:
            NotImplementedError: always; each subclass implements it.
        """
        raise NotImplementedError

    @staticmethod
    def _check_blocks(num_blocks: int) -> None:
        if isinstance(num_blocks, bool) or not isinstance(num_blocks, int) or num_blocks < 1:
            raise ValueError(f"num_blocks must be a positive integer, got {num_blocks!r}")


@dataclass(frozen=True)
class Constant(Schedule):
    """The same keep probability ``theta`` for every block.

    Args:
        theta: the keep probability, in [0, 1].

    Raises:
        ValueError: if ``theta`` is not a number in [0, 1].
    """

    theta: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "theta", check_theta(self.theta))

    def values(self, num_blocks: int) -> List[float]:
        """``theta`` for each block.

        Args:
            num_blocks: number of blocks of the network, at least 1.

        Returns:
            ``num_blocks`` copies of ``theta``.

        Raises:
            ValueError: if ``num_blocks`` is not a positive integer.
        """
        self._check_blocks(num_blocks)
        return [self.theta] * num_blocks

    def __str__(self) -> str:
        return f"{self.theta:g}"


@dataclass(frozen=True)
class Linear(Schedule):
    """``Linear(a, b)``: from ``a`` at the first block to ``b`` at the last, both included.

    A single block gets ``a``.

    Args:
        a: keep probability of the first block, in [0, 1].
        b: keep probability of the last block, in [0, 1].

    Raises:
        ValueError: if ``a`` or ``b`` is not a number in [0, 1].
    """

    a: float
    b: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "a", check_theta(self.a, "a"))
        object.__setattr__(self, "b", check_theta(self.b, "b"))

    def values(self, num_blocks: int) -> List[float]:
        """The keep probabilities interpolated linearly from ``a`` to ``b``.

        Args:
            num_blocks: number of blocks of the network, at least 1.

        Returns:
            ``num_blocks`` keep probabilities: block i gets ``a + (b - a) * i / (num_blocks - 1)``, the first
            exactly ``a`` and the last exactly ``b``.

        Raises:
            ValueError: if ``num_blocks`` is not a positive integer.
        """
        self._check_blocks(num_blocks)
        if num_blocks == 1:
            return [self.a]
        # a*(1-t) + b*t hits both endpoints exactly in floating point (a + (b-a)*t may miss b).
        return [self.a * (1 - i / (num_blocks - 1)) + self.b * (i / (num_blocks - 1)) for i in range(num_blocks)]

    def __str__(self) -> str:
        return f"linear({self.a:g},{self.b:g})"


@dataclass(frozen=True)
class Explicit(Schedule):
    """One keep probability per block, listed.

    Args:
        thetas: the keep probability of each block, first to last, each in [0, 1].

    Raises:
        ValueError: if ``thetas`` is empty or a theta is not a number in [0, 1].
    """

    thetas: Tuple[float, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "thetas", check_thetas(self.thetas, "an explicit schedule's thetas"))

    def values(self, num_blocks: int) -> List[float]:
        """The listed keep probabilities.

        Args:
            num_blocks: number of blocks of the network; must equal the number of listed thetas.

        Returns:
            The listed thetas, as a list.

        Raises:
            ValueError: if ``num_blocks`` is not a positive integer or differs from the number of thetas.
        """
        self._check_blocks(num_blocks)
        if len(self.thetas) != num_blocks:
            raise ValueError(f"the explicit schedule lists {len(self.thetas)} thetas but the model has "
                             f"{num_blocks} swapout blocks; give exactly {num_blocks}")
        return list(self.thetas)

    def __str__(self) -> str:
        return ",".join(f"{t:g}" for t in self.thetas)


ScheduleLike = Union[Schedule, float, int, str, Sequence[float]]
"""A keep probability per block, in any of the forms that `parse_schedule` reads: a `Schedule`, a number in
[0, 1] (the same for every block), a string in the paper's notation (``"0.8"``, ``"linear(1,0.5)"``, ``"0.2,0.5,0.8"``)
or a sequence of numbers, one per block."""

_LINEAR = re.compile(r"^linear\(\s*([^,()]+?)\s*,\s*([^,()]+?)\s*\)$", re.IGNORECASE)
_HELP = "a number in [0, 1] ('0.8'), 'linear(a, b)' with a, b in [0, 1], or a comma-separated list ('0.2,0.5,0.8')"


def _number(text: str, whole: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"cannot parse schedule {whole!r}: {text!r} is not a number; expected {_HELP}") from None
    return check_theta(value)


def parse_schedule(spec: ScheduleLike) -> Schedule:
    """Turn a schedule written as a number, a string in the paper's notation, or a list into a Schedule.

    Args:
        spec: a `Schedule` (returned as is), a number (``0.8``), a string (``"0.8"``,
            ``"linear(1, 0.5)"``, ``"0.2,0.5,0.8"``) or a list or tuple of numbers.

    Returns:
        A `Constant` for a single number, a `Linear` for ``"linear(a, b)"``, an
        `Explicit` for a list of several numbers.

    Raises:
        ValueError: for anything else (a boolean included), or for a theta outside [0, 1].

    Examples:
        >>> import swapout
        >>> swapout.parse_schedule("linear(1,0.5)").values(6)    # first block to last, both ends included
        [1.0, 0.9, 0.8, 0.7, 0.6, 0.5]
        >>> swapout.parse_schedule(0.8).values(3), swapout.parse_schedule("0.2,0.5,0.8").values(3)
        ([0.8, 0.8, 0.8], [0.2, 0.5, 0.8])
    """
    if isinstance(spec, Schedule):
        return spec
    if isinstance(spec, bool):
        raise ValueError(f"a schedule must be {_HELP}; got {spec!r}")
    if isinstance(spec, numbers.Real):
        return Constant(float(spec))
    if isinstance(spec, str):
        text = spec.strip()
        match = _LINEAR.match(text)
        if match:
            return Linear(_number(match.group(1), spec), _number(match.group(2), spec))
        if "(" in text or not text:
            raise ValueError(f"cannot parse schedule {spec!r}; expected {_HELP}")
        parts = [p.strip() for p in text.split(",")]
        values = [_number(p, spec) for p in parts]
        return Constant(values[0]) if len(values) == 1 else Explicit(tuple(values))
    if isinstance(spec, (list, tuple)):
        return Explicit(tuple(spec))
    raise ValueError(f"a schedule must be {_HELP}; got {type(spec).__name__} {spec!r}")
