"""Tiled XLA rasteriser: the reference's blending, per tile over a short list.

The fast path off GPU. Each ``tile x tile`` tile (16 by default; smaller
tiles make shorter lists, and the reference takes the same ``tile``) takes the first
``max_per_tile`` intersections of its sorted range (``binning``), so the work
is ``H W max_per_tile`` instead of the reference's ``H W N``. The blending is
the reference's, vectorised over the tile's list with ``cumprod``; gradients
come from ``jax.grad`` (the gathers become scatter-adds). A tile with more
intersections than ``max_per_tile`` sets ``overflow`` in the API's output.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import binning as binning_lib
from .reference import ALPHA_MAX, ALPHA_MIN, T_MIN


def rasterize(
    means2d: jax.Array,
    conics: jax.Array,
    colors: jax.Array,
    opacities: jax.Array,
    gaussian_ids: jax.Array,
    tile_starts: jax.Array,
    tile_ends: jax.Array,
    width: int,
    height: int,
    max_per_tile: int,
    tile: int = binning_lib.TILE,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Blends each tile's first ``max_per_tile`` sorted intersections.

    Args:
      means2d: ``(N, 2)``; conics: ``(N, 3)``; colors: ``(N, C)``;
        opacities: ``(N,)``.
      gaussian_ids: ``(capacity,)`` sorted intersections.
      tile_starts: ``(ny, nx)``; tile_ends: ``(ny, nx)``.
      width: image width; height: image height.
      max_per_tile: static list length per tile.
      tile: tile side the binning used.

    Returns:
      ``(image, transmittance, tile_overflow)``: ``(H, W, C)``, ``(H, W)`` and
      a bool, true when some tile had more than ``max_per_tile`` entries.
    """
    ny, nx = tile_starts.shape
    n, num_channels = colors.shape
    starts = tile_starts.reshape(-1, 1)
    ends = tile_ends.reshape(-1, 1)
    slot = starts + jnp.arange(max_per_tile, dtype=jnp.int32)[None, :]
    valid = slot < ends
    cap = gaussian_ids.shape[0]
    gid = gaussian_ids[jnp.clip(slot, 0, cap - 1)]
    valid = valid & (gid < n)
    gid = jnp.minimum(gid, n - 1)
    m, con, o = means2d[gid], conics[gid], opacities[gid]  # (T, K, .)
    iy, ix = jnp.meshgrid(jnp.arange(tile), jnp.arange(tile), indexing="ij")
    ty, tx = jnp.meshgrid(jnp.arange(ny), jnp.arange(nx), indexing="ij")
    px = (tx.reshape(-1, 1) * tile + ix.reshape(1, -1)).astype(jnp.float32) + 0.5
    py = (ty.reshape(-1, 1) * tile + iy.reshape(1, -1)).astype(jnp.float32) + 0.5
    dx = px[:, :, None] - m[:, None, :, 0]  # (T, P, K)
    dy = py[:, :, None] - m[:, None, :, 1]
    a, b, c = con[:, None, :, 0], con[:, None, :, 1], con[:, None, :, 2]
    power = -0.5 * (a * dx * dx + c * dy * dy) - b * dx * dy
    alpha = jnp.minimum(ALPHA_MAX, o[:, None, :] * jnp.exp(jnp.minimum(power, 0.0)))
    use = valid[:, None, :] & (power <= 0.0) & (alpha >= ALPHA_MIN)
    alpha = jnp.where(use, alpha, 0.0)
    t_after = jnp.cumprod(1.0 - alpha, axis=-1)
    alpha = jnp.where(t_after >= T_MIN, alpha, 0.0)
    t_after = jnp.cumprod(1.0 - alpha, axis=-1)
    weights = alpha * t_after / (1.0 - alpha)
    image = jnp.einsum(
        "tpk,tkc->tpc", weights, colors[gid], precision=jax.lax.Precision.HIGHEST
    )
    image = image.reshape(ny, nx, tile, tile, num_channels)
    image = image.transpose(0, 2, 1, 3, 4).reshape(ny * tile, nx * tile, -1)
    t = t_after[..., -1].reshape(ny, nx, tile, tile).transpose(0, 2, 1, 3)
    t = t.reshape(ny * tile, nx * tile)
    tile_overflow = jnp.any(tile_ends - tile_starts > max_per_tile)
    return image[:height, :width], t[:height, :width], tile_overflow
