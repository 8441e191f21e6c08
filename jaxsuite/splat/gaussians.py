"""3D Gaussian parameters, their activations, covariances and SH colour.

A scene is a :class:`Gaussians` pytree of ``N`` Gaussians stored in the
unconstrained parameterisation of 3D Gaussian Splatting (Kerbl et al., 2023):

* ``means`` ``(N, 3)``: world positions;
* ``log_scales`` ``(N, 3)``: per-axis standard deviations are ``exp``;
* ``quats`` ``(N, 4)``: rotations as ``(w, x, y, z)``, normalised on use;
* ``opacity_logits`` ``(N,)``: opacities are ``sigmoid``;
* ``sh`` ``(N, K, 3)``: spherical-harmonic colour coefficients, ``K = (D+1)^2``
  for degree ``D <= 3``; ``sh[:, 0]`` is the DC term.

Colour follows the original ``computeColorFromSH``: ``rgb = max(SH(d) + 0.5, 0)``
with ``d`` the unit direction from the camera centre to the mean.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsuite.core.sh import SH_C0, sh_basis


class Gaussians(NamedTuple):
    """``N`` Gaussians in the unconstrained parameterisation (see module doc)."""

    means: jax.Array
    log_scales: jax.Array
    quats: jax.Array
    opacity_logits: jax.Array
    sh: jax.Array

    @property
    def num(self) -> int:
        return self.means.shape[0]

    @property
    def scales(self) -> jax.Array:
        """Standard deviations along the local axes, ``(N, 3)``."""
        return jnp.exp(self.log_scales)

    @property
    def rotations(self) -> jax.Array:
        """Unit quaternions ``(w, x, y, z)``, ``(N, 4)``."""
        return normalize_quats(self.quats)

    @property
    def opacities(self) -> jax.Array:
        """Opacities in ``(0, 1)``, ``(N,)``."""
        return jax.nn.sigmoid(self.opacity_logits)


def num_sh_coeffs(degree: int) -> int:
    """Number of SH coefficients per channel for ``degree``: ``(degree + 1)^2``."""
    return (degree + 1) ** 2


def rgb_to_sh(rgb: jax.Array) -> jax.Array:
    """DC coefficient whose colour is ``rgb``: ``(rgb - 0.5) / C0``."""
    return (rgb - 0.5) / SH_C0


def sh_to_rgb(dc: jax.Array) -> jax.Array:
    """Colour of a DC coefficient alone: ``C0 * dc + 0.5``."""
    return SH_C0 * dc + 0.5


def normalize_quats(quats: jax.Array) -> jax.Array:
    """Unit quaternions, ``(..., 4)``."""
    return quats / jnp.maximum(jnp.linalg.norm(quats, axis=-1, keepdims=True), 1e-12)


def quat_to_matrix(quats: jax.Array) -> jax.Array:
    """The rasteriser's rotation matrix of raw quaternions ``(w, x, y, z)``.

    Like ``computeCov3D`` of diff-gaussian-rasterization, the quaternion is
    **not** normalised here, so a non-unit quaternion yields a scaled and
    sheared matrix (the deblurring MLP relies on this).

    Args:
      quats: ``(..., 4)``.

    Returns:
      ``(..., 3, 3)``.
    """
    r, x, y, z = (quats[..., i] for i in range(4))
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - r * z), 2 * (x * z + r * y)],
        [2 * (x * y + r * z), 1 - 2 * (x * x + z * z), 2 * (y * z - r * x)],
        [2 * (x * z - r * y), 2 * (y * z + r * x), 1 - 2 * (x * x + y * y)],
    ]
    return jnp.stack([jnp.stack(row, axis=-1) for row in rows], axis=-2)


def covariance_3d(scales: jax.Array, quats: jax.Array) -> jax.Array:
    """World covariances ``R diag(s)^2 R^T`` with ``R = quat_to_matrix(quats)``.

    Args:
      scales: standard deviations, ``(N, 3)``.
      quats: raw quaternions ``(w, x, y, z)``, ``(N, 4)`` (not normalised).

    Returns:
      ``(N, 3, 3)`` symmetric matrices.
    """
    m = quat_to_matrix(quats) * scales[..., None, :]
    return m @ jnp.swapaxes(m, -1, -2)


def sh_to_color(
    sh: jax.Array, means: jax.Array, cam_center: jax.Array, degree: int | jax.Array
) -> jax.Array:
    """View-dependent RGB of each Gaussian, ``max(SH(d) + 0.5, 0)``.

    Args:
      sh: coefficients ``(N, K, 3)``.
      means: ``(N, 3)``.
      cam_center: camera centre ``(3,)``.
      degree: active SH degree (``<= sqrt(K) - 1``); may be traced, in which
        case bands above it are masked out.

    Returns:
      ``(N, 3)``.
    """
    k = sh.shape[1]
    max_degree = int(round(np.sqrt(k))) - 1
    d = means - cam_center[None, :]
    d = d / jnp.maximum(jnp.linalg.norm(d, axis=-1, keepdims=True), 1e-12)
    basis = sh_basis(d, max_degree)
    band = np.concatenate([np.full(2 * lvl + 1, lvl) for lvl in range(max_degree + 1)])
    basis = jnp.where(jnp.asarray(band)[None, :] <= degree, basis, 0.0)
    return jnp.maximum(jnp.einsum("nk,nkc->nc", basis, sh) + 0.5, 0.0)


def init_from_points(
    key: jax.Array,
    points: jax.Array,
    colors: jax.Array,
    *,
    sh_degree: int = 3,
    init_opacity: float = 0.1,
    num_neighbors: int = 3,
) -> Gaussians:
    """3DGS initialisation from a point cloud.

    Scales are ``sqrt(mean squared distance to the 3 nearest neighbours)``
    (``distCUDA2``), rotations identity, opacity ``init_opacity``, SH DC from
    the colours and higher bands zero.

    Args:
      key: unused for the deterministic parts; kept for a uniform signature.
      points: ``(N, 3)``.
      colors: ``(N, 3)`` in ``[0, 1]``.
      sh_degree: maximum SH degree of the returned coefficients.
      init_opacity: initial opacity.
      num_neighbors: neighbours in the scale estimate.

    Returns:
      :class:`Gaussians` with ``N`` entries.
    """
    del key
    n = points.shape[0]
    d2 = jnp.sum(jnp.square(points[:, None] - points[None]), axis=-1)
    d2 = d2 + jnp.diag(jnp.full((n,), jnp.inf))
    nearest = -jax.lax.top_k(-d2, num_neighbors)[0]
    dist2 = jnp.maximum(jnp.mean(nearest, axis=-1), 1e-7)
    log_scales = jnp.repeat(0.5 * jnp.log(dist2)[:, None], 3, axis=1)
    quats = jnp.zeros((n, 4)).at[:, 0].set(1.0)
    logit = float(np.log(init_opacity / (1 - init_opacity)))
    sh = jnp.zeros((n, num_sh_coeffs(sh_degree), 3)).at[:, 0].set(rgb_to_sh(colors))
    return Gaussians(
        means=points.astype(jnp.float32),
        log_scales=log_scales,
        quats=quats,
        opacity_logits=jnp.full((n,), logit, jnp.float32),
        sh=sh,
    )
