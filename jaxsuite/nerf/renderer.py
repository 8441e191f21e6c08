"""Fixed-shape ray marching through a field, with real empty-space skipping.

Each ray is clipped to the scene cube ``[-bound, bound]^3`` and sampled at
``S`` equal bins, one point per bin drawn uniformly inside it (the bin's
midpoint when no key is given); each sample stands for its whole bin, so the
quadrature covers the ray from where it enters the cube to where it leaves
(and is exact for piecewise-constant fields aligned with the bins). Samples in
unoccupied cells of the occupancy grid, or on rays that miss the cube, are
*invalid*: they get zero density and are composited with
``jaxsuite.core.rendering`` (the last interval ends where the ray leaves the
cube).

Empty-space skipping (``buckets > 1``): only valid samples reach the field.
Their flat indices are compacted (``jnp.nonzero(..., size=M)``) into the
smallest of ``buckets`` fixed capacities ``M = N S / 2^k`` (``k = buckets - 1,
..., 0``) that holds them all, chosen on the device by ``lax.switch``; the
field runs on those ``M`` points only and its outputs are scattered back to
``(N, S)``. Every shape is static (one compiled branch per capacity, no
recompilation), the largest capacity ``N S`` never overflows, and the result
equals evaluating every sample and masking (``buckets = 1``) up to float
rounding. With ``buckets = 1`` every sample is evaluated (the dense path).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsuite.core import rendering
from jaxsuite.nerf import fields, occupancy

FieldFn = Callable[[jax.Array, jax.Array], fields.FieldOutput]


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


def bucket_sizes(total: int, buckets: int) -> tuple[int, ...]:
    """Capacities ``ceil(total / 2^k)`` for ``k = buckets - 1, ..., 0``
    (increasing, the last one ``total``); duplicates removed."""
    sizes = sorted({max(1, -(-total // 2**k)) for k in range(max(buckets, 1))})
    return tuple(sizes)


def compact_apply(
    fn: FieldFn,
    x: jax.Array,
    d: jax.Array,
    valid: jax.Array,
    buckets: int,
):
    """``fn`` evaluated only where ``valid``, as if on every point.

    Args:
      fn: ``(x (M, 3), d (M, 3)) -> pytree of (M, ...)`` arrays.
      x, d: points and directions ``(P, 3)``.
      valid: ``(P,)`` which points to evaluate.
      buckets: number of capacities (see the module docstring); ``<= 1``
        evaluates every point.

    Returns:
      ``fn``'s pytree with leading dimension ``P``: the outputs at valid
      points, zeros elsewhere.
    """
    total = x.shape[0]
    if buckets <= 1:
        return fn(x, d)
    sizes = bucket_sizes(total, buckets)

    def branch(m):
        def run(x, d, valid):
            idx = jnp.nonzero(valid, size=m, fill_value=total)[0]  # (m,)
            safe = jnp.minimum(idx, total - 1)
            out = fn(x[safe], d[safe])

            def scatter(o):
                base = jnp.zeros((total,) + o.shape[1:], o.dtype)
                return base.at[idx].set(o, mode="drop")

            return jax.tree.map(scatter, out)

        return run

    count = jnp.sum(valid.astype(jnp.int32))
    which = jnp.searchsorted(jnp.asarray(sizes, jnp.int32), count, side="left")
    which = jnp.minimum(which, len(sizes) - 1)
    return jax.lax.switch(which, [branch(m) for m in sizes], x, d, valid)


def composite(
    log_sigma: jax.Array, rgb: jax.Array, samples: Samples, background: jax.Array
) -> rendering.RenderOutput:
    """Composites ``log_sigma (N, S)``, ``rgb (N, S, 3)`` over ``background (N, 3)``."""
    sigma = jnp.where(samples.valid, fields.sigma_from_log(log_sigma), 0.0)
    return rendering.volume_render(
        sigma, rgb, samples.t, t_far=samples.t_far, background=background
    )


def query_fn(fn: FieldFn, samples: Samples, buckets: int = 1) -> fields.FieldOutput:
    """``fn``'s outputs at the samples, ``(N, S, ...)``; with ``buckets > 1``
    only valid samples are evaluated (the rest are zero)."""
    n, s = samples.t.shape
    out = compact_apply(
        fn,
        samples.points.reshape(-1, 3),
        samples.dirs.reshape(-1, 3),
        samples.valid.reshape(-1),
        buckets,
    )
    feat = None if out.feature is None else out.feature.reshape(n, s, -1)
    return fields.FieldOutput(
        feat, out.log_sigma.reshape(n, s), out.rgb.reshape(n, s, 3)
    )


def query_samples(
    params: fields.Params,
    arch: str,
    cfg: fields.FieldConfig,
    samples: Samples,
    buckets: int = 1,
) -> fields.FieldOutput:
    """Field outputs at every sample, reshaped to ``(N, S, ...)`` (see
    :func:`query_fn` for ``buckets``)."""
    return query_fn(
        functools.partial(fields.query, params, arch, cfg), samples, buckets
    )


def render_field(
    fn: FieldFn,
    occ_mask: jax.Array,
    origins: jax.Array,
    directions: jax.Array,
    key: jax.Array | None,
    num_samples: int,
    bound: float,
    background: jax.Array,
    buckets: int = 1,
) -> rendering.RenderOutput:
    """Renders rays ``(N, 3), (N, 3)`` through any field ``fn``."""
    samples = march(key, origins, directions, occ_mask, num_samples, bound)
    out = query_fn(fn, samples, buckets)
    return composite(out.log_sigma, out.rgb, samples, background)


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
    buckets: int = 1,
) -> jax.Array:
    """Rendered colours ``(N, 3)`` of rays ``(N, 3), (N, 3)``."""
    fn = functools.partial(fields.query, params, arch, cfg)
    return render_field(
        fn,
        occ_mask,
        origins,
        directions,
        key,
        num_samples,
        cfg.bound,
        background,
        buckets,
    ).rgb


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
    buckets: int = 1,
) -> jax.Array:
    """Deterministic (midpoint) renders for ``poses (P, 4, 4)``: ``(P, H, W, 3)``."""

    def render_chunk(o, d):
        bg = jnp.full(o.shape, background, jnp.float32)
        return _render_chunk(
            params, arch, cfg, occ_mask, o, d, num_samples, bg, buckets
        )

    return rendering.render_poses(render_chunk, poses, K, size, size, chunk)


@jax.jit(static_argnames=("arch", "cfg", "num_samples", "buckets"))
def _render_chunk(params, arch, cfg, occ_mask, o, d, num_samples, bg, buckets):
    return render_rays(
        params, arch, cfg, occ_mask, o, d, None, num_samples, bg, buckets
    )
