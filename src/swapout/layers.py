"""Swapout as modules: the layer that joins a block's skip input X and its output F(X).

Every module here has ``forward(x, fx)`` (``forward(*tensors)`` for :class:`SwapoutN`) and replaces
the ``x + fx`` of a residual block. Masks are sampled in training mode; in eval mode they follow the
module's ``inference`` attribute, ``"deterministic"`` (expectations) or ``"stochastic"`` (sampled), set
for a whole model with :func:`swapout.set_inference`. BatchNorm is unaffected by that switch: it
follows ``train()``/``eval()`` as usual.

The paper's baselines (section 3.2) are special cases with fixed arguments:

====================  ==========================================  ==========================
module                output                                      masks
====================  ==========================================  ==========================
``Swapout``           ``Theta1*X + Theta2*F(X)`` (equation 3)     two, independent
``Residual``          ``X + F(X)``                                none
``Dropout``           ``Theta*F(X)`` (equation 1, no skip)        one
``ResidualDropout``   ``X + Theta*F(X)``                          one
``StochasticDepth``   ``X + Theta*F(X)``                          one per mini-batch (or sample)
``SkipForward``       ``Theta*X + (1-Theta)*F(X)`` (equation 4)   one, coupled
====================  ==========================================  ==========================
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from .ops import check_theta, skipforward, swapout_sum, check_granularity

INFERENCE_MODES = ("deterministic", "stochastic")

__all__ = ["SwapoutJoin", "Swapout", "SwapoutN", "Residual", "Dropout", "ResidualDropout",
           "StochasticDepth", "SkipForward", "INFERENCE_MODES", "METHODS", "make_joins"]


def check_inference_mode(mode: str) -> str:
    if mode not in INFERENCE_MODES:
        raise ValueError(f"inference mode must be 'deterministic' or 'stochastic', got {mode!r}")
    return mode


class SwapoutJoin(nn.Module):
    """Base of every swapout join: N keep probabilities, a mask granularity and an inference switch.

    Args:
        thetas: keep probability of each input, in [0, 1].
        granularity: ``"unit"``, ``"channel"``, ``"sample"`` or ``"batch"`` (see :func:`swapout.ops.mask_shape`).
        generator: optional random source for the masks; the default generator of the device if None.
    """

    def __init__(self, thetas: Sequence[float], granularity: str = "unit",
                 generator: Optional[torch.Generator] = None):
        super().__init__()
        if len(thetas) == 0:
            raise ValueError("a swapout join needs at least one theta")
        self.thetas = tuple(check_theta(t, f"theta{i + 1}") for i, t in enumerate(thetas))
        check_granularity(granularity)
        self.granularity = granularity
        self.generator = generator
        self.inference = "deterministic"

    @property
    def sampling(self) -> bool:
        """True when this forward pass draws masks: in training, or in stochastic inference."""
        return self.training or self.inference == "stochastic"

    def forward(self, *tensors: Tensor) -> Tensor:
        if len(tensors) != len(self.thetas):
            raise ValueError(f"{type(self).__name__} takes {len(self.thetas)} tensors, got {len(tensors)}")
        return swapout_sum(tensors, self.thetas, sample=self.sampling,
                           granularity=self.granularity, generator=self.generator)

    def extra_repr(self) -> str:
        names = [f"theta{i + 1}={t:g}" for i, t in enumerate(self.thetas)]
        return ", ".join(names + [f"granularity={self.granularity!r}", f"inference={self.inference!r}"])


class SwapoutN(SwapoutJoin):
    """Swapout over N inputs, equation 2: ``Y = sum_i Theta_i * F_i``; ``forward(*tensors)``."""


class Swapout(SwapoutJoin):
    """Swapout of a block, equation 3: ``Y = Theta1*X + Theta2*F(X)``; ``forward(x, fx)``.

    Args:
        theta1: keep probability of the skip input X.
        theta2: keep probability of the block output F(X).
        granularity, generator: as in :class:`SwapoutJoin`.

    Example, inside a residual block::

        self.join = swapout.Swapout(0.9, 0.7)
        ...
        return self.join(x, self.body(x))      # instead of x + self.body(x)
    """

    def __init__(self, theta1: float, theta2: float, granularity: str = "unit",
                 generator: Optional[torch.Generator] = None):
        super().__init__((theta1, theta2), granularity, generator)

    def forward(self, x: Tensor, fx: Tensor) -> Tensor:
        return super().forward(x, fx)


class Residual(Swapout):
    """A plain residual join ``X + F(X)``: swapout with theta1 = theta2 = 1."""

    def __init__(self):
        super().__init__(1.0, 1.0)


class Dropout(Swapout):
    """Dropout of the block output, equation 1: ``Y = Theta*F(X)``, no skip term, no rescaling."""

    def __init__(self, theta: float, granularity: str = "unit", generator: Optional[torch.Generator] = None):
        super().__init__(0.0, theta, granularity, generator)


class ResidualDropout(Swapout):
    """Dropout on the residual branch only: ``Y = X + Theta*F(X)``, no rescaling."""

    def __init__(self, theta: float, granularity: str = "unit", generator: Optional[torch.Generator] = None):
        super().__init__(1.0, theta, granularity, generator)


class StochasticDepth(Swapout):
    """Layer dropout / stochastic depth (Huang et al. 2016): ``Y = X + Theta*F(X)``, one draw per block.

    Args:
        theta: survival probability of the block.
        per_sample: one draw per sample instead of one per mini-batch (Huang et al.'s choice).
    """

    def __init__(self, theta: float, per_sample: bool = False, generator: Optional[torch.Generator] = None):
        super().__init__(1.0, theta, "sample" if per_sample else "batch", generator)


class SkipForward(SwapoutJoin):
    """SkipForward, equation 4: ``Y = Theta*X + (1-Theta)*F(X)``, one coupled mask.

    Args:
        theta: probability that a unit reports X (it reports F(X) otherwise).
        granularity, generator: as in :class:`SwapoutJoin`.
    """

    def __init__(self, theta: float, granularity: str = "unit", generator: Optional[torch.Generator] = None):
        super().__init__((theta,), granularity, generator)

    def forward(self, x: Tensor, fx: Tensor) -> Tensor:
        return skipforward(x, fx, self.thetas[0], sample=self.sampling,
                           granularity=self.granularity, generator=self.generator)

    def extra_repr(self) -> str:
        return super().extra_repr().replace("theta1=", "theta=", 1)


METHODS = ("resnet", "swapout", "dropout", "residual_dropout", "stochastic_depth", "skipforward")

# Which of theta1/theta2 each method reads. The paper trained every stochastic method with Linear(1, 0.5).
_METHOD_THETAS = {
    "resnet": (),
    "swapout": ("theta1", "theta2"),
    "dropout": ("theta2",),
    "residual_dropout": ("theta2",),
    "stochastic_depth": ("theta2",),
    "skipforward": ("theta1",),
}
DEFAULT_SCHEDULE = "linear(1,0.5)"


def make_joins(method: str, num_blocks: int, theta1=None, theta2=None,
               granularity: Optional[str] = None) -> list:
    """One join module per block for a training ``method``, with thetas resolved from schedules.

    Args:
        method: one of ``METHODS``: ``"resnet"`` (X + F(X)), ``"swapout"`` (theta1 for X, theta2 for
            F(X)), ``"dropout"`` (theta2 for F(X), no skip), ``"residual_dropout"`` (X + theta2 mask on
            F(X)), ``"stochastic_depth"`` (theta2 = survival probability, one draw per mini-batch),
            ``"skipforward"`` (theta1 = probability of reporting X).
        num_blocks: number of blocks L that the schedules are resolved for.
        theta1, theta2: a number, a schedule string (``"linear(1,0.5)"``, ``"0.8"``, ``"0.2,0.5"``), a
            list, or None for the paper's default, Linear(1, 0.5). A theta the method does not use
            must be None.
        granularity: mask granularity; None gives ``"unit"``, or ``"batch"`` for stochastic depth.
    """
    from .schedules import parse_schedule

    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    used = _METHOD_THETAS[method]
    given = {"theta1": theta1, "theta2": theta2}
    for name, value in given.items():
        if value is not None and name not in used:
            allowed = " and ".join(used) if used else "no theta"
            raise ValueError(f"method {method!r} takes {allowed}; {name}={value!r} is not used by it")
    values = {name: parse_schedule(DEFAULT_SCHEDULE if given[name] is None else given[name]).values(num_blocks)
              for name in used}
    if granularity is None:
        granularity = "batch" if method == "stochastic_depth" else "unit"
    check_granularity(granularity)
    if method == "stochastic_depth" and granularity not in ("batch", "sample"):
        raise ValueError(f"stochastic_depth draws one mask per mini-batch ('batch') or per sample ('sample'), "
                         f"got granularity {granularity!r}; use residual_dropout for finer masks")
    build = {
        "resnet": lambda i: Residual(),
        "swapout": lambda i: Swapout(values["theta1"][i], values["theta2"][i], granularity),
        "dropout": lambda i: Dropout(values["theta2"][i], granularity),
        "residual_dropout": lambda i: ResidualDropout(values["theta2"][i], granularity),
        "stochastic_depth": lambda i: StochasticDepth(values["theta2"][i], per_sample=granularity == "sample"),
        "skipforward": lambda i: SkipForward(values["theta1"][i], granularity),
    }[method]
    return [build(i) for i in range(num_blocks)]
