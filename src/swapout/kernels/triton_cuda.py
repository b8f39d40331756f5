"""Triton kernels for fused swapout on CUDA (imported by `swapout.kernels.fused` only when needed).

Element ``e`` takes the same Philox4x32-10 word as in the CPU kernel (``csrc/swapout_cpu.c``): tile
``e // 64``, lane ``e % 16``, word ``(e % 64) // 16`` of counter ``(e // 64) * 16 + e % 16``. So a
seed gives identical masks on the CPU and the GPU. A program covers 16 tiles as a [16, 4, 16] block
and runs one Philox per counter, shared by the four elements that take its four words.

Set ``TRITON_INTERPRET=1`` to run these kernels on CPU tensors (slowly), as the test suite does.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

_TILES = 16  # tiles of 64 elements per program: 1024 elements


@triton.jit
def _philox_tiles(seed, first_tile, TILES: tl.constexpr):
    """Philox4x32-10 for lanes 0..15 of tiles first_tile .. first_tile+TILES-1: four [TILES, 16] words."""
    tile = first_tile + tl.arange(0, TILES).to(tl.int64)[:, None]
    ctr = tile * 16 + tl.arange(0, 16)[None, :]
    c0 = (ctr & 0xFFFFFFFF).to(tl.uint32)
    c1 = (ctr >> 32).to(tl.uint32)
    c2 = tl.zeros_like(c0)
    c3 = tl.zeros_like(c0)
    mul_a = tl.full((1, 1), 0xD2511F53, tl.uint32)
    mul_b = tl.full((1, 1), 0xCD9E8D57, tl.uint32)
    k0 = seed & 0xFFFFFFFF
    k1 = (seed >> 32) & 0xFFFFFFFF
    for _ in tl.static_range(10):
        hi_a = tl.umulhi(c0, mul_a)
        lo_a = c0 * mul_a
        hi_b = tl.umulhi(c2, mul_b)
        lo_b = c2 * mul_b
        c0 = hi_b ^ c1 ^ k0.to(tl.uint32)
        c2 = hi_a ^ c3 ^ k1.to(tl.uint32)
        c1 = lo_b
        c3 = lo_a
        k0 = (k0 + 0x9E3779B9) & 0xFFFFFFFF
        k1 = (k1 + 0xBB67AE85) & 0xFFFFFFFF
    return c0, c1, c2, c3


@triton.jit
def _words(seed_ptr, TILES: tl.constexpr):
    """This program's elements as [TILES, 4, 16] offsets, with the Philox word of each."""
    first_tile = tl.program_id(0).to(tl.int64) * TILES
    c0, c1, c2, c3 = _philox_tiles(tl.load(seed_ptr), first_tile, TILES)
    word = tl.arange(0, 4)[None, :, None]
    e = (first_tile + tl.arange(0, TILES).to(tl.int64))[:, None, None] * 64 + word * 16 \
        + tl.arange(0, 16)[None, None, :]
    r = tl.where(word == 0, c0[:, None, :], tl.where(word == 1, c1[:, None, :],
                                                     tl.where(word == 2, c2[:, None, :], c3[:, None, :])))
    return e, r


@triton.jit
def _forward_kernel(x_ptr, f_ptr, y_ptr, seed_ptr, n, t1, t2, TILES: tl.constexpr):
    e, r = _words(seed_ptr, TILES)
    inside = e < n
    x = tl.load(x_ptr + e, mask=inside)
    f = tl.load(f_ptr + e, mask=inside)
    zero = tl.zeros_like(x)
    y = tl.where((r & 0xFFFF) < t1, x, zero) + tl.where((r >> 16) < t2, f, zero)
    tl.store(y_ptr + e, y, mask=inside)


@triton.jit
def _backward_kernel(g_ptr, gx_ptr, gf_ptr, seed_ptr, n, t1, t2, TILES: tl.constexpr):
    e, r = _words(seed_ptr, TILES)
    inside = e < n
    g = tl.load(g_ptr + e, mask=inside)
    zero = tl.zeros_like(g)
    tl.store(gx_ptr + e, tl.where((r & 0xFFFF) < t1, g, zero), mask=inside)
    tl.store(gf_ptr + e, tl.where((r >> 16) < t2, g, zero), mask=inside)


@triton.jit
def _mask_kernel(out_ptr, seed_ptr, n, t1, t2, TILES: tl.constexpr):
    e, r = _words(seed_ptr, TILES)
    bits = ((r & 0xFFFF) < t1).to(tl.uint8) | (((r >> 16) < t2).to(tl.uint8) << 1)
    tl.store(out_ptr + e, bits, mask=e < n)


def _grid(n: int):
    return (triton.cdiv(n, 64 * _TILES),)


def forward(x: Tensor, fx: Tensor, y: Tensor, seed: Tensor, t1: int, t2: int) -> None:
    n = x.numel()
    if n:
        _forward_kernel[_grid(n)](x, fx, y, seed, n, t1, t2, TILES=_TILES)


def backward(g: Tensor, gx: Tensor, gf: Tensor, seed: Tensor, t1: int, t2: int) -> None:
    n = g.numel()
    if n:
        _backward_kernel[_grid(n)](g, gx, gf, seed, n, t1, t2, TILES=_TILES)


def masks(n: int, seed: Tensor, t1: int, t2: int) -> Tensor:
    out = torch.empty(n, dtype=torch.uint8, device=seed.device)
    if n:
        _mask_kernel[_grid(n)](out, seed, n, t1, t2, TILES=_TILES)
    return out
