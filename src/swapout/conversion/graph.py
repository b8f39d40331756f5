"""Residual joins in a traced graph: which adds are a block's ``X + F(X)`` or ``D(X) + F(X)``.

The analysis behind `swapout.convert` and `swapout.find_joins`. A model is traced with
``torch.fx`` (the project's own join modules kept as leaves), and every add of two tensors is tested
against a structural rule (see `classify`). The rule needs no knowledge of the model's classes, so
it works the same on torchvision's, timm's and a user's own networks.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..layers import SwapoutJoin

__all__ = ["JoinTracer", "Candidate", "trace", "candidates", "classify"]

_ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add}
_ADD_METHODS = {"add", "add_"}
_INPLACE = {operator.iadd, "add_"}

# Operations a shortcut D may be made of: linear maps with their normalisation, pooling, dropout and
# views. A nonlinearity (ReLU, GELU, LayerNorm, attention, ...) ends a shortcut, which is what tells a
# projection shortcut from a block's body, or from an unrelated feature.
_SHORTCUT_MODULES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.modules.batchnorm._BatchNorm,
                     nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
                     nn.AdaptiveAvgPool3d, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
                     nn.Flatten, nn.Unflatten)
_SHORTCUT_FUNCTIONS = {F.conv1d, F.conv2d, F.conv3d, F.linear, F.batch_norm, F.avg_pool1d, F.avg_pool2d,
                       F.avg_pool3d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
                       F.dropout, F.pad, torch.flatten, torch.reshape, torch.permute, torch.transpose,
                       operator.getitem}
_SHORTCUT_METHODS = {"view", "reshape", "flatten", "permute", "transpose", "contiguous", "squeeze",
                     "unsqueeze", "to", "float", "type_as"}

LeafSpec = Sequence[Union[str, type]]
"""Modules that tracing keeps whole instead of tracing into (``leaf_modules`` of `swapout.convert`): module paths
of the model (``"encoder.attn"``) or module classes (every module of that class). A leaf module stays one call in
the traced graph, so it must hold no residual join; it is the way past a submodule that ``torch.fx`` cannot
trace."""


class JoinTracer(fx.Tracer):
    """A tracer that keeps swapout's join modules (and ``leaf_modules``) whole and remembers where it failed.

    Args:
        leaf_modules: module paths (``"encoder.head"``) or classes not to trace into.
    """

    def __init__(self, leaf_modules: LeafSpec = ()):
        super().__init__()
        self.leaf_types = tuple(t for t in leaf_modules if isinstance(t, type))
        self.leaf_paths = {t for t in leaf_modules if isinstance(t, str)}
        self.failed_in: Optional[Tuple[str, str]] = None  # (module path, class name), innermost first

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return (isinstance(m, SwapoutJoin) or isinstance(m, self.leaf_types) or qualname in self.leaf_paths
                or super().is_leaf_module(m, qualname))

    def call_module(self, m: nn.Module, forward: Callable[..., Any], args: Tuple[Any, ...],
                    kwargs: Dict[str, Any]) -> Any:
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_in is None:  # the innermost module sees the exception first
                self.failed_in = (self.path_of_module(m), type(m).__name__)
            raise


def trace(model: nn.Module, leaf_modules: LeafSpec = ()) -> fx.GraphModule:
    """``model`` as a GraphModule; a ValueError naming the module where tracing failed, if it did."""
    tracer = JoinTracer(leaf_modules)
    try:
        graph = tracer.trace(model)
    except Exception as err:
        path, cls = tracer.failed_in or ("", type(model).__name__)
        where = f"module '{path}' ({cls})" if path else f"the forward of {cls} itself"
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(
            f"cannot trace {type(model).__name__} with torch.fx: it failed in {where}: {reason}. Place "
            f"swapout.Swapout by hand there (self.join = swapout.Swapout(theta1, theta2); return "
            f"self.join(x, f(x)) instead of x + f(x)), or convert its traceable submodules "
            f"(model.part = swapout.convert(model.part)), or pass leaf_modules=['{path or 'path'}'] "
            f"if that module holds no residual join") from None
    return fx.GraphModule(tracer.root, graph, type(model).__name__)


@dataclass
class Candidate:
    """A residual join found in a graph: ``node`` adds X (or D(X)) and F(X)."""

    node: fx.Node
    skip_first: bool  # X is the node's first operand
    kind: str  # "identity", "projection", or "other" for a join module the rule does not recognise
    block: str  # module path of the block whose forward holds the join; "" for the model's own
    module: Optional[str] = None  # path of an existing join module, None for an add

    def operands(self) -> Tuple[fx.Node, fx.Node]:
        """(X, F(X)) as the graph holds them now: converting an earlier join replaces its node."""
        pair = _operands(self.node) if self.module is None else _node_pair(self.node.args)
        if pair is None:
            raise ValueError(f"{self.node.name} no longer joins two tensors")
        a, b = pair
        return (a, b) if self.skip_first else (b, a)


class _Graph:
    """Ancestry and input-dependence of every node, as integer bitmasks over the node order."""

    def __init__(self, gm: fx.GraphModule):
        self.gm = gm
        self.nodes = list(gm.graph.nodes)
        self.index = {n: i for i, n in enumerate(self.nodes)}
        self.ancestors: Dict[fx.Node, int] = {}
        self.dynamic: Dict[fx.Node, bool] = {}  # computed from the model's inputs
        for i, n in enumerate(self.nodes):
            inputs = n.all_input_nodes
            mask = 1 << i
            for a in inputs:
                mask |= self.ancestors[a]
            self.ancestors[n] = mask
            self.dynamic[n] = n.op == "placeholder" or any(self.dynamic[a] for a in inputs)

    def is_ancestor(self, a: fx.Node, b: fx.Node) -> bool:
        """True when ``b`` is computed from ``a`` (``a`` is not ``b``)."""
        return a is not b and bool(self.ancestors[b] >> self.index[a] & 1)

    def has_parameters(self, n: fx.Node) -> bool:
        """The op at ``n`` reads parameters or buffers (a layer, or a functional op given a weight)."""
        if n.op == "call_module":
            m = self.gm.get_submodule(str(n.target))
            return any(True for _ in m.parameters()) or any(True for _ in m.buffers())
        # a functional op reading a tensor that does not come from the inputs: a weight, a scale
        return n.op != "get_attr" and any(not self.dynamic[a] for a in n.all_input_nodes)

    def is_shortcut_op(self, n: fx.Node) -> bool:
        if n.op == "call_module":
            return isinstance(self.gm.get_submodule(str(n.target)), _SHORTCUT_MODULES)
        if n.op == "call_function":
            return n.target in _SHORTCUT_FUNCTIONS
        return n.op == "call_method" and n.target in _SHORTCUT_METHODS

    def shortcut_chain(self, n: fx.Node) -> List[fx.Node]:
        """``n``, then its one model-dependent input, and so on, while the ops are shortcut ops."""
        chain = [n]
        while self.is_shortcut_op(n):
            inputs = [a for a in n.all_input_nodes if self.dynamic[a]]
            if len(inputs) != 1:
                break
            n = inputs[0]
            chain.append(n)
        return chain

    def body_has_parameters(self, fork: fx.Node, out: fx.Node) -> bool:
        """Some op between ``fork`` (excluded) and ``out`` (included) reads parameters."""
        lo, hi = self.index[fork], self.index[out]
        return any(self.ancestors[out] >> i & 1 and self.ancestors[self.nodes[i]] >> lo & 1
                   and self.has_parameters(self.nodes[i]) for i in range(lo + 1, hi + 1))


def classify(g: _Graph, skip: fx.Node, out: fx.Node) -> Optional[str]:
    """``"identity"`` or ``"projection"`` if ``skip + out`` is a residual join with skip X, else None.

    The rule: both operands are computed from the model's inputs (an add of a parameter, a buffer or a
    constant, such as a positional embedding or a bias, is no join); ``skip`` leads back through a chain
    of shortcut ops (linear layers, BatchNorm, average pooling, dropout, views; no nonlinearity) to a
    fork node P from which ``out`` is computed, through at least one op with parameters and not through
    shortcut ops alone. The join is "identity" when the chain holds no parameters (``skip`` is P or a
    view of it), "projection" when it does (``skip = D(P)``, e.g. a strided 1x1 convolution and BatchNorm).
    A sum of two features that both went through nonlinearities, or of two linear maps of one tensor,
    has no such fork and is left alone.
    """
    if not (g.dynamic[skip] and g.dynamic[out]):
        return None
    chain = g.shortcut_chain(skip)
    for k, fork in enumerate(chain):
        if g.is_ancestor(fork, out):
            if fork in g.shortcut_chain(out) or not g.body_has_parameters(fork, out):
                return None
            return "projection" if any(g.has_parameters(n) for n in chain[:k]) else "identity"
    return None


def _operands(n: fx.Node) -> Optional[Tuple[fx.Node, fx.Node]]:
    """The two tensor operands of an add node (no ``alpha``, no ``out``), or None for any other node."""
    is_add = (n.op == "call_function" and n.target in _ADD_FUNCTIONS) or \
             (n.op == "call_method" and n.target in _ADD_METHODS)
    if not is_add or any(k not in ("input", "other") for k in n.kwargs):
        return None
    return _node_pair(list(n.args) + [n.kwargs[k] for k in ("input", "other") if k in n.kwargs])


def _node_pair(args: Sequence[object]) -> Optional[Tuple[fx.Node, fx.Node]]:
    """``args`` as two graph nodes, or None if they are not exactly two nodes."""
    if len(args) != 2 or not isinstance(args[0], fx.Node) or not isinstance(args[1], fx.Node):
        return None
    return args[0], args[1]


def _block_of(n: fx.Node, own: bool) -> str:
    stack = list((n.meta.get("nn_module_stack") or {}).values())
    if own:  # the node is a join module: its block is the module that called it
        stack = stack[:-1]
    return stack[-1][0] if stack else ""


def _mutates_a_live_tensor(g: _Graph, n: fx.Node, target: fx.Node) -> bool:
    """An in-place add whose first operand is read after it: replacing it would change what that read sees."""
    return n.target in _INPLACE and any(u is not n and g.index[u] > g.index[n] for u in target.users)


def _join_module_candidate(g: _Graph, n: fx.Node) -> Optional[Candidate]:
    pair = None if n.kwargs else _node_pair(n.args)
    if pair is None:
        return None
    skip, out = pair
    return Candidate(n, True, classify(g, skip, out) or "other", _block_of(n, True), str(n.target))


def _add_candidate(g: _Graph, n: fx.Node) -> Optional[Candidate]:
    operands = _operands(n)
    if operands is None or _mutates_a_live_tensor(g, n, operands[0]):
        return None
    a, b = operands
    found = [(kind, s, o) for s, o in ((a, b), (b, a)) for kind in [classify(g, s, o)] if kind]
    # Both directions qualify only in contrived graphs; which term is X is then unclear, so leave it.
    if len(found) != 1:
        return None
    kind, skip, _ = found[0]
    return Candidate(n, skip is a, kind, _block_of(n, False))


def candidates(gm: fx.GraphModule) -> List[Candidate]:
    """Every residual join of a traced model, in forward order: adds and the project's join modules."""
    g = _Graph(gm)
    found = []
    for n in g.nodes:
        if n.op == "call_module" and isinstance(gm.get_submodule(n.target), SwapoutJoin):
            c = _join_module_candidate(g, n)
        else:
            c = _add_candidate(g, n)
        if c is not None:
            found.append(c)
    return found
