"""Swapout in any residual network: find its joins and replace them, in one call.

The paper applies swapout to its own CIFAR ResNets and names other architectures as future work
(Singh, Hoiem, Forsyth, NeurIPS 2016, section 5). `convert` traces a model with ``torch.fx``,
finds every residual join (``X + F(X)``, or ``D(X) + F(X)`` with a projection shortcut; the rule is
given in `swapout.conversion.graph.classify`) and puts the join module of the chosen method in its
place, with the method's schedules running over the joins in forward order. `find_joins` is the
dry run: what would be converted, and with which thetas.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from fnmatch import fnmatchcase
from itertools import count
from typing import List, Optional, Tuple

from torch import fx, nn

from ..layers import SwapoutJoin
from ..methods import JoinSpec
from ..schedules import Constant, ScheduleLike
from .arguments import Patterns, leaf_spec, patterns
from .graph import Candidate, LeafSpec, candidates, trace

__all__ = ["Join", "find_joins", "convert"]

@dataclass(frozen=True)
class Join:
    """One residual join of a model, as `find_joins` reports it; its fields are also its attributes.

    Args:
        index: position among the converted joins, in forward order (schedules run over it).
        name: module path of the join module in the converted model, e.g. ``"layer1.0.swapout_join"``.
        block: module path of the block whose forward holds the join (``""``: the model's own forward).
        kind: ``"identity"`` (X + F(X)), ``"projection"`` (D(X) + F(X)), or ``"other"`` for one of
            swapout's join modules already in the model whose inputs the rule does not recognise.
        node: name of the traced graph node that the join replaces.
        module: the join module this join gets (``Swapout(theta1=..., theta2=...)`` and so on).
    """

    index: int
    name: str
    block: str
    kind: str
    node: str
    module: SwapoutJoin

    @property
    def thetas(self) -> Tuple[float, ...]:
        """The keep probabilities of the join module (theta1 for X, theta2 for F(X); one for SkipForward)."""
        return self.module.thetas

    def __str__(self) -> str:
        return f"{self.index:3d}  {self.name}  {self.kind}  {type(self.module).__name__}({self.module.extra_repr()})"


def _matches(c: Candidate, name: str, pattern: str) -> bool:
    return fnmatchcase(name, pattern) or fnmatchcase(c.block, pattern)


def _select(found: List[Tuple[Candidate, str]], include: Patterns, exclude: Patterns) -> List[Tuple[Candidate, str]]:
    """The joins whose join path or block path matches ``include`` and not ``exclude``."""
    inc, exc = patterns(include, "include"), patterns(exclude, "exclude")
    listed = ", ".join(name for _, name in found[:6]) + (", ..." if len(found) > 6 else "")
    for given, label in ((inc, "include"), (exc, "exclude")):
        for p in given or ():
            if not any(_matches(c, name, p) for c, name in found):
                raise ValueError(f"{label} pattern {p!r} matches no residual join; the joins are {listed}")
    chosen = [(c, name) for c, name in found if (inc is None or any(_matches(c, name, p) for p in inc))
              and not any(_matches(c, name, p) for p in exc or ())]
    if not chosen:
        raise ValueError(f"include={include!r} and exclude={exclude!r} leave no residual join to convert")
    return chosen


def _exists(gm: fx.GraphModule, path: str) -> bool:
    parent, _, attr = path.rpartition(".")
    try:
        return hasattr(gm.get_submodule(parent), attr)
    except AttributeError:
        return False


def _names(gm: fx.GraphModule, found: List[Candidate]) -> List[str]:
    """Where each join module goes: an existing join module keeps its path; an add gets a fresh one."""
    names, taken = [], set()
    for c in found:
        if c.module is not None:
            names.append(c.module)
            continue
        base = f"{c.block}.swapout_join" if c.block else "swapout_join"
        name = next(n for k in count() for n in [f"{base}_{k}" if k else base]
                    if n not in taken and not _exists(gm, n))
        taken.add(name)
        names.append(name)
    return names


def _plan(model: nn.Module, spec: JoinSpec, include: Patterns, exclude: Patterns,
          leaf_modules: LeafSpec) -> Tuple[fx.GraphModule, List[Candidate], List[Join]]:
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    # the patterns are checked before tracing too: a wrong type is not worth a trace, nor hidden behind its failure
    patterns(include, "include")
    patterns(exclude, "exclude")
    gm = trace(model, leaf_spec(model, leaf_modules))
    found = candidates(gm)
    if not found:
        raise ValueError(f"no residual join found in {type(model).__name__}: no add of a block's input X "
                         f"(or a projection D(X) of it) and the block's output F(X), and no swapout join module")
    chosen = _select(list(zip(found, _names(gm, found))), include, exclude)
    modules = spec.joins(len(chosen))
    joins = [Join(i, name, c.block, c.kind, c.node.name, m) for i, ((c, name), m) in enumerate(zip(chosen, modules))]
    return gm, [c for c, _ in chosen], joins


def find_joins(model: nn.Module, method: str = "swapout", theta1: Optional[ScheduleLike] = None,
               theta2: Optional[ScheduleLike] = None, granularity: Optional[str] = None,
               include: Patterns = None, exclude: Patterns = None, skipforward_on: str = "x",
               leaf_modules: LeafSpec = ()) -> List[Join]:
    """The residual joins `convert` would replace, in forward order, without changing ``model``.

    Each `Join` gives the join module's path, its block, its kind (identity or projection) and the
    join module with the thetas it would get; ``print(join)`` gives one line. On a model converted already,
    it lists what converting it again with these arguments would give, not the thetas its joins hold: those
    are the `swapout.SwapoutJoin` modules of ``model.modules()``.

    Args:
        model: the network; traced with ``torch.fx`` (swapout's own join modules are kept whole).
        method: one of `swapout.METHODS` (see `swapout.JoinSpec`).
        theta1: keep probability of X: a number, a schedule string (``"linear(1,0.5)"``, the paper's default
            when None) or one value per join, as in `convert`.
        theta2: keep probability of F(X), in the same forms as ``theta1``.
        granularity: mask granularity (``"unit"`` by default, ``"batch"`` for stochastic depth).
        include: glob patterns (``"layer3.*"``) matched against each join's module path and its block's path;
            only joins matching one are listed (all if None).
        exclude: glob patterns; joins matching one are not listed.
        skipforward_on: as in `swapout.JoinSpec`.
        leaf_modules: module paths or classes not to trace into, as in `convert`.

    Returns:
        The joins, in forward order, that `convert` would replace with the same arguments.

    Raises:
        ValueError: as `convert` does.

    Examples:
        >>> import torch.nn as nn
        >>> import swapout
        >>> class Block(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.body = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        ...     def forward(self, x):
        ...         return x + self.body(x)
        >>> for join in swapout.find_joins(nn.Sequential(Block(), Block(), Block())):
        ...     print(join.name, join.kind, join.thetas)
        0.swapout_join identity (1.0, 1.0)
        1.swapout_join identity (0.75, 0.75)
        2.swapout_join identity (0.5, 0.5)
    """
    return _plan(model, JoinSpec(method, theta1, theta2, granularity, skipforward_on), include, exclude,
                 leaf_modules)[2]


def convert(model: nn.Module, method: str = "swapout", theta1: Optional[ScheduleLike] = None,
            theta2: Optional[ScheduleLike] = None, granularity: Optional[str] = None,
            include: Patterns = None, exclude: Patterns = None, skipforward_on: str = "x",
            leaf_modules: LeafSpec = ()) -> fx.GraphModule:
    """Swapout in a residual network: every residual join X + F(X) becomes Θ₁ ⊙ X + Θ₂ ⊙ F(X).

    Applies swapout (equation 3 of the paper) or one of its special cases (section 3.2) to a model
    built without it: torchvision's or timm's ResNets and Vision Transformers, or a user's own network.

    Args:
        model: the network; traced with ``torch.fx`` (swapout's own join modules are kept whole).
        method: one of `swapout.METHODS` (see `swapout.JoinSpec`).
        theta1: keep probability of X: a number, a schedule string (``"linear(1,0.5)"``, the paper's
            default when None) or one value per join. Schedules run over the converted joins in forward
            order, first to last.
        theta2: keep probability of F(X), in the same forms as ``theta1``.
        granularity: mask granularity (``"unit"`` by default, ``"batch"`` for stochastic depth).
        include: glob patterns (``"layer3.*"``) matched against each join's module path and its block's
            path (see `find_joins`); only joins matching one (all if None) are converted, and the
            schedules run over those.
        exclude: glob patterns, matched as ``include``; joins matching one are not converted.
        skipforward_on: as in `swapout.JoinSpec`.
        leaf_modules: module paths or classes not to trace into: a submodule that cannot be traced and
            holds no residual join.

    A residual join is an add whose operands are a block's input X, or a projection D(X) (linear
    layers, BatchNorm, average pooling; both branching from one fork), and the block's output F(X),
    computed from X through layers with parameters and at least one nonlinearity. Adds of a parameter
    or a constant (positional embeddings, biases) and sums of unrelated features are left alone; the
    rule is `swapout.conversion.graph.classify`. The skip term gets theta1, the block output theta2.
    Joins that are swapout join modules already (``method="resnet"`` models of this package) count as
    joins and are replaced by ones built from this call's arguments alone: their own thetas, granularity,
    generator and inference mode are not kept.

    What tracing loses: methods and attributes other than ``forward`` and what it reads (timm's
    ``forward_features``, ``reset_classifier``), hooks on traced-through modules, and Python branches
    on non-tensor values, which are fixed at conversion time (``if self.training: ...`` in a traced
    module keeps the mode the model was in). To keep them, convert the submodule that holds the joins
    and leave the rest as it is: ``vit.blocks = swapout.convert(vit.blocks)``.

    Returns:
        A ``torch.fx.GraphModule`` whose forward is ``model``'s with the joins replaced: at
        theta1 = theta2 = 1 its outputs are ``model``'s bit for bit. Its ``state_dict`` has ``model``'s
        keys, so weights load both ways; it shares ``model``'s parameters and buffers (as torch.fx does:
        convert ``copy.deepcopy(model)`` to keep the original apart). It works with
        `swapout.set_inference`, `swapout.predict`, `swapout.recalibrate_bn`, DDP and
        ``torch.compile``.

    Raises:
        ValueError: for an unknown method, a theta outside [0, 1], an ``include`` or ``exclude`` pattern
            matching no join, ``include``, ``exclude`` or ``leaf_modules`` of another type than documented,
            a ``leaf_modules`` path naming no module of ``model`` (the message names what is there), a model
            with no residual join, or a model that cannot be traced (naming the module where tracing failed,
            and how to place `swapout.Swapout` there by hand).

    Examples:
        >>> import torch, torch.nn as nn
        >>> import swapout
        >>> class Block(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.body = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        ...     def forward(self, x):
        ...         return x + self.body(x)
        >>> net = nn.Sequential(Block(), Block())
        >>> model = swapout.convert(net, theta1="linear(1,0.5)", theta2=0.9)
        >>> model.get_submodule("1.swapout_join")
        Swapout(theta1=0.5, theta2=0.9, granularity='unit', inference='deterministic')
        >>> x = torch.randn(2, 8, 4, 4)
        >>> torch.equal(swapout.convert(net, theta1=1, theta2=1).eval()(x), net.eval()(x))
        True
    """
    spec = JoinSpec(method, theta1, theta2, granularity, skipforward_on)
    gm, chosen, joins = _plan(model, spec, include,
                              exclude, leaf_modules)
    scheduled = any(not isinstance(getattr(spec, n), Constant) for n in spec.uses())
    if scheduled and all(v == 1 for j in joins for v in j.thetas):
        # Linear(1, 0.5) over one join is its first value, 1: a model that only looks converted
        warnings.warn(f"every converted join ({len(joins)}) keeps its terms with probability 1: a schedule runs "
                      f"over the converted joins only, and this one gives 1 on each, so this model draws no random "
                      f"masks; convert more joins, or give thetas below 1", UserWarning, stacklevel=2)
    for c, j in zip(chosen, joins):
        _place(gm, c, j)
    gm.graph.lint()
    gm.recompile()
    _align_state_dict(gm, model)
    _copy_modes(gm, model)
    return gm


def _place(gm: fx.GraphModule, c: Candidate, join: Join) -> None:
    if c.module is not None:  # a join module already: swap it (in the GraphModule's own container)
        parent, _, attr = join.name.rpartition(".")
        setattr(gm.get_submodule(parent), attr, join.module)
        return
    gm.add_submodule(join.name, join.module)
    with gm.graph.inserting_before(c.node):
        new = gm.graph.call_module(join.name, c.operands())
    new.meta = dict(c.node.meta)
    c.node.replace_all_uses_with(new)
    gm.graph.erase_node(c.node)


def _container(root: nn.Module, path: str) -> nn.Module:
    """The module at ``path`` under ``root``, creating empty containers where it has none."""
    m = root
    for part in filter(None, path.split(".")):
        if not hasattr(m, part):
            m.add_module(part, nn.Module())
        m = getattr(m, part)
    return m


def _align_state_dict(gm: fx.GraphModule, model: nn.Module) -> None:
    """Give ``gm`` exactly ``model``'s state_dict keys.

    torch.fx copies only what the forward reads, and registers every buffer it copies as persistent:
    parameters and buffers the forward never reads are copied here, and buffers that ``model`` does not
    save are marked so again.
    """
    want, have = model.state_dict(keep_vars=True), gm.state_dict(keep_vars=True)
    for key in have.keys() - want.keys():
        path, _, name = key.rpartition(".")
        owner = gm.get_submodule(path)
        if name in owner._buffers:
            owner._non_persistent_buffers_set.add(name)
    for key in want.keys() - have.keys():
        path, _, name = key.rpartition(".")
        owner, value = _container(gm, path), want[key]
        if isinstance(value, nn.Parameter):
            owner.register_parameter(name, value)
        else:
            owner.register_buffer(name, value)


def _copy_modes(gm: fx.GraphModule, model: nn.Module) -> None:
    """train()/eval() flags as in ``model`` (the GraphModule's own containers start in training mode)."""
    gm.training = model.training
    for name, m in gm.named_modules():
        try:
            m.training = model.get_submodule(name).training
        except AttributeError:  # a join module placed by convert: follow its block
            parent = name.rpartition(".")[0]
            m.training = gm.get_submodule(parent).training
