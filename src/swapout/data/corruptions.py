"""Common corruptions of 32 x 32 images, in the manner of CIFAR-10-C, five severities each.

Hendrycks and Dietterich, "Benchmarking neural network robustness to common corruptions and
perturbations", ICLR 2019, published CIFAR-10-C: 15 corruptions at 5 severities (plus 4 extra ones),
made by ``make_cifar_c.py`` in github.com/hendrycks/robustness (``ImageNet-C/create_c/``), whose
parameters for 32 x 32 images are used here and quoted beside each corruption. The operations are
written anew with numpy, torch and Pillow, so the images are *generated in the manner of*
CIFAR-10-C, not the published files: same kinds and amounts of corruption, other random draws, and
small differences stated where they occur (see also `swapout.data.corruption_filters`). They apply
to any 32 x 32 RGB images, CIFAR-100 included.

Of the 15 corruptions, 14 are here; ``frost`` is not, as it overlays photographs of frost that ship
with the original code. Three of the 4 extra corruptions are here too (``speckle_noise``,
``gaussian_blur``, ``saturate``); ``spatter`` is not (it needs OpenCV's edge and distance transforms).

Use `corrupt` on uint8 images (N, H, W, 3); `swapout.data.shifted` generates whole test
sets from a seed and caches them.
"""

from __future__ import annotations

import io
from typing import Any, Callable, Dict, NamedTuple, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from . import corruption_filters as cf

__all__ = ["Corruption", "CORRUPTIONS", "BENCHMARK", "EXTRA", "SEVERITIES", "corrupt", "check_corruptions",
           "check_severities"]

SEVERITIES = (1, 2, 3, 4, 5)


class Corruption(NamedTuple):
    """One corruption: ``function(x, param, rng)`` on float images (N, 3, H, W) in [0, 1], one ``param`` per
    severity 1..5 (CIFAR-10-C's values), and its family."""
    function: Callable[[Tensor, Any, np.random.Generator], Tensor]
    params: Tuple
    family: str


def _gaussian_noise(x, c, rng):
    return x + torch.from_numpy(rng.normal(0.0, c, size=x.shape)).to(x)


def _shot_noise(x, c, rng):
    return torch.from_numpy(rng.poisson(x.double().numpy() * c) / c).to(x)


def _impulse_noise(x, c, rng):
    """Salt and pepper on a share ``c`` of all values (each channel of each pixel on its own), half of them
    set to 0 and half to 1, as scikit-image's ``random_noise(mode='s&p')`` that the original calls."""
    hit = torch.from_numpy(rng.random(size=x.shape) < c)
    salt = torch.from_numpy(rng.random(size=x.shape) < 0.5).to(x)
    return torch.where(hit, salt, x)


def _speckle_noise(x, c, rng):
    return x + x * torch.from_numpy(rng.normal(0.0, c, size=x.shape)).to(x)


def _contrast(x, c, rng):
    mean = x.mean(dim=(2, 3), keepdim=True)  # per image and channel
    return (x - mean) * c + mean


def _brightness(x, c, rng):
    """Raise V of HSV by ``c`` (clipped to 1), keeping hue and saturation. Every RGB value is V times a
    function of H and S, so this scales the pixel by V'/V; a black pixel (S = 0) becomes grey V'."""
    v = x.amax(dim=1, keepdim=True)
    v_new = (v + c).clamp(max=1)
    return torch.where(v > 0, x * v_new / v.clamp_min(1e-12), v_new.expand_as(x))


def _saturate(x, c, rng):
    """S of HSV becomes clip(S * c[0] + c[1], 0, 1), keeping hue and V. A channel is V - S*V*k(H), so it
    becomes V - (S'/S) (V - channel). Grey pixels (S = 0) get hue 0 (red), as scikit-image's ``rgb2hsv``."""
    v, low = x.amax(dim=1, keepdim=True), x.amin(dim=1, keepdim=True)
    delta = v - low
    s = torch.where(v > 0, delta / v.clamp_min(1e-12), torch.zeros_like(v))
    s_new = (s * c[0] + c[1]).clamp(0, 1)
    coloured = v - s_new * v * (v - x) / delta.clamp_min(1e-12)
    grey = torch.cat([v, v * (1 - s_new), v * (1 - s_new)], dim=1)
    return torch.where(delta > 0, coloured, grey)


def _pillow(x: Tensor, edit: Callable) -> Tensor:
    out = []
    for image in _to_uint8(x):
        out.append(np.asarray(edit(_pil().fromarray(image))))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 255


def _pil():
    from PIL import Image

    return Image


def _jpeg(x, quality, rng):
    def edit(image):
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        return _pil().open(buffer).convert("RGB")
    return _pillow(x, edit)


def _pixelate(x, c, rng):
    box = _pil().Resampling.BOX
    h, w = x.shape[-2:]
    return _pillow(x, lambda image: image.resize((int(w * c), int(h * c)), box).resize((w, h), box))


# Parameters per severity 1..5 from make_cifar_c.py (hendrycks/robustness), CIFAR-10 (32 x 32) version.
CORRUPTIONS: Dict[str, Corruption] = {
    # noise: standard deviation of added Gaussian noise, on a 0-1 scale
    "gaussian_noise": Corruption(_gaussian_noise, (0.04, 0.06, 0.08, 0.09, 0.10), "noise"),
    # noise: photons per unit intensity of Poisson noise (fewer = noisier)
    "shot_noise": Corruption(_shot_noise, (500, 250, 100, 75, 50), "noise"),
    # noise: share of values replaced by salt or pepper
    "impulse_noise": Corruption(_impulse_noise, (0.01, 0.02, 0.03, 0.05, 0.07), "noise"),
    # blur: (disk radius, anti-aliasing sigma) in pixels
    "defocus_blur": Corruption(cf.defocus_blur, ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)), "blur"),
    # blur: (Gaussian sigma, largest pixel shift, iterations)
    "glass_blur": Corruption(cf.glass_blur, ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
                             "blur"),
    # blur: ImageMagick motion blur (radius, sigma), angle uniform in [-45, 45] degrees
    "motion_blur": Corruption(cf.motion_blur, ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)), "blur"),
    # blur: zoom factors 1, 1.01, ... up to 1.06, 1.11, 1.15, 1.20, 1.25: in floating point arange's first two
    # stops are not excluded (0.06 / 0.01 > 6), in the original as here
    "zoom_blur": Corruption(cf.zoom_blur, tuple(tuple(np.arange(1, top, 0.01)) for top in
                                                (1.06, 1.11, 1.16, 1.21, 1.26)), "blur"),
    # weather: (noise mean, noise sd, zoom, threshold, blur radius, blur sigma, image weight)
    "snow": Corruption(cf.snow, ((0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
                                 (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9), (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
                                 (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)), "weather"),
    # weather: (fog strength, plasma fractal decay)
    "fog": Corruption(cf.fog, ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)), "weather"),
    # weather: added to V of HSV
    "brightness": Corruption(_brightness, (0.05, 0.1, 0.15, 0.2, 0.3), "weather"),
    # digital: factor on the distance to the per-channel mean
    "contrast": Corruption(_contrast, (0.75, 0.5, 0.4, 0.3, 0.15), "digital"),
    # digital: (displacement alpha, its smoothing sigma, affine shift) = 32 x (0, 0, .08), (.05, .2, .07),
    # (.08, .06, .06), (.1, .04, .05), (.1, .03, .03) pixels
    "elastic_transform": Corruption(cf.elastic_transform, tuple(tuple(32 * v for v in c) for c in (
        (0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03))), "digital"),
    # digital: side of the box-downsampled image, as a share of 32 pixels
    "pixelate": Corruption(_pixelate, (0.95, 0.9, 0.85, 0.75, 0.65), "digital"),
    # digital: JPEG quality (Pillow)
    "jpeg_compression": Corruption(_jpeg, (80, 65, 58, 50, 40), "digital"),
    # extra: sd of multiplicative Gaussian noise
    "speckle_noise": Corruption(_speckle_noise, (0.06, 0.1, 0.12, 0.16, 0.2), "extra"),
    # extra: Gaussian sigma in pixels (scikit-image's truncation at 4 sigma, edges repeated)
    "gaussian_blur": Corruption(cf.gaussian_blur, (0.4, 0.6, 0.7, 0.8, 1.0), "extra"),
    # extra: (factor, offset) on S of HSV
    "saturate": Corruption(_saturate, ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)), "extra"),
}
# The benchmark's corruptions available here (14 of its 15), and the extra ones.
BENCHMARK = tuple(k for k, v in CORRUPTIONS.items() if v.family != "extra")
EXTRA = tuple(k for k, v in CORRUPTIONS.items() if v.family == "extra")


def _repeated(values: Sequence) -> list:
    """The values that occur more than once, each named once, in order."""
    seen, twice = set(), []
    for v in values:
        if v in seen and v not in twice:
            twice.append(v)
        seen.add(v)
    return twice


def check_corruptions(names: Sequence[str]) -> Tuple[str, ...]:
    """``names`` as a tuple, or a ValueError naming the unknown ones and the available ones, or the repeated ones
    (a grid that held one twice would weigh it twice in every mean over corruptions)."""
    unknown = [n for n in names if n not in CORRUPTIONS]
    if unknown:
        raise ValueError(f"unknown corruption {', '.join(map(repr, unknown))}; choose from {', '.join(CORRUPTIONS)}")
    if not names:
        raise ValueError("no corruption given")
    twice = _repeated(names)
    if twice:
        raise ValueError(f"corruption {', '.join(map(repr, twice))} given more than once; give each once")
    return tuple(names)


def check_severities(severities: Sequence[int]) -> Tuple[int, ...]:
    """``severities`` as a tuple, or a ValueError for one outside 1-5, none, or a repeated one."""
    bad = [s for s in severities if isinstance(s, bool) or s not in SEVERITIES]
    if bad or not severities:
        raise ValueError(f"severities must be integers from 1 to 5, got {', '.join(map(str, bad) if bad else 'none')}")
    twice = _repeated(severities)
    if twice:
        raise ValueError(f"severity {', '.join(map(str, twice))} given more than once; give each once")
    return tuple(severities)


def _to_uint8(x: Tensor) -> np.ndarray:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def corrupt(images: np.ndarray, name: str, severity: int, rng: np.random.Generator) -> np.ndarray:
    """``images`` (N, H, W, 3) uint8 with corruption ``name`` at ``severity`` (1-5): uint8, same shape.

    Values are clipped to [0, 1] and rounded to 8 bits at the end (the original truncates instead).
    All random draws come from ``rng``, in one batch for all images.
    """
    check_corruptions([name])
    check_severities([severity])
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected uint8 images (N, H, W, 3), got {images.dtype} {images.shape}")
    spec = CORRUPTIONS[name]
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        return _to_uint8(spec.function(x, spec.params[severity - 1], rng))
