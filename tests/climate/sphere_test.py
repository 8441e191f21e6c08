"""Spherical-harmonic transform at T21 against closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsuite.climate import sphere as sphere_lib


@pytest.fixture(scope="module")
def sph():
    return sphere_lib.Sphere(T=21, nlat=32, nlon=64)


def _grid(sph):
    lat = np.deg2rad(sph.lat)[:, None]
    lon = np.deg2rad(sph.lon)[None, :]
    return lat, lon


def test_gaussian_grid_and_legendre_orthonormality(sph):
    assert sph.grid_shape == (32, 64)
    assert np.all(np.diff(sph.lat) < 0) and abs(sph.lat[0] - 85.7606) < 1e-3
    np.testing.assert_allclose(sph.weights.sum(), 2.0, rtol=1e-14)
    gram = np.einsum("jml,jmk,j->mlk", sph._P, sph._P, sph.weights)
    valid = sph.mask.T[:, :, None] * sph.mask.T[:, None, :]
    np.testing.assert_allclose(gram, 2.0 * np.eye(22)[None] * valid, atol=1e-12)


def test_single_harmonic_matches_closed_form(sph):
    """A single (l=2, m=1) coefficient gives sqrt(15/2) sin(lat) cos(lat) cos(lon)."""
    lat, lon = _grid(sph)
    with jax.enable_x64(True):
        spec = np.zeros((22, 22), np.complex128)
        spec[2, 1] = 0.5  # f = 2 Re(a P e^{i lon}) = P_21 cos(lon)
        f = np.asarray(sph.to_grid(jnp.asarray(spec)))
    p21 = np.sqrt(15.0 / 2.0) * np.sin(lat) * np.cos(lat)  # int_{-1}^{1} p21^2 = 2
    np.testing.assert_allclose(f, p21 * np.cos(lon), atol=1e-13)


def test_round_trip_and_truncation(sph):
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        a = (
            rng.normal(size=(2, 22, 22)) + 1j * rng.normal(size=(2, 22, 22))
        ) * sph.mask
        a[..., 0] = a[..., 0].real
        a = jnp.asarray(a)
        np.testing.assert_allclose(sph.to_spec(sph.to_grid(a)), a, atol=1e-13)
        # A field beyond T21 (l = 25) has no projection on the kept modes.
        lat, lon = _grid(sph)
        high = np.cos(lat) ** 25 * np.cos(25 * lon)
        assert float(jnp.abs(sph.to_spec(jnp.asarray(high))).max()) < 1e-14


def test_derivatives_and_laplacian_of_known_functions(sph):
    lat, lon = _grid(sph)
    a = sph.radius
    f = np.cos(lat) ** 2 * np.sin(2 * lon) * np.sin(lat) + np.sin(lat)
    with jax.enable_x64(True):
        spec = sph.to_spec(jnp.asarray(f))
        dx, dy = sph.grad(spec)
        lap = sph.to_grid(sph.laplacian(spec))
        inv = sph.to_grid(sph.inverse_laplacian(sph.laplacian(spec)))
    ex = 2 * np.cos(lat) * np.sin(lat) * np.cos(2 * lon) / a
    ey = (
        np.sin(2 * lon) * (np.cos(lat) ** 3 - 2 * np.cos(lat) * np.sin(lat) ** 2)
        + np.cos(lat)
    ) / a
    np.testing.assert_allclose(np.asarray(dx) * a, ex * a, atol=1e-12)
    np.testing.assert_allclose(np.asarray(dy) * a, ey * a, atol=1e-12)
    # Both terms are degree-3 (sin(lat) is degree 1) harmonics.
    part3 = np.cos(lat) ** 2 * np.sin(2 * lon) * np.sin(lat)
    expected = (-12.0 * part3 - 2.0 * np.sin(lat)) / a**2
    np.testing.assert_allclose(np.asarray(lap) * a**2, expected * a**2, atol=1e-11)
    np.testing.assert_allclose(inv, f, atol=1e-12)


def test_mean_product_matches_quadrature_float32(sph):
    rng = np.random.default_rng(1)
    a = (rng.normal(size=(22, 22)) + 1j * rng.normal(size=(22, 22))) * sph.mask
    a[:, 0] = a[:, 0].real
    spec = jnp.asarray(a, jnp.complex64)
    f = sph.to_grid(spec)
    assert f.dtype == jnp.float32
    np.testing.assert_allclose(
        sph.mean_product(spec, spec), sph.grid_mean(f * f), rtol=1e-5
    )
