"""A registry of model constructors, in the style of timm: ``create_model(name, **kwargs)``."""

from __future__ import annotations

from typing import Callable, Dict, List

from torch import nn

_MODELS: Dict[str, Callable[..., nn.Module]] = {}

__all__ = ["register_model", "create_model", "list_models"]


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: make ``fn`` available to :func:`create_model` under its own name."""
    _MODELS[fn.__name__] = fn
    return fn


def list_models() -> List[str]:
    """Names of all registered models, sorted."""
    return sorted(_MODELS)


def create_model(name: str, **kwargs) -> nn.Module:
    """Build the registered model ``name``; keyword arguments go to its constructor.

    Common arguments: ``depth``, ``width`` (multiplier k of the base widths), ``num_classes``,
    ``method`` (see :data:`swapout.layers.METHODS`), ``theta1``, ``theta2`` (number, schedule string
    or list) and ``granularity``.
    """
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return _MODELS[name](**kwargs)
