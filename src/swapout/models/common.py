"""Pieces shared by the paper's networks: argument checks, convolutions, initialisation."""

from __future__ import annotations

import math
from typing import Callable, List, Optional, Sequence

from torch import nn

from ..checks import check_positive_int
from ..methods import JoinSpec


def check_depth(depth: int, per_block: int, name: str) -> int:
    """Number of blocks per group for a CIFAR ResNet of ``depth = 3*per_block*n + 2`` layers."""
    step = 3 * per_block
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < step + 2 or (depth - 2) % step:
        raise ValueError(f"{name} needs depth = {step}n+2 with n >= 1 ({step + 2}, {2 * step + 2}, "
                         f"{3 * step + 2}, ...), got {depth!r}")
    return (depth - 2) // step


def check_size(width: int, num_classes: int) -> None:
    """Width multiplier and number of classes must be positive integers."""
    check_positive_int(width, "width")
    check_positive_int(num_classes, "num_classes")


def block_joins(join: Optional[JoinSpec], default_method: str, num_blocks: int) -> List[nn.Module]:
    """One join per block from ``join`` (a `swapout.JoinSpec`), or ``default_method``'s if None."""
    if join is None:
        join = JoinSpec(default_method)
    if not isinstance(join, JoinSpec):
        raise ValueError(f"join must be a swapout.JoinSpec, e.g. JoinSpec('swapout', theta1='linear(1,0.5)'), "
                         f"got {join!r}; create_model() also takes method=, theta1=, ... as keywords")
    return list(join.joins(num_blocks))


def stages(block: Callable[[int, int, bool, nn.Module], nn.Module], widths: Sequence[int], n: int, cin: int,
           joins: Sequence[nn.Module]) -> nn.Sequential:
    """Three groups of ``n`` blocks of ``widths[g]`` channels; the first block of groups 2 and 3 subsamples.

    ``block(cin, cout, subsample, join)`` builds one block; ``joins`` holds one join per block, first to last.
    """
    blocks, remaining = [], iter(joins)
    for g, cout in enumerate(widths):
        for b in range(n):
            blocks.append(block(cin, cout, g > 0 and b == 0, next(remaining)))
            cin = cout
    return nn.Sequential(*blocks)


def conv3x3(cin: int, cout: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=bias)


def conv1x1(cin: int, cout: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=bias)


def he_init(model: nn.Module) -> nn.Module:
    """He-normal initialisation (He et al. 2015) as in the Torch ResNet code of the time.

    Convolutions get N(0, 2/n) with n = k*k*out_channels, biases zero, BatchNorm (1, 0).
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)
    return model
