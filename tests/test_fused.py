"""The fused kernels: same semantics as the reference op, masks regenerated in the backward pass."""

import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import swapout
from swapout.kernels import fused

pytestmark = pytest.mark.skipif(not fused.available(torch.ones(1)),
                                reason="no C compiler: fused CPU kernel unavailable")

SHAPE = (8, 16, 12, 12)


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("theta1,theta2", [(0.6, 0.3), (0.0, 0.7), (1.0, 0.7), (0.5, 1.0)])
def test_forward_and_backward_use_the_same_masks(dtype, theta1, theta2):
    x, fx = (torch.randn(SHAPE, dtype=dtype, requires_grad=True) for _ in range(2))
    seed = fused.draw_seed(torch.device("cpu"), _seeded(11))
    y = fused.swapout2(x, fx, theta1, theta2, seed=seed)
    grad = torch.randn_like(y)
    y.backward(grad)
    m1, m2 = fused.masks(SHAPE, seed, theta1, theta2)
    m1, m2 = m1.to(dtype), m2.to(dtype)
    # the reference op fed the same masks
    assert torch.equal(y, m1 * x.detach() + m2 * fx.detach())
    assert torch.equal(x.grad, m1 * grad) and torch.equal(fx.grad, m2 * grad)


def test_op_draws_its_seed_from_the_generator():
    x, fx = torch.randn(SHAPE), torch.randn(SHAPE)
    y = swapout.swapout(x, fx, 0.6, 0.4, generator=_seeded(5))
    m1, m2 = fused.masks(SHAPE, fused.draw_seed(torch.device("cpu"), _seeded(5)), 0.6, 0.4)
    assert torch.equal(y, m1 * x + m2 * fx)


def test_reproducible_under_manual_seed_and_fresh_per_call():
    x, fx = torch.randn(SHAPE), torch.randn(SHAPE)
    torch.manual_seed(3)
    a, b = swapout.swapout(x, fx, 0.5, 0.5), swapout.swapout(x, fx, 0.5, 0.5)
    torch.manual_seed(3)
    assert torch.equal(swapout.swapout(x, fx, 0.5, 0.5), a)
    assert not torch.equal(a, b)


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.corrcoef(torch.stack([a.flatten(), b.flatten()]).double())[0, 1].item()


def test_masks_independent_across_inputs_calls_layers_and_neighbours():
    n = 1 << 20  # 5 standard errors of a correlation coefficient: 5 / sqrt(n) ~ 0.005
    bound = 5 / math.sqrt(n)
    gen = _seeded(9)
    s1, s2 = fused.draw_seed(torch.device("cpu"), gen), fused.draw_seed(torch.device("cpu"), gen)
    a1, a2 = fused.masks((n,), s1, 0.5, 0.5)
    b1, _ = fused.masks((n,), s2, 0.5, 0.5)
    assert abs(_corr(a1, a2)) < bound              # Theta1 and Theta2 of one call
    assert abs(_corr(a1, b1)) < bound              # two calls (two layers, or two steps)
    for lag in (1, 15, 16, 48, 64, 4096):          # within a call, across lanes, words and tiles
        assert abs(_corr(a1[:-lag], a1[lag:])) < bound * math.sqrt(n / (n - lag)), lag
    # masks of two layers inside one forward pass
    model = torch.nn.ModuleList([swapout.Swapout(0.5, 0.5), swapout.Swapout(0.5, 0.5)])
    ones, zeros = torch.ones(n), torch.zeros(n)
    assert abs(_corr(model[0](ones, zeros), model[1](ones, zeros))) < bound


@pytest.mark.parametrize("theta", [0.05, 0.5, 0.97])
def test_keep_rate_of_both_masks(theta):
    n = 1 << 21
    m1, m2 = fused.masks((n,), fused.draw_seed(torch.device("cpu"), _seeded(1)), theta, 1 - theta)
    bound = 5 * math.sqrt(theta * (1 - theta) / n)
    assert abs(m1.double().mean().item() - theta) < bound
    assert abs(m2.double().mean().item() - (1 - theta)) < bound


# theta = 1 must keep every unit and theta = 0 none. A 16-bit threshold off by one would keep (or drop)
# one unit in 65,536: 2^20 units make that about 16 wrong units, so missing them all has probability e^-16.
@pytest.mark.parametrize("theta1,theta2", [(1.0, 0.5), (0.0, 0.5), (0.5, 1.0), (0.5, 0.0),
                                           (1.0, 1.0), (0.0, 0.0), (1.0, 0.0), (0.0, 1.0)])
def test_theta_one_keeps_every_unit_and_zero_none(theta1, theta2):
    shape = (1, 16, 256, 256)
    x = torch.ones(shape, requires_grad=True)
    fx = torch.full(shape, 2.0, requires_grad=True)
    y = fused.swapout2(x, fx, theta1, theta2, _seeded(21))
    # from the output alone: 0, 1 (X), 2 (F(X)) or 3 (both)
    assert torch.all((y == 0) | (y == 1) | (y == 2) | (y == 3))
    kept_x, kept_f = y.detach() % 2, y.detach() // 2
    n = y.numel()
    for kept, theta in ((kept_x, theta1), (kept_f, theta2)):
        if theta in (0.0, 1.0):
            assert torch.all(kept == theta)
        else:  # the other mask still draws at its own rate (5 standard errors)
            assert abs(kept.double().mean().item() - theta) < 5 * math.sqrt(theta * (1 - theta) / n)
    y.backward(torch.ones_like(y))
    # the backward pass keeps the same units: d y / d x = Theta1, d y / d F(X) = Theta2
    assert torch.equal(x.grad, kept_x) and torch.equal(fx.grad, kept_f)
    for grad, theta in ((x.grad, theta1), (fx.grad, theta2)):
        if theta in (0.0, 1.0):
            assert torch.equal(grad, torch.full(shape, theta))


def test_gradcheck_fused_float64():
    x, fx = (torch.randn(3, 4, 5, 5, dtype=torch.float64, requires_grad=True) for _ in range(2))
    seed = torch.tensor(1234, dtype=torch.int64)
    assert torch.autograd.gradcheck(lambda a, b: fused.swapout2(a, b, 0.6, 0.5, seed=seed), (x, fx))


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_double_backward_fused_float64(layout):
    # create_graph=True (a gradient penalty, a Hessian-vector product) differentiates the gradient itself
    x, fx = (torch.randn(3, 4, 5, 5, dtype=torch.float64).to(memory_format=layout).requires_grad_() for _ in range(2))
    seed = torch.tensor(1234, dtype=torch.int64)
    assert torch.autograd.gradgradcheck(lambda a, b: fused.swapout2(a, b, 0.6, 0.5, seed=seed), (x, fx))
    # d/dp of sum(d(p * y)/dx) with y = Theta1*x + Theta2*tanh(x) is sum(Theta1 + Theta2 * (1 - tanh(x)^2))
    p = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    y = fused.swapout2(x, torch.tanh(x), 0.6, 0.5, seed=seed)
    (gx,) = torch.autograd.grad((p * y).sum(), x, create_graph=True)
    (gp,) = torch.autograd.grad(gx.sum(), p)
    m1, m2 = (m.double() for m in fused.masks((3, 4, 5, 5), seed, 0.6, 0.5))
    if layout == torch.channels_last:
        m1, m2 = (m.reshape(3, 5, 5, 4).permute(0, 3, 1, 2) for m in (m1, m2))
    assert torch.allclose(gp, (m1 + m2 * (1 - torch.tanh(x.detach()) ** 2)).sum())


def test_channels_last_stays_channels_last_with_the_masks_of_its_memory_order():
    # A channels-last network must not pay two layout copies per join: the kernel walks memory in
    # order, so the masks are those of the NHWC permutation, in the forward and the backward pass.
    x, fx = (torch.randn(SHAPE).to(memory_format=torch.channels_last).requires_grad_() for _ in range(2))
    seed = torch.tensor(4321)
    y = fused.swapout2(x, fx, 0.6, 0.3, seed=seed)
    assert y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()
    n, c, h, w = SHAPE
    m1, m2 = (m.permute(0, 3, 1, 2).float() for m in fused.masks((n, h, w, c), seed, 0.6, 0.3))
    assert torch.equal(y, m1 * x.detach() + m2 * fx.detach())
    for grad in (torch.randn(SHAPE), torch.randn(SHAPE).to(memory_format=torch.channels_last)):
        x.grad = fx.grad = None
        fused.swapout2(x, fx, 0.6, 0.3, seed=seed).backward(grad)
        assert torch.equal(x.grad, m1 * grad) and torch.equal(fx.grad, m2 * grad)
    a, b = (torch.randn(3, 4, 5, 5, dtype=torch.float64).to(memory_format=torch.channels_last).requires_grad_()
            for _ in range(2))
    assert torch.autograd.gradcheck(lambda u, v: fused.swapout2(u, v, 0.6, 0.5, seed=seed), (a, b))


def test_odd_sizes_and_non_contiguous_inputs():
    for n in (0, 1, 63, 64, 65, 1000):
        x, fx = torch.randn(n), torch.randn(n)
        seed = torch.tensor(77)
        m1, m2 = fused.masks((n,), seed, 0.3, 0.6)
        assert torch.equal(fused.swapout2(x, fx, 0.3, 0.6, seed=seed), m1 * x + m2 * fx)
    x, fx = torch.randn(6, 10).t(), torch.randn(6, 10).t()
    y = swapout.swapout(x, fx, 0.5, 0.5)
    assert torch.all((y == 0) | (y == x) | (y == fx) | (y == x + fx))


def test_stochastic_inference_uses_the_fused_path(monkeypatch):
    calls = []
    real = fused.swapout2
    monkeypatch.setattr(fused, "swapout2", lambda *a, **k: calls.append(1) or real(*a, **k))
    model = swapout.create_model("resnet_v2_ours", depth=8, theta1=0.8, theta2=0.7)
    swapout.predict(model, torch.randn(2, 3, 32, 32), samples=3)
    assert len(calls) == 3  # one batched forward, three swapout joins


def test_torch_compile_matches_eager():
    import torch._inductor.config as inductor_config

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(4, 4, 3, padding=1)
            self.join = swapout.Swapout(0.7, 0.6)

        def forward(self, x):
            return self.join(x, self.conv(x)).square().mean()

    net, x = Net(), torch.randn(4, 4, 8, 8)
    compiled = torch.compile(net, fullgraph=True)
    old = inductor_config.fallback_random
    inductor_config.fallback_random = True  # the seed comes from the same generator as in eager mode
    try:
        torch.manual_seed(0)
        loss_c = compiled(x)
        loss_c.backward()
    finally:
        inductor_config.fallback_random = old
    grad_c = net.conv.weight.grad.clone()
    net.zero_grad()
    torch.manual_seed(0)
    loss_e = net(x)
    loss_e.backward()
    torch.testing.assert_close(loss_c, loss_e)
    torch.testing.assert_close(grad_c, net.conv.weight.grad)


def _run(code: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=600)


def test_without_a_compiler_falls_back_with_one_warning(tmp_path):
    out = _run("""
        import warnings, torch, swapout
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            x, fx = torch.randn(1000), torch.randn(1000)
            for _ in range(3):
                y = swapout.swapout(x, fx, 0.5, 0.5)
        assert bool(((y == 0) | (y == x) | (y == fx) | (y == x + fx)).all())
        print(len(w), str(w[0].message))
    """, {"CC": str(tmp_path / "no-such-compiler"), "SWAPOUT_CACHE": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    count, message = out.stdout.strip().split(" ", 1)
    assert count == "1" and "reference op" in message and "\n" not in message


def test_cuda_kernel_in_triton_interpreter_matches_cpu_kernel():
    pytest.importorskip("triton")
    out = _run("""
        import torch
        from swapout.kernels import fused, triton_cuda as fused_triton
        seed = torch.tensor(987654321987, dtype=torch.int64)
        for n in (1, 64, 1000, 4099):
            t1, t2 = fused.threshold(0.3), fused.threshold(0.8)
            expected = torch.empty(n, dtype=torch.uint8)
            fused.cpu_library().swapout_masks(expected.data_ptr(), n, int(seed), t1, t2, 1)
            assert torch.equal(fused_triton.masks(n, seed, t1, t2), expected), n
            x, f, g = torch.randn(n), torch.randn(n), torch.randn(n)
            y, gx, gf = torch.empty(n), torch.empty(n), torch.empty(n)
            fused_triton.forward(x, f, y, seed, t1, t2)
            fused_triton.backward(g, gx, gf, seed, t1, t2)
            m1, m2 = (expected & 1).float(), (expected >> 1).float()
            assert torch.equal(y, m1 * x + m2 * f) and torch.equal(gx, m1 * g) and torch.equal(gf, m2 * g)
        print("ok")
    """, {"TRITON_INTERPRET": "1"})
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_kernel_on_gpu_matches_cpu_kernel():
    x, fx = (torch.randn(SHAPE, device="cuda", requires_grad=True) for _ in range(2))
    seed = torch.tensor(4242, dtype=torch.int64, device="cuda")
    y = fused.swapout2(x, fx, 0.6, 0.3, seed=seed)
    grad = torch.randn_like(y)
    y.backward(grad)
    m1, m2 = (m.cuda().float() for m in fused.masks(SHAPE, seed.cpu(), 0.6, 0.3))
    assert torch.equal(y, m1 * x.detach() + m2 * fx.detach())
    assert torch.equal(x.grad, m1 * grad) and torch.equal(fx.grad, m2 * grad)
    n = 1 << 22
    a1, a2 = fused.masks((n,), seed, 0.4, 0.7, device="cuda")
    for m, theta in ((a1, 0.4), (a2, 0.7)):
        assert abs(m.double().mean().item() - theta) < 5 * math.sqrt(theta * (1 - theta) / n)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_gradcheck_reproducibility_and_compile():
    x, fx = (torch.randn(2, 3, 4, 4, dtype=torch.float64, device="cuda", requires_grad=True) for _ in range(2))
    seed = torch.tensor(99, dtype=torch.int64, device="cuda")
    assert torch.autograd.gradcheck(lambda a, b: fused.swapout2(a, b, 0.6, 0.5, seed=seed), (x, fx))
    a, b = torch.randn(SHAPE, device="cuda"), torch.randn(SHAPE, device="cuda")
    torch.manual_seed(1)
    y1, y2 = swapout.swapout(a, b, 0.5, 0.5), swapout.swapout(a, b, 0.5, 0.5)
    torch.manual_seed(1)
    assert torch.equal(swapout.swapout(a, b, 0.5, 0.5), y1) and not torch.equal(y1, y2)
    for dtype in (torch.float16, torch.bfloat16):
        h, g = a.to(dtype), b.to(dtype)
        y = swapout.swapout(h, g, 0.5, 0.5)
        assert y.dtype == dtype and torch.all((y == 0) | (y == h) | (y == g) | (y == h + g))
    model = swapout.create_model("resnet_v2_ours", depth=8, theta1=0.7, theta2=0.6).cuda()
    compiled = torch.compile(model)
    out = compiled(torch.randn(4, 3, 32, 32, device="cuda"))
    out.sum().backward()
    assert torch.isfinite(out).all() and model.stem[0].weight.grad is not None
