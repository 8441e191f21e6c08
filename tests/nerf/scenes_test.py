"""Tests for the analytic scenes: exact renders against closed forms and
brute-force quadrature, and the posed image sets."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxsuite.nerf import scenes


def _one_sphere(sigma=3.0, radius=0.5):
    f32 = lambda v: np.asarray(v, np.float32)
    empty = np.zeros((0, 3), np.float32)
    return scenes.Scene(
        sphere_center=f32([[0.0, 0.0, 0.0]]),
        sphere_radius=f32([radius]),
        sphere_density=f32([sigma]),
        sphere_color=f32([[0.2, 0.4, 0.6]]),
        box_min=empty,
        box_max=empty,
        box_density=np.zeros((0,), np.float32),
        box_color=empty,
        stripe_dark=1.0,  # uniform albedo
        spec=0.0,
    )


def test_single_sphere_matches_beer_lambert():
    sigma, r = 3.0, 0.5
    scene = _one_sphere(sigma, r)
    b = jnp.linspace(0.0, 0.6, 13)  # impact parameters, some miss
    origins = jnp.stack([b, jnp.zeros_like(b), jnp.full_like(b, -3.0)], -1)
    dirs = jnp.broadcast_to(jnp.array([0.0, 0.0, 1.0]), origins.shape)
    rgb = scenes.render_rays(scene, origins, dirs, background=1.0)
    chord = 2.0 * np.sqrt(np.maximum(r**2 - np.asarray(b) ** 2, 0.0))
    trans = np.exp(-sigma * chord)
    expected = (1 - trans)[:, None] * np.array([0.2, 0.4, 0.6]) + trans[:, None]
    np.testing.assert_allclose(rgb, expected, atol=2e-5)


def test_default_scene_matches_fine_quadrature():
    scene = scenes.default_scene()
    key = jax.random.key(3)
    k1, k2 = jax.random.split(key)
    origins = jax.random.normal(k1, (32, 3))
    origins = 4.0 * origins / jnp.linalg.norm(origins, axis=-1, keepdims=True)
    target = jax.random.uniform(k2, (32, 3), minval=-0.5, maxval=0.5)
    dirs = target - origins
    dirs = dirs / jnp.linalg.norm(dirs, axis=-1, keepdims=True)
    exact = scenes.render_rays(scene, origins, dirs, background=1.0)
    # Independent estimate: midpoint rule with many samples, far side included.
    n = 8192
    t = 2.0 + 4.0 * (jnp.arange(n, dtype=jnp.float32) + 0.5) / n
    pts = origins[:, None, :] + t[None, :, None] * dirs[:, None, :]
    flat = pts.reshape(-1, 3)
    dflat = jnp.broadcast_to(dirs[:, None, :], pts.shape).reshape(-1, 3)
    sig = scenes.density(scene, flat).reshape(32, n)
    col = scenes.color(scene, flat, dflat).reshape(32, n, 3)
    tau = sig * (4.0 / n)
    trans = jnp.exp(-jnp.cumsum(tau, -1) + tau)
    w = trans * (1 - jnp.exp(-tau))
    ref = jnp.sum(w[..., None] * col, 1) + (1 - jnp.sum(w, -1))[:, None]
    np.testing.assert_allclose(exact, ref, atol=2e-2)
    assert float(jnp.mean(jnp.abs(exact - ref))) < 3e-3
    assert float(jnp.std(exact)) > 0.05  # the rays do hit things


def test_dataset_splits_and_poses():
    ds = scenes.make_dataset(
        scenes.default_scene(), jax.random.key(0), size=16, n_train=5, n_test=3
    )
    assert ds.train.images.shape == (5, 16, 16, 3)
    assert ds.test.images.shape == (3, 16, 16, 3)
    # Cameras sit at the requested radius and look at the origin.
    eyes = np.concatenate([ds.train.poses[:, :3, 3], ds.test.poses[:, :3, 3]])
    np.testing.assert_allclose(
        np.linalg.norm(eyes, axis=-1), scenes.BLENDER_RADIUS, rtol=1e-5
    )
    fwd = -np.asarray(ds.train.poses[:, :3, 2])
    np.testing.assert_allclose(fwd, -eyes[:5] / 4.0, atol=1e-5)
    # Test views are not train views; border pixels see the white background.
    assert np.min(np.linalg.norm(eyes[5:, None] - eyes[None, :5], axis=-1)) > 1e-3
    np.testing.assert_allclose(ds.test.images[:, 0, 0], 1.0, atol=1e-6)
    assert float(ds.test.images.min()) < 0.5
