"""Fused swapout kernels: masks that cost almost nothing and are never stored.

The reference op in `swapout.ops` draws two Bernoulli masks with ``torch.bernoulli``, multiplies and
adds, and keeps the masks for the backward pass. Random number generation dominates its cost. The
kernels here compute ``Y = Theta1*X + Theta2*F`` in one pass over memory, drawing each unit's masks
from a counter-based generator (Philox4x32-10, Salmon et al., SC 2011) keyed by a per-call seed, and
the backward pass regenerates the same masks from that seed instead of reading them back. The backward
pass is differentiable in turn (``create_graph=True``: gradient penalties, Hessian-vector products), since
its own gradient is the forward kernel with the same seed.

* CPU: a small C file (``csrc/swapout_cpu.c``) compiled with the system C compiler and OpenMP at first
  use, cached per user, and called through `ctypes`. It does not include PyTorch headers, so it
  builds in about a second and does not depend on the PyTorch version. float32 and float64.
* CUDA: a Triton kernel computing the same words for the same elements, so a seed gives the same masks
  on both devices. Every floating dtype.

Each call draws its 62-bit seed from the tensors' device generator (or the one passed in), so masks
follow ``torch.manual_seed`` and explicit generators, and different calls, layers and steps get
different keys. A unit's Philox word gives Theta1 from its low 16 bits and Theta2 from its high 16
bits: theta is applied as ``round(theta * 65536) / 65536`` (at most 7.7e-6 from the requested value).

Only the common case is fused: two terms, unit granularity, masks sampled. The N-way form, coarser
granularities (their masks are small, so the reference op is already cheap), deterministic inference,
CPU half-precision dtypes, and CUDA tensors inside torch.compile (where Inductor fuses the reference
op itself) use the reference op. Without a C compiler (or without Triton for CUDA)
everything falls back to the reference op after a one-line warning. ``SWAPOUT_FUSED=0`` disables the
fused kernels.
"""

from __future__ import annotations

import os
import threading
import warnings
from typing import Optional, Tuple

import torch
from torch import Tensor

__all__ = ["available", "set_enabled", "swapout2", "masks", "draw_seed", "cpu_library"]

_MASK_BITS = 16
_lock = threading.Lock()
_cpu_lib: Optional[object] = None  # None: not tried yet; False: unavailable
_triton: Optional[object] = None
_warned: set = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


_enabled = os.environ.get("SWAPOUT_FUSED", "1").lower() not in ("0", "false", "no", "off")


def set_enabled(enabled: bool) -> bool:
    """Turn the fused kernels on or off for this process; returns the previous setting."""
    global _enabled
    previous, _enabled = _enabled, bool(enabled)
    return previous


def threshold(theta: float) -> int:
    """Integer threshold of a keep probability: a unit is kept when its 16-bit word is below it."""
    return int(round(theta * (1 << _MASK_BITS)))


def cpu_library():
    """The compiled CPU kernel as a ctypes library, building it on first use; None if impossible."""
    global _cpu_lib
    if _cpu_lib is None:
        with _lock:
            if _cpu_lib is None:
                from .cpu import load_library

                _cpu_lib = load_library(lambda error: _warn_once(
                    "cpu", f"swapout: fused CPU kernel unavailable, using the reference op ({error})")) or False
    return _cpu_lib or None


def _triton_module():
    global _triton
    if _triton is None:
        try:
            from . import triton_cuda

            _triton = triton_cuda
        except Exception as err:  # ImportError, or a Triton that cannot build for this GPU
            _warn_once("cuda", f"swapout: fused CUDA kernel unavailable, using the reference op ({err})")
            _triton = False
    return _triton or None


_CPU_DTYPES = {torch.float32: "f32", torch.float64: "f64"}


def available(x: Tensor) -> bool:
    """True when a fused kernel handles tensors like ``x`` (device and dtype)."""
    if not _enabled or _transforms_active():
        return False
    if x.device.type == "cpu":
        return x.dtype in _CPU_DTYPES and cpu_library() is not None
    if x.device.type == "cuda":
        # Under torch.compile, Inductor fuses the reference op's mask draws, multiplies and add into
        # one kernel of its own, which is faster on a GPU than calling this one as an opaque op.
        if torch.compiler.is_compiling():
            return False
        return x.dtype.is_floating_point and _triton_module() is not None
    return False


# Under torch.func (vmap, grad, ...) tensors are wrappers without storage a kernel could read, and
# vmap(randomness="different") needs masks drawn per batch entry: the reference op does both.
_functorch_active = getattr(torch._C, "_are_functorch_transforms_active", lambda: False)


def _transforms_active() -> bool:
    return bool(_functorch_active())


def _layout(x: Tensor) -> torch.memory_format:
    """The dense layout the kernels run in: channels-last tensors stay so, anything else is made contiguous.

    The kernels walk memory in order, so a unit's mask word follows its place in memory, not its
    index: a channels-last tensor takes the masks of its NHWC permutation.
    """
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _seed_value(seed: Tensor) -> int:
    return int(seed.item()) & 0xFFFFFFFFFFFFFFFF


def _forward_impl(x: Tensor, fx: Tensor, seed: Tensor, theta1: float, theta2: float) -> Tensor:
    y = torch.empty_like(x)
    if x.device.type == "cuda":
        _triton_module().forward(x, fx, y, seed, threshold(theta1), threshold(theta2))
    else:
        fn = getattr(cpu_library(), f"swapout_fwd_{_CPU_DTYPES[x.dtype]}")
        fn(x.data_ptr(), fx.data_ptr(), y.data_ptr(), x.numel(), _seed_value(seed), threshold(theta1),
           threshold(theta2), torch.get_num_threads())
    return y


def _backward_impl(grad: Tensor, seed: Tensor, theta1: float, theta2: float) -> Tuple[Tensor, Tensor]:
    # The forward pass ran in the layout of its inputs; the gradient must be read in that same order.
    # Autograd hands back the output's layout in practice, which _FusedSwapout.backward enforces.
    gx, gfx = torch.empty_like(grad), torch.empty_like(grad)
    if grad.device.type == "cuda":
        _triton_module().backward(grad, gx, gfx, seed, threshold(theta1), threshold(theta2))
    else:
        fn = getattr(cpu_library(), f"swapout_bwd_{_CPU_DTYPES[grad.dtype]}")
        fn(grad.data_ptr(), gx.data_ptr(), gfx.data_ptr(), grad.numel(), _seed_value(seed), threshold(theta1),
           threshold(theta2), torch.get_num_threads())
    return gx, gfx


# The same kernels as opaque custom ops, for torch.compile, which cannot trace ctypes or launch
# logic. Eager calls skip them: their Python dispatch costs about 100 us per layer and step, as much
# as the kernel itself on a small tensor.
_forward_op = torch.library.custom_op("swapout::fused_forward", _forward_impl, mutates_args=())
_backward_op = torch.library.custom_op("swapout::fused_backward", _backward_impl, mutates_args=())


@_forward_op.register_fake
def _(x, fx, seed, theta1, theta2):
    return torch.empty_like(x)


@_backward_op.register_fake
def _(grad, seed, theta1, theta2):
    return torch.empty_like(grad), torch.empty_like(grad)


class _FusedSwapout(torch.autograd.Function):
    """Autograd for the fused op: only the seed is kept for the backward pass, never a mask.

    Written in the ``setup_context`` form that torch.func expects of an autograd function; under a
    torch.func transform `available` is False and the reference op runs instead, since the
    kernels read raw storage.
    """

    @staticmethod
    def forward(x: Tensor, fx: Tensor, seed: Tensor, theta1: float, theta2: float) -> Tensor:
        forward = _forward_op if torch.compiler.is_compiling() else _forward_impl
        return forward(x, fx, seed, theta1, theta2)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        _, _, seed, theta1, theta2 = inputs
        ctx.save_for_backward(seed)
        ctx.thetas = (theta1, theta2)
        ctx.layout = _layout(output)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (seed,) = ctx.saved_tensors
        grad = grad.contiguous(memory_format=ctx.layout)
        if grad.requires_grad and torch.is_grad_enabled() and not torch.compiler.is_compiling():
            # create_graph=True (a gradient penalty, a Hessian-vector product): the gradient must itself be
            # differentiable with respect to ``grad``
            gx, gfx = _FusedSwapoutGrad.apply(grad, seed, *ctx.thetas)
        else:
            backward = _backward_op if torch.compiler.is_compiling() else _backward_impl
            gx, gfx = backward(grad, seed, *ctx.thetas)
        return gx, gfx, None, None, None


class _FusedSwapoutGrad(torch.autograd.Function):
    """The backward pass of `_FusedSwapout` as an op of its own, for double backward.

    ``(gx, gfx) = (Theta1*grad, Theta2*grad)`` is linear in ``grad`` with the same masks, so its own
    backward, ``Theta1*ggx + Theta2*ggfx``, is the forward kernel with the same seed, in the same layout.
    """

    @staticmethod
    def forward(grad: Tensor, seed: Tensor, theta1: float, theta2: float) -> Tuple[Tensor, Tensor]:
        return _backward_impl(grad, seed, theta1, theta2)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        grad, seed, theta1, theta2 = inputs
        ctx.save_for_backward(seed)
        ctx.thetas = (theta1, theta2)
        ctx.layout = _layout(grad)

    @staticmethod
    def backward(ctx, ggx: Optional[Tensor], ggfx: Optional[Tensor]):
        (seed,) = ctx.saved_tensors
        if ggx is None:
            if ggfx is None:
                return None, None, None, None
            ggx = torch.zeros_like(ggfx)
        elif ggfx is None:
            ggfx = torch.zeros_like(ggx)
        return _FusedSwapout.apply(ggx.contiguous(memory_format=ctx.layout),
                                   ggfx.contiguous(memory_format=ctx.layout), seed, *ctx.thetas), None, None, None


def draw_seed(device: torch.device, generator: Optional[torch.Generator]) -> Tensor:
    """One 62-bit key from ``generator`` (or the device's default generator), as a 0-d int64 tensor."""
    return torch.randint(0, 1 << 62, (), dtype=torch.int64, device=device, generator=generator)


def swapout2(x: Tensor, fx: Tensor, theta1: float, theta2: float,
             generator: Optional[torch.Generator] = None, seed: Optional[Tensor] = None) -> Tensor:
    """Fused ``Theta1*X + Theta2*F`` with unit masks; call `available` first.

    Args:
        x, fx: tensors of the same shape, dtype and device.
        theta1, theta2: keep probabilities in [0, 1], already checked.
        generator: source of the per-call seed; the device's default generator if None.
        seed: an explicit 0-d int64 key instead of drawing one (tests use it to reproduce masks).
    """
    if seed is None:
        seed = draw_seed(x.device, generator)
    layout = _layout(x)
    return _FusedSwapout.apply(x.contiguous(memory_format=layout), fx.contiguous(memory_format=layout), seed,
                               float(theta1), float(theta2))


def masks(shape, seed: Tensor, theta1: float, theta2: float, device="cpu") -> Tuple[Tensor, Tensor]:
    """The two boolean masks that `swapout2` uses for a contiguous tensor of ``shape`` and ``seed``.

    A channels-last (N, C, H, W) tensor uses the masks of shape (N, H, W, C), permuted to (N, C, H, W).
    """
    n = 1
    for s in shape:
        n *= int(s)
    device = torch.device(device)
    if device.type == "cuda":
        bits = _triton_module().masks(n, seed.to(device), threshold(theta1), threshold(theta2))
    else:
        bits = torch.empty(n, dtype=torch.uint8)
        cpu_library().swapout_masks(bits.data_ptr(), n, _seed_value(seed), threshold(theta1), threshold(theta2),
                                    torch.get_num_threads())
    return (bits & 1).bool().reshape(shape), (bits & 2).bool().reshape(shape)
