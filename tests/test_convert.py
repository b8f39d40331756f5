"""swapout.convert and swapout.find_joins on the project's own networks and on small hand-written ones."""

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import swapout
from swapout.data.files import MEAN, STD


class Block(nn.Module):
    """An identity block, ``x + body(x)``; with ``join``, the same block with swapout placed by hand."""

    def __init__(self, c, join=None):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                                  nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c))
        self.join = join

    def forward(self, x):
        return x + self.body(x) if self.join is None else self.join(x, self.body(x))


class ProjBlock(nn.Module):
    """A projection block as torchvision writes it: block output first, ``relu(F(x) + D(x))``."""

    def __init__(self, cin, cout, join=None):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout)
        self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=2), nn.BatchNorm2d(cout))
        self.relu = nn.ReLU(inplace=True)
        self.join = join

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        skip = self.down(x)
        out = out + skip if self.join is None else self.join(skip, out)
        return self.relu(out)


class Net(nn.Module):
    def __init__(self, c=8, joins=(None, None, None)):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.blocks = nn.Sequential(Block(c, joins[0]), ProjBlock(c, 2 * c, joins[1]), Block(2 * c, joins[2]))
        self.head = nn.Linear(2 * c, 10)

    def features(self, x):
        return self.blocks(self.stem(x)).mean((2, 3))

    def forward(self, x):
        return self.head(self.features(x))


class Tokens(nn.Module):
    """A tiny transformer-like net: a positional-embedding add, a bias add, one residual MLP block."""

    def __init__(self, d=16, n=4):
        super().__init__()
        self.embed = nn.Linear(8, d)
        self.pos = nn.Parameter(torch.randn(1, n, d))
        self.norm = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.out = nn.Linear(d, 10, bias=False)
        self.bias = nn.Parameter(torch.zeros(10))

    def forward(self, x):
        t = self.embed(x) + self.pos
        t = t + self.mlp(self.norm(t))
        return self.out(t.mean(1)) + self.bias


class TwoFeatures(nn.Module):
    """Sums that form no block: two nonlinear branches, two linear maps of a tensor, a tensor and a linear map of it."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(3, 8, 5, padding=2)
        self.c, self.d, self.e = nn.Conv2d(8, 8, 1), nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 1)

    def forward(self, x):
        h = F.relu(self.a(x)) + F.relu(self.b(x))
        h = self.c(h) + self.d(h)
        return h + self.e(h)


class Gate(nn.Module):
    def forward(self, x):
        return x if x.sum() > 0 else -x  # data-dependent control flow: symbolic tracing cannot follow it


class Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.body = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), Gate())

    def forward(self, x):
        x = self.conv(x)
        return x + self.body(x)


class Context(nn.Module):
    """A global-context block (as in GCNet): the input plus a per-channel transform of its mean, an add that
    broadcasts (N, C, 1, 1) over (N, C, H, W)."""

    def __init__(self, c=8):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 1)
        self.context = nn.Sequential(nn.Linear(c, c), nn.ReLU(), nn.Linear(c, c))

    def forward(self, x):
        x = self.stem(x)
        return x + self.context(x.mean((2, 3)))[:, :, None, None]


def _x(n=4, size=8):
    return torch.randn(n, 3, size, size)


def _joins(model):
    return [m for m in model.modules() if isinstance(m, swapout.SwapoutJoin)]


# ---- which adds are joins ------------------------------------------------------------------------------

def test_finds_identity_and_projection_joins_in_forward_order_with_the_linear_schedule():
    joins = swapout.find_joins(Net())
    assert [(j.block, j.kind) for j in joins] == [("blocks.0", "identity"), ("blocks.1", "projection"),
                                                  ("blocks.2", "identity")]
    assert [j.name for j in joins] == ["blocks.0.swapout_join", "blocks.1.swapout_join", "blocks.2.swapout_join"]
    # the paper's default, Linear(1, 0.5), from the first join to the last
    assert [j.thetas for j in joins] == [(1.0, 1.0), (0.75, 0.75), (0.5, 0.5)]
    assert "projection" in str(joins[1]) and "theta1=0.75" in str(joins[1])


@pytest.mark.filterwarnings("ignore:every converted join")  # one join with the default schedule
def test_positional_embedding_and_bias_adds_are_left_alone():
    joins = swapout.find_joins(Tokens())
    assert [(j.block, j.kind) for j in joins] == [("", "identity")]
    converted = swapout.convert(Tokens())
    adds = [n for n in converted.graph.nodes if n.op == "call_function" and "add" in str(n.target)]
    assert len(adds) == 2  # the positional embedding and the bias, untouched


def test_sums_of_unrelated_features_are_no_joins():
    with pytest.raises(ValueError, match="no residual join found in TwoFeatures"):
        swapout.find_joins(TwoFeatures())


def test_the_projects_resnet_counts_its_join_modules_and_gets_create_models_thetas():
    plain = swapout.create_model("resnet_v2_ours", depth=20, method="resnet")
    joins = swapout.find_joins(plain)
    assert len(joins) == 9
    assert [j.kind for j in joins] == ["identity"] * 3 + ["projection"] + ["identity"] * 2 + ["projection"] + \
        ["identity"] * 2
    reference = swapout.create_model("resnet_v2_ours", depth=20, method="swapout")
    converted = swapout.convert(plain, method="swapout")
    assert [j.thetas for j in _joins(converted)] == [j.thetas for j in _joins(reference)]
    # the same network: with the same weights, deterministic inference gives the same outputs
    reference.load_state_dict(plain.state_dict())
    converted.eval(), reference.eval()
    x = _x(4, 32)
    with torch.no_grad():
        assert torch.equal(converted(x), reference(x))


# ---- what a converted model keeps ----------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:every converted join")  # one join with the default schedule
@pytest.mark.parametrize("make", [Net, Tokens, Context,
                                  lambda: swapout.create_model("resnet_v2_ours", depth=8, method="resnet")],
                         ids=["net", "tokens", "context", "resnet_v2_ours"])
def test_theta_one_is_bit_identical_and_state_dicts_load_both_ways(make):
    model = make()
    x = torch.randn(4, 4, 8) if isinstance(model, Tokens) else _x(4, 16)
    converted = swapout.convert(model, theta1=1, theta2=1)
    assert len(_joins(converted)) >= 1
    for train in (True, False):
        model.train(train), converted.train(train)
        torch.manual_seed(1)
        a = model(x)
        torch.manual_seed(1)
        assert torch.equal(converted(x), a)
    assert list(converted.state_dict()) != [] and set(converted.state_dict()) == set(model.state_dict())
    fresh = make()
    fresh.load_state_dict(converted.state_dict())            # strict: the same keys both ways
    swapout.convert(make()).load_state_dict(model.state_dict())


def test_theta1_goes_to_the_skip_and_theta2_to_the_block_output():
    # against the same net with swapout.Swapout(0.3, 0.8) placed by hand in every block
    model = Net()
    by_hand = Net(joins=[swapout.Swapout(0.3, 0.8) for _ in range(3)])
    by_hand.load_state_dict(model.state_dict())
    converted = swapout.convert(model, theta1=0.3, theta2=0.8).eval()
    by_hand.eval()
    x = _x()
    with torch.no_grad():
        assert torch.allclose(converted(x), by_hand(x), atol=1e-6)
        assert not torch.allclose(swapout.convert(model, theta1=0.8, theta2=0.3).eval()(x), by_hand(x), atol=1e-3)


def _recovered_masks(model, x):
    """Theta1 and Theta2 of every join, recovered from its inputs and output: a unit reports 0, X, F(X) or X+F(X)."""
    records = []
    hooks = [m.register_forward_hook(lambda m, i, y: records.append((i[0].clone(), i[1].clone(), y.clone())))
             for m in _joins(model)]
    model(x)
    for h in hooks:
        h.remove()
    out = []
    for a, b, y in records:
        outcomes = torch.stack([torch.zeros_like(a), a, b, a + b])  # index = Theta1 + 2*Theta2
        k = (outcomes - y).abs().argmin(0)
        clear = (a.abs() > 1e-3) & (b.abs() > 1e-3) & ((a - b).abs() > 1e-3) & ((a + b).abs() > 1e-3)
        assert torch.allclose(outcomes.gather(0, k[None])[0], y, atol=1e-5)  # every unit is one of the four
        out.append(((k[clear] % 2).float(), (k[clear] // 2).float()))
    return out


def test_mask_rates_match_theta(backend):
    model = swapout.convert(Net(), theta1=0.7, theta2=0.4).train()
    masks = _recovered_masks(model, _x(16, 16))
    assert len(masks) == 3
    for m1, m2 in masks:
        for m, theta in ((m1, 0.7), (m2, 0.4)):
            tol = 5 * math.sqrt(theta * (1 - theta) / m.numel())  # 5 standard errors
            assert m.numel() > 5000 and abs(m.mean().item() - theta) < tol
        assert abs((m1 * m2).mean().item() - 0.28) < 5 * math.sqrt(0.28 * 0.72 / m1.numel())  # independent


def test_include_and_exclude_choose_joins_and_the_schedule_runs_over_the_chosen():
    joins = swapout.find_joins(Net(), include="blocks.[12]*")
    assert [(j.block, j.thetas) for j in joins] == [("blocks.1", (1.0, 1.0)), ("blocks.2", (0.5, 0.5))]
    joins = swapout.find_joins(Net(), method="stochastic_depth", theta2=0.5, exclude=["blocks.1"])
    assert [j.block for j in joins] == ["blocks.0", "blocks.2"]
    assert all(type(j.module).__name__ == "StochasticDepth" for j in joins)
    for given in ({}, {"theta1": swapout.Linear(1, 0.5), "theta2": "linear(1,0.5)"},
                  {"method": "stochastic_depth", "theta2": "linear(1,0.8)"}):
        with pytest.warns(UserWarning, match=r"every converted join \(1\) keeps its terms with probability 1: a "
                          r"schedule runs over the converted joins only, and this one gives 1 on each"):
            converted = swapout.convert(Net(), include="blocks.1", **given)   # Linear(1, x) over one join: 1
    with warnings.catch_warnings():  # thetas of 1 asked for (a bit-exact conversion) are not warned of
        warnings.simplefilter("error")
        for given in ({"theta1": 1, "theta2": "1"}, {"method": "stochastic_depth", "theta2": 1.0},
                      {"method": "skipforward", "theta1": 1}, {"method": "resnet"}):
            swapout.convert(Net(), **given)
    converted = swapout.convert(Net(), include="blocks.1", theta1=1, theta2=1)
    assert len(_joins(converted)) == 1 and sum("add" in str(n.target) for n in converted.graph.nodes) == 2


def test_converting_again_replaces_the_joins_and_training_mode_is_kept():
    model = Net().eval()
    once = swapout.convert(model, theta1=0.9, theta2=0.9)
    twice = swapout.convert(once, method="dropout", theta2=0.6)
    assert not once.training and not twice.training
    assert [type(j).__name__ for j in _joins(twice)] == ["Dropout"] * 3
    assert [j.thetas for j in _joins(once)] == [(0.9, 0.9)] * 3  # the first conversion is untouched


def test_state_dict_keeps_unread_parameters_and_unsaved_buffers():
    model = Net()
    model.unused = nn.Linear(2, 2)  # never called in forward: torch.fx alone would drop it
    model.stem.register_buffer("scratch", torch.ones(1), persistent=False)
    converted = swapout.convert(model)
    assert set(converted.state_dict()) == set(model.state_dict())


def test_converting_a_submodule_keeps_the_models_other_methods():
    model = Net()
    x = _x()
    before = model.features(x)
    model.blocks = swapout.convert(model.blocks, theta1=1, theta2=1)
    assert len(_joins(model)) == 3 and torch.equal(model.features(x), before)


def test_works_with_inference_modes_predict_adaptive_uncertainty_and_recalibration():
    model = swapout.convert(Net(), theta1=0.6, theta2=0.6).eval()
    x = _x(6)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))  # deterministic by default
        with swapout.using_inference(model, "stochastic"):
            assert not torch.equal(model(x), model(x))
    probs = swapout.predict(model, x, samples=5)
    assert probs.shape == (6, 10) and torch.allclose(probs.sum(1), torch.ones(6))
    assert swapout.adaptive_predict(model, x, max_passes=8)["passes"].min() >= 1
    logits = swapout.pass_logits(model, x, samples=4)
    report = swapout.uncertainty_report({"labels": torch.arange(6) % 10, "deterministic": logits[0],
                                         "passes": logits})
    assert len(report["rows"]) == 4
    bn = model.blocks.get_submodule("0.body.1")
    before = bn.running_var.clone()
    images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    done = swapout.recalibrate_bn(model, images, np.zeros(8, dtype=np.int64), MEAN["cifar10"], STD["cifar10"], "cpu",
                                  batch_size=4)
    assert done["images"] == 8 and done["batchnorms"] == 7 and not torch.equal(bn.running_var, before)


def test_ddp_single_process(tmp_path):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    model = Net()
    converted = swapout.convert(model, theta1=1, theta2=1)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        ddp = DistributedDataParallel(converted)
        x = _x()
        ddp(x).square().mean().backward()
        grads = [p.grad.clone() for p in converted.parameters()]
        model.zero_grad()
        model(x).square().mean().backward()
        assert all(torch.allclose(g, p.grad, atol=1e-6) for g, p in zip(grads, converted.parameters()))
        assert set(ddp.module.state_dict()) == set(model.state_dict())
    finally:
        dist.destroy_process_group()


def test_torch_compile(one_thread):
    model = swapout.convert(Net(c=4), theta1=0.7, theta2=0.7).eval()
    compiled = torch.compile(model)
    x = _x(2)
    with torch.no_grad():
        assert torch.allclose(compiled(x), model(x), atol=1e-5)


# ---- bad input -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    (dict(method="swapin"), "method must be one of"),
    (dict(theta1=1.5), "theta1: .* in \\[0, 1\\], got 1.5"),
    (dict(theta2="linear(1,-0.5)"), "theta2: .* in \\[0, 1\\]"),
    (dict(include="layer9.*"), "include pattern 'layer9.\\*' matches no residual join; the joins are blocks.0"),
    (dict(exclude=["blocks.*"]), "leave no residual join"),
    (dict(method="resnet", theta1=0.5), "method 'resnet' takes no theta"),
])
def test_bad_arguments_are_one_line_value_errors(kwargs, message):
    for fn in (swapout.convert, swapout.find_joins):
        with pytest.raises(ValueError, match=message) as err:
            fn(Net(), **kwargs)
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("kwargs, message", [
    (dict(include=123), "include must be None, a module path pattern or a list or tuple of them .*got 123"),
    (dict(exclude={"blocks.0": 1}), "exclude must be None, a module path pattern or a list or tuple of them"),
    (dict(leaf_modules=123), "leaf_modules must be a list of module paths .* or torch.nn.Module classes, got 123"),
    (dict(leaf_modules=[int]), "leaf_modules must be a list of module paths"),
    (dict(leaf_modules=["nope.x"]), "Net has no module 'nope.x'; the modules at its top level are stem, blocks, head"),
    (dict(leaf_modules=["blocks.7"]), "Net has no module 'blocks.7'; .*the modules under 'blocks' are blocks.0, "
                                      "blocks.1, blocks.2$"),
    (dict(leaf_modules=["blocks.0.bdy"]), "no module 'blocks.0.bdy'; did you mean 'blocks.0.body'\\? the modules "
                                          "under 'blocks.0' are blocks.0.body$"),
])
def test_arguments_of_the_wrong_type_and_leaf_modules_that_name_no_module_are_refused(kwargs, message):
    for fn in (swapout.convert, swapout.find_joins):
        with pytest.raises(ValueError, match=message) as err:
            fn(Net(), **kwargs)
        assert "\n" not in str(err.value)
    assert len(swapout.find_joins(Net(), leaf_modules="blocks.0.body.2")) == 3  # one path, as include takes one


def test_a_model_without_joins_and_an_untraceable_model_are_one_line_value_errors():
    with pytest.raises(ValueError, match="no residual join found in Sequential") as err:
        swapout.convert(nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU()))
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="failed in module 'body.1' \\(Gate\\).*swapout.Swapout") as err:
        swapout.convert(Untraceable())
    assert "\n" not in str(err.value) and "leaf_modules=['body.1']" in str(err.value)
    with pytest.raises(ValueError, match="must be a torch.nn.Module"):
        swapout.find_joins(lambda x: x)


def test_leaf_modules_skip_an_untraceable_part():
    joins = swapout.find_joins(Untraceable(), leaf_modules=["body.1"])
    assert [(j.block, j.kind) for j in joins] == [("", "identity")]
    assert len(swapout.find_joins(Untraceable(), leaf_modules=[Gate])) == 1
