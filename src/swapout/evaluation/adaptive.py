"""Adaptive stochastic inference: per image, draw passes until the top-1 answer is settled.

The answer of stochastic inference with infinitely many passes is the class ``c*`` with the largest
mean probability ``mu_c = E[p_c]`` over the masks. The stopping rule certifies it with a test by
betting (Waudby-Smith and Ramdas, "Estimating means of bounded random variables by betting",
JRSS-B 2023):

1. The first pass names a candidate ``a`` (its top class).
2. Every later pass t pays ``X_t = p_t[a]`` (in [0, 1]) into a wealth process
   ``W_t = prod_{s<=t} (1 + lambda_s (X_s - 1/2))``, with a bet ``lambda_s`` in [0, 1.9] chosen from
   the passes before s only (a plug-in of the Kelly bet, ``mean(X - 1/2) / mean((X - 1/2)^2)``).
3. The image is settled, with answer ``a``, as soon as ``W_t >= 1/delta``.

If ``mu_a <= 1/2``, ``W`` is a non-negative supermartingale started at 1 (the passes after the first
are independent of the choice of ``a``), so by Ville's inequality it ever reaches ``1/delta`` with
probability at most ``delta``. If ``mu_a > 1/2``, ``a`` is ``c*``, since the mean probabilities sum
to 1. Hence, **for every image, the probability of stopping early with an answer other than the
infinite-pass top-1 is at most delta**, whenever and however often the rule is checked. Images that
reach ``max_passes`` unsettled take the top-1 of the mean of their passes, as fixed-n inference does.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Optional

import torch
from torch import Tensor, nn

from .inference import stochastic_passes

__all__ = ["adaptive_predict", "adaptive_from_passes", "min_passes"]

MAX_BET = 1.9  # below 2, so that one pass with X = 0 cannot wipe out the wealth


def min_passes(delta: float) -> int:
    """The fewest passes after which the rule can stop: 1 + ceil(log(1/delta) / log(1 + MAX_BET / 2))."""
    _check_delta(delta)
    return 1 + math.ceil(math.log(1 / delta) / math.log1p(MAX_BET / 2) - 1e-9)


def _check_delta(delta: float) -> None:
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")


class _Test:
    """The sequential test of every image of a batch, fed one pass at a time."""

    def __init__(self, n: int):
        self.sum: Optional[Tensor] = None  # (n, C) once the number of classes is known
        self.passes = torch.zeros(n, dtype=torch.long)
        self.candidate = torch.zeros(n, dtype=torch.long)
        self.log_wealth = torch.zeros(n, dtype=torch.float64)
        self.y_sum = torch.zeros(n, dtype=torch.float64)  # sums of Y = X - 1/2 and Y^2 over past passes
        self.y2_sum = torch.zeros(n, dtype=torch.float64)

    def update(self, idx: Tensor, probs: Tensor) -> None:
        """Add one pass ``probs`` (len(idx), C) for the images ``idx``."""
        probs = probs.double()
        if self.sum is None:
            self.sum = torch.zeros(len(self.passes), probs.shape[1], dtype=torch.float64)
        first = self.passes[idx] == 0
        self.candidate[idx[first]] = probs[first].argmax(1)
        y = probs.gather(1, self.candidate[idx].view(-1, 1)).squeeze(1) - 0.5
        later = ~first
        # the bet uses the passes before this one only (the first included), so it is predictable
        bet = (self.y_sum[idx] / self.y2_sum[idx].clamp_min(1e-12)).clamp(0.0, MAX_BET)
        step = torch.where(later, torch.log1p(bet * y), torch.zeros_like(y))
        self.log_wealth[idx] += step
        self.y_sum[idx] += y
        self.y2_sum[idx] += y * y
        self.sum[idx] += probs
        self.passes[idx] += 1

    def settled(self, delta: float) -> Tensor:
        return self.log_wealth >= math.log(1 / delta)

    def result(self, delta: float) -> Dict[str, Tensor]:
        settled = self.settled(delta)
        assert self.sum is not None, "no pass was added"
        probs = self.sum / self.passes.clamp_min(1).view(-1, 1).double()
        prediction = torch.where(settled, self.candidate, probs.argmax(1))
        return {"probs": probs, "prediction": prediction, "passes": self.passes.clone(), "settled": settled}


def _check(delta: float, max_passes: int, round_size: int) -> None:
    _check_delta(delta)
    for name, value in (("max_passes", max_passes), ("round_size", round_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def adaptive_from_passes(pass_probs: Tensor, delta: float = 0.05, max_passes: Optional[int] = None,
                         round_size: int = 2) -> Dict[str, Tensor]:
    """The stopping rule applied to passes already drawn, (S, N, C), taken in order: a simulation of
    `adaptive_predict` that costs no forward pass. ``max_passes`` defaults to S. Returns
    what `adaptive_predict` returns."""
    max_passes = pass_probs.shape[0] if max_passes is None else max_passes
    _check(delta, max_passes, round_size)
    if max_passes > pass_probs.shape[0]:
        raise ValueError(f"max_passes {max_passes} exceeds the {pass_probs.shape[0]} passes given")
    return _run(lambda idx, start, k: pass_probs[start:start + k, idx], pass_probs.shape[1], delta, max_passes,
                round_size)


def _run(draw: Callable[[Tensor, int, int], Tensor], n: int, delta: float, max_passes: int, round_size: int,
         progress: Optional[Callable[[int], None]] = None) -> Dict[str, Tensor]:
    if n == 0:
        raise ValueError("no images to predict")
    test = _Test(n)
    pending = torch.arange(n)
    done = 0
    k = min(min_passes(delta), max_passes)  # no image can settle before min_passes: draw them at once
    while len(pending):
        probs = draw(pending, done, k)
        for s in range(k):
            test.update(pending, probs[s].cpu())
        done += k
        keep = ~test.settled(delta)[pending] & (test.passes[pending] < max_passes)
        if progress:
            progress(int((~keep).sum()))
        pending = pending[keep]
        k = min(round_size, max_passes - done)
    return test.result(delta)


@torch.no_grad()
def adaptive_predict(model: nn.Module, x: Tensor, delta: float = 0.05, max_passes: int = 30, round_size: int = 2,
                     max_batch: Optional[int] = 1024,
                     progress: Optional[Callable[[int], None]] = None) -> Dict[str, Tensor]:
    """Stochastic inference with as many passes per image as its top-1 answer needs.

    Args:
        model: a classifier with swapout joins.
        x: a batch of images (B, ...).
        delta: the bound on the probability, per image, of stopping early with an answer other than
            the infinite-pass top-1 (see the module's description).
        max_passes: passes after which an image stops unsettled.
        round_size: passes drawn per round after the first round (which draws `min_passes`);
            the images still pending are sampled together, in one batch per round.
        max_batch: rows per forward call, as in `swapout.stochastic_passes`.
        progress: called with the number of images that stopped in each round.

    Returns:
        ``{"probs": (B, C) mean of the passes drawn, "prediction": (B,), "passes": (B,) passes
        used, "settled": (B,) True where the rule stopped before max_passes or at it by the test}``.

    Raises:
        ValueError: if ``delta`` is not in (0, 1), ``max_passes`` or ``round_size`` is below 1, or ``x``
            holds no images.
    """
    _check(delta, max_passes, round_size)
    return _run(lambda idx, start, k: stochastic_passes(model, x[idx.to(x.device)], k, max_batch), x.shape[0],
                delta, max_passes, round_size, progress)
