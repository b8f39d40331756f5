"""The order of layers inside the blocks, stems and heads, against hand-written functional compositions.

Parameter counts cannot tell a BN-ReLU-conv block from a conv-BN-ReLU one. Here every network is run
next to a composition of ``F.conv2d``, ``F.batch_norm``, ``F.relu`` and ``F.avg_pool2d`` written from
the papers' descriptions, with the network's own weights. BatchNorm gets random statistics and affine
parameters and convolutions random biases, so that no layer is close to an identity and any change of
order changes the output. Joins are plain residual sums and BatchNorm uses its running statistics.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import swapout

N_PER_GROUP = 2  # depth 6*2+2 = 14 (He et al.'s bottleneck net: 9*1+2 = 11): every kind of block occurs


pytestmark = pytest.mark.usefixtures("one_thread")


def _model(name, depth, width=1):
    torch.manual_seed(0)
    model = swapout.create_model(name, depth=depth, width=width, num_classes=7, method="resnet").double().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(-1.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
            elif isinstance(m, nn.Conv2d) and m.bias is not None:
                m.bias.normal_(0.0, 0.1)
    return model


def bn(x, m):
    return F.batch_norm(x, m.running_mean, m.running_var, m.weight, m.bias, training=False, eps=m.eps)


def conv(x, m, stride=1):
    """A 3x3 convolution keeps the size (padding 1), a 1x1 one has no padding."""
    return F.conv2d(x, m.weight, m.bias, stride=stride, padding=m.weight.shape[-1] // 2)


def _only(container, kind):
    (m,) = [m for m in container.modules() if isinstance(m, kind)]
    return m


def _subsamples(i, n):
    return i in (n, 2 * n)  # the first block of the second and third groups


# -- the paper's "ResNet Ours" -------------------------------------------------------------------------

def preact_block(b, x, subsample):
    """v2: BN-ReLU, (2x2 average pooling), conv, BN-ReLU, conv; the skip is X, or the pooled
    pre-activation through a 1x1 projection when the block subsamples."""
    h = F.relu(bn(x, b.bn1))
    if subsample:
        h = F.avg_pool2d(h, 2)
    skip = conv(h, b.shortcut) if subsample else x
    return skip + conv(F.relu(bn(conv(h, b.conv1), b.bn2)), b.conv2)


def postact_block(b, x, subsample):
    """v1: (2x2 average pooling), conv-BN-ReLU-conv-BN, join with the (projected) input, then ReLU."""
    if subsample:
        x = F.avg_pool2d(x, 2)
    skip = conv(x, b.shortcut) if subsample else x
    return F.relu(skip + bn(conv(F.relu(bn(conv(x, b.conv1), b.bn1)), b.conv2), b.bn2))


def ours_stem(model, x, preact):
    h = conv(x, _only(model.stem, nn.Conv2d))
    return h if preact else F.relu(bn(h, _only(model.stem, nn.BatchNorm2d)))  # v1: conv-BN-ReLU


def ours_head(model, h, preact):
    if preact:  # v2: BN-ReLU before the classifier
        h = F.relu(bn(h, _only(model.head, nn.BatchNorm2d)))
    # Network in Network: a 1x1 convolution to the classes, then global average pooling
    return conv(h, _only(model.head, nn.Conv2d)).mean((2, 3))


@pytest.mark.parametrize("name,preact", [("resnet_v2_ours", True), ("resnet_v1_ours", False)])
def test_ours_blocks_stem_and_head_compose_in_the_papers_order(name, preact):
    model = _model(name, depth=6 * N_PER_GROUP + 2)
    block_ref = preact_block if preact else postact_block
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        h = ours_stem(model, x, preact)
        assert len(model.blocks) == 3 * N_PER_GROUP
        for i, block in enumerate(model.blocks):
            expected = block_ref(block, h, _subsamples(i, N_PER_GROUP))
            torch.testing.assert_close(block(h), expected, msg=f"block {i}")
            h = expected
        assert h.shape == (2, 64, 8, 8)
        torch.testing.assert_close(model(x), ours_head(model, h, preact))


def _calls(model, x):
    """(module name, input) of every submodule call during a forward pass, in the order they ran."""
    calls, handles = [], []
    for name, m in model.named_modules():
        if name and not list(m.children()):
            handles.append(m.register_forward_hook(lambda mod, inp, out, name=name: calls.append((name, inp[0]))))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return calls


def _ordered(names, chain):
    """True when ``chain`` occurs in ``names`` in this order (other calls may come between)."""
    it = iter(names)
    return all(any(n == c for n in it) for c in chain)


@pytest.mark.parametrize("name,preact", [("resnet_v2_ours", True), ("resnet_v1_ours", False)])
def test_ours_execution_order_and_resolutions(name, preact):
    model = _model(name, depth=6 * N_PER_GROUP + 2)
    calls = _calls(model, torch.randn(2, 3, 32, 32, dtype=torch.float64))
    names = [n for n, _ in calls]
    inputs = dict(calls)
    for i in range(3 * N_PER_GROUP):
        p = f"blocks.{i}."
        pool = ["pool"] if _subsamples(i, N_PER_GROUP) else []
        chain = ["bn1", *pool, "conv1", "bn2", "conv2", "join"] if preact else \
            [*pool, "conv1", "bn1", "conv2", "bn2", "join"]
        assert _ordered(names, [p + c for c in chain]), (i, [n for n in names if n.startswith(p)])
        if pool:
            # the 1x1 projection and the first convolution both see the pooled (v2: pre-activated) input
            assert inputs[p + "conv1"].shape[-1] == inputs[p + "pool"].shape[-1] // 2
            assert torch.equal(inputs[p + "shortcut"], inputs[p + "conv1"])
        else:
            assert p + "shortcut" not in inputs
    # the classifier is a 1x1 convolution on the 8x8 feature map, before the global pooling
    head_conv = next(n for n, m in model.named_modules() if m is _only(model.head, nn.Conv2d))
    assert inputs[head_conv].shape[-2:] == (8, 8)


# -- He et al.'s networks (the comparison points of Tables 4 and 5) ------------------------------------

def basic_block(b, x, subsample):
    """He 2016a: conv(stride 2 to subsample)-BN-ReLU-conv-BN, join with the identity (subsampled and
    zero-padded with new channels, option A), then ReLU."""
    stride = 2 if subsample else 1
    out = bn(conv(F.relu(bn(conv(x, b.conv1, stride), b.bn1)), b.conv2), b.bn2)
    skip = x[:, :, ::stride, ::stride]
    skip = torch.cat([skip, skip.new_zeros(skip.shape[0], out.shape[1] - skip.shape[1], *skip.shape[2:])], 1)
    return F.relu(skip + out)


def bottleneck_block(b, x, subsample, first):
    """He 2016b: BN-ReLU-conv1x1, BN-ReLU-conv3x3 (stride 2 to subsample), BN-ReLU-conv1x1; the skip is
    X, or the pre-activation through a 1x1 projection where the shape changes."""
    stride = 2 if subsample else 1
    h = F.relu(bn(x, b.bn1))
    skip = conv(h, b.shortcut, stride) if subsample or first else x
    out = conv(F.relu(bn(conv(h, b.conv1), b.bn2)), b.conv2, stride)
    return skip + conv(F.relu(bn(out, b.bn3)), b.conv3)


def test_he_resnet_v1_composes_in_order():
    model = _model("resnet_v1", depth=6 * N_PER_GROUP + 2)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        h = F.relu(bn(conv(x, _only(model.stem, nn.Conv2d)), _only(model.stem, nn.BatchNorm2d)))
        for i, block in enumerate(model.blocks):
            expected = basic_block(block, h, _subsamples(i, N_PER_GROUP))
            torch.testing.assert_close(block(h), expected, msg=f"block {i}")
            h = expected
        fc = _only(model, nn.Linear)
        torch.testing.assert_close(model(x), F.linear(h.mean((2, 3)), fc.weight, fc.bias))


def test_he_preact_bottleneck_resnet_composes_in_order():
    model = _model("preact_resnet", depth=9 + 2)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        h = conv(x, model.stem)
        for i, block in enumerate(model.blocks):
            expected = bottleneck_block(block, h, _subsamples(i, 1), first=i == 0)
            torch.testing.assert_close(block(h), expected, msg=f"block {i}")
            h = expected
        # the last BN-ReLU, global average pooling and a linear classifier
        fc = _only(model, nn.Linear)
        head_bn = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)][-1]
        h = F.relu(bn(h, head_bn))
        torch.testing.assert_close(model(x), F.linear(h.mean((2, 3)), fc.weight, fc.bias))
