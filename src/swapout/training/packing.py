"""Packed runs: G networks of one architecture as one network with grouped layers, one group per run.

A small network leaves a GPU idle: its time goes to launching hundreds of tiny kernels, not to
arithmetic. Packing G runs into one network makes every launch do the work of G: a convolution with
``groups=G`` computes G independent convolutions, a BatchNorm over G*C channels keeps each run's
statistics apart, and each join draws each run's masks with that run's own keep probabilities. This
is the approach of HFTA (Wang et al., MLSys 2021) and Packed-Ensembles (Laurent et al., ICLR 2023).

Layout: a packed network takes the G runs' batches stacked along channels, ``(N, G*3, H, W)``, and
returns their logits side by side, ``(N, G*K)``; `split_logits` gives ``(N, G, K)``. The
packed network has the plain network's module tree and state-dict keys, and each tensor is the
runs' tensors concatenated along dimension 0, so group g unpacks to run g's plain state dict
(`unpack_state`) and back (`pack_state`).

What packs: convolutions, BatchNorm, linear layers and the swapout joins; modules without weights
(activations, pooling, flatten) are shared as they are. A network whose forward mixes channels in
some other way (He et al.'s option-A shortcut pads channels at the end) cannot be packed: `pack`
runs the packed network beside the plain ones once and refuses it with a ``ValueError``.
"""

from __future__ import annotations

import copy
from typing import Dict, List, Sequence, Tuple, cast

import torch
from torch import Tensor, nn

from ..layers import SwapoutJoin
from .packed_join import PackedJoin, join_kind

__all__ = ["pack", "pack_state", "unpack_state", "unpack_optimizer_state", "split_logits", "join_kind",
           "PackedJoin", "PackedLinear"]


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
        return PackedJoin([cast(SwapoutJoin, m.get_submodule(name)) for m in models])
    if type(module) is nn.Conv2d:
        # a Conv2d's own sizes, which are pairs; typed as tuples of any length on the module
        return nn.Conv2d(g * module.in_channels, g * module.out_channels, module.kernel_size,  # type: ignore[arg-type]
                         module.stride, module.padding, module.dilation,  # type: ignore[arg-type]
                         g * module.groups, module.bias is not None, module.padding_mode)
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
