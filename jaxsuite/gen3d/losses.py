"""Reference-view losses, regularisers, random cameras and the reference image.

The reference losses are DreamCraft3D's (threestudio's): colour MSE (L1 inside
an eroded mask in the texture stage), mask MSE, and the relative depth loss
``1 - Pearson(d, d_ref)`` over the reference mask (the paper's
``-cov(d, d_ref) / (sigma_d sigma_ref)`` up to a constant). Regularisers:
threestudio's sparsity ``mean(sqrt(o^2 + 0.01))`` and opaqueness
``BCE(o, o)`` on rendered opacity ``o``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsuite.gen3d import objects


class Reference(NamedTuple):
    """The input view: ``rgb (S, S, 3)`` on white, ``mask (S, S)``,
    ``depth (S, S)`` (ray distance, 0 off the object)."""

    rgb: jax.Array
    mask: jax.Array
    depth: jax.Array


def reference_from_rgba(
    image: np.ndarray, size: int, depth: np.ndarray | None = None
) -> Reference:
    """Validates an RGBA reference image and composites it on white.

    Args:
      image: ``(size, size, 4)``, uint8 in ``[0, 255]`` or float in ``[0, 1]``;
        the alpha channel is the object mask.
      size: the render resolution the pipeline runs at.
      depth: optional ``(size, size)`` depth (zeros when None: the relative
        depth loss then has no effect).

    Raises:
      ValueError: the image is not ``(size, size, 4)`` (an RGB image without
        alpha, or the wrong size). Convert an RGB image by segmenting the
        object into an alpha channel (DreamCraft3D's ``preprocess_image.py``
        does this with a background remover) and resize it to
        ``size x size`` with the object centred before calling this.
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[-1] != 4:
        raise ValueError(
            f"The reference image must be RGBA of shape ({size}, {size}, 4); got "
            f"{img.shape}. An RGB image has no object mask: add the mask as an "
            "alpha channel (segment the object) first."
        )
    if img.shape[:2] != (size, size):
        raise ValueError(
            f"The reference image is {img.shape[0]}x{img.shape[1]} but the "
            f"pipeline renders {size}x{size}; resize it (object centred) first."
        )
    img = img.astype(np.float32) / (255.0 if img.dtype == np.uint8 else 1.0)
    if img.min() < 0.0 or img.max() > 1.0:
        raise ValueError("Reference image values must lie in [0, 1] (or uint8).")
    a = img[..., 3:]
    rgb = a * img[..., :3] + (1.0 - a)
    d = np.zeros((size, size), np.float32) if depth is None else np.asarray(depth)
    return Reference(jnp.asarray(rgb), jnp.asarray(a[..., 0]), jnp.asarray(d))


def reference_from_render(render: objects.Render, index: int = 0) -> Reference:
    """The reference of a ground-truth render (one view of a batch)."""
    return Reference(render.rgb[index], render.mask[index], render.depth[index])


def pearson_depth_loss(depth: jax.Array, ref: Reference) -> jax.Array:
    """``1 - corr(depth, ref.depth)`` over the reference mask."""
    m = ref.mask
    n = jnp.maximum(jnp.sum(m), 1.0)
    a = depth - jnp.sum(depth * m) / n
    b = ref.depth - jnp.sum(ref.depth * m) / n
    cov = jnp.sum(a * b * m)
    den = jnp.sqrt(jnp.sum(a * a * m) * jnp.sum(b * b * m)) + 1e-8
    return 1.0 - cov / den


def sparsity_loss(opacity: jax.Array) -> jax.Array:
    return jnp.mean(jnp.sqrt(opacity**2 + 0.01))


def opaque_loss(opacity: jax.Array) -> jax.Array:
    o = jnp.clip(opacity, 1e-3, 1.0 - 1e-3)
    return -jnp.mean(o * jnp.log(o) + (1.0 - o) * jnp.log(1.0 - o))


def erode(mask: jax.Array, kernel: int) -> jax.Array:
    """Binary erosion of ``mask (H, W)`` by a ``kernel x kernel`` square
    (threestudio erodes with a max-pool of the background)."""
    if kernel <= 1:
        return mask
    bg = 1.0 - mask
    pooled = jax.lax.reduce_window(
        bg, -jnp.inf, jax.lax.max, (kernel, kernel), (1, 1), "SAME"
    )
    return 1.0 - pooled


def random_cameras(
    key: jax.Array,
    n: int,
    elevation_range: tuple[jax.Array, jax.Array],
    azimuth_range: tuple[jax.Array, jax.Array],
    radius: float = objects.REF_RADIUS,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``n`` cameras with uniform elevation/azimuth (degrees) in the ranges.

    Returns:
      ``(c2w (n, 4, 4), elevation (n,), azimuth (n,))``.
    """
    k1, k2 = jax.random.split(key)
    el = jax.random.uniform(
        k1, (n,), minval=elevation_range[0], maxval=elevation_range[1]
    )
    az = jax.random.uniform(k2, (n,), minval=azimuth_range[0], maxval=azimuth_range[1])
    return objects.camera(el, az, radius), el, az


def progressive_ranges(
    step: int,
    until: int,
    elevation_range: tuple[float, float],
    azimuth_range: tuple[float, float],
    ref_elevation: float = 0.0,
    ref_azimuth: float = 0.0,
) -> tuple[tuple[float, float], tuple[float, float]]:
    """threestudio's ``progressive_until``: camera ranges widen linearly from
    the reference view to the full ranges over ``until`` steps."""
    r = 1.0 if until <= 0 else min(1.0, step / until)
    el = tuple((1 - r) * ref_elevation + r * e for e in elevation_range)
    az = tuple((1 - r) * ref_azimuth + r * a for a in azimuth_range)
    return el, az
