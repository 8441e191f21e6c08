"""Pure-jnp tile rasteriser: the truth for the Pallas kernel.

Every pixel blends, front to back in depth order, all Gaussians whose tile
rectangle (``binning.tile_rects``) contains the pixel's tile, with the
constants of diff-gaussian-rasterization's ``renderCUDA``:

* ``power = -0.5 (a dx^2 + c dy^2) - b dx dy``; skip if ``power > 0``;
* ``alpha = min(0.99, opacity * exp(power))``; skip if ``alpha < 1/255``;
* stop (without blending this Gaussian) once ``T (1 - alpha) < 1e-4``;
* ``C = sum_i c_i alpha_i T_i``, final transmittance ``T``.

It is dense (``H W N`` work, no workspace), so it cannot overflow, and it is
differentiable by ``jax.grad``: the gradient of ``min(0.99, .)`` is zero
where the cap is active (the CUDA backward ignores the cap).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import binning as binning_lib

ALPHA_MAX = 0.99
ALPHA_MIN = 1.0 / 255.0
T_MIN = 1e-4


def rasterize(
    means2d: jax.Array,
    conics: jax.Array,
    colors: jax.Array,
    opacities: jax.Array,
    depths: jax.Array,
    radii: jax.Array,
    width: int,
    height: int,
    tile: int = binning_lib.TILE,
) -> tuple[jax.Array, jax.Array]:
    """Blends projected Gaussians into an image (no background).

    Args:
      means2d: ``(N, 2)`` pixel coordinates (pixel centres at ``j + 0.5``).
      conics: ``(N, 3)`` inverse covariance ``(a, b, c)``.
      colors: ``(N, C)``.
      opacities: ``(N,)``.
      depths: ``(N,)`` view depths (the blending order).
      radii: ``(N,)`` int radii, 0 for culled Gaussians.
      width: image width ``W``.
      height: image height ``H``.
      tile: tile side of the culling rectangles (16 as in the original).

    Returns:
      ``(image, transmittance)``: ``(H, W, C)`` and ``(H, W)``; the rendered
      image over a background ``bg`` is ``image + transmittance[..., None] * bg``.
    """
    order = jnp.argsort(depths, stable=True)
    means2d, conics, colors = means2d[order], conics[order], colors[order]
    opacities, radii = opacities[order], radii[order]
    lo, hi = binning_lib.tile_rects(means2d, radii, width, height, tile)
    ys, xs = jnp.meshgrid(
        jnp.arange(height, dtype=jnp.float32),
        jnp.arange(width, dtype=jnp.float32),
        indexing="ij",
    )
    tx = (xs // tile).astype(jnp.int32)[..., None]
    ty = (ys // tile).astype(jnp.int32)[..., None]
    row = lambda v: v[None, None, :]
    in_rect = (
        (tx >= row(lo[:, 0]))
        & (tx < row(hi[:, 0]))
        & (ty >= row(lo[:, 1]))
        & (ty < row(hi[:, 1]))
    )
    dx = xs[..., None] + 0.5 - row(means2d[:, 0])
    dy = ys[..., None] + 0.5 - row(means2d[:, 1])
    a, b, c = row(conics[:, 0]), row(conics[:, 1]), row(conics[:, 2])
    power = -0.5 * (a * dx * dx + c * dy * dy) - b * dx * dy
    g = jnp.exp(jnp.minimum(power, 0.0))
    alpha = jnp.minimum(ALPHA_MAX, row(opacities) * g)
    use = in_rect & (power <= 0.0) & (alpha >= ALPHA_MIN)
    alpha = jnp.where(use, alpha, 0.0)
    t_after = jnp.cumprod(1.0 - alpha, axis=-1)
    keep = t_after >= T_MIN
    alpha = jnp.where(keep, alpha, 0.0)
    t_after = jnp.cumprod(1.0 - alpha, axis=-1)
    t_before = t_after / (1.0 - alpha)
    weights = alpha * t_before
    image = jnp.einsum(
        "hwn,nc->hwc", weights, colors, precision=jax.lax.Precision.HIGHEST
    )
    return image, t_after[..., -1]
