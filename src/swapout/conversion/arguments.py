"""The arguments of `swapout.convert` and `swapout.find_joins` that name parts of a model, checked
before the model is traced: a wrong type or a path that names nothing is an error that says what exists."""

from __future__ import annotations

from difflib import get_close_matches
from typing import List, Optional, Sequence, Tuple, Union

from torch import nn

from .graph import LeafSpec

__all__ = ["Patterns", "patterns", "leaf_spec"]

Patterns = Union[None, str, Sequence[str]]
"""Which joins `swapout.convert` and `swapout.find_joins` take (``include``) or leave out (``exclude``): None
(every join), one glob pattern in `fnmatch` syntax (``"layer3.*"``), or a list or tuple of them. A pattern
matches a join when it matches the join module's path (``"layer3.0.swapout_join"``) or the path of the block
whose forward holds the join (``"layer3.0"``)."""


def patterns(value: Patterns, name: str) -> Optional[Tuple[str, ...]]:
    """``include`` or ``exclude`` checked: None, one module path pattern, or a list or tuple of them."""
    if value is None:
        return None
    patterns = (value,) if isinstance(value, str) else tuple(value) if isinstance(value, (list, tuple)) else ()
    if not patterns or not all(isinstance(p, str) and p for p in patterns):
        raise ValueError(f"{name} must be None, a module path pattern or a list or tuple of them (e.g. 'layer3.*' "
                         f"or ['layer3.*', 'layer4.0']), got {value!r}")
    return patterns


def leaf_spec(model: nn.Module, value: LeafSpec) -> LeafSpec:
    """``leaf_modules`` checked: module paths that exist in ``model``, or module classes."""
    items = [value] if isinstance(value, (str, type)) else list(value) if isinstance(value, (list, tuple, set)) \
        else None
    if items is None or not all((isinstance(v, str) and v) or (isinstance(v, type) and issubclass(v, nn.Module))
                                for v in items):
        raise ValueError(f"leaf_modules must be a list of module paths ('encoder.head') or torch.nn.Module classes, "
                         f"got {value!r}")
    names = [n for n, _ in model.named_modules() if n]
    for path in (v for v in items if isinstance(v, str)):
        if path not in names:
            raise ValueError(f"leaf_modules: {type(model).__name__} has no module {path!r}; {_nearby(names, path)}")
    return items


def _nearby(names: List[str], path: str) -> str:
    """What exists near ``path``: the children of its deepest existing parent, and the closest path if one is close."""
    parts = path.split(".")
    parent = next((p for k in range(len(parts) - 1, 0, -1) for p in [".".join(parts[:k])] if p in names), "")
    children = [n for n in names if n.rpartition(".")[0] == parent]
    listed = ", ".join(children[:8]) + (", ..." if len(children) > 8 else "")
    close = get_close_matches(path, names, n=1, cutoff=0.8)
    return (f"did you mean {close[0]!r}? " if close else "") + \
        f"the modules {'under ' + repr(parent) if parent else 'at its top level'} are {listed or 'none'}"
