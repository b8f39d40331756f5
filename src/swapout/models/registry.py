"""A registry of model constructors, in the style of timm: ``create_model(name, **kwargs)``."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, List, Optional

from torch import nn

from ..methods import JoinSpec

_MODELS: Dict[str, Callable[..., nn.Module]] = {}

__all__ = ["register_model", "create_model", "list_models"]

_JOIN_ARGS = ("method", "theta1", "theta2", "granularity", "skipforward_on")


def register_model(fn: Callable[..., nn.Module], name: Optional[str] = None) -> Callable[..., nn.Module]:
    """Make ``fn`` available to `create_model` under ``name`` (its own name by default).

    Usable as a decorator. ``fn`` takes the network's own arguments and, if it has swapout joins, a
    ``join`` argument (a `swapout.JoinSpec`).

    Args:
        fn: a callable that builds the network, e.g. its class.
        name: the name to register it under; ``fn.__name__`` if None. An existing name is replaced.

    Returns:
        ``fn`` itself, unchanged.
    """
    _MODELS[name or fn.__name__] = fn
    return fn


def list_models() -> List[str]:
    """Names of all registered models, sorted.

    Returns:
        The registered names, in alphabetical order.
    """
    return sorted(_MODELS)


def create_model(name: str, join: Optional[JoinSpec] = None, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name``.

    Args:
        name: a name from `list_models`.
        join: how blocks join X and F(X); or give its fields as keywords instead: ``method`` (see
            `swapout.METHODS`), ``theta1``, ``theta2`` (number, schedule string or list),
            ``granularity`` and ``skipforward_on``. Without either, the model's default method.
        **kwargs: the network's own arguments, e.g. ``depth``, ``width`` (multiplier k of the base
            widths) and ``num_classes``.

    Returns:
        The new network, freshly initialised.

    Raises:
        ValueError: if ``name`` is not registered, or both ``join`` and any of its fields are given.

    Examples:
        >>> import swapout
        >>> model = swapout.create_model("resnet_v2_ours", depth=20, width=1, num_classes=10,
        ...                              method="swapout", theta1="linear(1,0.5)", theta2="linear(1,0.5)")
        >>> sum(p.numel() for p in model.parameters())     # the paper's 0.27M
        273066
        >>> join = swapout.JoinSpec("stochastic_depth", theta2="linear(1,0.5)")
        >>> type(swapout.create_model("resnet_v1", depth=20, join=join)).__name__
        'ResNetV1'
    """
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    fn = _MODELS[name]
    join_args = {k: kwargs.pop(k) for k in _JOIN_ARGS if k in kwargs}
    if join_args and join is not None:
        raise ValueError(f"give either join or its fields ({', '.join(join_args)}), not both")
    if "join" not in inspect.signature(fn).parameters:  # a model that takes the fields themselves
        return fn(**join_args, **kwargs)
    if join_args:
        join = JoinSpec(**join_args)
    return fn(**kwargs) if join is None else fn(join=join, **kwargs)
