import pytest
import torch

import swapout
from swapout.layers import SkipForward, StochasticDepth, Swapout


def test_registry_lists_the_paper_models():
    assert {"resnet_v2_ours", "resnet_v1_ours", "resnet_v1", "preact_resnet"} <= set(swapout.list_models())


@pytest.mark.parametrize("name,depth", [("resnet_v2_ours", 20), ("resnet_v1_ours", 8), ("resnet_v1", 8),
                                        ("preact_resnet", 11)])
@pytest.mark.parametrize("method", list(swapout.METHODS))
def test_every_model_and_method_runs_forward_and_backward(name, depth, method):
    model = swapout.create_model(name, depth=depth, num_classes=7, method=method)
    out = model(torch.randn(4, 3, 32, 32))
    assert out.shape == (4, 7)
    out.sum().backward()
    model.eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_schedule_runs_first_block_to_last():
    model = swapout.create_model("resnet_v2_ours", depth=20, theta1="linear(1,0.5)", theta2="0.8")
    joins = [m for m in model.modules() if isinstance(m, Swapout)]
    assert len(joins) == 9
    assert joins[0].thetas == (1.0, 0.8) and joins[-1].thetas == (0.5, 0.8)
    assert joins[4].thetas[0] == pytest.approx(0.75)
    explicit = swapout.create_model("resnet_v2_ours", depth=8, theta1=[0.1, 0.2, 0.3], theta2=0.5)
    assert [j.thetas for j in explicit.modules() if isinstance(j, Swapout)] == [(0.1, 0.5), (0.2, 0.5), (0.3, 0.5)]


def test_methods_build_their_special_case():
    sd = swapout.create_model("resnet_v2_ours", depth=8, method="stochastic_depth", theta2="linear(1,0.5)")
    joins = [m for m in sd.modules() if isinstance(m, StochasticDepth)]
    assert [j.thetas for j in joins] == [(1.0, 1.0), (1.0, 0.75), (1.0, 0.5)] and joins[0].granularity == "batch"
    sf = swapout.create_model("resnet_v2_ours", depth=8, method="skipforward", theta1=0.3)
    assert [m.thetas for m in sf.modules() if isinstance(m, SkipForward)] == [(0.3,)] * 3
    do = swapout.create_model("resnet_v2_ours", depth=8, method="dropout", theta2=0.6)
    assert all(m.thetas == (0.0, 0.6) for m in do.modules() if isinstance(m, Swapout))


def test_resnet_method_is_deterministic_in_training():
    model = swapout.create_model("resnet_v2_ours", depth=8, method="resnet")
    x = torch.randn(4, 3, 32, 32)
    assert torch.equal(model(x), model(x))


def test_he_normal_initialisation():
    model = swapout.create_model("resnet_v2_ours", depth=8, width=4)
    conv = model.blocks[-1].conv2  # 256 -> 256, 3x3: std = sqrt(2 / (9 * 256))
    assert conv.weight.std().item() == pytest.approx((2 / (9 * 256)) ** 0.5, rel=0.02)
    assert torch.all(conv.bias == 0)


@pytest.mark.parametrize("kwargs,match", [
    (dict(name="resnet_v3"), "unknown model"),
    (dict(name="resnet_v2_ours", depth=21), "6n\\+2"),
    (dict(name="resnet_v2_ours", depth=2), "6n\\+2"),
    (dict(name="preact_resnet", depth=21), "9n\\+2"),
    (dict(name="resnet_v2_ours", width=0), "width"),
    (dict(name="resnet_v2_ours", num_classes=0), "num_classes"),
    (dict(name="resnet_v2_ours", method="dropconnect"), "method"),
    (dict(name="resnet_v2_ours", theta1=1.5), "theta"),
    (dict(name="resnet_v2_ours", theta2="linear(1,2)"), "theta|b must"),
    (dict(name="resnet_v2_ours", theta1="fast"), "schedule"),
    (dict(name="resnet_v2_ours", theta1=[0.5, 0.5]), "exactly 9"),
    (dict(name="resnet_v2_ours", method="dropout", theta1=0.5), "theta1"),
    (dict(name="resnet_v2_ours", method="resnet", theta2=0.5), "theta2"),
    (dict(name="resnet_v2_ours", granularity="pixel"), "granularity"),
    (dict(name="resnet_v2_ours", method="stochastic_depth", granularity="unit"), "granularity"),
])
def test_bad_model_arguments_raise_value_error(kwargs, match):
    name = kwargs.pop("name")
    with pytest.raises(ValueError, match=match):
        swapout.create_model(name, **kwargs)
