"""Corruptions in the manner of CIFAR-10-C: each one at severity 1 and 5 changes images by a measured amount in
the expected direction, is reproducible from its seed, and the generated sets are cached with a checksum."""

import numpy as np
import pytest
import torch

from swapout.data import corruption_filters as cf
from swapout.data.corruptions import BENCHMARK, CORRUPTIONS, EXTRA, corrupt
from swapout.data.shifted import shift_cache_path, shifted_images

N = 24


def _images(seed=0):
    """Smooth random colour fields (a 4 x 4 grid upsampled) in [60, 190], with pixel texture (+-12) and a sharp
    vertical edge, so that noise, blur and digital corruptions all have something to act on, and nothing clips."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(70, 180, size=(N, 4, 4, 3))
    t = np.linspace(0, 3, 32)
    i0 = np.minimum(t.astype(int), 2)
    f = (t - i0)[None, :, None, None]
    rows = coarse[:, i0] * (1 - f) + coarse[:, i0 + 1] * f
    g = (t - i0)[None, None, :, None]
    field = rows[:, :, i0] * (1 - g) + rows[:, :, i0 + 1] * g
    field[:, :, 16:] += 10
    field += rng.uniform(-12, 12, size=field.shape)
    return np.clip(field, 60, 190).round().astype(np.uint8)


X = _images()
XF = X.astype(np.float64)


def _run(name, severity, seed=0):
    return corrupt(X, name, severity, np.random.default_rng(seed)).astype(np.float64)


def _hf(x):
    """High-frequency energy: mean squared difference of horizontally and vertically neighbouring pixels."""
    return (np.diff(x, axis=1) ** 2).mean() + (np.diff(x, axis=2) ** 2).mean()


def _saturation(x):
    top = x.max(-1)
    return ((top - x.min(-1)) / np.maximum(top, 1)).mean()


def test_registry_holds_14_benchmark_and_3_extra_corruptions_with_5_parameters_each():
    assert len(BENCHMARK) == 14 and "frost" not in CORRUPTIONS and set(EXTRA) == {"speckle_noise", "gaussian_blur",
                                                                                 "saturate"}
    assert all(len(c.params) == 5 for c in CORRUPTIONS.values())


@pytest.mark.parametrize("severity,sd", [(1, 0.04), (5, 0.10)])
def test_gaussian_noise_adds_noise_of_the_cifar_c_standard_deviation(severity, sd):
    residual = _run("gaussian_noise", severity) - XF
    assert residual.std() == pytest.approx(255 * sd, rel=0.03)  # 73,728 values: the sd is known to 0.3%
    assert abs(residual.mean()) < 0.5 and _hf(_run("gaussian_noise", severity)) > _hf(XF)


@pytest.mark.parametrize("severity,photons", [(1, 500), (5, 50)])
def test_shot_noise_has_poisson_variance(severity, photons):
    residual = _run("shot_noise", severity) - XF
    expected = 255 ** 2 * (XF / 255).mean() / photons + 1 / 12  # Poisson variance plus rounding to 8 bits
    assert residual.var() == pytest.approx(expected, rel=0.05)


@pytest.mark.parametrize("severity,share", [(1, 0.01), (5, 0.07)])
def test_impulse_noise_sets_that_share_of_values_to_0_or_255(severity, share):
    y = _run("impulse_noise", severity)
    hit = (y == 0) | (y == 255)  # the clean images hold no 0 or 255
    sd = np.sqrt(share * (1 - share) / hit.size)
    assert abs(hit.mean() - share) < 5 * sd
    assert (y[~hit] == XF[~hit]).all() and abs((y[hit] == 255).mean() - 0.5) < 0.05


@pytest.mark.parametrize("severity,sd", [(1, 0.06), (5, 0.2)])
def test_speckle_noise_is_multiplicative(severity, sd):
    residual = _run("speckle_noise", severity) - XF
    assert residual.std() == pytest.approx(sd * np.sqrt((XF ** 2).mean()), rel=0.04)


@pytest.mark.parametrize("name", ["defocus_blur", "gaussian_blur", "motion_blur", "zoom_blur", "glass_blur"])
def test_blurs_lower_high_frequency_energy_more_at_severity_5(name):
    clean, five = _hf(XF), _hf(_run(name, 5))
    assert five < 0.6 * clean
    if name != "glass_blur":  # glass blur's first severity jitters pixels without blurring (sigma 0.05)
        assert five < _hf(_run(name, 1)) < clean


def test_glass_blur_at_severity_1_moves_each_pixel_by_at_most_one_step_up_or_left():
    y = _run("glass_blur", 1).transpose(0, 3, 1, 2)
    x = XF.transpose(0, 3, 1, 2)
    candidates = [np.roll(np.roll(x, dy, 2), dx, 3) for dy in (0, 1) for dx in (0, 1)]  # value from (i-dy, j-dx)
    found = np.zeros(y[..., 2:, 2:].shape, dtype=bool)
    for c in candidates:
        found |= (np.abs(c - y) <= 1).all(1, keepdims=True)[..., 2:, 2:]
    assert found.all() and (y != x).any(1).mean() > 0.5


@pytest.mark.parametrize("severity,factor", [(1, 0.75), (5, 0.15)])
def test_contrast_shrinks_the_spread_about_the_channel_mean(severity, factor):
    y = _run("contrast", severity)
    def spread(a):
        return (a - a.mean((1, 2), keepdims=True)).std()
    assert spread(y) / spread(XF) == pytest.approx(factor, abs=0.01)
    assert np.abs(y.mean((1, 2)) - XF.mean((1, 2))).max() < 0.5  # the means stay


@pytest.mark.parametrize("severity,shift", [(1, 0.05), (5, 0.3)])
def test_brightness_raises_the_value_channel(severity, shift):
    y = _run("brightness", severity)
    assert y.max(-1).mean() - XF.max(-1).mean() == pytest.approx(255 * shift, abs=1.0)  # the brightest is 190 + 77
    ratio = y / XF  # a hue and saturation kept: every channel of a pixel scales by the same factor
    assert (ratio.max(-1) - ratio.min(-1)).max() < 0.04


@pytest.mark.parametrize("severity,scale,offset", [(1, 0.3, 0.0), (5, 2.5, 0.2)])
def test_saturate_scales_saturation(severity, scale, offset):
    expected = np.clip(((XF.max(-1) - XF.min(-1)) / XF.max(-1)) * scale + offset, 0, 1).mean()
    y = _run("saturate", severity)
    assert _saturation(y) == pytest.approx(expected, abs=0.01)
    assert np.abs(y.max(-1) - XF.max(-1)).max() <= 1  # V unchanged


@pytest.mark.parametrize("severity,strength", [(1, 0.2), (5, 1.5)])
def test_fog_scales_the_image_down_by_max_over_max_plus_strength(severity, strength):
    """y = (x + s * fog) * m / (m + s), m the image's maximum: the slope of y on x is m / (m + s)."""
    y = _run("fog", severity)
    x, yc = XF - XF.mean((1, 2, 3), keepdims=True), y - y.mean((1, 2, 3), keepdims=True)
    slope = ((x * yc).sum((1, 2, 3)) / (x * x).sum((1, 2, 3))).mean()
    top = XF.max((1, 2, 3)) / 255
    assert slope == pytest.approx((top / (top + strength)).mean(), abs=0.03)
    assert np.abs(y - XF).mean() > 5


def test_snow_brightens_and_more_at_severity_5():
    assert _run("snow", 5).mean() - XF.mean() > 2 * (_run("snow", 1).mean() - XF.mean()) > 2


@pytest.mark.parametrize("angle,axis", [(0.0, "row"), (90.0, "column")])
def test_motion_blur_smears_a_bright_pixel_in_imagemagicks_direction(angle, axis):
    """ImageMagick reads tap i at (row + round(i sin a), col + round(i cos a)): a pixel at angle 0 is smeared
    along its row (towards the left, where the taps that read it sit), at 90 degrees up its column."""
    x = torch.zeros(1, 1, 15, 15)
    x[0, 0, 7, 11] = 1
    out = cf._motion(x, 3, 2.0, np.array([angle]))[0, 0]
    weights = torch.exp(-torch.arange(7.0) ** 2 / 8)
    expected = torch.zeros(15, 15)
    if axis == "row":
        expected[7, 11 - torch.arange(7)] = weights / weights.sum()
    else:
        expected[7 - torch.arange(7), 11] = weights / weights.sum()
    assert torch.allclose(out, expected, atol=1e-6)


def _gradient_ratio(x):
    """Mean absolute horizontal difference of neighbouring pixels over the vertical one."""
    return np.abs(np.diff(x, axis=2)).mean() / np.abs(np.diff(x, axis=1)).mean()


@pytest.mark.parametrize("severity", [1, 5])
@pytest.mark.parametrize("name", ["motion_blur", "snow"])
def test_motion_blur_and_snow_streak_in_the_originals_directions(name, severity):
    """Motion blur at angles in [-45, 45] degrees smooths along rows more than along columns, so the ratio of
    horizontal to vertical gradients falls; snow's streaks at [-135, -45] degrees are near-vertical, so it
    rises. (On CIFAR-10 test images the original gives 0.69-0.81 and 0.96-1.15 against 0.90-0.93 clean.)"""
    ratio = _gradient_ratio(_run(name, severity)) / _gradient_ratio(XF)
    assert ratio < 0.93 if name == "motion_blur" else ratio > 1.07


@pytest.mark.parametrize("severity", [1, 5])
def test_elastic_transform_moves_pixels_but_keeps_their_distribution(severity):
    y = _run("elastic_transform", severity)
    assert np.abs(y - XF).mean() > 3
    assert abs(y.mean() - XF.mean()) < 2 and abs(y.std() - XF.std()) < 0.1 * XF.std()


def test_pixelate_repeats_pixels_more_at_severity_5():
    def equal(a):
        return (np.diff(a, axis=2) == 0).all(-1).mean()
    assert equal(_run("pixelate", 5)) > 0.3 > equal(_run("pixelate", 1)) > equal(XF) + 0.01


def test_jpeg_removes_detail_more_at_lower_quality():
    one, five = _run("jpeg_compression", 1), _run("jpeg_compression", 5)
    assert np.abs(five - XF).mean() > np.abs(one - XF).mean() > 1
    assert _hf(five) < _hf(one) < _hf(XF)


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_every_corruption_is_reproducible_from_its_seed_and_stays_uint8(name):
    a, b = corrupt(X, name, 3, np.random.default_rng(7)), corrupt(X, name, 3, np.random.default_rng(7))
    assert a.dtype == np.uint8 and a.shape == X.shape and (a == b).all()
    random = name not in ("contrast", "brightness", "saturate", "defocus_blur", "gaussian_blur", "zoom_blur",
                          "pixelate", "jpeg_compression")
    assert (a != corrupt(X, name, 3, np.random.default_rng(8))).any() == random


def test_bad_corruption_or_severity_is_a_value_error():
    with pytest.raises(ValueError, match="unknown corruption 'frost'; choose from gaussian_noise"):
        corrupt(X, "frost", 1, np.random.default_rng(0))
    for bad in (0, 6, 2.5):
        with pytest.raises(ValueError, match="severities must be integers from 1 to 5"):
            corrupt(X, "fog", bad, np.random.default_rng(0))


def test_shifted_sets_are_seeded_cached_and_regenerated_when_the_checksum_fails(tmp_path):
    first = shifted_images(X, "gaussian_noise", 2, seed=5, root=tmp_path)
    path = shift_cache_path("cifar10", "gaussian_noise", 2, 5, X, tmp_path)
    assert path.exists() and (first == shifted_images(X, "gaussian_noise", 2, seed=5, cache=False)).all()
    assert (first != shifted_images(X, "gaussian_noise", 2, seed=6, root=tmp_path)).any()
    with np.load(path) as f:  # tamper with the images, keep the old checksum
        images, digest = f["images"].copy(), f["sha256"]
    images[0, 0, 0, 0] ^= 1
    np.savez(path.open("wb"), images=images, sha256=digest)
    assert (shifted_images(X, "gaussian_noise", 2, seed=5, root=tmp_path) == first).all()
    path.write_bytes(b"not a file")
    assert (shifted_images(X, "gaussian_noise", 2, seed=5, root=tmp_path) == first).all()
