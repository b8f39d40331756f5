"""The joins of a packed network (`swapout.training.packing`): G runs' joins as one module, each run
drawing its masks with its own keep probabilities and granularity."""

from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torch import Tensor

from ..layers import SkipForward, SwapoutJoin

__all__ = ["PackedJoin", "join_kind"]


def join_kind(join: SwapoutJoin) -> Tuple[str, ...]:
    """What must be equal for two joins to share a pack: how masks combine (a pair of independent masks,
    or SkipForward's one coupled mask and the input it keeps). Keep probabilities and granularity may
    differ: `PackedJoin` draws each run's masks at its own."""
    return ("coupled", join.on) if isinstance(join, SkipForward) else ("pair",) if len(join.thetas) == 2 \
        else ("sum", str(len(join.thetas)))


class PackedJoin(SwapoutJoin):
    """The joins of G runs side by side: channel group g of X and F(X) belongs to run g.

    Args:
        joins: run g's join for this block, for every g; they must share `join_kind`.

    A pair join computes ``Theta1*X + Theta2*F(X)`` per run (swapout and its special cases: resnet,
    dropout, residual dropout, stochastic depth), a coupled one SkipForward's ``where(Theta, X, F(X))``.
    Masks are drawn out of place for all runs at once, so the runs' masks are independent. Each run's
    masks have its own granularity (`granularities`): runs that share one take one draw for all; a
    pack of several granularities, swapout per unit beside stochastic depth per batch say, takes one draw
    per granularity. ``granularity`` is the runs' common one, or ``"unit"`` when they differ.
    """

    theta: Tensor  # (inputs, 1, G, 1, 1, 1) keep probabilities, a buffer

    def __init__(self, joins: Sequence[SwapoutJoin]):
        kinds = {join_kind(j) for j in joins}
        if len(kinds) != 1:
            raise ValueError(f"joins of different kinds cannot share a pack: {', '.join(map(str, sorted(kinds)))}")
        kind = kinds.pop()
        if kind[0] == "sum":
            raise ValueError("the N-way join (SwapoutN) cannot be packed")
        granularities = tuple(j.granularity for j in joins)
        shared = sorted(set(granularities))
        super().__init__(tuple(t for j in joins for t in j.thetas), shared[0] if len(shared) == 1 else "unit")
        self.granularities = granularities
        # with mixed granularities: (granularity, the runs drawn at it), one draw each
        self.mixed = None if len(shared) == 1 else [(gr, [g for g, x in enumerate(granularities) if x == gr])
                                                    for gr in shared]
        self.runs, self.coupled = len(joins), kind[0] == "coupled"
        self.on = kind[1] if self.coupled else None
        # (G, 2): theta1 and theta2 of a pair; theta and 1 - theta (for deterministic inference) if coupled
        theta = torch.tensor([j.thetas + ((1.0 - j.thetas[0],) if self.coupled else ()) for j in joins],
                             dtype=torch.float64).float()
        # (inputs, 1, G, 1, ...): broadcasts over the (N, G, C/G, H, W) view of a packed tensor
        self.register_buffer("theta", theta.t().reshape(-1, 1, len(joins), 1, 1, 1).clone(), persistent=False)
        self.always = [bool((theta[:, i] == 1).all()) for i in range(theta.shape[1])]
        self.never = [bool((theta[:, i] == 0).all()) for i in range(theta.shape[1])]

    @staticmethod
    def _mask_shape(v: Tensor, granularity: str, runs: int) -> Tuple[int, ...]:
        n, c = v.shape[0], v.shape[2]
        rest = (1,) * (v.dim() - 3)
        return {"unit": (n, runs) + tuple(v.shape[2:]), "channel": (n, runs, c) + rest, "sample": (n, runs, 1) + rest,
                "batch": (1, runs, 1) + rest}[granularity]

    def _keep(self, v: Tensor, i: int) -> Tensor:
        """Which units of ``v`` (the (N, G, C/G, ...) view) input ``i`` keeps: each run at its own keep
        probability and granularity; a boolean tensor that broadcasts against ``v``."""
        theta = self.theta[i].view((1, self.runs) + (1,) * (v.dim() - 2))
        # float32 uniforms whatever v's dtype: bf16 would round theta to 8 bits
        if self.mixed is None:
            return torch.rand(self._mask_shape(v, self.granularity, self.runs), device=v.device) < theta
        keep = torch.empty(v.shape, dtype=torch.bool, device=v.device)
        for granularity, runs in self.mixed:
            keep[:, runs] = torch.rand(self._mask_shape(v, granularity, len(runs)), device=v.device) < theta[:, runs]
        return keep

    def _term(self, t: Tensor, i: int) -> Tensor:
        if not self.sampling:
            return t * self.theta[i].view((1, self.runs) + (1,) * (t.dim() - 2)).to(t.dtype)
        return t * self._keep(t, i).to(t.dtype)

    def _join(self, x: Tensor, fx: Tensor) -> Tensor:
        view = (x.shape[0], self.runs, x.shape[1] // self.runs) + tuple(x.shape[2:])
        xv, fv = x.view(view), fx.view(view)
        if self.coupled:
            kept, other = (xv, fv) if self.on == "x" else (fv, xv)
            if self.always[0] or self.never[0]:
                return (kept if self.always[0] else other).reshape(x.shape)
            theta = self.theta[0].view((1, self.runs) + (1,) * (kept.dim() - 2))
            if not self.sampling:
                return (kept * theta.to(x.dtype) + other * self.theta[1].view_as(theta).to(x.dtype)).reshape(x.shape)
            return torch.where(self._keep(kept, 0), kept, other).reshape(x.shape)
        terms = [t if self.always[i] else self._term(t, i) for i, t in enumerate((xv, fv)) if not self.never[i]]
        out = terms[0] + terms[1] if len(terms) == 2 else terms[0] if terms else torch.zeros_like(xv)
        return out.reshape(x.shape)

    # a join of two inputs, as Swapout's; SwapoutJoin.forward takes any number
    def forward(self, x: Tensor, fx: Tensor) -> Tensor:  # type: ignore[override]
        if x.shape != fx.shape or x.shape[1] % self.runs:
            raise ValueError(f"a join of {self.runs} packed runs needs X and F(X) of one shape with a multiple of "
                             f"{self.runs} channels, got {tuple(x.shape)} and {tuple(fx.shape)}")
        if self.mixed is not None and "batch" in self.granularities and self.passes_per_call > 1 and self.sampling:
            # a run at batch granularity draws one mask per stochastic pass, whatever the others draw
            if x.shape[0] % self.passes_per_call:
                raise ValueError(f"a batch of {x.shape[0]} rows cannot hold {self.passes_per_call} passes of equal "
                                 f"size")
            return torch.cat([self._join(a, b) for a, b in zip(x.chunk(self.passes_per_call),
                                                                fx.chunk(self.passes_per_call))])
        return self._per_pass(self._join, (x, fx))

    def extra_repr(self) -> str:
        granularity = f"granularity={self.granularity!r}" if self.mixed is None else \
            f"granularities={self.granularities!r}"
        return f"runs={self.runs}, " + ("coupled, on=" + repr(self.on) if self.coupled else "pair") + \
            f", {granularity}, inference={self.inference!r}"
