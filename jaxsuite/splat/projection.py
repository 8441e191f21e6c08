"""EWA projection of 3D Gaussians into a pinhole camera.

Follows ``preprocessCUDA`` / ``computeCov2D`` of diff-gaussian-rasterization:

* view space is OpenCV (``+z`` forward); a Gaussian whose view depth is
  ``<= NEAR_PLANE`` (0.2) is culled;
* the perspective Jacobian is evaluated at the mean with ``x/z`` and ``y/z``
  clamped to ``1.3 tan(fov/2)``;
* ``cov2d = J W cov3d W^T J^T + 0.3 I`` (the screen-space dilation);
* ``radius = ceil(3 sqrt(lambda_max))`` with ``lambda_max = mid +
  sqrt(max(0.1, mid^2 - det))``; a zero determinant culls the Gaussian.

Poses follow ``jaxsuite.core.cameras`` (OpenGL camera-to-world). Pixel
coordinates put pixel ``(i, j)``'s centre at ``(j + 0.5, i + 0.5)``; the
original's integer-centre coordinates are these minus 0.5.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxsuite.core import cameras

NEAR_PLANE = 0.2
DILATION = 0.3
JACOBIAN_CLAMP = 1.3


class Projected(NamedTuple):
    """Screen-space Gaussians.

    Attributes:
      means2d: ``(N, 2)`` pixel coordinates ``(u, v)``.
      conics: ``(N, 3)`` inverse 2D covariance entries ``(a, b, c)``, so the
        exponent is ``-0.5 (a dx^2 + c dy^2) - b dx dy``.
      depths: ``(N,)`` view depths.
      radii: ``(N,)`` int32 pixel radii, 0 for culled Gaussians.
      cov2d: ``(N, 3)`` dilated 2D covariance ``(xx, xy, yy)``.
    """

    means2d: jax.Array
    conics: jax.Array
    depths: jax.Array
    radii: jax.Array
    cov2d: jax.Array


def world_to_view(c2w: jax.Array) -> jax.Array:
    """OpenCV world-to-camera ``(4, 4)`` of an OpenGL ``c2w``."""
    return cameras.invert_pose(cameras.opengl_to_opencv(c2w))


def project(
    means: jax.Array,
    cov3d: jax.Array,
    c2w: jax.Array,
    K: jax.Array,
    width: int,
    height: int,
) -> Projected:
    """Projects Gaussians into a camera.

    Args:
      means: ``(N, 3)`` world means.
      cov3d: ``(N, 3, 3)`` world covariances.
      c2w: ``(4, 4)`` OpenGL camera-to-world pose.
      K: ``(3, 3)`` intrinsics.
      width: image width ``W``.
      height: image height ``H``.

    Returns:
      :class:`Projected`.
    """
    w2c = world_to_view(c2w)
    rot, trans = w2c[:3, :3], w2c[:3, 3]
    t = means @ rot.T + trans[None, :]
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    z = t[:, 2]
    valid = z > NEAR_PLANE
    safe_z = jnp.where(valid, z, 1.0)
    lim_x = JACOBIAN_CLAMP * 0.5 * width / fx
    lim_y = JACOBIAN_CLAMP * 0.5 * height / fy
    tx = jnp.clip(t[:, 0] / safe_z, -lim_x, lim_x) * safe_z
    ty = jnp.clip(t[:, 1] / safe_z, -lim_y, lim_y) * safe_z
    zeros = jnp.zeros_like(safe_z)
    jac = jnp.stack(
        [
            jnp.stack([fx / safe_z, zeros, -fx * tx / safe_z**2], -1),
            jnp.stack([zeros, fy / safe_z, -fy * ty / safe_z**2], -1),
        ],
        axis=-2,
    )
    m = jac @ rot
    cov = m @ cov3d @ jnp.swapaxes(m, -1, -2)
    a = cov[:, 0, 0] + DILATION
    b = cov[:, 0, 1]
    c = cov[:, 1, 1] + DILATION
    det = a * c - b * b
    valid = valid & (det != 0.0)
    safe_det = jnp.where(valid, det, 1.0)
    conics = jnp.stack([c / safe_det, -b / safe_det, a / safe_det], axis=-1)
    mid = 0.5 * (a + c)
    lam = mid + jnp.sqrt(jnp.maximum(0.1, mid * mid - det))
    radii = jnp.ceil(3.0 * jnp.sqrt(lam)).astype(jnp.int32)
    radii = jnp.where(valid, radii, 0)
    u = fx * t[:, 0] / safe_z + cx
    v = fy * t[:, 1] / safe_z + cy
    means2d = jnp.stack([u, v], axis=-1)
    conics = jnp.where(valid[:, None], conics, 0.0)
    return Projected(
        means2d=means2d,
        conics=conics,
        depths=jnp.where(valid, z, 0.0),
        radii=radii,
        cov2d=jnp.stack([a, b, c], axis=-1),
    )
