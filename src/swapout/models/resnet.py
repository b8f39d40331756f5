"""He et al.'s CIFAR ResNets, the comparison points of Tables 4 and 5.

* ``resnet_v1``: "Deep residual learning for image recognition" (He et al. 2016a), section 4.2:
  depth 6n+2, basic blocks, strided convolutions, parameter-free shortcuts (option A: subsample and
  zero-pad channels), global average pooling and a linear layer. ResNet-20 has 0.27M parameters,
  ResNet-110 1.7M, ResNet-1202 19.4M.
* ``preact_resnet``: "Identity mappings in deep residual networks" (He et al. 2016b): depth 9n+2,
  pre-activation bottleneck blocks (1x1, 3x3, 1x1) with 4x expansion, 1x1 projection shortcuts where
  the shape changes. ResNet-164 has 1.7M parameters, ResNet-1001 10.2M.

Both take a ``join`` like the paper's own models, so stochastic depth on ResNet-110 (Table 5) is
``create_model("resnet_v1", depth=110, method="stochastic_depth")``.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..methods import JoinSpec
from .common import block_joins, check_depth, check_size, conv1x1, conv3x3, he_init, stages
from .registry import register_model

__all__ = ["ResNetV1", "PreActResNet"]


class BasicBlock(nn.Module):
    """He 2016a block: ``ReLU(join(shortcut(x), BN(conv(ReLU(BN(conv(x)))))))``, option-A shortcut."""

    def __init__(self, cin: int, cout: int, stride: int, join: nn.Module):
        super().__init__()
        self.conv1, self.bn1 = conv3x3(cin, cout, stride), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = conv3x3(cout, cout), nn.BatchNorm2d(cout)
        self.stride, self.pad = stride, cout - cin
        self.join = join

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        skip = x[:, :, ::self.stride, ::self.stride] if self.stride > 1 else x
        if self.pad:
            skip = F.pad(skip, (0, 0, 0, 0, 0, self.pad))
        return F.relu(self.join(skip, out))


class Bottleneck(nn.Module):
    """He 2016b pre-activation bottleneck: BN-ReLU-conv1x1, BN-ReLU-conv3x3, BN-ReLU-conv1x1."""

    def __init__(self, cin: int, planes: int, stride: int, join: nn.Module):
        super().__init__()
        cout = 4 * planes
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), conv1x1(cin, planes)
        self.bn2, self.conv2 = nn.BatchNorm2d(planes), conv3x3(planes, planes, stride)
        self.bn3, self.conv3 = nn.BatchNorm2d(planes), conv1x1(planes, cout)
        self.shortcut = conv1x1(cin, cout, stride) if stride != 1 or cin != cout else None
        self.join = join

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(h)
        out = self.conv1(h)
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return self.join(skip, out)


class ResNetV1(nn.Module):
    """He et al. 2016a CIFAR ResNet; ``depth`` 6n+2, widths (16, 32, 64) x ``width``.

    ``join`` (a `swapout.JoinSpec`) defaults to plain residual joins.

    Args:
        depth: number of layers, 6n+2 (20, 56, 110, ...).
        width: multiplier k of the group widths (16, 32, 64).
        num_classes: 10 for CIFAR-10, 100 for CIFAR-100.
        join: how blocks join their skip input and output (`swapout.JoinSpec`); schedules run over the 3n
            blocks, first to last. None: plain residual joins.

    Raises:
        ValueError: if ``depth`` is not of the form 6n+2 with n >= 1, ``width`` or ``num_classes`` is not a
            positive integer, or ``join`` is not a `swapout.JoinSpec`.
    """

    def __init__(self, depth: int = 20, width: int = 1, num_classes: int = 10, join: Optional[JoinSpec] = None):
        super().__init__()
        n = check_depth(depth, 2, "resnet_v1")
        check_size(width, num_classes)
        widths = [16 * width, 32 * width, 64 * width]
        self.stem = nn.Sequential(conv3x3(3, widths[0]), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        self.blocks = stages(lambda cin, cout, sub, j: BasicBlock(cin, cout, 2 if sub else 1, j), widths, n,
                             widths[0], block_joins(join, "resnet", 3 * n))
        self.fc = nn.Linear(widths[-1], num_classes)
        he_init(self)

    def forward(self, x: Tensor) -> Tensor:
        """Classify a batch of images.

        Args:
            x: images, ``(N, 3, H, W)``, e.g. 32x32 CIFAR images.

        Returns:
            Logits, ``(N, num_classes)``.
        """
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1), 1))


class PreActResNet(nn.Module):
    """He et al. 2016b CIFAR pre-activation bottleneck ResNet; ``depth`` 9n+2 (164, 1001).

    ``join`` (a `swapout.JoinSpec`) defaults to plain residual joins.

    Args:
        depth: number of layers, 9n+2 (164, 1001, ...).
        width: multiplier k of the bottleneck widths (16, 32, 64); each block outputs 4x its width.
        num_classes: the classes of the head (CIFAR-100: 100).
        join: the `swapout.JoinSpec` of the 3n bottleneck blocks, its schedules first block to last (None: X + F(X)).

    Raises:
        ValueError: for a depth other than 9n+2 (n >= 1), a width or class count that is not a positive integer,
            or a ``join`` that is not a `swapout.JoinSpec`.
    """

    def __init__(self, depth: int = 164, width: int = 1, num_classes: int = 10, join: Optional[JoinSpec] = None):
        super().__init__()
        n = check_depth(depth, 3, "preact_resnet")
        check_size(width, num_classes)
        self.stem = conv3x3(3, 16)
        planes = [16 * width, 32 * width, 64 * width]
        # stages() passes output widths; a bottleneck block's output is 4x its planes
        self.blocks = stages(lambda cin, cout, sub, j: Bottleneck(cin, cout // 4, 2 if sub else 1, j),
                             [4 * p for p in planes], n, 16, block_joins(join, "resnet", 3 * n))
        self.bn = nn.BatchNorm2d(4 * planes[-1])
        self.fc = nn.Linear(4 * planes[-1], num_classes)
        he_init(self)

    def forward(self, x: Tensor) -> Tensor:
        """Classify a batch of images.

        Args:
            x: images, ``(N, 3, H, W)``, e.g. 32x32 CIFAR images.

        Returns:
            Logits, ``(N, num_classes)``.
        """
        h = F.relu(self.bn(self.blocks(self.stem(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))


register_model(ResNetV1, "resnet_v1")
register_model(PreActResNet, "preact_resnet")
