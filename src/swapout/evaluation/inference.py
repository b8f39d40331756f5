"""Deterministic and stochastic inference (section 3.1 of the paper).

The swapout inference switch is separate from ``train()``/``eval()``: BatchNorm follows ``eval()``
(running statistics), masks follow :func:`set_inference`. :func:`predict` runs the paper's stochastic
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

    Returns the previous mode of each join, so a caller can restore them. Has no effect in training
    mode, where masks are always sampled.
    """
    check_inference_mode(mode)
    previous = {}
    for m in model.modules():
        if isinstance(m, SwapoutJoin):
            previous[m] = m.inference
            m.inference = mode
    return previous


@contextlib.contextmanager
def using_inference(model: nn.Module, mode: str) -> Iterator[nn.Module]:
    """Context manager: ``with swapout.using_inference(model, "stochastic"): ...``; restores on exit."""
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

    Args:
        model: a classifier returning logits of shape (B, classes).
        x: input batch of shape (B, ...).
        samples: number of stochastic passes n (the paper uses 30); 0 gives one deterministic pass.
        max_batch: at most this many rows (images times passes) per forward call, which bounds
            memory; None runs all n*B at once.

    The passes run batched: a forward call holds as many whole passes over ``x`` as fit in
    ``max_batch`` rows (row ``s*B + b`` is pass ``s`` of image ``b``), or part of one pass when a
    single pass does not fit. Every pass draws its own masks at every granularity: a join with one
    mask per mini-batch (stochastic depth) draws one per pass held in the call. The model is put in
    ``eval()`` mode (BatchNorm running statistics) for the call and restored afterwards.
    """
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 0:
        raise ValueError(f"samples must be an integer >= 0 (0 = deterministic inference), got {samples!r}")
    if max_batch is not None and (isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1):
        raise ValueError(f"max_batch must be a positive integer or None, got {max_batch!r}")
    batch, passes = x.shape[0], max(samples, 1)
    if batch == 0:
        raise ValueError("x holds no images")
    rows = batch if max_batch is None else min(batch, max_batch)  # images per call
    per_call = passes if max_batch is None else max(1, min(passes, max_batch // batch))  # passes per call
    was_training = model.training
    model.eval()
    out = []
    try:
        with using_inference(model, "stochastic" if samples else "deterministic"):
            for s in range(0, passes, per_call):
                k = min(per_call, passes - s)
                with _passes_per_call(model, k):
                    parts = [model(x[lo:lo + rows].repeat(k, *[1] * (x.dim() - 1))).float()
                             .view(k, min(rows, batch - lo), -1) for lo in range(0, batch, rows)]
                out.append(torch.cat(parts, dim=1))
    finally:
        model.train(was_training)
    return torch.cat(out)


def stochastic_passes(model: nn.Module, x: Tensor, samples: int = 30, max_batch: Optional[int] = 1024) -> Tensor:
    """Softmax probabilities of ``samples`` stochastic passes over ``x``: shape (samples, B, classes).

    Arguments and batching as in :func:`pass_logits`.
    """
    return pass_logits(model, x, samples, max_batch).softmax(dim=-1)


def predict(model: nn.Module, x: Tensor, samples: int = 30, max_batch: Optional[int] = 1024) -> Tensor:
    """Class probabilities for ``x``: the mean softmax of ``samples`` stochastic forward passes.

    Arguments as in :func:`pass_logits`; ``samples=0`` gives deterministic inference.
    """
    return stochastic_passes(model, x, samples, max_batch).mean(0)
