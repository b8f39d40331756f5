"""The paper's "ResNet Ours" (section 4): the networks that every swapout experiment trains.

Compared with He et al.'s CIFAR ResNets: subsampling by 2x2 average pooling instead of strided
convolutions, learned 1x1 projection shortcuts between groups, and a Network-in-Network head (a 1x1
convolution to the classes, then global average pooling) instead of pooling plus a linear layer.
Every convolution carries a bias, as in the paper's Lua Torch code; with that the parameter counts
equal the paper's (20-layer W x 1: 273,066 = 0.27M; W x 2: 1.09M; 32-layer W x 4: 7.43M).

Depth is 6n+2: a stem convolution, three groups of n two-convolution blocks with (16, 32, 64) x k
filters, and the head convolution. Registered as ``resnet_v2_ours`` (pre-activation, Swapout v2) and
``resnet_v1_ours`` (post-activation, Swapout v1).
"""

from __future__ import annotations

from functools import partial
from typing import List, Optional

import torch.nn.functional as F
from torch import Tensor, nn

from ..methods import JoinSpec
from .common import block_joins, check_depth, check_size, conv1x1, conv3x3, he_init, stages
from .registry import register_model

__all__ = ["ResNetOurs"]


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
        join: how blocks join their skip input and output (`swapout.JoinSpec`); schedules run
            over the 3n blocks, first to last. None: swapout with Linear(1, 0.5) for both thetas.
        preact: pre-activation (v2) blocks if True, post-activation (v1) otherwise.

    Raises:
        ValueError: if ``depth`` is not of the form 6n+2 with n >= 1, ``width`` or ``num_classes`` is not a
            positive integer, or ``join`` is not a `swapout.JoinSpec`.
    """

    def __init__(self, depth: int = 20, width: int = 1, num_classes: int = 10, join: Optional[JoinSpec] = None,
                 preact: bool = True):
        super().__init__()
        n = check_depth(depth, 2, "resnet_v2_ours" if preact else "resnet_v1_ours")
        check_size(width, num_classes)
        widths = [16 * width, 32 * width, 64 * width]
        stem: List[nn.Module] = [conv3x3(3, widths[0], bias=True)]
        if not preact:
            stem += [nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)]
        self.stem = nn.Sequential(*stem)
        self.blocks = stages(PreActBlock if preact else PostActBlock, widths, n, widths[0],
                             block_joins(join, "swapout", 3 * n))
        head = [nn.BatchNorm2d(widths[-1]), nn.ReLU(inplace=True)] if preact else []
        self.head = nn.Sequential(*head, conv1x1(widths[-1], num_classes, bias=True),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        he_init(self)

    def forward(self, x: Tensor) -> Tensor:
        """Classify a batch of images.

        Args:
            x: images, ``(N, 3, H, W)``, e.g. 32x32 CIFAR images.

        Returns:
            Logits, ``(N, num_classes)``.
        """
        return self.head(self.blocks(self.stem(x)))


register_model(partial(ResNetOurs, preact=True), "resnet_v2_ours")
register_model(partial(ResNetOurs, preact=False), "resnet_v1_ours")
