"""Empty-space skipping: compaction into fixed-size buckets evaluates only
occupied samples and renders what dense sampling renders."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsuite.core import cameras, image
from jaxsuite.nerf import fields, occupancy, renderer, scenes


def test_bucket_sizes_are_increasing_and_end_at_the_total():
    assert renderer.bucket_sizes(1000, 4) == (125, 250, 500, 1000)
    assert renderer.bucket_sizes(10, 1) == (10,)
    sizes = renderer.bucket_sizes(7, 5)
    assert sizes[-1] == 7 and list(sizes) == sorted(set(sizes))


@pytest.mark.parametrize("frac", [0.0, 0.3, 1.0])
def test_compact_apply_equals_masked_dense_evaluation(frac):
    # Independent reference: evaluate every point, zero the invalid ones.
    kx, kv, kw = jax.random.split(jax.random.key(int(frac * 100)), 3)
    x = jax.random.normal(kx, (512, 3))
    d = x[::-1]
    valid = jax.random.uniform(kv, (512,)) < frac
    w = jax.random.normal(kw, (3, 4))
    calls = []

    def fn(w, x, d):
        calls.append(x.shape[0])  # traced once per bucket
        h = jnp.tanh(x @ w) + jnp.sum(d, -1, keepdims=True)
        return fields.FieldOutput(h, h[:, 0], jnp.sin(h[:, :3]))

    def loss(w, buckets):
        out = renderer.compact_apply(
            functools.partial(fn, w), x, d, valid, buckets=buckets
        )
        return jnp.sum(out.feature**2) + jnp.sum(out.rgb), out

    def masked(w):
        out = fn(w, x, d)
        out = jax.tree.map(
            lambda o: jnp.where(valid.reshape((-1,) + (1,) * (o.ndim - 1)), o, 0.0),
            out,
        )
        return jnp.sum(out.feature**2) + jnp.sum(out.rgb), out

    (l_c, out_c), g_c = jax.jit(
        jax.value_and_grad(loss, has_aux=True), static_argnums=1
    )(w, 4)
    assert sorted(set(calls)) == [64, 128, 256, 512]  # one branch per bucket
    (l_m, out_m), g_m = jax.value_and_grad(masked, has_aux=True)(w)
    for a, b in zip(jax.tree.leaves(out_c), jax.tree.leaves(out_m)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(l_c, l_m, rtol=1e-5)
    np.testing.assert_allclose(g_c, g_m, rtol=1e-4, atol=1e-5)


def _analytic_field(scene, x, d):
    dens = scenes.density(scene, x)
    return fields.FieldOutput(None, jnp.log(dens + 1e-12), scenes.color(scene, x, d))


def test_skipping_renders_the_analytic_scene_like_dense_sampling():
    """Tolerance: PSNR of the skipped render against the dense one >= 40 dB,
    and against the exact image >= 40 dB."""
    scene = scenes.default_scene()
    grid = occupancy.init_grid(32)
    for i in range(8):
        grid = occupancy.update(
            grid, lambda x: scenes.density(scene, x), jax.random.key(i), bound=1.0
        )
    size, n = 32, 96
    data = scenes.make_dataset(scene, jax.random.key(4), size=size, n_train=1, n_test=1)
    o, d = cameras.generate_rays(data.test.poses[0], data.test.K, size, size)
    o, d = o.reshape(-1, 3), d.reshape(-1, 3)
    bg = jnp.ones_like(o)
    fn = functools.partial(_analytic_field, scene)
    render = jax.jit(renderer.render_field, static_argnums=(0, 5, 6, 8))
    dense = render(fn, jnp.ones_like(grid.mask), o, d, None, n, 1.0, bg, 1).rgb
    masked = render(fn, grid.mask, o, d, None, n, 1.0, bg, 1).rgb
    skipped = render(fn, grid.mask, o, d, None, n, 1.0, bg, 4).rgb
    # Skipping evaluates only occupied samples, with the same result as
    # evaluating all of them and zeroing the unoccupied ones.
    np.testing.assert_allclose(skipped, masked, atol=1e-6)
    valid = renderer.march(None, o, d, grid.mask, n, 1.0).valid
    frac = float(jnp.mean(valid))
    assert frac < 0.125  # the smallest bucket (1/8 of the samples) holds them
    exact = data.test.images[0]
    skipped, dense = skipped.reshape(exact.shape), dense.reshape(exact.shape)
    assert float(image.psnr(skipped, dense)) >= 40.0
    # Both are near-exact renders (dense: 47.3 dB; skipping loses a few
    # boundary cells the grid's jittered samples missed: 45.1 dB).
    assert float(image.psnr(skipped, exact)) >= 40.0


def test_training_step_with_skipping_equals_the_dense_step():
    from jaxsuite.nerf import trainer

    cfg = fields.FieldConfig(dense_resolution=6)
    scene = scenes.default_scene()
    data = scenes.make_dataset(scene, jax.random.key(0), size=8, n_train=2, n_test=1)
    params = fields.init(jax.random.key(1), "dense", cfg)
    oc = trainer.OptimConfig()
    tx = trainer.make_optimizer(params, "dense", oc)
    grid = occupancy.init_grid(8)
    grid = occupancy.update(
        grid, lambda x: scenes.density(scene, x), jax.random.key(2), bound=1.0
    )
    state = trainer.TrainState(params, tx.init(params), grid)
    out = {}
    for b in (1, 3):
        fn = trainer.make_train_step(
            "dense",
            cfg,
            tx,
            trainer.rays_of(data.train),
            jax.random.key(3),
            batch_rays=32,
            num_samples=16,
            buckets=b,
        )
        out[b] = fn(state, jnp.asarray(1, jnp.int32), jnp.asarray(0.5))
    assert 0.0 < float(out[3][1]["valid_fraction"]) < 0.5
    for a, b in zip(jax.tree.leaves(out[1]), jax.tree.leaves(out[3])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
