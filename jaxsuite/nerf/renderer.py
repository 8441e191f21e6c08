"""Fixed-shape ray marching through a field with occupancy-based skipping.

Each ray is clipped to the scene cube ``[-bound, bound]^3`` and sampled at
``S`` equal bins, one point per bin drawn uniformly inside it (the bin's
midpoint when no key is given); each sample stands for its whole bin, so the
quadrature covers the ray from where it enters the cube to where it leaves
(and is exact for piecewise-constant fields aligned with the bins). Samples in
unoccupied cells of the occupancy grid, or on rays that miss the cube, get
zero density; the rest are composited with ``jaxsuite.core.rendering`` (the
last interval ends where the ray leaves the cube).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsuite.core import rendering
from jaxsuite.nerf import fields, occupancy


class Samples(NamedTuple):
    """Sample points of ``N`` rays, ``S`` per ray."""

    points: jax.Array  # (N, S, 3)
    dirs: jax.Array  # (N, S, 3) unit view directions
    t: jax.Array  # (N, S) bin starts (the quadrature's interval starts)
    t_far: jax.Array  # (N,) exit distance from the cube
    valid: jax.Array  # (N, S) in the cube and in an occupied cell


def march(
    key: jax.Array | None,
    origins: jax.Array,
    directions: jax.Array,
    occ_mask: jax.Array,
    num_samples: int,
    bound: float,
) -> Samples:
    """Samples ``N`` rays (``origins, directions (N, 3)``, unit directions)."""
    lo, hi = np.full(3, -bound, np.float32), np.full(3, bound, np.float32)
    near, far, hit = rendering.intersect_aabb(origins, directions, lo, hi)
    t = rendering.stratified_samples(key, near, far, num_samples)
    pts = rendering.ray_points(origins, directions, t)
    starts = rendering.stratified_samples(None, near, far, num_samples)
    starts = starts - 0.5 * ((far - near) / num_samples)[:, None]
    dirs = jnp.broadcast_to(directions[:, None, :], pts.shape)
    valid = hit[:, None] & occupancy.lookup(occ_mask, pts, bound)
    return Samples(pts, dirs, starts, far, valid)


def composite(
    log_sigma: jax.Array, rgb: jax.Array, samples: Samples, background: jax.Array
) -> rendering.RenderOutput:
    """Composites ``log_sigma (N, S)``, ``rgb (N, S, 3)`` over ``background (N, 3)``."""
    sigma = jnp.where(samples.valid, fields.sigma_from_log(log_sigma), 0.0)
    return rendering.volume_render(
        sigma, rgb, samples.t, t_far=samples.t_far, background=background
    )


def query_samples(
    params: fields.Params, arch: str, cfg: fields.FieldConfig, samples: Samples
) -> fields.FieldOutput:
    """Field outputs at every sample, reshaped to ``(N, S, ...)``."""
    n, s = samples.t.shape
    out = fields.query(
        params, arch, cfg, samples.points.reshape(-1, 3), samples.dirs.reshape(-1, 3)
    )
    feat = None if out.feature is None else out.feature.reshape(n, s, -1)
    return fields.FieldOutput(
        feat, out.log_sigma.reshape(n, s), out.rgb.reshape(n, s, 3)
    )


def render_rays(
    params: fields.Params,
    arch: str,
    cfg: fields.FieldConfig,
    occ_mask: jax.Array,
    origins: jax.Array,
    directions: jax.Array,
    key: jax.Array | None,
    num_samples: int,
    background: jax.Array,
) -> jax.Array:
    """Rendered colours ``(N, 3)`` of rays ``(N, 3), (N, 3)``."""
    samples = march(key, origins, directions, occ_mask, num_samples, cfg.bound)
    out = query_samples(params, arch, cfg, samples)
    return composite(out.log_sigma, out.rgb, samples, background).rgb


def render_images(
    params: fields.Params,
    arch: str,
    cfg: fields.FieldConfig,
    occ_mask: jax.Array,
    poses: jax.Array,
    K: jax.Array,
    size: int,
    num_samples: int,
    background: float = 1.0,
    chunk: int = 4096,
) -> jax.Array:
    """Deterministic (midpoint) renders for ``poses (P, 4, 4)``: ``(P, H, W, 3)``."""

    def render_chunk(o, d):
        bg = jnp.full(o.shape, background, jnp.float32)
        return _render_chunk(params, arch, cfg, occ_mask, o, d, num_samples, bg)

    return rendering.render_poses(render_chunk, poses, K, size, size, chunk)


@jax.jit(static_argnames=("arch", "cfg", "num_samples"))
def _render_chunk(params, arch, cfg, occ_mask, o, d, num_samples, bg):
    return render_rays(params, arch, cfg, occ_mask, o, d, None, num_samples, bg)
