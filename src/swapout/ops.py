"""The swapout op, functional form.

Swapout (Singh, Hoiem and Forsyth, "Swapout: Learning an ensemble of deep architectures",
NeurIPS 2016) replaces the residual sum ``X + F(X)`` by

    Y = sum_i Theta_i * F_i                   (equation 2)
    Y = Theta1 * X + Theta2 * F(X)            (equation 3, the common case)

where each ``Theta_i`` is a tensor of i.i.d. Bernoulli(theta_i) variables. ``theta`` is a *keep*
probability and nothing is rescaled at training time (unlike `torch.nn.Dropout`).

Two ways of using a trained network (section 3.1):

* deterministic inference replaces every mask by its expectation: ``Y = theta1*X + theta2*F(X)``;
* stochastic inference keeps sampling masks and averages the predictions of several passes.

``sample=True`` draws masks (training and stochastic inference), ``sample=False`` uses expectations.

Masks come in four granularities: ``"unit"`` (one draw per element, the paper's swapout),
``"channel"`` (one per sample and channel, shared over the spatial positions), ``"sample"`` (one
per sample) and ``"batch"`` (one for the whole mini-batch, as in stochastic depth).

Tensors whose shapes differ but broadcast together, as ``x + fx`` would (a block output per channel,
``(N, C, 1, 1)``, beside its input ``(N, C, H, W)``), are joined at the broadcast shape, the masks too: every
unit of the output gets its own draws whatever the shape of the term, as in the paper.

With ``sample=True`` and unit granularity, two-term swapout on CPU and CUDA tensors runs through a
fused kernel (`swapout.kernels.fused`) that regenerates its masks in the backward pass instead of
storing them. Everything else runs through the reference implementation in this module, which is
also the fallback when no fused kernel can be built.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

from .checks import GRANULARITIES, check_generator, check_granularity, check_theta, check_thetas
from .kernels import fused

__all__ = ["GRANULARITIES", "swapout", "swapout_sum", "skipforward", "mask_shape", "masked_sum", "masked_skipforward"]


def mask_shape(shape: Sequence[int], granularity: str) -> Tuple[int, ...]:
    """Shape of one Bernoulli mask for a tensor of ``shape`` at ``granularity``.

    The mask broadcasts against the tensor: ``"unit"`` gives ``shape`` itself, ``"channel"``
    ``(N, C, 1, ...)``, ``"sample"`` ``(N, 1, ...)`` and ``"batch"`` ``(1, ...)``.

    Args:
        shape: shape of the tensor to be masked, batch dimension first, e.g. ``(N, C, H, W)``.
        granularity: ``"unit"``, ``"channel"``, ``"sample"`` or ``"batch"``.

    Returns:
        The mask's shape, a tuple of the same length as ``shape``.

    Raises:
        ValueError: if ``granularity`` is not one of the four, ``shape`` is not a sequence of sizes >= 0, or
            it lacks the batch (and, for ``"channel"``, channel) dimension it needs.
    """
    check_granularity(granularity)
    if isinstance(shape, Tensor) or not isinstance(shape, Sequence) or \
            not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        got = "a tensor (pass its .shape)" if isinstance(shape, Tensor) else repr(shape)
        raise ValueError(f"shape must be a sequence of sizes >= 0, such as tensor.shape, got {got}")
    return _mask_shape(tuple(shape), granularity)


def _mask_shape(shape: Tuple[int, ...], granularity: str) -> Tuple[int, ...]:
    ones = (1,) * len(shape)
    if granularity == "unit":
        return shape
    if granularity == "batch":
        return ones
    if len(shape) < (2 if granularity == "channel" else 1):
        raise ValueError(f"granularity {granularity!r} needs a tensor with a batch"
                         f"{' and a channel' if granularity == 'channel' else ''} dimension, got shape {shape}")
    keep = 2 if granularity == "channel" else 1
    return shape[:keep] + ones[keep:]


def _bernoulli(shape: Tuple[int, ...], theta: float, like: Tensor, generator: Optional[torch.Generator]) -> Tensor:
    """One Bernoulli(theta) mask of ``shape``, with ``like``'s dtype and device.

    Every reference-path mask is drawn here; tests replace this function to record or replay masks.
    Drawn out of place, so that ``torch.func.vmap(..., randomness="different")`` gives every batch
    entry masks of its own (an in-place draw into an unbatched tensor cannot).
    """
    # At least float32 probabilities: under autocast ``like`` is bf16, which holds 0.9 as 0.8984 (as the
    # fused kernels and PackedJoin do, the draw keeps theta's precision whatever the tensors' dtype).
    # The 0/1 mask is exact in any dtype, so it is cast back and the output keeps ``like``'s dtype.
    probs = torch.full(shape, theta, dtype=torch.promote_types(like.dtype, torch.float32), device=like.device)
    return torch.bernoulli(probs, generator=generator).to(like.dtype)


def _check_arguments(tensors: Sequence[Tensor], thetas: Sequence[float], sample: bool, granularity: str,
                     generator: Optional[torch.Generator]) -> Tuple[float, ...]:
    if not isinstance(tensors, (list, tuple)):  # a stacked tensor would be read as one term per batch entry
        raise ValueError(f"tensors must be a list or tuple of tensors, got {type(tensors).__name__}")
    if len(tensors) == 0:
        raise ValueError("swapout needs at least one tensor, got none")
    for i, t in enumerate(tensors):
        if isinstance(t, Tensor) and not t.is_floating_point():  # masks of an integer tensor would be truncated
            raise ValueError(f"tensor {i} must be floating point, got {t.dtype}")
    checked = check_thetas(thetas)
    if len(checked) != len(tensors):
        raise ValueError(f"swapout needs one theta per tensor, got {len(checked)} thetas for {len(tensors)} tensors")
    if not isinstance(sample, bool):
        raise ValueError(f"sample must be True (draw masks) or False (their expectations), got {sample!r}")
    check_granularity(granularity)
    check_generator(generator)
    return checked


def _shape_of(tensors: Sequence[Tensor]) -> torch.Size:
    """The shape of the sum: the tensors' own, or the one they broadcast to, as ``x + fx`` would (a block whose
    output is per channel, (N, C, 1, 1), beside its input (N, C, H, W))."""
    same = True  # one pass over the tensors: this runs at every join of every forward pass
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            raise ValueError(f"tensor {i} must be a torch.Tensor, got {type(t).__name__}")
        same = same and t.shape == tensors[0].shape
    if same:
        return tensors[0].shape
    try:
        return torch.broadcast_shapes(*(t.shape for t in tensors))  # type: ignore[no-untyped-call]
    except RuntimeError:
        raise ValueError(f"the tensors' shapes {', '.join(str(tuple(t.shape)) for t in tensors)} do not broadcast "
                         f"together: a join adds them, so they need one shape, or shapes that broadcast as x + fx "
                         f"would (each dimension equal, or 1 in one of them)") from None


def swapout_sum(
    tensors: Sequence[Tensor],
    thetas: Sequence[float],
    *,
    sample: bool = True,
    granularity: str = "unit",
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """General swapout, equation 2 of the paper: ``Y = sum_i Theta_i * F_i``.

    Args:
        tensors: N >= 1 tensors of one shape, or of shapes that broadcast together as their sum would,
            typically outputs of earlier layers.
        thetas: N keep probabilities in [0, 1], one per tensor; the masks are independent.
        sample: draw Bernoulli masks (training, stochastic inference) if True; use their
            expectations ``theta_i`` (deterministic inference) if False.
        granularity: ``"unit"``, ``"channel"``, ``"sample"`` or ``"batch"``; see `mask_shape`.
        generator: random source for the masks; the default generator of the tensors' device if None.

    A term whose theta is 0 is left out and one whose theta is 1 is added unmasked, so the
    special cases (residual, dropout, residual dropout) are exact.

    Returns:
        The masked sum, with the tensors' (broadcast) shape and their dtype (promoted as PyTorch's arithmetic
        does when they differ, as under autocast); zeros if every theta is 0.

    Raises:
        ValueError: if ``tensors`` is not a list or tuple of at least one ``torch.Tensor``, ``thetas`` not a
            list or tuple of numbers in [0, 1], one per tensor, the shapes do not broadcast together, ``sample`` is
            not a bool,
            ``granularity`` is unknown, or ``generator`` is neither None nor a ``torch.Generator``.

    Examples:
        >>> import torch
        >>> import swapout
        >>> f1, f2, f3 = torch.ones(2, 3), torch.full((2, 3), 2.0), torch.full((2, 3), 4.0)
        >>> swapout.swapout_sum([f1, f2, f3], [1.0, 0.5, 0.25], sample=False)   # 1 + 0.5 * 2 + 0.25 * 4
        tensor([[3., 3., 3.],
                [3., 3., 3.]])
    """
    checked = _check_arguments(tensors, thetas, sample, granularity, generator)
    return masked_sum(tensors, checked, sample=sample, granularity=granularity, generator=generator)


def masked_sum(tensors: Sequence[Tensor], thetas: Sequence[float], *, sample: bool, granularity: str,
               generator: Optional[torch.Generator]) -> Tensor:
    """`swapout_sum` for arguments already checked: thetas floats in [0, 1], a known granularity.

    The layers call this on every forward pass; they check their thetas once, when they are set.
    """
    shape, dtype = _shape_of(tensors), _sum_dtype(tensors)
    if sample and granularity == "unit" and len(tensors) == 2 and any(0.0 < t < 1.0 for t in thetas):
        if fused.available(tensors[0]) and tensors[1].dtype == tensors[0].dtype \
                and tensors[1].device == tensors[0].device and tensors[1].shape == tensors[0].shape:
            return fused.swapout2(tensors[0], tensors[1], thetas[0], thetas[1], generator)
    out = None
    for t, theta in zip(tensors, thetas):
        if theta == 0.0:
            continue
        if theta == 1.0:
            term = t
        elif sample:  # masks of the sum's shape: a term that broadcasts still gets a draw per unit of the output
            term = _bernoulli(_mask_shape(tuple(shape), granularity), theta, t, generator) * t
        else:
            term = theta * t
        out = term if out is None else out + term
    if out is None:
        return tensors[0].new_zeros(shape, dtype=dtype)
    return out if out.shape == shape and out.dtype == dtype else _as_sum(out, shape, dtype)


def _sum_dtype(tensors: Sequence[Tensor]) -> torch.dtype:
    """The dtype of the tensors' sum (type promotion, as under autocast), whichever terms a theta of 0 leaves out."""
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        if t.dtype != dtype:
            dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def _as_sum(t: Tensor, shape: torch.Size, dtype: torch.dtype) -> Tensor:
    """``t`` widened to the sum's shape and dtype, as a tensor of its own (an expanded view could not be written
    in place, as the add it replaces can be)."""
    return t.to(dtype).expand(shape).clone()


def swapout(
    x: Tensor,
    fx: Tensor,
    theta1: float,
    theta2: float,
    *,
    sample: bool = True,
    granularity: str = "unit",
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """Swapout of a block, equation 3 of the paper: Y = Θ₁ ⊙ X + Θ₂ ⊙ F(X).

    Args:
        x: the block's skip input X.
        fx: the block's output F(X), of ``x``'s shape or one that broadcasts with it (as ``x + fx``).
        theta1: keep probability of X, in [0, 1].
        theta2: keep probability of F(X), in [0, 1].
        sample: draw Bernoulli masks if True; use their expectations (deterministic inference) if False.
        granularity: ``"unit"``, ``"channel"``, ``"sample"`` or ``"batch"``; see `mask_shape`.
        generator: random source for the masks; the default generator of the tensors' device if None.

    Each unit reports 0, X, F(X) or X + F(X). theta1 = theta2 = 1 is a residual block,
    theta1 = 0 is dropout (equation 1), theta1 = 1 residual dropout, and theta1 = 1 with
    ``granularity="batch"`` is stochastic depth.

    Returns:
        Y, with the shape of ``x`` (broadcast with ``fx``'s where they differ); its dtype, or the promotion of
        both where they differ (as under autocast).

    Raises:
        ValueError: as `swapout_sum`, for a bad theta, granularity, tensor or shape mismatch.

    Examples:
        >>> import torch
        >>> import swapout
        >>> x, fx = torch.ones(2, 3), torch.full((2, 3), 2.0)
        >>> y = swapout.swapout(x, fx, 0.5, 0.5)       # sampled: each unit is 0, 1, 2 or 3
        >>> set(y.unique().tolist()) <= {0.0, 1.0, 2.0, 3.0}
        True
        >>> swapout.swapout(x, fx, 0.5, 0.25, sample=False)   # expectations: 0.5 * 1 + 0.25 * 2
        tensor([[1., 1., 1.],
                [1., 1., 1.]])
    """
    return swapout_sum((x, fx), (theta1, theta2), sample=sample, granularity=granularity, generator=generator)


def skipforward(
    x: Tensor,
    fx: Tensor,
    theta: float,
    *,
    sample: bool = True,
    granularity: str = "unit",
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """SkipForward, equation 4 of the paper: Y = Θ ⊙ X + (1 - Θ) ⊙ F(X).

    One mask, coupled: each unit reports either X (with probability ``theta``) or F(X).
    Deterministic inference gives ``theta*X + (1-theta)*F(X)``.

    Args:
        x: the block's skip input X.
        fx: the block's output F(X), of ``x``'s shape or one that broadcasts with it (as ``x + fx``).
        theta: probability in [0, 1] that a unit reports X rather than F(X).
        sample: draw the mask if True; use its expectation (deterministic inference) if False.
        granularity: ``"unit"``, ``"channel"``, ``"sample"`` or ``"batch"``; see `mask_shape`.
        generator: random source for the mask; the default generator of the tensors' device if None.

    Returns:
        Y, with the shape of ``x`` (broadcast with ``fx``'s where they differ) and the dtype of their sum.

    Raises:
        ValueError: if ``theta`` is not in [0, 1], ``granularity`` is unknown, an input is not a
            ``torch.Tensor``, the shapes of ``x`` and ``fx`` do not broadcast together, ``sample`` is not a bool,
            or ``generator`` is neither None nor a ``torch.Generator``.
    """
    theta = check_theta(theta)
    _check_arguments((x, fx), (theta, 0.0), sample, granularity, generator)
    return masked_skipforward(x, fx, theta, sample=sample, granularity=granularity, generator=generator)


def masked_skipforward(x: Tensor, fx: Tensor, theta: float, *, sample: bool, granularity: str,
                       generator: Optional[torch.Generator]) -> Tensor:
    """`skipforward` for arguments already checked, as `masked_sum` is for `swapout_sum`."""
    shape, dtype = _shape_of((x, fx)), _sum_dtype((x, fx))
    if theta in (0.0, 1.0):
        chosen = fx if theta == 0.0 else x
        return chosen if chosen.shape == shape and chosen.dtype == dtype else _as_sum(chosen, shape, dtype)
    if not sample:
        return theta * x + (1.0 - theta) * fx
    mask = _bernoulli(_mask_shape(tuple(shape), granularity), theta, x, generator)
    return torch.where(mask.bool(), x, fx)
