"""Swapout as modules: the layer that joins a block's skip input X and its output F(X).

Every module here has ``forward(x, fx)`` (`SwapoutN`: ``forward(*tensors)`` or ``forward(list)``) and
replaces the ``x + fx`` of a residual block. Masks are sampled in training mode; in eval mode they follow the
module's ``inference`` attribute, ``"deterministic"`` (expectations) or ``"stochastic"`` (sampled), set
for a whole model with `swapout.set_inference`. BatchNorm is unaffected by that switch: it
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

from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union, cast

import torch
from torch import Tensor, nn

from .checks import check_generator, check_granularity, check_theta, check_thetas
from .ops import masked_skipforward, masked_sum

INFERENCE_MODES = ("deterministic", "stochastic")
SKIPFORWARD_ON = ("x", "fx")

__all__ = ["SwapoutJoin", "Swapout", "SwapoutN", "Residual", "Dropout", "ResidualDropout",
           "StochasticDepth", "SkipForward", "INFERENCE_MODES", "SKIPFORWARD_ON", "check_inference_mode"]


def check_inference_mode(mode: str) -> str:
    if mode not in INFERENCE_MODES:
        raise ValueError(f"inference mode must be 'deterministic' or 'stochastic', got {mode!r}")
    return mode


class SwapoutJoin(nn.Module):
    """Base of every swapout join: N keep probabilities, a mask granularity and an inference switch.

    Args:
        thetas: keep probability of each input, in [0, 1].
        granularity: ``"unit"``, ``"channel"``, ``"sample"`` or ``"batch"`` (see `swapout.ops.mask_shape`).
        generator: optional random source for the masks; the default generator of the device if None.

    Raises:
        ValueError: if ``thetas`` is not a non-empty sequence of numbers in [0, 1], ``granularity`` is unknown,
            or ``generator`` is neither None nor a ``torch.Generator``; and later, when ``thetas`` (another
            count of them), ``granularity``, ``generator`` or ``inference`` is set to a value that is not allowed.
    """

    def __init__(self, thetas: Sequence[float], granularity: str = "unit",
                 generator: Optional[torch.Generator] = None):
        super().__init__()
        self.thetas = thetas
        self.granularity = granularity
        self.generator = generator
        self.inference = "deterministic"

    # Checked when set, at construction or later, so that the forward pass can trust them.
    @property
    def thetas(self) -> Tuple[float, ...]:
        """The keep probability of each input, in [0, 1]; as many as the join was built with."""
        return self._thetas

    @thetas.setter
    def thetas(self, values: Sequence[float]) -> None:
        thetas = check_thetas(values)
        before: Optional[Tuple[float, ...]] = getattr(self, "_thetas", None)
        if before is not None and len(thetas) != len(before):
            raise ValueError(f"{type(self).__name__} has {len(before)} theta(s), got {len(thetas)}")
        self._thetas = thetas

    @property
    def inference(self) -> str:
        """``"deterministic"`` (the masks' expectations) or ``"stochastic"`` (sampled masks) in eval mode."""
        return self._inference

    @inference.setter
    def inference(self, mode: str) -> None:
        self._inference = check_inference_mode(mode)

    @property
    def generator(self) -> Optional[torch.Generator]:
        """The random source of the masks; None: the default generator of the tensors' device."""
        return self._generator

    @generator.setter
    def generator(self, generator: Optional[torch.Generator]) -> None:
        self._generator = check_generator(generator)

    def __setstate__(self, state: Dict[str, Any]) -> None:
        # a join pickled whole before ``inference`` and ``generator`` were checked properties held them plainly
        for name in ("inference", "generator"):
            if name in state:
                state["_" + name] = state.pop(name)
        super().__setstate__(state)  # type: ignore[no-untyped-call]

    @property
    def granularity(self) -> str:
        """One mask per ``"unit"``, ``"channel"``, ``"sample"`` or ``"batch"``."""
        return self._granularity

    @granularity.setter
    def granularity(self, value: str) -> None:
        self._granularity = check_granularity(value)

    # How many independent passes one forward call holds, stacked along the batch dimension. Set by
    # swapout.stochastic_passes, so that a "batch"-granularity join draws one mask per pass, not per call.
    passes_per_call = 1

    @property
    def random(self) -> bool:
        """True when some keep probability is strictly between 0 and 1, so sampled masks vary."""
        return any(0.0 < t < 1.0 for t in self.thetas)

    @property
    def sampling(self) -> bool:
        """True when this forward pass draws masks: in training, or in stochastic inference."""
        return self.training or self.inference == "stochastic"

    def _per_pass(self, join: Callable[..., Tensor], tensors: Sequence[Tensor]) -> Tensor:
        k = self.passes_per_call
        if k == 1 or self.granularity != "batch" or not self.sampling:
            return join(*tensors)
        rank = max(t.dim() for t in tensors)
        batch = max(t.shape[0] for t in tensors if t.dim() == rank)
        if batch % k:
            raise ValueError(f"a batch of {batch} rows cannot hold {k} passes of equal size")
        # a term that broadcasts along the batch (no batch dimension, or one of size 1) is the same in every pass
        parts = [t.chunk(k) if t.dim() == rank and t.shape[0] == batch else (t,) * k for t in tensors]
        return torch.cat([join(*part) for part in zip(*parts)])

    def forward(self, *tensors: Tensor) -> Tensor:
        """Join the inputs, sampling masks in training or stochastic inference, expectations otherwise.

        Args:
            *tensors: one tensor per theta, of one shape (e.g. ``(N, C, H, W)``) or of shapes that broadcast
                together as their sum would.

        Returns:
            ``sum_i Theta_i * tensors[i]``, with the inputs' (broadcast) shape and the dtype of their sum.

        Raises:
            ValueError: if the number of tensors differs from the number of thetas, or a ``"batch"``-granularity
                join sampling several passes per call gets a batch that does not split into them evenly.
        """
        if len(tensors) != len(self.thetas):
            raise ValueError(f"{type(self).__name__} takes {len(self.thetas)} tensors, got {len(tensors)}")
        # thetas and granularity were checked when set: the forward pass checks nothing but shapes
        return self._per_pass(lambda *ts: masked_sum(ts, self.thetas, sample=self.sampling,
                                                     granularity=self.granularity, generator=self.generator),
                              tensors)

    def extra_repr(self) -> str:
        """The thetas, the granularity and the inference mode, for ``repr(module)``.

        Returns:
            For example ``"theta1=0.9, theta2=0.7, granularity='unit', inference='deterministic'"``.
        """
        names = [f"theta{i + 1}={t:g}" for i, t in enumerate(self.thetas)]
        return ", ".join(names + [f"granularity={self.granularity!r}", f"inference={self.inference!r}"])


class SwapoutN(SwapoutJoin):
    """Swapout over N inputs, equation 2: ``Y = sum_i Theta_i * F_i``.

    ``forward(f1, f2, ...)`` takes the N tensors as arguments, or as one list or tuple,
    ``forward([f1, f2, ...])``, the form `swapout.swapout_sum` takes.

    Args:
        thetas: keep probability of each input, in [0, 1].
        granularity: ``"unit"``, ``"channel"``, ``"sample"`` or ``"batch"`` (see `swapout.ops.mask_shape`).
        generator: optional random source for the masks; the default generator of the device if None.
    """

    def forward(self, *tensors: Union[Tensor, Sequence[Tensor]]) -> Tensor:
        """Join N inputs, given as N arguments or as one list or tuple.

        Args:
            *tensors: one tensor per theta, of one shape or of shapes that broadcast together, or a single list
                or tuple of them.

        Returns:
            ``sum_i Theta_i * F_i``, with the inputs' (broadcast) shape and the dtype of their sum.
        """
        if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
            return super().forward(*tensors[0])
        return super().forward(*cast(Tuple[Tensor, ...], tensors))


class Swapout(SwapoutJoin):
    """Swapout of a block, equation 3: Y = Θ₁ ⊙ X + Θ₂ ⊙ F(X); ``forward(x, fx)``.

    Args:
        theta1: keep probability of the skip input X.
        theta2: keep probability of the block output F(X).
        granularity: ``"unit"``, ``"channel"``, ``"sample"`` or ``"batch"`` (see `swapout.ops.mask_shape`).
        generator: optional random source for the masks; the default generator of the device if None.

    Examples:
        Inside a residual block: ``self.join = swapout.Swapout(0.9, 0.7)`` in ``__init__``, and
        ``return self.join(x, self.body(x))`` in ``forward``, instead of ``x + self.body(x)``.

        >>> import torch
        >>> import swapout
        >>> join = swapout.Swapout(0.9, 0.7)
        >>> join
        Swapout(theta1=0.9, theta2=0.7, granularity='unit', inference='deterministic')
        >>> x, fx = torch.ones(2, 4), torch.ones(2, 4)
        >>> set(join.train()(x, fx).unique().tolist()) <= {0.0, 1.0, 2.0}   # each unit: 0, X, F(X) or X + F(X)
        True
        >>> join.eval()(x, fx)                      # deterministic inference: 0.9 X + 0.7 F(X)
        tensor([[1.6000, 1.6000, 1.6000, 1.6000],
                [1.6000, 1.6000, 1.6000, 1.6000]])
    """

    def __init__(self, theta1: float, theta2: float, granularity: str = "unit",
                 generator: Optional[torch.Generator] = None):
        super().__init__((theta1, theta2), granularity, generator)

    # two inputs, where SwapoutJoin.forward takes any number: a narrower signature, as nn.Module subclasses do
    def forward(self, x: Tensor, fx: Tensor) -> Tensor:  # type: ignore[override]
        """Join a block's skip input and output.

        Args:
            x: the skip input X, e.g. ``(N, C, H, W)``.
            fx: the block output F(X), of ``x``'s shape or one that broadcasts with it (as ``x + fx``).

        Returns:
            Θ₁ ⊙ X + Θ₂ ⊙ F(X), with the shape of ``x`` (broadcast with ``fx``'s) and the dtype of their sum.
        """
        return super().forward(x, fx)


class Residual(Swapout):
    """A plain residual join ``X + F(X)``: swapout with theta1 = theta2 = 1."""

    def __init__(self) -> None:
        super().__init__(1.0, 1.0)


class Dropout(Swapout):
    """Dropout of the block output, equation 1: Y = Θ ⊙ F(X), no skip term, no rescaling.

    Args:
        theta: keep probability of F(X), in [0, 1].
        granularity: ``"unit"``, ``"channel"``, ``"sample"`` or ``"batch"`` (see `swapout.ops.mask_shape`).
        generator: optional random source for the masks; the default generator of the device if None.
    """

    def __init__(self, theta: float, granularity: str = "unit", generator: Optional[torch.Generator] = None):
        super().__init__(0.0, check_theta(theta), granularity, generator)


class ResidualDropout(Swapout):
    """Dropout on the residual branch only: Y = X + Θ ⊙ F(X), no rescaling.

    Args:
        theta: keep probability of F(X), in [0, 1].
        granularity: ``"unit"``, ``"channel"``, ``"sample"`` or ``"batch"`` (see `swapout.ops.mask_shape`).
        generator: optional random source for the masks; the default generator of the device if None.
    """

    def __init__(self, theta: float, granularity: str = "unit", generator: Optional[torch.Generator] = None):
        super().__init__(1.0, check_theta(theta), granularity, generator)


class StochasticDepth(Swapout):
    """Layer dropout / stochastic depth (Huang et al. 2016): Y = X + Θ ⊙ F(X), one draw per block.

    Args:
        theta: survival probability of the block.
        per_sample: one draw per sample instead of one per mini-batch (Huang et al. draw one per
            mini-batch; per sample is a finer-grained variant).
        generator: optional random source for the masks; the default generator of the device if None.

    Raises:
        ValueError: if ``theta`` is not in [0, 1], ``per_sample`` is not a bool, or ``generator`` is neither
            None nor a ``torch.Generator``.
    """

    def __init__(self, theta: float, per_sample: bool = False, generator: Optional[torch.Generator] = None):
        if not isinstance(per_sample, bool):
            raise ValueError(f"per_sample must be True or False, got {per_sample!r}")
        super().__init__(1.0, check_theta(theta), "sample" if per_sample else "batch", generator)


class SkipForward(SwapoutJoin):
    """SkipForward, equation 4: each unit reports either X or F(X), one coupled mask.

    Args:
        theta: probability that a unit reports the input named by ``on``.
        granularity: ``"unit"``, ``"channel"``, ``"sample"`` or ``"batch"`` (see `swapout.ops.mask_shape`).
        generator: optional random source for the masks; the default generator of the device if None.
        on: ``"x"`` (equation 4 as printed): Y = Θ ⊙ X + (1 - Θ) ⊙ F(X); ``"fx"``: Θ on
            F(X), Y = (1 - Θ) ⊙ X + Θ ⊙ F(X).

    Raises:
        ValueError: if ``on`` is neither ``"x"`` nor ``"fx"``, ``theta`` is not in [0, 1], or ``granularity``
            is unknown.
    """

    def __init__(self, theta: float, granularity: str = "unit", generator: Optional[torch.Generator] = None,
                 on: str = "x"):
        if on not in SKIPFORWARD_ON:
            raise ValueError(f"on must be 'x' or 'fx', got {on!r}")
        super().__init__((check_theta(theta),), granularity, generator)
        self.on = on

    # two inputs, where SwapoutJoin.forward takes any number: a narrower signature, as nn.Module subclasses do
    def forward(self, x: Tensor, fx: Tensor) -> Tensor:  # type: ignore[override]
        """Let each unit (or channel, sample, batch) report either ``x`` or ``fx``.

        Args:
            x: the skip input X, e.g. ``(N, C, H, W)``.
            fx: the block output F(X), of ``x``'s shape or one that broadcasts with it (as ``x + fx``).

        Returns:
            Θ ⊙ X + (1 - Θ) ⊙ F(X) (``on="x"``) or (1 - Θ) ⊙ X + Θ ⊙ F(X) (``on="fx"``), with the
            shape of ``x`` (broadcast with ``fx``'s) and the dtype of their sum; with expectations for the masks
            in deterministic inference.
        """
        kept, other = (x, fx) if self.on == "x" else (fx, x)
        return self._per_pass(lambda a, b: masked_skipforward(a, b, self.thetas[0], sample=self.sampling,
                                                              granularity=self.granularity, generator=self.generator),
                              (kept, other))

    def extra_repr(self) -> str:
        """As `SwapoutJoin.extra_repr`, with ``theta=`` for the single theta and ``on=`` added.

        Returns:
            For example ``"theta=0.5, granularity='unit', inference='deterministic', on='x'"``.
        """
        return super().extra_repr().replace("theta1=", "theta=", 1) + f", on={self.on!r}"
