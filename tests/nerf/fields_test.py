"""Tests for the four architectures, their building blocks, the occupancy
grid and the renderer, against closed forms and invariants."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxsuite.kernels.hash_encoding.reference import hash_encode_reference

from jaxsuite.nerf import fields, occupancy, renderer

CFG = fields.FieldConfig(
    hidden=16,
    hash_levels=4,
    hash_log2_table=10,
    hash_max_resolution=64.0,
    mlp_depth=3,
    mlp_width=16,
    mlp_freqs=4,
    vm_resolution=8,
    vm_sigma_rank=2,
    vm_color_rank=3,
    dense_resolution=6,
)


def _fibonacci_sphere(n):
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    phi = math.pi * (1 + 5**0.5) * i
    r = np.sqrt(1 - z * z)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], -1).astype(np.float32)


def test_trunc_exp_gradient_is_clipped():
    g = jax.grad(fields.trunc_exp)
    np.testing.assert_allclose(g(1.0), math.e, rtol=1e-6)
    np.testing.assert_allclose(g(20.0), math.exp(12.0), rtol=1e-5)
    np.testing.assert_allclose(fields.trunc_exp(20.0), math.exp(20.0), rtol=1e-5)


def test_interpolation_reproduces_affine_functions():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 2)).astype(np.float32)
    b = np.array([0.3, -1.0], np.float32)
    c = np.linspace(0, 1, 5, dtype=np.float32)
    x_grid = np.stack(np.meshgrid(c, c, c, indexing="ij"), -1)
    x = jnp.asarray(rng.uniform(size=(64, 3)).astype(np.float32))
    x = x.at[0].set(jnp.ones(3))  # the upper boundary
    want = np.asarray(x) @ a + b
    np.testing.assert_allclose(
        fields.sample_grid(jnp.asarray(x_grid @ a + b), x), want, atol=1e-5
    )
    plane = np.stack(np.meshgrid(c, c, indexing="ij"), -1) @ a[:2] + b
    np.testing.assert_allclose(
        fields.sample_plane(jnp.asarray(plane), x[:, 0], x[:, 1]),
        np.asarray(x[:, :2]) @ a[:2] + b,
        atol=1e-5,
    )
    line = c[:, None] * a[0] + b
    np.testing.assert_allclose(
        fields.sample_line(jnp.asarray(line), x[:, 2]),
        np.asarray(x[:, 2:]) * a[0] + b,
        atol=1e-5,
    )


@pytest.mark.parametrize("arch", fields.ARCHS)
def test_block_structure_and_range_clamp(arch):
    k1, k2, k3 = jax.random.split(jax.random.key(1), 3)
    params = fields.init(k1, arch, CFG)
    # Push densities far outside the clamp range.
    params = jax.tree.map(lambda p: p * 30.0, params)
    x = jax.random.uniform(k2, (50, 3), minval=-1, maxval=1)
    d = jax.random.normal(k3, (50, 3))
    d = d / jnp.linalg.norm(d, axis=-1, keepdims=True)
    out = jax.jit(fields.query, static_argnums=(1, 2))(params, arch, CFG, x, d)
    assert out.log_sigma.shape == (50,) and out.rgb.shape == (50, 3)
    assert float(out.log_sigma.min()) >= -2.0 and float(out.log_sigma.max()) <= 7.0
    assert float(out.rgb.min()) >= 0.0 and float(out.rgb.max()) <= 1.0
    if arch == "dense":
        assert out.feature is None
    else:
        assert out.feature.shape == (50, fields.FEATURE_DIM)
        np.testing.assert_allclose(out.log_sigma, jnp.clip(out.feature[:, 0], -2, 7))
    np.testing.assert_allclose(
        fields.log_sigma(params, arch, CFG, x), out.log_sigma, atol=1e-5
    )
    # Colour depends on the view direction only through the colour head.
    out2 = fields.query(params, arch, CFG, x, -d)
    np.testing.assert_allclose(out2.log_sigma, out.log_sigma, atol=1e-6)


def test_hash_field_uses_the_hash_encoding():
    params = fields.init(jax.random.key(0), "hash", CFG)
    x = jax.random.uniform(jax.random.key(1), (20, 3), minval=-1, maxval=1)
    enc = hash_encode_reference(
        (x + 1) / 2, params["encoder"]["table"], CFG.hash_config()
    )
    w0, w1 = params["sigma_net"]["w0"], params["sigma_net"]["w1"]
    want = jax.nn.relu(enc @ w0) @ w1
    np.testing.assert_allclose(fields.feature(params, "hash", CFG, x), want, atol=1e-5)


def test_occupancy_update_and_lookup():
    grid = occupancy.init_grid(8)
    assert bool(grid.mask.all())

    def ball(x):  # density 50 inside radius 0.5, 0.1 outside
        return jnp.where(jnp.linalg.norm(x, axis=-1) < 0.5, 50.0, 0.1)

    g1 = occupancy.update(
        grid, ball, jax.random.key(0), bound=1.0, decay=0.9, threshold=10.0
    )
    centers = occupancy.cell_centers(8, 1.0)
    r = np.linalg.norm(np.asarray(centers), axis=-1).reshape(8, 8, 8)
    assert bool(np.all(np.asarray(g1.mask)[r < 0.3]))
    assert not bool(np.any(np.asarray(g1.mask)[r > 0.8]))
    # EMA keeps max(decay * old, new).
    g2 = occupancy.update(
        g1, lambda x: jnp.zeros(x.shape[0]), jax.random.key(1), bound=1.0, decay=0.9
    )
    np.testing.assert_allclose(g2.density, 0.9 * g1.density, rtol=1e-6)
    pts = jnp.array([[0.0, 0.0, 0.01], [0.95, 0.95, 0.95], [1.5, 0.0, 0.0]])
    np.testing.assert_array_equal(
        occupancy.lookup(g1.mask, pts, 1.0), [True, False, False]
    )


def test_render_constant_density_matches_beer_lambert():
    # A dense grid of constant density and zero SH: colour 0.5 everywhere.
    c = 0.3
    grid = jnp.zeros((4, 4, 4, 28)).at[..., 0].set(c)
    params = {"encoder": {"grid": grid}}
    mask = jnp.ones((4, 4, 4), bool)
    o = jnp.array([[0.0, 0.2, 4.0], [0.3, 0.0, -5.0], [3.0, 3.0, 3.0]])
    d = jnp.array([[0.0, 0.0, -1.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    bg = jnp.full((3, 3), 0.8)
    rgb = renderer.render_rays(
        params, "dense", CFG, mask, o, d, jax.random.key(0), 16, bg
    )
    trans = np.exp(-np.exp(c) * 2.0)  # chord of length 2 through the cube
    want = 0.5 * (1 - trans) + 0.8 * trans
    np.testing.assert_allclose(rgb[:2], np.full((2, 3), want), atol=1e-5)
    np.testing.assert_allclose(rgb[2], [0.8, 0.8, 0.8], atol=1e-6)  # misses
    # Empty occupancy: every sample is skipped.
    rgb0 = renderer.render_rays(
        params, "dense", CFG, jnp.zeros_like(mask), o, d, None, 16, bg
    )
    np.testing.assert_allclose(rgb0, bg, atol=1e-6)
