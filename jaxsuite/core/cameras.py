"""Pinhole cameras, poses and rays.

Coordinate convention (used everywhere in jaxsuite):

* **World**: right-handed, ``+z`` is up.
* **Camera**: OpenGL / NeRF-Synthetic. ``+x`` points right, ``+y`` points up
  and the camera looks along ``-z``. A point in front of the camera has a
  negative camera-space ``z``; its *depth* is ``-z``.
* **Poses** are camera-to-world matrices ``c2w`` of shape ``(4, 4)`` (or
  ``(3, 4)``): the first three columns are the camera's ``x``, ``y``, ``z``
  axes in world coordinates and the last column is the camera centre.
* **Pixels**: ``u`` runs right along image columns and ``v`` runs down along
  image rows, both in pixel units, with the image's top-left corner at
  ``(0, 0)``. Pixel ``(row i, column j)`` has its centre at
  ``(u, v) = (j + 0.5, i + 0.5)``.
* **Intrinsics** ``K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` map the
  OpenCV-style camera ray ``(x, -y, -z)`` to pixels, so for an OpenGL camera
  point ``(x, y, z)`` with ``z < 0``:
  ``u = cx + fx * x / (-z)`` and ``v = cy - fy * y / (-z)``.

COLMAP and 3D Gaussian Splatting store OpenCV cameras (``+x`` right, ``+y``
down, looking along ``+z``); :func:`opencv_to_opengl` and
:func:`opengl_to_opencv` convert their ``c2w`` matrices (the two are the same
operation: negating the camera's ``y`` and ``z`` axes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

ArrayLike = jax.typing.ArrayLike

_EPS = 1e-8


def focal_from_fov(size: float, fov_deg: float) -> float:
    """Focal length in pixels for an image side of ``size`` pixels and a field
    of view of ``fov_deg`` degrees across that side."""
    return 0.5 * size / math.tan(0.5 * math.radians(fov_deg))


def intrinsics(
    width: int,
    height: int,
    focal: float | Sequence[float] | None = None,
    *,
    fov_x_deg: float | None = None,
    principal_point: Sequence[float] | None = None,
) -> jax.Array:
    """Pinhole intrinsic matrix.

    Args:
      width: image width ``W`` in pixels.
      height: image height ``H`` in pixels.
      focal: focal length in pixels, a scalar ``f`` (``fx = fy = f``) or a pair
        ``(fx, fy)``. Exactly one of ``focal`` and ``fov_x_deg`` is given.
      fov_x_deg: horizontal field of view in degrees (square pixels).
      principal_point: ``(cx, cy)``; defaults to the image centre
        ``(W / 2, H / 2)``.

    Returns:
      ``K`` of shape ``(3, 3)``, float32.
    """
    if (focal is None) == (fov_x_deg is None):
        raise ValueError("Give exactly one of `focal` and `fov_x_deg`.")
    if fov_x_deg is not None:
        focal = focal_from_fov(width, fov_x_deg)
    if isinstance(focal, Sequence):
        fx, fy = focal
    else:
        fx = fy = focal
    cx, cy = (
        principal_point if principal_point is not None else (0.5 * width, 0.5 * height)
    )
    return jnp.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=jnp.float32)


def _normalize(v: jax.Array) -> jax.Array:
    return v / jnp.maximum(jnp.linalg.norm(v, axis=-1, keepdims=True), _EPS)


def look_at(
    eye: ArrayLike, target: ArrayLike, up: ArrayLike = (0.0, 0.0, 1.0)
) -> jax.Array:
    """Camera-to-world matrix of a camera at ``eye`` looking at ``target``.

    The camera's ``-z`` axis points from ``eye`` to ``target``, its ``+x``
    axis is horizontal (perpendicular to ``up``) and its ``+y`` axis is as
    close to ``up`` as possible. When the view direction is parallel to
    ``up`` the world ``+y`` axis is used as ``up`` instead.

    Args:
      eye: camera centres, shape ``(..., 3)``.
      target: points looked at, shape ``(..., 3)`` or ``(3,)``.
      up: up vector, shape ``(3,)`` or ``(..., 3)``.

    Returns:
      ``c2w`` of shape ``(..., 4, 4)``.
    """
    eye = jnp.asarray(eye, jnp.float32)
    target = jnp.asarray(target, jnp.float32)
    up = jnp.asarray(up, jnp.float32)
    shape = jnp.broadcast_shapes(eye.shape, target.shape, up.shape)
    eye = jnp.broadcast_to(eye, shape)
    target = jnp.broadcast_to(target, shape)
    up = jnp.broadcast_to(up, shape)
    forward = _normalize(target - eye)
    right = jnp.cross(forward, up)
    norm = jnp.linalg.norm(right, axis=-1, keepdims=True)
    alt_up = jnp.broadcast_to(jnp.array([0.0, 1.0, 0.0], jnp.float32), shape)
    alt_right = jnp.cross(forward, alt_up)
    right = _normalize(jnp.where(norm > 1e-6, right, alt_right))
    z_axis = -forward
    y_axis = jnp.cross(z_axis, right)
    rot = jnp.stack([right, y_axis, z_axis], axis=-1)
    top = jnp.concatenate([rot, eye[..., :, None]], axis=-1)
    bottom = jnp.broadcast_to(
        jnp.array([0.0, 0.0, 0.0, 1.0], jnp.float32), shape[:-1] + (1, 4)
    )
    return jnp.concatenate([top, bottom], axis=-2)


def _spherical(
    radius: jax.Array, elevation: jax.Array, azimuth: jax.Array
) -> jax.Array:
    """Unit-sphere directions scaled by ``radius``; angles in radians."""
    cos_el = jnp.cos(elevation)
    return radius[..., None] * jnp.stack(
        [cos_el * jnp.cos(azimuth), cos_el * jnp.sin(azimuth), jnp.sin(elevation)],
        axis=-1,
    )


def orbit_poses(
    n: int,
    radius: float,
    elevation_deg: float,
    target: ArrayLike = (0.0, 0.0, 0.0),
    *,
    start_azimuth_deg: float = 0.0,
    up: ArrayLike = (0.0, 0.0, 1.0),
) -> jax.Array:
    """``n`` cameras evenly spaced in azimuth on a circle around ``target``.

    Camera ``k`` sits at azimuth ``start_azimuth_deg + 360 k / n`` (measured
    counter-clockwise from world ``+x`` about ``+z``) and elevation
    ``elevation_deg`` above the ``xy`` plane, at distance ``radius`` from
    ``target``, and looks at ``target``.

    Returns:
      ``c2w`` of shape ``(n, 4, 4)``.
    """
    azimuth = jnp.deg2rad(
        start_azimuth_deg + 360.0 * jnp.arange(n, dtype=jnp.float32) / n
    )
    elevation = jnp.full((n,), math.radians(elevation_deg))
    target = jnp.asarray(target, jnp.float32)
    offsets = _spherical(jnp.full((n,), radius, jnp.float32), elevation, azimuth)
    eye = offsets + jnp.broadcast_to(target, offsets.shape)
    return look_at(eye, target, up)


def random_poses(
    key: jax.Array,
    n: int,
    radius: float | tuple[float, float],
    *,
    elevation_range_deg: tuple[float, float] = (-90.0, 90.0),
    target: ArrayLike = (0.0, 0.0, 0.0),
    up: ArrayLike = (0.0, 0.0, 1.0),
) -> jax.Array:
    """``n`` cameras at random positions on a sphere, each looking at ``target``.

    Positions are uniform by area on the part of the sphere between the two
    elevations of ``elevation_range_deg``: the default covers the whole sphere
    and ``(0, 90)`` the upper hemisphere (``z >= target z``). Azimuth is
    uniform in ``[0, 2 pi)``.

    Args:
      key: PRNG key.
      n: number of cameras.
      radius: distance to ``target``, a scalar or a ``(min, max)`` range
        sampled uniformly.
      elevation_range_deg: ``(min, max)`` elevation in degrees.
      target: point looked at, shape ``(3,)``.
      up: world up vector, shape ``(3,)``.

    Returns:
      ``c2w`` of shape ``(n, 4, 4)``.
    """
    k_z, k_az, k_r = jax.random.split(key, 3)
    lo, hi = (math.sin(math.radians(e)) for e in elevation_range_deg)
    sin_el = jax.random.uniform(k_z, (n,), minval=lo, maxval=hi)
    elevation = jnp.arcsin(jnp.clip(sin_el, -1.0, 1.0))
    azimuth = jax.random.uniform(k_az, (n,), maxval=2.0 * math.pi)
    if isinstance(radius, (tuple, list)):
        r = jax.random.uniform(k_r, (n,), minval=radius[0], maxval=radius[1])
    else:
        r = jnp.full((n,), radius, jnp.float32)
    target = jnp.asarray(target, jnp.float32)
    offsets = _spherical(r, elevation, azimuth)
    eye = offsets + jnp.broadcast_to(target, offsets.shape)
    return look_at(eye, target, up)


def _flip_yz(c2w: jax.Array) -> jax.Array:
    c2w = jnp.asarray(c2w)
    sign = jnp.array([1.0, -1.0, -1.0, 1.0], c2w.dtype)[: c2w.shape[-1]]
    return c2w * jnp.broadcast_to(sign, c2w.shape)


def opencv_to_opengl(c2w: ArrayLike) -> jax.Array:
    """Convert an OpenCV/COLMAP ``c2w`` (``y`` down, looks along ``+z``) to the
    OpenGL convention used here. Shapes ``(..., 4, 4)`` or ``(..., 3, 4)``."""
    return _flip_yz(jnp.asarray(c2w))


def opengl_to_opencv(c2w: ArrayLike) -> jax.Array:
    """Convert an OpenGL ``c2w`` to OpenCV/COLMAP (inverse of
    :func:`opencv_to_opengl`). Shapes ``(..., 4, 4)`` or ``(..., 3, 4)``."""
    return _flip_yz(jnp.asarray(c2w))


def invert_pose(c2w: ArrayLike) -> jax.Array:
    """Inverse of a rigid pose: ``c2w`` ``(..., 4, 4)`` or ``(..., 3, 4)`` to
    ``w2c`` of shape ``(..., 4, 4)``."""
    c2w = jnp.asarray(c2w)
    rot = c2w[..., :3, :3]
    trans = c2w[..., :3, 3]
    rot_t = jnp.swapaxes(rot, -1, -2)
    new_t = -jnp.einsum("...ij,...j->...i", rot_t, trans)
    top = jnp.concatenate([rot_t, new_t[..., None]], axis=-1)
    bottom = jnp.broadcast_to(
        jnp.array([0.0, 0.0, 0.0, 1.0], c2w.dtype), c2w.shape[:-2] + (1, 4)
    )
    return jnp.concatenate([top, bottom], axis=-2)


def pixel_centers(width: int, height: int) -> jax.Array:
    """Pixel-centre coordinates ``(u, v)``, shape ``(H, W, 2)``: ``[i, j]``
    holds ``(j + 0.5, i + 0.5)``."""
    u, v = jnp.meshgrid(
        jnp.arange(width, dtype=jnp.float32) + 0.5,
        jnp.arange(height, dtype=jnp.float32) + 0.5,
        indexing="xy",
    )
    return jnp.stack([u, v], axis=-1)


def camera_directions(uv: ArrayLike, K: ArrayLike) -> jax.Array:
    """Camera-space directions (OpenGL) through pixel coordinates ``uv``.

    Args:
      uv: pixel coordinates, shape ``(..., 2)``.
      K: intrinsics, shape ``(3, 3)``.

    Returns:
      Directions of shape ``(..., 3)`` with camera-space ``z = -1``.
    """
    uv = jnp.asarray(uv, jnp.float32)
    K = jnp.asarray(K, jnp.float32)
    x = (uv[..., 0] - K[0, 2]) / K[0, 0]
    y = -(uv[..., 1] - K[1, 2]) / K[1, 1]
    return jnp.stack([x, y, -jnp.ones_like(x)], axis=-1)


def generate_rays(
    c2w: ArrayLike,
    K: ArrayLike,
    width: int,
    height: int,
    *,
    normalize: bool = True,
) -> tuple[jax.Array, jax.Array]:
    """World-space rays through every pixel centre.

    Args:
      c2w: camera-to-world pose(s), shape ``(..., 4, 4)`` or ``(..., 3, 4)``.
      K: intrinsics, shape ``(3, 3)``.
      width: image width ``W``.
      height: image height ``H``.
      normalize: if true, directions have unit length, so a ray parameter
        ``t`` is the Euclidean distance from the camera centre; otherwise
        their camera-space ``z`` is ``-1``, so ``t`` is the depth.

    Returns:
      ``(origins, directions)``, each of shape ``(..., H, W, 3)``.
    """
    c2w = jnp.asarray(c2w, jnp.float32)
    dirs_cam = camera_directions(pixel_centers(width, height), K)
    directions = jnp.einsum("...ij,hwj->...hwi", c2w[..., :3, :3], dirs_cam)
    if normalize:
        directions = _normalize(directions)
    origins = jnp.broadcast_to(c2w[..., None, None, :3, 3], directions.shape)
    return origins, directions


def project_points(
    points: ArrayLike, c2w: ArrayLike, K: ArrayLike
) -> tuple[jax.Array, jax.Array]:
    """Project world points into a camera; the inverse of :func:`generate_rays`.

    Args:
      points: world points, shape ``(..., 3)``.
      c2w: camera-to-world pose, shape ``(4, 4)`` or ``(3, 4)``.
      K: intrinsics, shape ``(3, 3)``.

    Returns:
      ``(uv, depth)``: pixel coordinates of shape ``(..., 2)`` and depth
      ``-z_camera`` of shape ``(...)`` (positive in front of the camera;
      ``uv`` is meaningless where ``depth <= 0``).
    """
    points = jnp.asarray(points, jnp.float32)
    c2w = jnp.asarray(c2w, jnp.float32)
    K = jnp.asarray(K, jnp.float32)
    rot, trans = c2w[:3, :3], c2w[:3, 3]
    p_cam = jnp.einsum(
        "ji,...j->...i", rot, points - jnp.broadcast_to(trans, points.shape)
    )
    depth = -p_cam[..., 2]
    safe = jnp.where(jnp.abs(depth) > _EPS, depth, _EPS)
    u = K[0, 0] * p_cam[..., 0] / safe + K[0, 2]
    v = -K[1, 1] * p_cam[..., 1] / safe + K[1, 2]
    return jnp.stack([u, v], axis=-1), depth
