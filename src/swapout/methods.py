"""The paper's training methods (section 3.2) as join specifications: which join every block gets.

Swapout and its special cases differ only in how a block joins its skip input X and its output
F(X). A `JoinSpec` names the method, its keep-probability schedules over the blocks and the
mask granularity, checks them once, and builds one join module per block for a network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

from .checks import check_granularity
from .layers import (
    SKIPFORWARD_ON,
    Dropout,
    Residual,
    ResidualDropout,
    SkipForward,
    StochasticDepth,
    Swapout,
    SwapoutJoin,
)
from .schedules import ScheduleLike, parse_schedule

__all__ = ["METHODS", "DEFAULT_SCHEDULE", "JoinSpec"]

METHODS = ("resnet", "swapout", "dropout", "residual_dropout", "stochastic_depth", "skipforward")
"""The training methods a `JoinSpec` accepts: plain ResNet, swapout and its special cases (section 3.2)."""

# Which of theta1 (the keep probability of X) and theta2 (of F(X)) each method reads.
_METHOD_THETAS = {
    "resnet": (),
    "swapout": ("theta1", "theta2"),
    "dropout": ("theta2",),
    "residual_dropout": ("theta2",),
    "stochastic_depth": ("theta2",),
}
# The paper trained every stochastic method with Linear(1, 0.5).
DEFAULT_SCHEDULE = "linear(1,0.5)"


@dataclass(frozen=True)
class JoinSpec:
    """How every block of a network joins its skip input X and its output F(X).

    Args:
        method: one of `METHODS`: ``"resnet"`` (X + F(X)), ``"swapout"`` (theta1 for X, theta2
            for F(X)), ``"dropout"`` (theta2 for F(X), no skip term), ``"residual_dropout"`` (X plus a
            theta2 mask on F(X)), ``"stochastic_depth"`` (theta2 = survival probability, one draw per
            mini-batch), ``"skipforward"`` (see ``skipforward_on``).
        theta1: schedule of the keep probability of X over the blocks, first to last: a number, a string in
            the paper's notation (``"linear(1,0.5)"``, ``"0.8"``, ``"0.2,0.5"``), a list, a `Schedule`,
            or None for the paper's default, Linear(1, 0.5). Must be None if the method does not read it.
        theta2: schedule of the keep probability of F(X), in the same forms as ``theta1``. Must be None if the
            method does not read it.
        granularity: mask granularity; None gives ``"unit"``, or ``"batch"`` for stochastic depth (in
            data-parallel training, one draw per process's share of the mini-batch).
        skipforward_on: which input SkipForward's theta keeps. ``"x"`` reads equation 4 as printed,
            Y = Θ ⊙ X + (1 - Θ) ⊙ F(X) with theta1; with Linear(1, 0.5) the first block then
            always reports X and its weights never learn. ``"fx"`` puts Θ on F(X),
            Y = (1 - Θ) ⊙ X + Θ ⊙ F(X) with theta2; the first block then always reports F(X).

    The schedules are parsed and checked once, here; `joins` resolves them for a network.

    Raises:
        ValueError: for an unknown method, granularity or ``skipforward_on``, ``skipforward_on="fx"`` with
            another method than ``"skipforward"``, a theta the method does not read, a schedule that does not
            parse, a granularity for ``"resnet"``, or a granularity other than ``"batch"`` or ``"sample"`` for
            ``"stochastic_depth"``.

    Examples:
        >>> import swapout
        >>> spec = swapout.JoinSpec("stochastic_depth", theta2="linear(1,0.5)")
        >>> [join.thetas for join in spec.joins(3)]          # survival probabilities, first block to last
        [(1.0, 1.0), (1.0, 0.75), (1.0, 0.5)]
    """

    method: str = "swapout"
    theta1: Optional[ScheduleLike] = None
    theta2: Optional[ScheduleLike] = None
    granularity: Optional[str] = None
    skipforward_on: str = "x"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.skipforward_on not in SKIPFORWARD_ON:
            raise ValueError(f"skipforward_on must be 'x' or 'fx', got {self.skipforward_on!r}")
        if self.skipforward_on != "x" and self.method != "skipforward":
            raise ValueError(f"skipforward_on applies to method 'skipforward' only, not {self.method!r}")
        used = self.uses()
        for name in ("theta1", "theta2"):
            value = getattr(self, name)
            if value is not None and name not in used:
                allowed = " and ".join(used) if used else "no theta"
                raise ValueError(f"method {self.method!r} takes {allowed}; {name}={value!r} is not used by it")
            if name in used:
                try:
                    schedule = parse_schedule(DEFAULT_SCHEDULE if value is None else value)
                except ValueError as err:
                    raise ValueError(f"{name}: {err}") from None
                object.__setattr__(self, name, schedule)
        if self.method == "resnet" and self.granularity is not None:
            raise ValueError(f"method 'resnet' draws no masks, so it takes no granularity; got {self.granularity!r}")
        granularity = self.granularity or ("batch" if self.method == "stochastic_depth" else "unit")
        check_granularity(granularity)
        if self.method == "stochastic_depth" and granularity not in ("batch", "sample"):
            raise ValueError(f"stochastic_depth draws one mask per mini-batch ('batch') or per sample ('sample'), "
                             f"got granularity {granularity!r}; use residual_dropout for finer masks")
        object.__setattr__(self, "granularity", granularity)

    def uses(self) -> Tuple[str, ...]:
        """The thetas this method reads.

        Returns:
            The names of the thetas read, among ``"theta1"`` and ``"theta2"``; empty for ``"resnet"``.
        """
        if self.method == "skipforward":
            return ("theta1",) if self.skipforward_on == "x" else ("theta2",)
        return _METHOD_THETAS[self.method]

    def joins(self, num_blocks: int) -> List[SwapoutJoin]:
        """One join module per block of a network with ``num_blocks`` blocks.

        Args:
            num_blocks: number of blocks of the network, at least 1.

        Returns:
            ``num_blocks`` fresh join modules, first block first, with the schedules' thetas for each block.

        Raises:
            ValueError: if ``num_blocks`` is not a positive integer, or an explicit schedule lists a different
                number of thetas.
        """
        values = {name: getattr(self, name).values(num_blocks) for name in self.uses()}
        g = self.granularity or "unit"  # set by __post_init__; the fallback is for the type checker
        build: Callable[[int], SwapoutJoin] = {
            "resnet": lambda i: Residual(),
            "swapout": lambda i: Swapout(values["theta1"][i], values["theta2"][i], g),
            "dropout": lambda i: Dropout(values["theta2"][i], g),
            "residual_dropout": lambda i: ResidualDropout(values["theta2"][i], g),
            "stochastic_depth": lambda i: StochasticDepth(values["theta2"][i], per_sample=g == "sample"),
            "skipforward": lambda i: SkipForward(values[self.uses()[0]][i], g, on=self.skipforward_on),
        }[self.method]
        return [build(i) for i in range(num_blocks)]
