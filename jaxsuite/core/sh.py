"""Real spherical harmonics up to degree 3, in the convention of 3DGS and tcnn.

The basis is the one of the 3D Gaussian Splatting rasteriser and
tiny-cuda-nn's ``SphericalHarmonics`` encoding (and Plenoxels' ``eval_sh``):
real, orthonormal on the unit sphere, with the sign convention
``Y_1 = (-C1 y, C1 z, -C1 x)``. Degree ``l`` has ``(l + 1)**2`` components.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (
    1.0925484305920792,
    -1.0925484305920792,
    0.31539156525252005,
    -1.0925484305920792,
    0.5462742152960396,
)
SH_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)
MAX_DEGREE = 3


def num_sh_coeffs(degree: int) -> int:
    """Number of basis functions up to ``degree``: ``(degree + 1)**2``."""
    return (degree + 1) ** 2


def sh_basis(dirs: jax.Array, degree: int) -> jax.Array:
    """Real SH basis of unit directions up to ``degree`` (0 to 3).

    Args:
      dirs: unit directions ``(..., 3)``.
      degree: the highest SH degree.

    Returns:
      ``(..., (degree + 1)**2)``.
    """
    if not 0 <= degree <= MAX_DEGREE:
        raise ValueError(f"SH degree must be in 0..{MAX_DEGREE}, got {degree}")
    x, y, z = dirs[..., 0], dirs[..., 1], dirs[..., 2]
    out = [jnp.full_like(x, SH_C0)]
    if degree >= 1:
        out += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [
            SH_C2[0] * x * y,
            SH_C2[1] * y * z,
            SH_C2[2] * (2.0 * zz - xx - yy),
            SH_C2[3] * x * z,
            SH_C2[4] * (xx - yy),
        ]
    if degree >= 3:
        out += [
            SH_C3[0] * y * (3.0 * xx - yy),
            SH_C3[1] * x * y * z,
            SH_C3[2] * y * (4.0 * zz - xx - yy),
            SH_C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy),
            SH_C3[4] * x * (4.0 * zz - xx - yy),
            SH_C3[5] * z * (xx - yy),
            SH_C3[6] * x * (xx - 3.0 * yy),
        ]
    return jnp.stack(out, axis=-1)


def eval_sh(coeffs: jax.Array, dirs: jax.Array, degree: int) -> jax.Array:
    """Evaluates SH coefficients in directions ``dirs``.

    Args:
      coeffs: ``(..., K, C)`` with ``K >= (degree + 1)**2`` (extra ones ignored).
      dirs: unit directions ``(..., 3)``.
      degree: the highest degree used.

    Returns:
      ``(..., C)``: ``sum_k coeffs[k] * Y_k(dirs)`` (no offset, no activation).
    """
    basis = sh_basis(dirs, degree)
    k = basis.shape[-1]
    return jnp.einsum("...k,...kc->...c", basis, coeffs[..., :k, :])
