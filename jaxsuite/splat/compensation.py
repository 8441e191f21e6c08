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
then grows the model by the valid points and re-initialises every Gaussian
(scales from the 3 nearest neighbours, identity rotations, opacity 0.1),
keeping only positions and SH. :func:`compensate` is the fixed-capacity
version used in training: the valid points take the slots of the least opaque
Gaussians (at most ``max_points`` of them) and only those slots are
initialised that way; the other Gaussians keep their state.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxsuite.splat import train as splat_train


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
    active: jax.Array | None = None,
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
      active: optional ``(N,)`` mask of a fixed-capacity buffer; inactive
        Gaussians are ignored.

    Returns:
      ``(points (P, 3), sh (P, K, 3), valid (P,))`` with ``P = max_points``.
    """
    if active is None:
        active = jnp.ones(means.shape[:1], bool)
    inf = jnp.float32(jnp.inf)
    lo = jnp.sort(jnp.where(active[:, None], means, inf), axis=0)[rank - 1]
    hi = -jnp.sort(jnp.where(active[:, None], -means, inf), axis=0)[rank - 1]
    volume = jnp.prod(jnp.maximum(hi - lo, 0.0))
    count = jnp.minimum(volume / voxel**3, max_points).astype(jnp.int32)
    u = jax.random.uniform(key, (max_points, 3))
    points = lo[None, :] + u * (hi - lo)[None, :]
    d2 = jnp.sum(jnp.square(points[:, None, :] - means[None, :, :]), axis=-1)
    d2 = jnp.where(active[None, :], d2, inf)
    neg, idx = jax.lax.top_k(-d2, num_neighbors)
    dist = jnp.sqrt(jnp.maximum(-neg, 0.0))
    weights = dist / jnp.maximum(jnp.sum(dist, axis=-1, keepdims=True), 1e-12)
    colors = jnp.einsum("pk,pkcd->pcd", weights, sh[idx])
    valid = (jnp.arange(max_points) < count) & (dist[:, 0] <= max_distance)
    return points, colors, valid


def compensate(
    params: dict[str, Any],
    opt_state: Any,
    key: jax.Array,
    *,
    max_points: int,
    max_distance: float = 2.0,
    voxel: float = 1.1,
    init_opacity: float = 0.1,
    active: jax.Array | None = None,
) -> tuple:
    """Moves valid compensation points into the least opaque Gaussians' slots.

    Args:
      params: training parameters (``jaxsuite.splat.train``), ``N`` Gaussians.
      opt_state: their optimiser state; moments of replaced slots are zeroed.
      key: PRNG key.
      max_points: candidates drawn, hence the most slots replaced (``<= N``).
      max_distance, voxel: as in :func:`sample_points`.
      init_opacity: opacity of the new Gaussians.
      active: optional ``(N,)`` mask of a fixed-capacity buffer: inactive
        slots are filled first and ignored as neighbours.

    Returns:
      ``(params, opt_state, num_added)``, and the updated ``active`` mask
      last when ``active`` is given. New Gaussians get the candidates'
      positions and SH, scales ``sqrt(mean d^2)`` over their 3 nearest current
      Gaussians, identity rotations and ``init_opacity``.
    """
    means = params["means"]
    n = means.shape[0]
    if max_points > n:
        raise ValueError(f"max_points={max_points} exceeds the {n} Gaussians")
    sh = jnp.concatenate([params["sh_dc"], params["sh_rest"]], axis=1)
    masked = active is not None
    if not masked:
        active = jnp.ones((n,), bool)
    points, colors, valid = sample_points(
        key,
        means,
        sh,
        max_points=max_points,
        voxel=voxel,
        max_distance=max_distance,
        active=active,
    )
    order = jnp.argsort(~valid, stable=True)  # valid candidates first
    points, colors, valid = points[order], colors[order], valid[order]
    order_key = jnp.where(active, params["opacity_logits"], -jnp.inf)
    slots = jnp.argsort(order_key, stable=True)[:max_points]
    slots = jnp.where(valid, slots, n)  # n: dropped by the scatter below
    d2 = jnp.sum(jnp.square(points[:, None] - means[None]), axis=-1)
    d2 = jnp.where(active[None, :], d2, jnp.inf)
    nearest = -jax.lax.top_k(-d2, 3)[0]
    log_scale = 0.5 * jnp.log(jnp.maximum(jnp.mean(nearest, axis=-1), 1e-7))
    logit = float(np.log(init_opacity / (1.0 - init_opacity)))
    new = {
        "means": points,
        "log_scales": jnp.repeat(log_scale[:, None], 3, axis=1),
        "quats": jnp.zeros((max_points, 4)).at[:, 0].set(1.0),
        "opacity_logits": jnp.full((max_points,), logit),
        "sh_dc": colors[:, :1],
        "sh_rest": colors[:, 1:],
    }
    out = dict(params)
    for name, value in new.items():
        out[name] = (
            params[name].at[slots].set(value.astype(params[name].dtype), mode="drop")
        )
    touched = jnp.zeros((n,), bool).at[slots].set(True, mode="drop")
    opt_state = splat_train.reset_moments(opt_state, touched)
    if masked:
        return out, opt_state, jnp.sum(valid), active | touched
    return out, opt_state, jnp.sum(valid)
