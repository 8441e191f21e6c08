"""Occupancy grid over the scene cube, updated by an exponential moving maximum.

As in torch-ngp / nerfacc: a ``(G, G, G)`` grid keeps a running density
estimate per cell; each update evaluates the field at one random point per
cell and sets ``est = max(est * decay, sigma_new)``; a cell is occupied when
``est > min(mean(est), threshold)``. Ray samples in unoccupied cells get zero
density, which is how empty space is skipped with fixed-shape sampling.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp


class OccupancyGrid(NamedTuple):
    """``density (G, G, G)`` running estimate; ``mask (G, G, G)`` occupied cells."""

    density: jax.Array
    mask: jax.Array


def init_grid(resolution: int) -> OccupancyGrid:
    """All cells occupied, zero estimate (the state before any update)."""
    shape = (resolution,) * 3
    return OccupancyGrid(jnp.zeros(shape, jnp.float32), jnp.ones(shape, bool))


def cell_centers(resolution: int, bound: float) -> jax.Array:
    """Centres of all cells, ``(G^3, 3)``, in ``[-bound, bound]^3`` (x slowest)."""
    c = (jnp.arange(resolution, dtype=jnp.float32) + 0.5) / resolution
    g = jnp.stack(jnp.meshgrid(c, c, c, indexing="ij"), axis=-1).reshape(-1, 3)
    return (2.0 * g - 1.0) * bound


def update(
    grid: OccupancyGrid,
    sigma_fn: Callable[[jax.Array], jax.Array],
    key: jax.Array,
    *,
    bound: float,
    decay: float = 0.95,
    threshold: float = 10.0,
) -> OccupancyGrid:
    """One EMA update with ``sigma_fn: (M, 3) -> (M,)`` at a jittered point per cell."""
    res = grid.density.shape[0]
    cell = 2.0 * bound / res
    jitter = jax.random.uniform(key, (res**3, 3), minval=-0.5, maxval=0.5) * cell
    sigma = sigma_fn(cell_centers(res, bound) + jitter).reshape(grid.density.shape)
    density = jnp.maximum(grid.density * decay, sigma)
    thresh = jnp.minimum(jnp.mean(density), threshold)
    return OccupancyGrid(density, density > thresh)


def lookup(mask: jax.Array, x: jax.Array, bound: float) -> jax.Array:
    """Whether points ``x (..., 3)`` lie in occupied cells (False outside the cube)."""
    res = mask.shape[0]
    u = (x + bound) / (2.0 * bound)
    inside = jnp.all((u >= 0.0) & (u <= 1.0), axis=-1)
    idx = jnp.clip(jnp.floor(u * res).astype(jnp.int32), 0, res - 1)
    return inside & mask[idx[..., 0], idx[..., 1], idx[..., 2]]
