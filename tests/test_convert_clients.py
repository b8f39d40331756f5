"""swapout.convert on torchvision's and timm's models, built without pretrained weights.

Needs torchvision and timm, which ``.ci/run`` installs into ``.interop/`` (tests/conftest.py puts it on the
path); skipped without them. With a CPU-only torch, torchvision's compiled operators cannot load:
tests/conftest.py leaves out their meta registrations before anything imports torchvision, which the
pure-Python models built here do not need.
"""

import math
from collections import Counter

import pytest
import torch
from test_convert import _joins, _recovered_masks

import swapout

torchvision = pytest.importorskip("torchvision")
timm = pytest.importorskip("timm")

# name, constructor, input shape (ViTs need 224x224: one image), joins found, of which projections
CLIENTS = {
    "tv_resnet18": (lambda: torchvision.models.resnet18(num_classes=10), (2, 3, 32, 32), 8, 3),
    "tv_resnet50": (lambda: torchvision.models.resnet50(num_classes=10), (2, 3, 32, 32), 16, 4),
    "tv_vit_b_16": (lambda: torchvision.models.vit_b_16(num_classes=10), (1, 3, 224, 224), 24, 0),
    # timm zeroes each block's last BatchNorm scale, so F(X) = 0 and no mask could be read off the output
    "timm_resnet18": (lambda: timm.create_model("resnet18", pretrained=False, num_classes=10, zero_init_last=False),
                      (2, 3, 32, 32), 8, 3),
    "timm_vit_tiny": (lambda: timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10),
                      (1, 3, 224, 224), 24, 0),
}


@pytest.fixture(params=sorted(CLIENTS))
def client(request):
    make, shape, count, projections = CLIENTS[request.param]
    torch.manual_seed(0)
    return request.param, make, torch.randn(shape), count, projections


def test_joins_found(client):
    name, make, _, count, projections = client
    joins = swapout.find_joins(make())
    assert Counter(j.kind for j in joins) == Counter({"identity": count - projections, "projection": projections}) \
        + Counter()  # + drops a zero count
    assert len({j.name for j in joins}) == count
    if "vit" in name:  # the positional-embedding add is not among them, and stays in the converted graph
        converted = swapout.convert(make())
        pos = [n for n in converted.graph.nodes if n.op == "call_function" and "add" in str(n.target)
               and any(getattr(a, "op", None) == "get_attr" and "pos" in a.target for a in n.args)]
        assert len(pos) == 1


def test_theta_one_is_bit_identical_state_dicts_load_both_ways_and_masks_follow_theta(client, one_thread):
    name, make, x, count, _ = client
    model = make().eval()
    converted = swapout.convert(model, theta1=1, theta2=1)
    with torch.no_grad():
        assert torch.equal(converted(x), model(x))
    assert set(converted.state_dict()) == set(model.state_dict())
    make().load_state_dict(converted.state_dict())
    converted.load_state_dict(make().state_dict())

    sampled = swapout.convert(model, theta1=0.7, theta2=0.4).train()
    with torch.no_grad():
        masks = _recovered_masks(sampled, x)
    assert len(masks) == count
    m1, m2 = torch.cat([m for m, _ in masks]), torch.cat([m for _, m in masks])
    for m, theta in ((m1, 0.7), (m2, 0.4)):
        assert m.numel() > 10_000
        assert abs(m.mean().item() - theta) < 5 * math.sqrt(theta * (1 - theta) / m.numel())  # 5 standard errors


def test_a_training_step_runs_on_a_converted_resnet(one_thread):
    model = swapout.convert(torchvision.models.resnet18(num_classes=10))
    assert [j.thetas[0] for j in _joins(model)] == [1 - 0.5 * i / 7 for i in range(8)]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.arange(4))
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters())


def test_converting_a_vits_blocks_keeps_its_other_methods(one_thread):
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        before = model.forward_features(x)
        model.blocks = swapout.convert(model.blocks, theta1=1, theta2=1)
        assert len(_joins(model)) == 24 and torch.equal(model.forward_features(x), before)
    model.reset_classifier(5)
    assert model(x).shape == (1, 5)
