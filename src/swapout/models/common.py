"""Pieces shared by the paper's networks: argument checks, convolutions, initialisation."""

from __future__ import annotations

import math

from torch import nn


def check_depth(depth: int, per_block: int, name: str) -> int:
    """Number of blocks per group for a CIFAR ResNet of ``depth = 3*per_block*n + 2`` layers."""
    step = 3 * per_block
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < step + 2 or (depth - 2) % step:
        raise ValueError(f"{name} needs depth = {step}n+2 with n >= 1 ({step + 2}, {2 * step + 2}, "
                         f"{3 * step + 2}, ...), got {depth!r}")
    return (depth - 2) // step


def check_positive(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


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
