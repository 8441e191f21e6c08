"""Tests for the real spherical-harmonics basis."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsuite.core import sh


def _sphere_quadrature(n_theta=48, n_phi=96):
    """Gauss-Legendre in cos(theta) times uniform phi: exact for low degrees."""
    u, wu = np.polynomial.legendre.leggauss(n_theta)
    phi = (np.arange(n_phi) + 0.5) * 2 * np.pi / n_phi
    ct, ph = np.meshgrid(u, phi, indexing="ij")
    st = np.sqrt(1 - ct**2)
    dirs = np.stack([st * np.cos(ph), st * np.sin(ph), ct], -1).reshape(-1, 3)
    w = np.repeat(wu, n_phi) * (2 * np.pi / n_phi)
    return dirs, w


def test_basis_is_orthonormal_on_the_sphere():
    dirs, w = _sphere_quadrature()
    y = np.asarray(sh.sh_basis(jnp.asarray(dirs), 3), np.float64)
    gram = (y * w[:, None]).T @ y
    np.testing.assert_allclose(gram, np.eye(16), atol=2e-5)
    # Each band's squared norm is rotation invariant: (2l + 1) / (4 pi).
    for band in range(4):
        part = y[:, band**2 : (band + 1) ** 2]
        np.testing.assert_allclose(
            np.sum(part**2, -1), (2 * band + 1) / (4 * np.pi), rtol=1e-5
        )


def test_degree_one_matches_the_signed_linear_functions():
    d = jax.random.normal(jax.random.key(0), (10, 3))
    d = d / jnp.linalg.norm(d, axis=-1, keepdims=True)
    y = sh.sh_basis(d, 1)
    np.testing.assert_allclose(y[:, 0], sh.SH_C0, rtol=1e-6)
    want = sh.SH_C1 * jnp.stack([-d[:, 1], d[:, 2], -d[:, 0]], -1)
    np.testing.assert_allclose(y[:, 1:], want, rtol=1e-6)


def test_degrees_nest_and_eval_projects_back():
    d = jax.random.normal(jax.random.key(1), (4, 7, 3))
    d = d / jnp.linalg.norm(d, axis=-1, keepdims=True)
    full = sh.sh_basis(d, 3)
    assert full.shape == (4, 7, 16)
    for deg in range(3):
        np.testing.assert_array_equal(sh.sh_basis(d, deg), full[..., : (deg + 1) ** 2])
    # Projecting a function given by coefficients recovers the coefficients.
    coeffs = jax.random.normal(jax.random.key(2), (16, 2))
    dirs, w = _sphere_quadrature()
    values = sh.eval_sh(
        jnp.broadcast_to(coeffs, (len(dirs), 16, 2)), jnp.asarray(dirs), 3
    )
    basis = np.asarray(sh.sh_basis(jnp.asarray(dirs), 3), np.float64)
    back = (basis * w[:, None]).T @ np.asarray(values, np.float64)
    np.testing.assert_allclose(back, coeffs, atol=1e-4)
    with pytest.raises(ValueError, match="0..3"):
        sh.sh_basis(d, 4)
