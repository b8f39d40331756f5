"""The paper's "ResNet Ours" (section 4): the networks that every swapout experiment trains.

Compared with He et al.'s CIFAR ResNets: subsampling by 2x2 average pooling instead of strided
convolutions, learned 1x1 projection shortcuts between groups, and a Network-in-Network head (a 1x1
convolution to the classes, then global average pooling) instead of pooling plus a linear layer.
Every convolution carries a bias, as in the paper's Lua Torch code; with that the parameter counts
equal the paper's (20-layer W x 1: 273,066 = 0.27M; W x 2: 1.09M; 32-layer W x 4: 7.43M).

Depth is 6n+2: a stem convolution, three groups of n two-convolution blocks with (16, 32, 64) x k
filters, and the head convolution.
"""

from __future__ import annotations

from typing import Optional

import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import make_joins
from .common import check_depth, check_positive, conv1x1, conv3x3, he_init
from .registry import register_model

__all__ = ["ResNetOurs", "resnet_v2_ours", "resnet_v1_ours"]


class PreActBlock(nn.Module):
    """v2 block: ``join(skip, conv(BN-ReLU(conv(BN-ReLU(x)))))``, subsampling the pre-activation."""

    def __init__(self, cin: int, cout: int, subsample: bool, join: nn.Module):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), conv3x3(cin, cout, bias=True)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), conv3x3(cout, cout, bias=True)
        self.pool = nn.AvgPool2d(2) if subsample else nn.Identity()
        self.shortcut = conv1x1(cin, cout, bias=True) if subsample or cin != cout else None
        self.join = join

    def forward(self, x: Tensor) -> Tensor:
        h = self.pool(F.relu(self.bn1(x)))
        skip = x if self.shortcut is None else self.shortcut(h)
        return self.join(skip, self.conv2(F.relu(self.bn2(self.conv1(h)))))


class PostActBlock(nn.Module):
    """v1 block: ``ReLU(join(skip, BN(conv(ReLU(BN(conv(x)))))))``."""

    def __init__(self, cin: int, cout: int, subsample: bool, join: nn.Module):
        super().__init__()
        self.conv1, self.bn1 = conv3x3(cin, cout, bias=True), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = conv3x3(cout, cout, bias=True), nn.BatchNorm2d(cout)
        self.pool = nn.AvgPool2d(2) if subsample else nn.Identity()
        self.shortcut = conv1x1(cin, cout, bias=True) if subsample or cin != cout else None
        self.join = join

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(x)
        skip = x if self.shortcut is None else self.shortcut(x)
        return F.relu(self.join(skip, self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))))


class ResNetOurs(nn.Module):
    """The paper's modified CIFAR ResNet, pre-activation (``preact=True``, v2) or post-activation (v1).

    Args:
        depth: 6n+2 layers (20, 32, 56, ...).
        width: multiplier k of the group widths (16, 32, 64); the paper's W x k.
        num_classes: 10 for CIFAR-10, 100 for CIFAR-100.
        method, theta1, theta2, granularity: how blocks join their skip input and output; see
            :func:`swapout.layers.make_joins`. Schedules run over the 3n blocks, first to last.
        preact: pre-activation (v2) blocks if True, post-activation (v1) otherwise.
    """

    def __init__(self, depth: int = 20, width: int = 1, num_classes: int = 10, method: str = "swapout",
                 theta1=None, theta2=None, granularity: Optional[str] = None, preact: bool = True):
        super().__init__()
        n = check_depth(depth, 2, "resnet_v2_ours" if preact else "resnet_v1_ours")
        check_positive(width, "width")
        check_positive(num_classes, "num_classes")
        joins = iter(make_joins(method, 3 * n, theta1, theta2, granularity))
        widths = [16 * width, 32 * width, 64 * width]
        block = PreActBlock if preact else PostActBlock
        stem = [conv3x3(3, widths[0], bias=True)]
        if not preact:
            stem += [nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)]
        self.stem = nn.Sequential(*stem)
        blocks, cin = [], widths[0]
        for g, cout in enumerate(widths):
            for b in range(n):
                blocks.append(block(cin, cout, subsample=g > 0 and b == 0, join=next(joins)))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        head = [nn.BatchNorm2d(cin), nn.ReLU(inplace=True)] if preact else []
        self.head = nn.Sequential(*head, conv1x1(cin, num_classes, bias=True),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        he_init(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.blocks(self.stem(x)))


@register_model
def resnet_v2_ours(depth: int = 20, width: int = 1, num_classes: int = 10, method: str = "swapout",
                   theta1=None, theta2=None, granularity: Optional[str] = None) -> ResNetOurs:
    """The paper's pre-activation "ResNet Ours" (Swapout v2); see :class:`ResNetOurs`."""
    return ResNetOurs(depth, width, num_classes, method, theta1, theta2, granularity, preact=True)


@register_model
def resnet_v1_ours(depth: int = 20, width: int = 1, num_classes: int = 10, method: str = "swapout",
                   theta1=None, theta2=None, granularity: Optional[str] = None) -> ResNetOurs:
    """The paper's post-activation "ResNet Ours" (Swapout v1); see :class:`ResNetOurs`."""
    return ResNetOurs(depth, width, num_classes, method, theta1, theta2, granularity, preact=False)
