"""Deterministic and stochastic inference (section 3.1 of the paper).

The swapout inference switch is separate from ``train()``/``eval()``: BatchNorm follows ``eval()``
(running statistics), masks follow `set_inference`. `predict` runs the paper's stochastic
inference: the mean softmax over n passes, each with fresh masks.
"""

from __future__ import annotations

import contextlib
from typing import Dict, Iterator, Optional

import torch
from torch import Tensor, nn

from ..layers import SwapoutJoin, check_inference_mode

__all__ = ["set_inference", "using_inference", "predict", "stochastic_passes", "pass_logits"]


def set_inference(model: nn.Module, mode: str) -> Dict[SwapoutJoin, str]:
    """Set every swapout join in ``model`` to ``"deterministic"`` or ``"stochastic"`` inference.

    Has no effect in training mode, where masks are always sampled.

    Args:
        model: the network whose `SwapoutJoin` modules are switched (in place).
        mode: ``"deterministic"`` (expected values of the masks) or ``"stochastic"`` (fresh masks on every
            forward call).

    Returns:
        The previous mode of each join, ``{join: mode}``, so a caller can restore them.

    Raises:
        ValueError: if ``mode`` is not ``"deterministic"`` or ``"stochastic"``, or ``model`` is not a module.

    Examples:
        >>> import torch
        >>> import swapout
        >>> model = swapout.create_model("resnet_v2_ours", depth=8).eval()
        >>> x = torch.randn(2, 3, 32, 32)
        >>> previous = swapout.set_inference(model, "stochastic")   # every pass samples its masks
        >>> torch.equal(model(x), model(x))
        False
        >>> set(previous.values())                  # the default mode, for each of the 3 joins
        {'deterministic'}
        >>> _ = swapout.set_inference(model, "deterministic")
        >>> torch.equal(model(x), model(x))
        True
    """
    check_inference_mode(mode)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    previous = {}
    for m in model.modules():
        if isinstance(m, SwapoutJoin):
            previous[m] = m.inference
            m.inference = mode
    return previous


@contextlib.contextmanager
def using_inference(model: nn.Module, mode: str) -> Iterator[nn.Module]:
    """Context manager: ``with swapout.using_inference(model, "stochastic"): ...``; restores on exit.

    Args:
        model: the network whose swapout joins are switched for the duration of the block.
        mode: ``"deterministic"`` or ``"stochastic"``, as in `set_inference`.

    Yields:
        ``model`` itself, its joins set to ``mode``; each join's previous mode is restored on exit.

    Raises:
        ValueError: if ``mode`` is not ``"deterministic"`` or ``"stochastic"``.

    Examples:
        >>> import torch
        >>> import swapout
        >>> model = swapout.create_model("resnet_v2_ours", depth=8).eval()
        >>> with swapout.using_inference(model, "stochastic"):
        ...     logits = model(torch.randn(2, 3, 32, 32))   # one sampled member of the ensemble
        >>> logits.shape
        torch.Size([2, 10])
        >>> {m.inference for m in model.modules() if isinstance(m, swapout.SwapoutJoin)}   # restored on exit
        {'deterministic'}
    """
    previous = set_inference(model, mode)
    try:
        yield model
    finally:
        for m, old in previous.items():
            m.inference = old


@contextlib.contextmanager
def _passes_per_call(model: nn.Module, passes: int) -> Iterator[None]:
    joins = [m for m in model.modules() if isinstance(m, SwapoutJoin)]
    previous = [m.passes_per_call for m in joins]
    for m in joins:
        m.passes_per_call = passes
    try:
        yield
    finally:
        for m, old in zip(joins, previous):
            m.passes_per_call = old


@torch.no_grad()
def pass_logits(model: nn.Module, x: Tensor, samples: int = 30, max_batch: Optional[int] = 1024) -> Tensor:
    """Logits of ``samples`` stochastic passes over ``x``: shape (samples, B, classes), float32.

    The passes run batched: a forward call holds as many whole passes over ``x`` as fit in
    ``max_batch`` rows (row ``s*B + b`` is pass ``s`` of image ``b``), or part of one pass when a
    single pass does not fit. Every pass draws its own masks at every granularity: a join with one
    mask per mini-batch (stochastic depth) draws one per pass held in the call. The model is put in
    ``eval()`` mode (BatchNorm running statistics) for the call, and each of its modules gets its own mode
    back afterwards.

    Args:
        model: a classifier returning logits of shape (B, classes).
        x: input batch of shape (B, ...).
        samples: number of stochastic passes n (the paper uses 30); 0 gives one deterministic pass.
        max_batch: at most this many rows (images times passes) per forward call, which bounds
            memory; None runs all n*B at once.

    Returns:
        The logits, float32, of shape (samples, B, classes), or (1, B, classes) when ``samples`` is 0.

    Raises:
        ValueError: if ``model`` is not a module or ``x`` not a batch of images, ``samples`` is not an integer
            >= 0, ``max_batch`` is neither None nor a positive integer, ``x`` holds no images, or the model's
            output is not (B, classes) logits.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(x, Tensor) or x.dim() == 0:
        raise ValueError("x must be a batch of images, a tensor (B, ...), got "
                         + ("a 0-d tensor" if isinstance(x, Tensor) else type(x).__name__))
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 0:
        raise ValueError(f"samples must be an integer >= 0 (0 = deterministic inference), got {samples!r}")
    if max_batch is not None and (isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1):
        raise ValueError(f"max_batch must be a positive integer or None, got {max_batch!r}")
    batch, passes = x.shape[0], max(samples, 1)
    if batch == 0:
        raise ValueError("x holds no images")
    rows = batch if max_batch is None else min(batch, max_batch)  # images per call
    per_call = passes if max_batch is None else max(1, min(passes, max_batch // batch))  # passes per call
    out = []
    with _modes_kept(model), using_inference(model, "stochastic" if samples else "deterministic"):
        model.eval()
        for s in range(0, passes, per_call):
            k = min(per_call, passes - s)
            with _passes_per_call(model, k):
                parts = [_logits(model, x[lo:lo + rows].repeat(k, *[1] * (x.dim() - 1)))
                         for lo in range(0, batch, rows)]
            out.append(torch.cat([p.view(k, -1, p.shape[-1]) for p in parts], dim=1))
    return torch.cat(out)


def _logits(model: nn.Module, x: Tensor) -> Tensor:
    logits = model(x)
    if not isinstance(logits, Tensor) or logits.dim() != 2 or logits.shape[0] != x.shape[0]:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"the model must return logits of shape (B, classes) for a batch of B images; for "
                         f"{x.shape[0]} images (the passes batched) it returned {shape}")
    return logits.float()


@contextlib.contextmanager
def _modes_kept(model: nn.Module) -> Iterator[None]:
    """Restore every module's own train/eval flag on exit: ``model.train(flag)`` would overwrite the flags a
    user set on parts of it (a BatchNorm frozen in eval mode while the rest fine-tunes)."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield
    finally:
        model.train(modes[0][1])  # through train(), so that an override of it runs as on the way in
        for m, training in modes:
            if m.training != training:
                m.train(training)


def stochastic_passes(model: nn.Module, x: Tensor, samples: int = 30, max_batch: Optional[int] = 1024) -> Tensor:
    """Softmax probabilities of ``samples`` stochastic passes over ``x``: shape (samples, B, classes).

    Args:
        model: the classifier, as for `pass_logits`.
        x: the images, (B, ...).
        samples: passes to draw; 0 gives the deterministic one.
        max_batch: rows per forward call, batched as `pass_logits` does; None: one call.

    Returns:
        Each pass's softmax probabilities, float32, of shape (samples, B, classes) ((1, B, classes) when
        ``samples`` is 0).

    Raises:
        ValueError: as `pass_logits`, for an invalid argument, an empty ``x`` or a model whose output is not
            (B, classes) logits.
    """
    return pass_logits(model, x, samples, max_batch).softmax(dim=-1)


def predict(model: nn.Module, x: Tensor, samples: int = 30, max_batch: Optional[int] = 1024) -> Tensor:
    """Class probabilities for ``x``: the mean softmax of ``samples`` stochastic forward passes.

    This is the paper's stochastic inference; ``samples=0`` gives deterministic inference. Batching as in
    `pass_logits`.

    Args:
        model: a classifier of (B, ...) inputs into (B, classes) logits.
        x: the images to classify.
        samples: how many passes to average (the paper: 30); 0 means deterministic inference.
        max_batch: a bound on the rows (images x passes) of one forward call, to cap memory; None: no bound.

    Returns:
        The mean of the passes' softmax probabilities, float32, of shape (B, classes).

    Raises:
        ValueError: as `pass_logits`, for an invalid argument, an empty ``x`` or a model whose output is not
            (B, classes) logits.

    Examples:
        >>> import torch
        >>> import swapout
        >>> model = swapout.create_model("resnet_v2_ours", depth=8, num_classes=10).eval()
        >>> probs = swapout.predict(model, torch.randn(4, 3, 32, 32), samples=30)
        >>> probs.shape
        torch.Size([4, 10])
        >>> torch.allclose(probs.sum(1), torch.ones(4))
        True
    """
    return stochastic_passes(model, x, samples, max_batch).mean(0)
