"""Packed runs: G networks of one architecture as one network with grouped layers, one group per run.

A small network leaves a GPU idle: its time goes to launching hundreds of tiny kernels, not to
arithmetic. Packing G runs into one network makes every launch do the work of G: a convolution with
``groups=G`` computes G independent convolutions, a BatchNorm over G*C channels keeps each run's
statistics apart, and each join draws each run's masks with that run's own keep probabilities. This
is the approach of HFTA (Wang et al., MLSys 2021) and Packed-Ensembles (Laurent et al., ICLR 2023).

Layout: a packed network takes the G runs' batches stacked along channels, ``(N, G*3, H, W)``, and
returns their logits side by side, ``(N, G*K)``; :func:`split_logits` gives ``(N, G, K)``. The
packed network has the plain network's module tree and state-dict keys, and each tensor is the
runs' tensors concatenated along dimension 0, so group g unpacks to run g's plain state dict
(:func:`unpack_state`) and back (:func:`pack_state`).

What packs: convolutions, BatchNorm, linear layers and the swapout joins; modules without weights
(activations, pooling, flatten) are shared as they are. A network whose forward mixes channels in
some other way (He et al.'s option-A shortcut pads channels at the end) cannot be packed: :func:`pack`
runs the packed network beside the plain ones once and refuses it with a ``ValueError``.
"""

from __future__ import annotations

import copy
from typing import Dict, List, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..layers import SkipForward, SwapoutJoin

__all__ = ["pack", "pack_state", "unpack_state", "unpack_optimizer_state", "split_logits", "join_kind",
           "PackedJoin", "PackedLinear"]


def join_kind(join: SwapoutJoin) -> Tuple[str, ...]:
    """What must be equal for two joins to share a pack: how masks combine (a pair of independent masks,
    or SkipForward's one coupled mask and the input it keeps) and their granularity."""
    coupled = ("coupled", join.on) if isinstance(join, SkipForward) else ("pair",) if len(join.thetas) == 2 \
        else ("sum", str(len(join.thetas)))
    return coupled + (join.granularity,)


class PackedJoin(SwapoutJoin):
    """The joins of G runs side by side: channel group g of X and F(X) belongs to run g.

    Args:
        joins: run g's join for this block, for every g; they must share :func:`join_kind`.

    A pair join computes ``Theta1*X + Theta2*F(X)`` per run (swapout and its special cases: resnet,
    dropout, residual dropout, stochastic depth), a coupled one SkipForward's ``where(Theta, X, F(X))``.
    Masks are drawn out of place for all runs at once, so the runs' masks are independent.
    """

    def __init__(self, joins: Sequence[SwapoutJoin]):
        kinds = {join_kind(j) for j in joins}
        if len(kinds) != 1:
            raise ValueError(f"joins of different kinds cannot share a pack: {', '.join(map(str, sorted(kinds)))}")
        kind = kinds.pop()
        if kind[0] == "sum":
            raise ValueError("the N-way join (SwapoutN) cannot be packed")
        super().__init__(tuple(t for j in joins for t in j.thetas), kind[-1])
        self.runs, self.coupled = len(joins), kind[0] == "coupled"
        self.on = kind[1] if self.coupled else None
        # (G, 2): theta1 and theta2 of a pair; theta and 1 - theta (for deterministic inference) if coupled
        theta = torch.tensor([j.thetas + ((1.0 - j.thetas[0],) if self.coupled else ()) for j in joins],
                             dtype=torch.float64).float()
        # (inputs, 1, G, 1, ...): broadcasts over the (N, G, C/G, H, W) view of a packed tensor
        self.register_buffer("theta", theta.t().reshape(-1, 1, len(joins), 1, 1, 1).clone(), persistent=False)
        self.always = [bool((theta[:, i] == 1).all()) for i in range(theta.shape[1])]
        self.never = [bool((theta[:, i] == 0).all()) for i in range(theta.shape[1])]

    def _mask_shape(self, v: Tensor) -> Tuple[int, ...]:
        n, g, c = v.shape[:3]
        rest = (1,) * (v.dim() - 3)
        return {"unit": tuple(v.shape), "channel": (n, g, c) + rest, "sample": (n, g, 1) + rest,
                "batch": (1, g, 1) + rest}[self.granularity]

    def _term(self, t: Tensor, i: int) -> Tensor:
        theta = self.theta[i].view((1, self.runs) + (1,) * (t.dim() - 2))
        if not self.sampling:
            return t * theta.to(t.dtype)
        # float32 uniforms whatever t's dtype: bf16 would round theta to 8 bits
        return t * (torch.rand(self._mask_shape(t), device=t.device) < theta).to(t.dtype)

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
            keep = torch.rand(self._mask_shape(kept), device=x.device) < theta
            return torch.where(keep, kept, other).reshape(x.shape)
        terms = [t if self.always[i] else self._term(t, i) for i, t in enumerate((xv, fv)) if not self.never[i]]
        out = terms[0] + terms[1] if len(terms) == 2 else terms[0] if terms else torch.zeros_like(xv)
        return out.reshape(x.shape)

    def forward(self, x: Tensor, fx: Tensor) -> Tensor:
        if x.shape != fx.shape or x.shape[1] % self.runs:
            raise ValueError(f"a join of {self.runs} packed runs needs X and F(X) of one shape with a multiple of "
                             f"{self.runs} channels, got {tuple(x.shape)} and {tuple(fx.shape)}")
        return self._per_pass(self._join, (x, fx))

    def extra_repr(self) -> str:
        return f"runs={self.runs}, " + ("coupled, on=" + repr(self.on) if self.coupled else "pair") + \
            f", granularity={self.granularity!r}, inference={self.inference!r}"


class PackedLinear(nn.Module):
    """G linear layers side by side: input features group g to output features group g.

    ``weight`` is ``(G*out, in)`` and ``bias`` ``(G*out,)``: the G layers' tensors concatenated, as in a
    plain layer's state dict.
    """

    def __init__(self, runs: int, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.runs, self.in_features, self.out_features = runs, in_features, out_features
        self.weight = nn.Parameter(torch.empty(runs * out_features, in_features))
        self.bias = nn.Parameter(torch.empty(runs * out_features)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        xs = x.reshape(*x.shape[:-1], self.runs, self.in_features)
        out = torch.einsum("...gi,goi->...go", xs, self.weight.view(self.runs, self.out_features, self.in_features))
        if self.bias is not None:
            out = out + self.bias.view(self.runs, self.out_features)
        return out.reshape(*x.shape[:-1], self.runs * self.out_features)


def _packed_module(name: str, module: nn.Module, models: Sequence[nn.Module]) -> nn.Module:
    """The packed counterpart of ``module`` (at ``name`` in every model), or ``module`` if it has no state."""
    g = len(models)
    if isinstance(module, SwapoutJoin):
        return PackedJoin([m.get_submodule(name) for m in models])
    if type(module) is nn.Conv2d:
        return nn.Conv2d(g * module.in_channels, g * module.out_channels, module.kernel_size, module.stride,
                         module.padding, module.dilation, g * module.groups, module.bias is not None,
                         module.padding_mode)
    if type(module) is nn.BatchNorm2d:
        return nn.BatchNorm2d(g * module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
    if type(module) is nn.Linear:
        return PackedLinear(g, module.in_features, module.out_features, module.bias is not None)
    if any(True for _ in module.parameters(recurse=False)) or any(True for _ in module.buffers(recurse=False)):
        raise ValueError(f"cannot pack {name or 'the model'} ({type(module).__name__}): only Conv2d, BatchNorm2d, "
                         f"Linear and swapout joins are packed")
    return module


def _structure(model: nn.Module) -> List[Tuple[str, str, Tuple[int, ...]]]:
    return [(k, type(model.get_submodule(k.rpartition(".")[0])).__name__, tuple(v.shape))
            for k, v in model.state_dict().items()]


def pack_state(states: Sequence[Dict[str, Tensor]]) -> Dict[str, Tensor]:
    """One packed state dict from G plain ones: tensors concatenated along dimension 0; a scalar (the
    BatchNorm step count) is the same in every run and kept once."""
    return {k: states[0][k] if states[0][k].dim() == 0 else torch.cat([s[k] for s in states]) for k in states[0]}


def unpack_state(state: Dict[str, Tensor], runs: int, index: int) -> Dict[str, Tensor]:
    """Run ``index``'s plain state dict out of a packed one of ``runs`` runs (copies, on the same device)."""
    return {k: v.clone() if v.dim() == 0 else v.chunk(runs)[index].clone() for k, v in state.items()}


def unpack_optimizer_state(state: Dict, runs: int, index: int) -> Dict:
    """Run ``index``'s share of a packed optimizer's state dict (SGD's momentum buffers, say)."""
    per_param = {p: {k: v.chunk(runs)[index].clone() if torch.is_tensor(v) and v.dim() else v
                     for k, v in s.items()} for p, s in state["state"].items()}
    return {"state": per_param, "param_groups": copy.deepcopy(state["param_groups"])}


def split_logits(logits: Tensor, runs: int) -> Tensor:
    """``(N, G*K)`` packed logits as ``(N, G, K)``: run g's logits are ``[:, g]``."""
    return logits.view(logits.shape[0], runs, logits.shape[1] // runs)


def _check_same_outputs(packed: nn.Module, models: Sequence[nn.Module], input_shape: Sequence[int]) -> None:
    """Run the packed network beside the plain ones on one random batch; ValueError if they differ."""
    device = next(packed.parameters()).device
    if device.type == "meta":
        return
    modes = [m.training for m in (packed, *models)]
    x = torch.randn(len(models), *input_shape, generator=torch.Generator().manual_seed(0)).to(device)
    problem = None
    with torch.no_grad():
        for m in (packed, *models):
            m.eval()
        want = torch.stack([m(x[g]) for g, m in enumerate(models)], 1)
        try:
            got = packed(torch.cat(list(x), 1))
            if got.shape != (want.shape[0], want.shape[1] * want.shape[2]) or \
                    not torch.allclose(split_logits(got, len(models)), want, rtol=1e-3, atol=1e-4):
                problem = "its outputs differ from the separate networks'"
        except (RuntimeError, ValueError) as err:
            problem = str(err).splitlines()[0]
    for m, mode in zip((packed, *models), modes):
        m.train(mode)
    if problem:
        raise ValueError(f"cannot pack {type(models[0]).__name__}: its forward mixes the channels of different runs, "
                         f"so it is not made of convolutions, BatchNorm, linear layers, joins and per-channel "
                         f"operations only ({problem})")


def pack(models: Sequence[nn.Module], input_shape: Sequence[int] = (2, 3, 32, 32)) -> nn.Module:
    """One network that trains the G ``models`` at once, one group of every layer per model.

    Args:
        models: G >= 1 networks of the same architecture (the same module tree and tensor shapes), each
            with its own weights and its own join keep probabilities. They are not modified.
        input_shape: the shape of one run's input batch, for the check that the packed network computes
            what the G networks compute (on one random batch, in eval mode).

    Returns a new network on the models' device whose state-dict keys are theirs (see the module
    docstring for its layout). ValueError if the models differ in architecture or cannot be packed.
    """
    models = list(models)
    if not models:
        raise ValueError("pack needs at least one model")
    first = _structure(models[0])
    if any(_structure(m) != first for m in models[1:]):
        raise ValueError("models of a pack must share the architecture: the same modules and tensor shapes")
    packed = copy.deepcopy(models[0])
    for name, module in list(packed.named_modules()):
        new = _packed_module(name, module, models)
        if new is not module:
            parent, _, child = name.rpartition(".")
            setattr(packed.get_submodule(parent), child, new)
    device = next(models[0].parameters()).device
    if device.type == "meta":
        return packed.to_empty(device="meta")
    packed.to(device).load_state_dict(pack_state([m.state_dict() for m in models]))
    _check_same_outputs(packed, models, input_shape)
    return packed
