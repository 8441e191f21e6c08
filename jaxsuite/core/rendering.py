"""Volume-rendering quadrature along rays, shared by NeRF and 3D generation.

A ray ``r(t) = o + t d`` is sampled at increasing distances ``t_0 < ... <
t_{S-1}``. Sample ``i`` stands for the interval ``[t_i, t_{i+1})`` of length
``delta_i = t_{i+1} - t_i``. The last interval ends at ``t_far`` when that is
given (``delta_{S-1} = t_far - t_{S-1}``), and otherwise has the large length
``FAR_DELTA = 1e10`` as in the original NeRF, so that whatever density the last
sample has makes it opaque. With ``tau_i = sigma_i delta_i``:

* ``alpha_i = 1 - exp(-tau_i)``
* ``T_i = prod_{j<i} (1 - alpha_j) = exp(-sum_{j<i} tau_j)`` (exclusive),
* ``w_i = T_i alpha_i``, ``opacity = sum_i w_i = 1 - T_S``,
* ``colour = sum_i w_i c_i + (1 - opacity) * background``,
* ``depth = sum_i w_i t_i`` (the expected termination distance, counting the
  part of the ray that escapes as ``0``; divide by ``opacity`` for the depth
  conditioned on hitting something).

Also here: stratified sampling of ``t`` and ray--box / ray--sphere
intersections. Distances ``t`` are in units of the ray direction's length, so
with unit directions (the default of :func:`jaxsuite.core.cameras.generate_rays`)
they are Euclidean distances.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxsuite.core import cameras

ArrayLike = jax.typing.ArrayLike

FAR_DELTA = 1e10


class RenderOutput(NamedTuple):
    """Result of :func:`volume_render`; ``...`` is the ray batch shape."""

    rgb: jax.Array  # (..., C) composited colour
    depth: jax.Array  # (...) expected depth sum_i w_i t_i
    opacity: jax.Array  # (...) accumulated opacity sum_i w_i
    weights: jax.Array  # (..., S) per-sample weights w_i


def _like(x: ArrayLike, ref: jax.Array) -> jax.Array:
    """Broadcast ``x`` to ``ref``'s shape explicitly (rank promotion safe)."""
    return jnp.broadcast_to(jnp.asarray(x, ref.dtype), ref.shape)


def compute_deltas(t: ArrayLike, t_far: ArrayLike | None = None) -> jax.Array:
    """Interval lengths ``delta_i`` for samples ``t`` (see the module docstring).

    Args:
      t: sample distances, increasing along the last axis, shape ``(..., S)``.
      t_far: end of the last interval, shape ``(...)`` or scalar; ``None``
        gives the last interval length ``FAR_DELTA``.

    Returns:
      ``delta`` of shape ``(..., S)``.
    """
    t = jnp.asarray(t)
    if t_far is None:
        last = jnp.full(t.shape[:-1] + (1,), FAR_DELTA, t.dtype)
    else:
        t_far = jnp.broadcast_to(jnp.asarray(t_far, t.dtype), t.shape[:-1])
        last = t_far[..., None] - t[..., -1:]
    return jnp.concatenate([t[..., 1:] - t[..., :-1], last], axis=-1)


def render_weights(
    sigma: ArrayLike, t: ArrayLike, t_far: ArrayLike | None = None
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Quadrature weights from densities.

    Args:
      sigma: non-negative densities, shape ``(..., S)``.
      t: sample distances, shape ``(..., S)``.
      t_far: end of the last interval, shape ``(...)``, scalar or ``None``.

    Returns:
      ``(weights, transmittance, alpha)``, each of shape ``(..., S)``;
      ``transmittance[..., i] = T_i`` is the fraction of light reaching
      sample ``i``.
    """
    sigma = jnp.asarray(sigma)
    tau = sigma * compute_deltas(t, t_far).astype(sigma.dtype)
    alpha = -jnp.expm1(-tau)
    zero = jnp.zeros(tau.shape[:-1] + (1,), tau.dtype)
    optical_depth = jnp.concatenate([zero, jnp.cumsum(tau[..., :-1], axis=-1)], -1)
    transmittance = jnp.exp(-optical_depth)
    return transmittance * alpha, transmittance, alpha


def composite(
    weights: ArrayLike, values: ArrayLike, background: ArrayLike | None = None
) -> jax.Array:
    """Weighted sum of per-sample values along the ray, with a background.

    Args:
      weights: shape ``(..., S)``.
      values: shape ``(..., S, C)``.
      background: colour behind the volume, shape ``(C,)``, ``(..., C)`` or
        scalar; ``None`` means black.

    Returns:
      ``sum_i w_i v_i + (1 - sum_i w_i) * background``, shape ``(..., C)``.
    """
    weights = jnp.asarray(weights)
    values = jnp.asarray(values)
    out = jnp.einsum("...s,...sc->...c", weights, values)
    if background is not None:
        remaining = 1.0 - jnp.sum(weights, axis=-1, keepdims=True)
        out = out + remaining * _like(background, out)
    return out


def volume_render(
    sigma: ArrayLike,
    rgb: ArrayLike,
    t: ArrayLike,
    *,
    t_far: ArrayLike | None = None,
    background: ArrayLike | None = None,
) -> RenderOutput:
    """Render rays from per-sample densities and colours.

    Args:
      sigma: densities, shape ``(..., S)``.
      rgb: colours (any channel count ``C``), shape ``(..., S, C)``.
      t: sample distances, increasing, shape ``(..., S)``.
      t_far: end of the last interval, shape ``(...)``, scalar or ``None``
        (last interval of length ``FAR_DELTA``).
      background: background colour, shape ``(C,)`` / ``(..., C)`` / scalar,
        or ``None`` for black.

    Returns:
      :class:`RenderOutput` with ``rgb (..., C)``, ``depth (...)``,
      ``opacity (...)`` and ``weights (..., S)``.
    """
    t = jnp.asarray(t)
    weights, _, _ = render_weights(sigma, t, t_far)
    return RenderOutput(
        rgb=composite(weights, rgb, background),
        depth=jnp.sum(weights * t.astype(weights.dtype), axis=-1),
        opacity=jnp.sum(weights, axis=-1),
        weights=weights,
    )


def stratified_samples(
    key: jax.Array | None, near: ArrayLike, far: ArrayLike, num_samples: int
) -> jax.Array:
    """Sample distances in ``num_samples`` equal bins between ``near`` and ``far``.

    With a key, one sample is drawn uniformly inside each bin (independently
    per ray); with ``key=None`` the bin midpoints are returned.

    Args:
      key: PRNG key or ``None``.
      near: start distances, shape ``(...)`` or scalar.
      far: end distances, shape ``(...)`` or scalar.
      num_samples: ``S``.

    Returns:
      ``t`` of shape ``(..., S)``, increasing along the last axis.
    """
    near = jnp.asarray(near, jnp.float32)
    far = jnp.asarray(far, jnp.float32)
    batch = jnp.broadcast_shapes(near.shape, far.shape)
    near = jnp.broadcast_to(near, batch)[..., None]
    far = jnp.broadcast_to(far, batch)[..., None]
    if key is None:
        offsets = jnp.full(batch + (num_samples,), 0.5, jnp.float32)
    else:
        offsets = jax.random.uniform(key, batch + (num_samples,))
    bins = jnp.broadcast_to(jnp.arange(num_samples, dtype=jnp.float32), offsets.shape)
    u = (bins + offsets) / num_samples
    return near + (far - near) * u


def ray_points(origins: ArrayLike, directions: ArrayLike, t: ArrayLike) -> jax.Array:
    """Points ``o + t d``.

    Args:
      origins: shape ``(..., 3)``.
      directions: shape ``(..., 3)``.
      t: shape ``(..., S)``.

    Returns:
      Points of shape ``(..., S, 3)``.
    """
    origins = jnp.asarray(origins)
    directions = jnp.asarray(directions)
    t = jnp.asarray(t)
    return origins[..., None, :] + t[..., :, None] * directions[..., None, :]


def intersect_aabb(
    origins: ArrayLike,
    directions: ArrayLike,
    aabb_min: ArrayLike,
    aabb_max: ArrayLike,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Ray / axis-aligned box intersection (slab method).

    Args:
      origins: shape ``(..., 3)``.
      directions: shape ``(..., 3)`` (need not be unit length; zero components
        are allowed).
      aabb_min: box corner, shape ``(3,)``.
      aabb_max: opposite box corner, shape ``(3,)``.

    Returns:
      ``(t_near, t_far, hit)`` of shape ``(...)``: the entry distance clamped
      at ``0`` (a ray starting inside the box starts at its origin), the exit
      distance, and whether the ray meets the box in front of its origin
      (``t_far > t_near``). Where ``hit`` is false both distances are ``0``.
    """
    origins = jnp.asarray(origins, jnp.float32)
    directions = jnp.asarray(directions, jnp.float32)
    tiny = 1e-12
    safe_d = jnp.where(
        jnp.abs(directions) > tiny,
        directions,
        jnp.where(directions >= 0, tiny, -tiny),
    )
    inv_d = 1.0 / safe_d
    t0 = (_like(aabb_min, origins) - origins) * inv_d
    t1 = (_like(aabb_max, origins) - origins) * inv_d
    entry = jnp.max(jnp.minimum(t0, t1), axis=-1)
    exit_ = jnp.min(jnp.maximum(t0, t1), axis=-1)
    t_near = jnp.maximum(entry, 0.0)
    hit = exit_ > t_near
    return jnp.where(hit, t_near, 0.0), jnp.where(hit, exit_, 0.0), hit


def intersect_sphere(
    origins: ArrayLike,
    directions: ArrayLike,
    center: ArrayLike = (0.0, 0.0, 0.0),
    radius: float = 1.0,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Ray / sphere intersection.

    Args:
      origins: shape ``(..., 3)``.
      directions: shape ``(..., 3)`` (need not be unit length).
      center: sphere centre, shape ``(3,)``.
      radius: sphere radius.

    Returns:
      ``(t_near, t_far, hit)`` of shape ``(...)``, with the same conventions
      as :func:`intersect_aabb`.
    """
    origins = jnp.asarray(origins, jnp.float32)
    directions = jnp.asarray(directions, jnp.float32)
    oc = origins - _like(center, origins)
    a = jnp.sum(directions * directions, axis=-1)
    half_b = jnp.sum(directions * oc, axis=-1)
    c = jnp.sum(oc * oc, axis=-1) - radius**2
    disc = half_b**2 - a * c
    root = jnp.sqrt(jnp.maximum(disc, 0.0))
    entry = (-half_b - root) / a
    exit_ = (-half_b + root) / a
    t_near = jnp.maximum(entry, 0.0)
    hit = (disc > 0) & (exit_ > t_near)
    return jnp.where(hit, t_near, 0.0), jnp.where(hit, exit_, 0.0), hit


def render_poses(
    render_rays_fn: Callable[[jax.Array, jax.Array], jax.Array],
    poses: jax.Array,
    K: jax.Array,
    width: int,
    height: int,
    chunk: int = 4096,
) -> jax.Array:
    """Renders whole images by calling ``render_rays_fn`` on equal ray chunks.

    The rays of all poses are cut into chunks of one size (the last padded),
    so a jitted ``render_rays_fn`` compiles once.

    Args:
      render_rays_fn: ``(origins (B, 3), directions (B, 3)) -> values (B, C)``.
      poses: camera-to-world ``(P, 4, 4)`` (see ``jaxsuite.core.cameras``).
      K: intrinsics ``(3, 3)``.
      width: image width.
      height: image height.
      chunk: rays per call.

    Returns:
      ``(P, height, width, C)``.
    """
    o, d = cameras.generate_rays(poses, K, width, height)
    o, d = o.reshape(-1, 3), d.reshape(-1, 3)
    n = o.shape[0]
    chunk = min(chunk, n)
    pad = -n % chunk
    o = jnp.concatenate([o, jnp.broadcast_to(o[:1], (pad, 3))])
    d = jnp.concatenate([d, jnp.broadcast_to(d[:1], (pad, 3))])
    out = [
        render_rays_fn(o[i : i + chunk], d[i : i + chunk])
        for i in range(0, n + pad, chunk)
    ]
    out = jnp.concatenate(out)[:n]
    return out.reshape(poses.shape[0], height, width, out.shape[-1])
