"""Deblurring-3DGS's sparse-point compensation (``add_points`` in the code).

At one step (2,500 in the code) the method adds uniformly drawn points inside
the bounding box of the current Gaussians, coloured from their nearest
Gaussians, to fill regions that blurry inputs left without SfM points:

* the box spans the ``rank``-th smallest to ``rank``-th largest coordinate per
  axis (``rank = 10``);
* ``N = min(volume / 1.1^3, max_points)`` points (``max_points = 200 000``);
* each point's SH coefficients are a weighted sum over its ``K = 4`` nearest
  Gaussians; a point with no Gaussian within ``t_d`` (2 in the code) is
  dropped. The code weights neighbours **in proportion to their distance**
  (not inverse distance); this function does the same.

Shapes are static: the function returns ``max_points`` candidates and a
validity mask (index below ``N`` and a neighbour within ``t_d``). The code
then re-initialises every Gaussian (scales from the 3 nearest neighbours,
identity rotations, opacity 0.1) keeping only positions and SH; a caller does
that with ``gaussians.init_from_points`` on the union.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def sample_points(
    key: jax.Array,
    means: jax.Array,
    sh: jax.Array,
    *,
    max_points: int,
    rank: int = 10,
    voxel: float = 1.1,
    num_neighbors: int = 4,
    max_distance: float = 2.0,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Draws compensation points and their colours.

    Args:
      key: PRNG key.
      means: ``(N, 3)`` current Gaussian positions (``N > 2 rank``).
      sh: ``(N, K, 3)`` their SH coefficients.
      max_points: static number of candidates (the code's cap).
      rank: bounding-box quantile rank.
      voxel: edge of the volume per point.
      num_neighbors: neighbours for the colour.
      max_distance: drop points farther than this from every Gaussian.

    Returns:
      ``(points (P, 3), sh (P, K, 3), valid (P,))`` with ``P = max_points``.
    """
    s = jnp.sort(means, axis=0)
    lo, hi = s[rank - 1], s[-rank]
    volume = jnp.prod(jnp.maximum(hi - lo, 0.0))
    count = jnp.minimum(volume / voxel**3, max_points).astype(jnp.int32)
    u = jax.random.uniform(key, (max_points, 3))
    points = lo[None, :] + u * (hi - lo)[None, :]
    d2 = jnp.sum(jnp.square(points[:, None, :] - means[None, :, :]), axis=-1)
    neg, idx = jax.lax.top_k(-d2, num_neighbors)
    dist = jnp.sqrt(jnp.maximum(-neg, 0.0))
    weights = dist / jnp.maximum(jnp.sum(dist, axis=-1, keepdims=True), 1e-12)
    colors = jnp.einsum("pk,pkcd->pcd", weights, sh[idx])
    valid = (jnp.arange(max_points) < count) & (dist[:, 0] <= max_distance)
    return points, colors, valid
