"""The swapout op and its special cases: exact closed forms, keep rates, independence, gradients."""

import math

import pytest
import torch

import swapout
from swapout import ops

GRANULARITY_SHAPES = {
    # a tensor shape for which the granularity gives exactly 10^6 draws
    "unit": (1000, 1000),
    "channel": (1000, 1000, 2),
    "sample": (1_000_000, 2),
}


def _pair(shape=(4, 3, 5, 5), dtype=torch.float32):
    return torch.randn(shape, dtype=dtype), torch.randn(shape, dtype=dtype)


def _keep_rate_bound(theta: float, n: int) -> float:
    return 5 * math.sqrt(theta * (1 - theta) / n)


# -- special cases: exactly their closed forms on the same masks -----------------------------------

def _assert_keep_rate(mask, theta):
    """The draws of ``mask`` (0/1 values) keep at rate theta, within 5 standard errors of its sample size."""
    assert torch.all((mask == 0) | (mask == 1))
    n = mask.numel()
    assert abs(mask.double().mean().item() - theta) < _keep_rate_bound(theta, n), (mask.double().mean().item(), n)


def test_residual_is_plain_sum(record_masks):
    x, fx = _pair()
    rec = record_masks()
    layer = swapout.Residual()
    assert torch.equal(layer(x, fx), x + fx)
    assert torch.equal(layer.eval()(x, fx), x + fx)
    assert rec.masks == []  # nothing random about it
    assert torch.equal(swapout.swapout(x, fx, 1.0, 1.0), x + fx)


@pytest.mark.parametrize("granularity", ["unit", "channel", "sample", "batch"])
def test_swapout_equals_closed_form(record_masks, granularity):
    x, fx = _pair()
    rec = record_masks()
    y = swapout.Swapout(0.6, 0.3, granularity)(x, fx)
    m1, m2 = rec.masks
    assert m1.shape == ops.mask_shape(x.shape, granularity)
    assert torch.equal(y, m1 * x + m2 * fx)


# The baseline modules on masks recorded from the reference op: the closed form of each, and masks drawn
# at the theta the module was given. 64*16*16*16 = 262,144 unit draws: at 5 standard errors the mean is
# within 0.0045 of theta; an asymmetric theta (0.7) tells theta from 1 - theta.
BIG = (64, 16, 16, 16)


def test_dropout_equals_closed_form(record_masks):
    x, fx = _pair(BIG)
    rec = record_masks()
    y = swapout.Dropout(0.7)(x, fx)
    (m,) = rec.masks
    assert m.shape == x.shape
    assert torch.equal(y, m * fx)
    _assert_keep_rate(m, 0.7)


def test_residual_dropout_equals_closed_form(record_masks):
    x, fx = _pair(BIG)
    rec = record_masks()
    y = swapout.ResidualDropout(0.7)(x, fx)
    (m,) = rec.masks
    assert m.shape == x.shape
    assert torch.equal(y, x + m * fx)
    _assert_keep_rate(m, 0.7)


@pytest.mark.parametrize("per_sample", [False, True])
def test_stochastic_depth_equals_closed_form(record_masks, per_sample):
    # per mini-batch: 2,000 calls, one draw each (mean within 0.05 of theta at 5 standard errors);
    # per sample: 8 calls of 256 samples.
    calls, n = (8, 256) if per_sample else (2000, 4)
    x, fx = _pair((n, 3, 2, 2))
    rec = record_masks()
    layer = swapout.StochasticDepth(0.7, per_sample=per_sample)
    ys = [layer(x, fx) for _ in range(calls)]
    assert len(rec.masks) == calls
    for y, m in zip(ys, rec.masks):
        assert m.shape == ((n, 1, 1, 1) if per_sample else (1, 1, 1, 1))
        assert torch.equal(y, x + m * fx)
        if not per_sample:
            assert torch.equal(y, x) or torch.equal(y, x + fx)
    _assert_keep_rate(torch.cat([m.flatten() for m in rec.masks]), 0.7)


def test_skipforward_equals_closed_form(record_masks):
    x, fx = _pair(BIG)
    rec = record_masks()
    y = swapout.SkipForward(0.7)(x, fx)
    (m,) = rec.masks
    assert m.shape == x.shape
    assert torch.equal(y, torch.where(m.bool(), x, fx))
    # coupled: every unit reports exactly one of X and F(X)
    assert torch.all((y == x) | (y == fx))
    _assert_keep_rate(m, 0.7)


@pytest.mark.parametrize("name", ["dropout", "residual_dropout", "stochastic_depth", "skipforward"])
def test_baseline_modules_keep_at_their_theta_from_outputs(name, backend):
    # Judged from the outputs only, on whichever path the module takes (fused kernel or reference op):
    # X = 1 and F(X) = 2 make every output value name the terms it kept.
    theta = 0.7
    layer, allowed, kept_f = {
        "dropout": (swapout.Dropout(theta), (0, 2), lambda y: y == 2),
        "residual_dropout": (swapout.ResidualDropout(theta), (1, 3), lambda y: y == 3),
        "stochastic_depth": (swapout.StochasticDepth(theta), (1, 3), lambda y: y == 3),
        "skipforward": (swapout.SkipForward(theta), (1, 2), lambda y: y == 1),  # theta: P(report X)
    }[name]
    shape = (4, 1) if name == "stochastic_depth" else BIG
    calls = 2000 if name == "stochastic_depth" else 1
    x, fx = torch.ones(shape), torch.full(shape, 2.0)
    ys = torch.stack([layer(x, fx) for _ in range(calls)])
    assert torch.all((ys == allowed[0]) | (ys == allowed[1]))
    kept = kept_f(ys).double()
    if name == "stochastic_depth":
        assert torch.all(kept.amin((1, 2)) == kept.amax((1, 2)))  # one draw for the whole batch
        kept = kept[:, 0, 0]
    _assert_keep_rate(kept, theta)


def test_n_way_form_equals_closed_form(record_masks):
    ts = [torch.randn(3, 4, 6) for _ in range(3)]
    rec = record_masks()
    y = swapout.SwapoutN((0.2, 0.5, 0.8))(*ts)
    assert torch.equal(y, sum(m * t for m, t in zip(rec.masks, ts)))
    assert torch.equal(swapout.swapout_sum(ts[:1], [1.0]), ts[0])


@pytest.mark.parametrize("pack", [list, tuple])
def test_n_way_module_takes_its_tensors_as_one_list_too(pack):
    ts, join = [torch.randn(3, 4, 6) for _ in range(3)], swapout.SwapoutN((0.2, 0.5, 0.8))
    torch.manual_seed(5)
    separate = join(*ts)
    torch.manual_seed(5)
    assert torch.equal(join(pack(ts)), separate)  # as swapout_sum takes them: the same masks, the same sum
    with pytest.raises(ValueError, match="takes 3 tensors, got 2"):
        join(ts[:2])


# -- keep rates and independence ---------------------------------------------------------------------

@pytest.mark.parametrize("granularity", ["unit", "channel", "sample"])
@pytest.mark.parametrize("theta", [0.1, 0.5, 0.83])
@pytest.mark.parametrize("which", [1, 2])
def test_keep_rate_matches_theta(granularity, theta, which, backend):
    shape = GRANULARITY_SHAPES[granularity]
    ones, zeros = torch.ones(shape), torch.zeros(shape)
    if which == 1:
        y = swapout.swapout(ones, zeros, theta, 0.5, granularity=granularity)
    else:
        y = swapout.swapout(zeros, ones, 0.5, theta, granularity=granularity)
    mask = y.reshape(ops.mask_shape(shape, granularity)[: len(shape) - (granularity != "unit")] + (-1,))
    if granularity != "unit":
        # the draw is shared inside its group: every group is all ones or all zeros
        assert torch.all(mask.amin(-1) == mask.amax(-1))
    draws = mask[..., 0] if granularity != "unit" else mask
    n = draws.numel()
    assert n >= 1_000_000
    assert abs(draws.mean().item() - theta) < _keep_rate_bound(theta, n)


def _draws_for(theta: float, tolerance: float) -> int:
    """How many draws put 5 standard errors of a Bernoulli(theta) mean within ``tolerance``."""
    return math.ceil(25 * theta * (1 - theta) / tolerance ** 2)


def test_keep_rate_batch_granularity():
    # One draw per call, so each draw costs a call: the sample is sized so that 5 standard errors are one
    # percentage point (52,500 calls), enough to tell theta from 1 - theta or 0.5, or from a rate 0.02 off.
    theta = 0.3
    n = _draws_for(theta, 0.01)
    ones = torch.ones(2, 3)
    gen = torch.Generator().manual_seed(1)
    ys = torch.stack([swapout.swapout_sum([ones], [theta], granularity="batch", generator=gen) for _ in range(n)])
    assert torch.equal(ys.amin((1, 2)), ys.amax((1, 2)))  # one draw for the whole batch
    assert _keep_rate_bound(theta, n) <= 0.01
    assert abs(ys[:, 0, 0].mean().item() - theta) < _keep_rate_bound(theta, n)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("method", ["swapout", "skipforward"])
def test_16_bit_tensors_keep_at_theta_not_at_theta_rounded_to_16_bits(dtype, method, monkeypatch):
    # Under autocast the joins see bf16 tensors; bf16 holds 0.9 as 0.8984. With the same seed, the
    # reference op's masks of 16-bit tensors must be those of float32 ones: the probabilities are not rounded.
    monkeypatch.setattr(swapout.kernels.fused, "_enabled", False)  # float32 would take the fused kernel, 16 bits not
    shape, theta = (256, 64, 8, 8), 0.9   # 2^20 units, so 0.0016 is about 5 standard errors
    outs = []
    for dt in (torch.float32, dtype):
        ones, zeros = torch.ones(shape, dtype=dt), torch.zeros(shape, dtype=dt)
        gen = torch.Generator().manual_seed(3)
        if method == "swapout":  # theta2 = 0 leaves the X term alone: the output is the mask
            outs.append(swapout.swapout(ones, zeros, theta, 0.0, granularity="unit", generator=gen))
        else:
            outs.append(swapout.skipforward(ones, zeros, theta, granularity="unit", generator=gen))
    assert outs[1].dtype == dtype
    differ = (outs[1].float() != outs[0]).sum().item()
    assert differ == 0, f"{differ} of {outs[0].numel()} units differ"
    _assert_keep_rate(outs[1].float(), theta)


@pytest.mark.parametrize("granularity", ["unit", "channel", "sample"])
def test_theta1_and_theta2_uncorrelated(granularity, backend):
    shape = GRANULARITY_SHAPES[granularity]
    y = swapout.swapout(torch.ones(shape), torch.full(shape, 2.0), 0.4, 0.7, granularity=granularity)
    m1, m2 = (y % 2).flatten(), (y // 2).flatten()
    if granularity != "unit":
        m1, m2 = m1[::shape[-1]], m2[::shape[-1]]
    n = m1.numel()
    r = torch.corrcoef(torch.stack([m1, m2]).double())[0, 1].item()
    assert abs(r) < 5 / math.sqrt(n)  # the standard error of r for independent variables is 1/sqrt(n)
    assert abs(m1.mean().item() - 0.4) < _keep_rate_bound(0.4, n)
    assert abs(m2.mean().item() - 0.7) < _keep_rate_bound(0.7, n)


def test_masks_differ_between_calls_and_repeat_under_seed(backend):
    x, fx = _pair((8, 16, 8, 8))
    gen = torch.Generator().manual_seed(123)
    a = swapout.swapout(x, fx, 0.5, 0.5, generator=gen)
    b = swapout.swapout(x, fx, 0.5, 0.5, generator=gen)
    assert not torch.equal(a, b)
    gen.manual_seed(123)
    assert torch.equal(swapout.swapout(x, fx, 0.5, 0.5, generator=gen), a)
    torch.manual_seed(7)
    c = swapout.swapout(x, fx, 0.5, 0.5)
    torch.manual_seed(7)
    assert torch.equal(swapout.swapout(x, fx, 0.5, 0.5), c)


# -- deterministic inference ---------------------------------------------------------------------------

@pytest.mark.parametrize("theta1,theta2", [(0.3, 0.9), (0.5, 0.5), (1.0, 0.7), (0.0, 0.4)])
def test_deterministic_output_is_expectation(theta1, theta2):
    x, fx = _pair()
    layer = swapout.Swapout(theta1, theta2).eval()
    assert torch.equal(layer(x, fx), theta1 * x + theta2 * fx)
    assert torch.equal(swapout.swapout(x, fx, theta1, theta2, sample=False), theta1 * x + theta2 * fx)
    sf = swapout.SkipForward(0.3).eval()
    assert torch.equal(sf(x, fx), 0.3 * x + 0.7 * fx)


def test_eval_stochastic_samples_and_train_always_samples(backend):
    x, fx = _pair()
    layer = swapout.Swapout(0.5, 0.5)
    expectation = 0.5 * x + 0.5 * fx
    assert not torch.equal(layer(x, fx), expectation)  # training
    layer.eval()
    assert torch.equal(layer(x, fx), expectation)
    layer.inference = "stochastic"
    assert not torch.equal(layer(x, fx), expectation)


# -- gradients ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("granularity", ["unit", "channel", "sample", "batch"])
def test_gradcheck_float64(granularity, backend):
    x, fx = (t.requires_grad_() for t in _pair((3, 2, 4, 4), torch.float64))

    def f(a, b):
        # the same masks at every evaluation gradcheck makes
        return swapout.swapout(a, b, 0.6, 0.5, granularity=granularity, generator=torch.Generator().manual_seed(5))

    assert torch.autograd.gradcheck(f, (x, fx))
    for layer in (swapout.SkipForward(0.4, granularity), swapout.SwapoutN((0.3, 0.6))):
        def g(a, b, layer=layer):
            layer.generator = torch.Generator().manual_seed(5)
            return layer(a, b)
        assert torch.autograd.gradcheck(g, (x, fx))


def test_gradients_flow_only_through_kept_units(record_masks):
    x, fx = (t.requires_grad_() for t in _pair((4, 8, 6, 6), torch.float64))
    rec = record_masks()
    y = swapout.swapout(x, fx, 0.5, 0.5)
    grad_out = torch.randn_like(y)
    y.backward(grad_out)
    m1, m2 = rec.masks
    assert torch.equal(x.grad, m1 * grad_out)
    assert torch.equal(fx.grad, m2 * grad_out)
    assert 0 < m1.mean() < 1 and 0 < m2.mean() < 1


# -- bad arguments -------------------------------------------------------------------------------------

@pytest.mark.parametrize("theta", [-0.01, 1.01, float("nan"), float("inf"), "0.5", None, True])
def test_bad_theta_raises(theta):
    x, fx = _pair()
    with pytest.raises(ValueError, match="theta"):
        swapout.swapout(x, fx, theta, 0.5)
    with pytest.raises(ValueError, match="theta"):
        swapout.swapout(x, fx, 0.5, theta)
    with pytest.raises(ValueError, match="theta"):
        swapout.Swapout(theta, 0.5)
    with pytest.raises(ValueError, match="theta"):
        swapout.SkipForward(theta)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match=r"shapes \(2, 3\), \(2, 4\) do not broadcast together: a join adds them, so "
                       r"they need one shape, or shapes that broadcast as x \+ fx would \(each dimension equal, or "
                       r"1 in one of them\)$"):
        swapout.swapout(torch.ones(2, 3), torch.ones(2, 4), 0.5, 0.5)
    with pytest.raises(ValueError, match="do not broadcast"):
        swapout.SkipForward(0.5)(torch.ones(2, 3), torch.ones(3, 3))


def test_shapes_that_broadcast_are_joined_as_their_sum_would_be():
    # a block output per channel (N, C, 1, 1) beside its input (N, C, H, W), as in x + fx
    x, fx = torch.ones(8, 3, 5, 5), torch.full((8, 3, 1, 1), 2.0)
    assert torch.equal(swapout.swapout(x, fx, 1.0, 1.0), x + fx)
    assert torch.equal(swapout.swapout(x, fx, 0.5, 0.25, sample=False), 0.5 * x + 0.25 * fx)
    for theta1, theta2 in ((0.0, 0.0), (0.0, 0.5), (0.0, 1.0), (1.0, 0.0)):  # terms left out: still the sum's shape
        for sample in (True, False):
            y = swapout.swapout(x, fx, theta1, theta2, sample=sample)
            assert y.shape == (8, 3, 5, 5), (theta1, theta2, sample)
    y = swapout.swapout(x, fx, 0.0, 1.0)
    assert torch.equal(y, torch.full((8, 3, 5, 5), 2.0)) and y.relu_() is y  # a tensor of its own, writable
    torch.manual_seed(0)
    y = swapout.Swapout(0.5, 0.5).train()(x, fx)
    kept_f = y >= 2  # F(X) is masked at the output's shape: every unit gets its own draw, as in the paper
    assert y.shape == (8, 3, 5, 5) and not torch.equal(kept_f, kept_f[:, :, :1, :1].expand_as(kept_f))
    # 600 units, each kept with probability 0.5: 0.1 is 4.9 standard deviations of the share kept
    assert abs(kept_f.float().mean() - 0.5) < 0.1 and abs((y % 2 == 1).float().mean() - 0.5) < 0.1
    z = swapout.skipforward(x, fx, 0.5)  # one coupled mask, of the broadcast shape
    assert z.shape == (8, 3, 5, 5) and set(z.unique().tolist()) == {1.0, 2.0}
    assert torch.equal(swapout.skipforward(x, fx, 0.0), fx.expand(8, 3, 5, 5))
    assert swapout.SkipForward(1.0)(fx, x).relu_().shape == (8, 3, 5, 5)
    # per-sample masks follow the output's samples, even for a term without a batch dimension
    per_sample = swapout.swapout(x, torch.full((3, 1, 1), 2.0), 1.0, 0.5, granularity="sample")
    kept = per_sample[:, 0, 0, 0] == 3
    assert torch.equal(per_sample, 1 + 2 * kept.float().view(8, 1, 1, 1).expand(8, 3, 5, 5))


def test_the_sum_has_the_promoted_dtype_whichever_terms_are_left_out():
    # under autocast a block's output is bf16 beside a float32 input; x + fx would be float32
    x, fx = torch.ones(2, 3), torch.ones(2, 3, dtype=torch.bfloat16)
    for theta1, theta2 in ((1.0, 1.0), (0.0, 0.5), (0.0, 1.0), (0.0, 0.0), (0.5, 0.5)):
        assert swapout.swapout(x, fx, theta1, theta2).dtype == torch.float32, (theta1, theta2)
    assert swapout.skipforward(x, fx, 0.0).dtype == torch.float32


def test_stochastic_depth_passes_in_one_call_with_a_term_that_broadcasts_over_the_batch():
    join = swapout.StochasticDepth(0.5).eval()
    join.inference, join.passes_per_call = "stochastic", 2
    x, fx = torch.zeros(4, 3, 2, 2), torch.ones(1, 3, 1, 1)
    y = join(x, fx)
    assert y.shape == (4, 3, 2, 2)
    for part in y.chunk(2):  # one draw per pass, shared by its rows
        assert part.unique().numel() == 1


def test_bad_granularity_raises():
    x, fx = _pair()
    with pytest.raises(ValueError, match="granularity"):
        swapout.swapout(x, fx, 0.5, 0.5, granularity="pixel")
    with pytest.raises(ValueError, match="granularity"):
        swapout.Swapout(0.5, 0.5, granularity="layer")


def test_bad_counts_raise():
    with pytest.raises(ValueError, match="at least one"):
        swapout.swapout_sum([], [])
    with pytest.raises(ValueError, match="one theta per tensor"):
        swapout.swapout_sum([torch.ones(2)], [0.5, 0.5])
    with pytest.raises(ValueError, match="takes 3 tensors"):
        swapout.SwapoutN((0.1, 0.2, 0.3))(torch.ones(2), torch.ones(2))


def test_extra_repr_shows_probabilities():
    assert "theta1=0.9, theta2=0.7" in repr(swapout.Swapout(0.9, 0.7))
    assert "theta=0.4" in repr(swapout.SkipForward(0.4))
    assert "granularity='batch'" in repr(swapout.StochasticDepth(0.5))


def _vmap_step(method: str):
    """One SGD step of 4 stacked copies of one 20-layer network under vmap(randomness="different")."""
    import copy

    import torch.nn.functional as F
    from torch.func import functional_call, grad, stack_module_state, vmap

    torch.manual_seed(0)
    net = swapout.create_model("resnet_v2_ours", depth=20, width=1, method=method)
    params, buffers = stack_module_state([copy.deepcopy(net) for _ in range(4)])
    shell = copy.deepcopy(net).to("meta")

    def loss(p, b, x, y):
        logits = functional_call(shell, (p, b), (x,))
        return F.cross_entropy(logits, y), logits

    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    grads, logits = vmap(grad(loss, has_aux=True), in_dims=(0, 0, None, None), randomness="different")(
        params, buffers, x, y)
    stepped = {k: p - 0.1 * grads[k] for k, p in params.items()}
    return params, stepped, logits


def test_vmap_trains_four_stacked_swapout_models_one_step_with_masks_of_their_own():
    # The four models start from the same weights and see the same batch, so their logits can differ
    # only through their masks; the residual control shows that vmap itself adds no difference.
    params, stepped, logits = _vmap_step("swapout")
    assert logits.shape == (4, 8, 10)
    for i in range(1, 4):
        assert not torch.equal(logits[0], logits[i])
        assert not torch.equal(stepped["head.2.weight"][0], stepped["head.2.weight"][i])
    for k, p in stepped.items():
        assert torch.isfinite(p).all() and not torch.equal(p, params[k]), k
    _, stepped, logits = _vmap_step("resnet")
    for i in range(1, 4):
        assert torch.equal(logits[0], logits[i])
        assert torch.equal(stepped["head.2.weight"][0], stepped["head.2.weight"][i])


def test_the_forward_pass_checks_no_theta_and_no_granularity(monkeypatch):
    # thetas are checked once, when a join is built; a training step and a stochastic pass check nothing
    from swapout import layers

    calls = []
    for module in (ops, layers):
        for name in ("check_theta", "check_granularity"):
            real = getattr(module, name)
            monkeypatch.setattr(module, name, lambda *a, _real=real, **k: calls.append(a) or _real(*a, **k))
    for method in ("swapout", "skipforward", "stochastic_depth"):
        model = swapout.create_model("resnet_v2_ours", depth=8, width=1, method=method)
        calls.clear()
        model(torch.randn(4, 3, 32, 32)).sum().backward()
        with swapout.using_inference(model.eval(), "stochastic"):
            model(torch.randn(4, 3, 32, 32))
        assert calls == [], method
    # the public functional form still checks what it is given
    with pytest.raises(ValueError):
        swapout.swapout(*_pair(), 1.5, 0.5)


def test_thetas_and_granularity_set_after_construction_are_checked():
    # the forward pass trusts them, so they are checked whenever they are set
    join = swapout.Swapout(0.5, 0.5)
    join.thetas = (0.9, 0.2)
    assert join.thetas == (0.9, 0.2)
    with pytest.raises(ValueError, match="theta1"):
        join.thetas = (1.5, 0.5)
    with pytest.raises(ValueError, match="granularity"):
        join.granularity = "channels"
    assert join.thetas == (0.9, 0.2) and join.granularity == "unit"
    # as many thetas as the join has inputs, a known inference mode, a real generator: a typo must not pass
    # silently into a forward pass that trusts them (an unknown mode would act as deterministic inference)
    for name, value, message in (("thetas", (0.5,), "Swapout has 2 theta"), ("thetas", (), "at least one"),
                                 ("thetas", 0.5, "list or tuple"), ("inference", "Stochastic", "inference mode"),
                                 ("generator", "seed", "torch.Generator or None")):
        with pytest.raises(ValueError, match=message):
            setattr(join, name, value)
    with pytest.raises(ValueError, match="SkipForward has 1 theta"):
        swapout.SkipForward(0.5).thetas = (0.1, 0.2)
    assert join.thetas == (0.9, 0.2) and join.inference == "deterministic" and join.generator is None


def test_a_join_pickled_with_plain_attributes_still_loads():
    join = swapout.Swapout(0.5, 0.5)
    join.inference = "stochastic"
    state = dict(join.__dict__)
    state["inference"], state["generator"] = state.pop("_inference"), state.pop("_generator")
    old = swapout.Swapout.__new__(swapout.Swapout)
    old.__setstate__(state)
    assert old.inference == "stochastic" and old.generator is None and old.thetas == (0.5, 0.5)


@pytest.mark.parametrize("call, message", [
    (lambda x: swapout.swapout_sum(x, [0.5, 0.5]), "tensors must be a list or tuple of tensors, got Tensor"),
    (lambda x: swapout.swapout_sum([x, x], 0.5), "thetas must be a list or tuple"),
    (lambda x: swapout.swapout_sum([x, x], "0.5,0.5"), "thetas must be a list or tuple"),
    (lambda x: swapout.swapout(x, x, 0.5, 0.5, sample="no"), "sample must be True"),
    (lambda x: swapout.skipforward(x, x, 0.5, sample=1), "sample must be True"),
    (lambda x: swapout.swapout(x, x, 0.5, 0.5, generator="seed"), "torch.Generator or None"),
    (lambda x: swapout.swapout(x.long(), x.long(), 0.5, 0.5), "tensor 0 must be floating point"),
    (lambda x: swapout.Swapout(0.5, 0.5)(x, None), "tensor 1 must be a torch.Tensor"),
    (lambda x: swapout.SwapoutN(0.5), "thetas must be a list or tuple"),
    (lambda x: swapout.StochasticDepth(0.5, per_sample="yes"), "per_sample must be True or False"),
    (lambda x: swapout.mask_shape(x, "unit"), r"pass its \.shape"),
    (lambda x: swapout.mask_shape((-1, 3), "unit"), "sizes >= 0"),
])
def test_arguments_of_the_wrong_kind_are_refused_by_name(call, message):
    with pytest.raises(ValueError, match=message):
        call(torch.ones(2, 3, 4, 4))


def test_numpy_scalars_are_keep_probabilities():
    np = pytest.importorskip("numpy")
    join = swapout.Swapout(np.float32(0.5), np.int64(1))
    assert join.thetas == (0.5, 1.0) and all(type(t) is float for t in join.thetas)
    assert swapout.parse_schedule(np.float32(0.25)).values(2) == [0.25, 0.25]
