"""The spatial corruptions of `swapout.data.corruptions`: blurs, zoom, elastic warps, fog and snow.

Every function takes a batch ``x`` of float images (N, 3, H, W) in [0, 1], the parameter of one
severity and a ``numpy.random.Generator``, and returns a batch of the same shape (not yet clipped or
quantised). The parameters and the operations follow Hendrycks and Dietterich's CIFAR-10-C
(``make_cifar_c.py`` in github.com/hendrycks/robustness, ICLR 2019); the operations are written here
with torch (filters, ``grid_sample``) and numpy, batched over images. Each function says where it
departs from the original.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["gaussian_filter", "gaussian_blur", "glass_blur", "defocus_blur", "motion_blur", "zoom_blur",
           "snow", "fog", "elastic_transform", "clipped_zoom", "plasma_fractal"]


def _pad_index(n: int, r: int, mode: str) -> Tensor:
    """Indices that pad a length-``n`` axis by ``r`` on both sides: ``nearest`` repeats the edge,
    ``reflect`` mirrors including the edge (d c b a | a b c d), ``mirror`` mirrors about it (c b | a b c)."""
    i = torch.arange(-r, n + r)
    if mode == "nearest":
        return i.clamp(0, n - 1)
    if mode == "mirror":
        period = 2 * (n - 1)
        i = i.remainder(period)
        return torch.where(i >= n, period - i, i)
    period = 2 * n
    i = i.remainder(period)
    return torch.where(i >= n, period - 1 - i, i)


def _filter2d(x: Tensor, kernel: Tensor, mode: str) -> Tensor:
    """Correlate every channel of ``x`` (N, C, H, W) with ``kernel`` (kh, kw, odd sizes), padding by ``mode``."""
    kh, kw = kernel.shape
    h, w = x.shape[-2:]
    x = x.index_select(-2, _pad_index(h, kh // 2, mode)).index_select(-1, _pad_index(w, kw // 2, mode))
    c = x.shape[1]
    return F.conv2d(x, kernel.to(x).expand(c, 1, kh, kw), groups=c)


def gaussian_filter(x: Tensor, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> Tensor:
    """Separable Gaussian filter of standard deviation ``sigma`` pixels, radius ``int(truncate*sigma + 0.5)``
    (the convention of scipy and scikit-image, whose ``gaussian`` the original calls)."""
    r = int(truncate * sigma + 0.5)
    if r == 0:
        return x
    k = torch.exp(-torch.arange(-r, r + 1, dtype=torch.float64) ** 2 / (2 * sigma ** 2))
    k = (k / k.sum()).float()
    return _filter2d(_filter2d(x, k.view(-1, 1), mode), k.view(1, -1), mode)


def gaussian_blur(x: Tensor, sigma: float, rng: np.random.Generator) -> Tensor:
    return gaussian_filter(x, sigma)


def glass_blur(x: Tensor, c, rng: np.random.Generator) -> Tensor:
    """Blur, quantise to 8 bits, jitter pixels locally ``iterations`` times, blur again.

    The original scans pixels from the bottom-right corner (two pixels from the borders) and "swaps"
    each with its neighbour at offset (dy, dx) drawn from {-1, 0}^2, but its numpy tuple assignment of
    two views copies instead: every pixel takes the value of that neighbour, which the scan has not
    reached yet. That is one gather per iteration, done here for all pixels and images at once.
    """
    sigma, delta, iterations = c
    x = (gaussian_filter(x, sigma) * 255).clamp(0, 255).round()  # 8 bits (the original truncates)
    n, _, h, w = x.shape
    rows = torch.arange(h).view(1, h, 1).expand(n, h, w)
    cols = torch.arange(w).view(1, 1, w).expand(n, h, w)
    inside = torch.zeros(h, w, dtype=torch.bool)
    inside[delta + 1:h - delta + 1, delta + 1:w - delta + 1] = True  # the scanned pixels: h - delta down to delta + 1
    for _ in range(iterations):
        shift = torch.from_numpy(rng.integers(-delta, delta, size=(2, n, h, w)))
        src_r, src_c = torch.where(inside, rows + shift[0], rows), torch.where(inside, cols + shift[1], cols)
        flat = (src_r * w + src_c).view(n, 1, h * w).expand(n, x.shape[1], h * w)
        x = x.flatten(2).gather(2, flat).view_as(x)
    return gaussian_filter(x / 255, sigma)


def defocus_blur(x: Tensor, c, rng: np.random.Generator) -> Tensor:
    """A disk of radius ``c[0]`` on a 17 x 17 grid, smoothed by a 3 x 3 Gaussian of sigma ``c[1]`` to reduce
    aliasing, as the original kernel; image borders mirrored (OpenCV's default, which it used)."""
    radius, alias = c
    r = torch.arange(-8, 9, dtype=torch.float64)
    disk = ((r.view(-1, 1) ** 2 + r.view(1, -1) ** 2) <= radius ** 2).double()
    disk /= disk.sum()
    g = torch.exp(-torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64) ** 2 / (2 * alias ** 2))
    g /= g.sum()
    kernel = _filter2d(disk.view(1, 1, 17, 17), g.view(-1, 1) * g.view(1, -1), "mirror")[0, 0]
    return _filter2d(x, kernel.float(), "mirror")


def _sample(x: Tensor, rows: Tensor, cols: Tensor, mode: str = "bilinear", padding: str = "border") -> Tensor:
    """``x`` (N, C, H, W) read at pixel coordinates ``rows``, ``cols`` (N, H', W'), by ``grid_sample``."""
    h, w = x.shape[-2:]
    grid = torch.stack([2 * cols / (w - 1) - 1, 2 * rows / (h - 1) - 1], -1).to(x)
    return F.grid_sample(x, grid, mode=mode, padding_mode=padding, align_corners=True)


def _motion(x: Tensor, radius: float, sigma: float, angles_deg: np.ndarray) -> Tensor:
    """One-sided motion blur as ImageMagick's ``-motion-blur radius x sigma + angle`` (which the original
    called through Wand): ``2*ceil(radius) + 1`` taps i = 0, 1, ..., tap i read at (row + round(i sin a),
    col + round(i cos a)) and weighted exp(-i^2 / (2 sigma^2)), edges repeated. Angle 0 smears along the
    row; positive angles turn clockwise on the screen, since rows grow downwards."""
    n, _, h, w = x.shape
    taps = 2 * math.ceil(radius) + 1
    weights = torch.exp(-torch.arange(taps, dtype=torch.float64) ** 2 / (2 * sigma ** 2))
    weights = (weights / weights.sum()).float()
    a = torch.from_numpy(np.deg2rad(angles_deg)).float().view(n, 1, 1)
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    out = torch.zeros_like(x)
    for i in range(taps):
        # ceil(v - 0.5) rounds halves up, as ImageMagick does; torch.round would round them to even
        dy, dx = torch.ceil(i * torch.sin(a) - 0.5), torch.ceil(i * torch.cos(a) - 0.5)
        out += weights[i] * _sample(x, yy + dy, xx + dx, mode="nearest")
    return out


def motion_blur(x: Tensor, c, rng: np.random.Generator) -> Tensor:
    """Motion blur (radius, sigma) = ``c`` at an angle drawn uniformly in [-45, 45] degrees per image, the
    result quantised to 8 bits as the original's PNG round trip."""
    out = _motion(x, c[0], c[1], rng.uniform(-45, 45, size=len(x)))
    return (out * 255).round() / 255


def clipped_zoom(x: Tensor, factor: float) -> Tensor:
    """Zoom into the centre by ``factor`` >= 1, keeping the size: crop ``ceil(H / factor)`` pixels, resize
    linearly (corner pixels aligned, as scipy's ``zoom`` at order 1) to ``round(crop * factor)``, trim."""
    h = x.shape[-1]
    ch = int(math.ceil(h / factor))
    top = (h - ch) // 2
    size = int(round(ch * factor))
    z = F.interpolate(x[..., top:top + ch, top:top + ch], size=(size, size), mode="bilinear", align_corners=True)
    trim = (size - h) // 2
    return z[..., trim:trim + h, trim:trim + h]


def zoom_blur(x: Tensor, factors, rng: np.random.Generator) -> Tensor:
    """The mean of the image and its zooms by each of ``factors`` (1, 1.01, ... up to 1.06 ... 1.25)."""
    out = x.clone()
    for f in factors:
        out += clipped_zoom(x, float(f))
    return out / (len(factors) + 1)


def plasma_fractal(n: int, size: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` fractal height maps (n, size, size) in [0, 1] by the diamond-square algorithm on a torus.

    The midpoint of every square, then of every diamond, is the mean of its four neighbours plus noise
    uniform in [-a^2, a^2]; a starts at 100 and is divided by ``decay`` at every halving of the step
    (the amplitudes of the original). ``size`` must be a power of two.
    """
    if size & (size - 1):
        raise ValueError(f"size must be a power of two, got {size}")
    m = np.zeros((n, size, size))
    step, amp = size, 100.0
    while step >= 2:
        half = step // 2
        corners = m[:, ::step, ::step]
        s = corners + np.roll(corners, -1, 1)
        s = s + np.roll(s, -1, 2)
        m[:, half::step, half::step] = s / 4 + rng.uniform(-amp * amp, amp * amp, s.shape)
        centres = m[:, half::step, half::step]
        top = corners + np.roll(corners, -1, 2) + centres + np.roll(centres, 1, 1)
        m[:, ::step, half::step] = top / 4 + rng.uniform(-amp * amp, amp * amp, top.shape)
        left = corners + np.roll(corners, -1, 1) + centres + np.roll(centres, 1, 2)
        m[:, half::step, ::step] = left / 4 + rng.uniform(-amp * amp, amp * amp, left.shape)
        step, amp = half, amp / decay
    m -= m.min(axis=(1, 2), keepdims=True)
    return m / m.max(axis=(1, 2), keepdims=True)


def fog(x: Tensor, c, rng: np.random.Generator) -> Tensor:
    """Add ``c[0]`` times a plasma fractal of decay ``c[1]`` (one per image), then rescale by max / (max + c[0])."""
    n, _, h, w = x.shape
    size = 1 << max(h, w, 2).bit_length() - 1
    size = size if size >= max(h, w) else size * 2
    plasma = torch.from_numpy(plasma_fractal(n, size, c[1], rng)[:, None, :h, :w]).to(x)
    top = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x + c[0] * plasma) * top / (top + c[0])


def snow(x: Tensor, c, rng: np.random.Generator) -> Tensor:
    """Snowflakes: Gaussian noise (mean c[0], sd c[1]) zoomed by c[2], kept above c[3], motion-blurred
    (radius c[4], sigma c[5], angle uniform in [-135, -45] degrees), added twice (once rotated by 180
    degrees) to the image whitened as c[6]*x + (1 - c[6])*max(x, 1.5*grey + 0.5). The blur is ImageMagick's
    motion blur, as in `motion_blur`: angles near -90 degrees streak the flakes up and down."""
    n, _, h, w = x.shape
    layer = torch.from_numpy(rng.normal(c[0], c[1], size=(n, 1, h, w))).float()
    layer = clipped_zoom(layer, c[2])
    layer = torch.where(layer < c[3], torch.zeros_like(layer), layer)
    layer = (layer.clamp(0, 1) * 255).round() / 255
    layer = (_motion(layer, c[4], c[5], rng.uniform(-135, -45, size=n)) * 255).round() / 255
    grey = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)
    x = c[6] * x + (1 - c[6]) * torch.maximum(x, grey * 1.5 + 0.5)
    return x + layer + layer.flip(-1, -2)


def elastic_transform(x: Tensor, c, rng: np.random.Generator) -> Tensor:
    """A random affine map (three points moved by up to ``c[2]`` pixels) followed by a smooth random
    displacement field (uniform noise filtered by a Gaussian of sigma ``c[1]``, times ``c[0]`` pixels).

    The original resamples twice (OpenCV's ``warpAffine``, then scipy's ``map_coordinates``); here the
    two maps are composed and the image is resampled once, bilinearly, borders mirrored.
    """
    alpha, sigma, shift = c
    n, _, h, w = x.shape
    centre, side = np.array([w // 2, h // 2], dtype=np.float64), min(h, w) // 3
    src = np.stack([centre + side, [centre[0] + side, centre[1] - side], centre - side])  # (x, y) points
    dst = src[None] + rng.uniform(-shift, shift, size=(n, 3, 2))
    ones = np.ones((3, 1))
    forward = np.linalg.solve(np.hstack([src, ones])[None], dst)  # (n, 3, 2): [x y 1] @ forward = moved
    field = torch.from_numpy(rng.uniform(-1, 1, size=(n, 2, h, w))).float()
    field = gaussian_filter(field, sigma, mode="reflect", truncate=3.0) * alpha if sigma > 0 else field * 0
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    px, py = xx + field[:, 0].double(), yy + field[:, 1].double()  # where the warped image is read
    a = torch.from_numpy(forward)
    lin = torch.linalg.inv(a[:, :2].transpose(1, 2))  # (n, 2, 2): the inverse of the linear part
    ox, oy = px - a[:, 2, 0].view(n, 1, 1), py - a[:, 2, 1].view(n, 1, 1)
    sx = lin[:, 0, 0].view(n, 1, 1) * ox + lin[:, 0, 1].view(n, 1, 1) * oy
    sy = lin[:, 1, 0].view(n, 1, 1) * ox + lin[:, 1, 1].view(n, 1, 1) * oy
    return _sample(x, sy.float(), sx.float(), padding="reflection")
