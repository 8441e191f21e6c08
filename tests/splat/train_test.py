"""Training pieces: parameters, loss, pruning threshold, one step."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxsuite.core import optim
from jaxsuite.splat import gaussians as gl
from jaxsuite.splat import render, scenes, train


def _small_gaussians(n=24, key=0):
    k = jax.random.split(jax.random.PRNGKey(key), 2)
    pts = jax.random.uniform(k[0], (n, 3), minval=-0.5, maxval=0.5)
    pts = pts + jnp.array([[0.0, 3.0, 0.0]])
    return gl.init_from_points(k[1], pts, jax.random.uniform(k[1], (n, 3)), sh_degree=1)


RASTER = render.RasterSettings(capacity=4096, max_per_tile=128, tile=16)


def test_params_round_trip():
    g = _small_gaussians()
    back = train.to_gaussians(train.init_params(g))
    for a, b in zip(g, back):
        np.testing.assert_array_equal(a, b)


def test_photometric_loss_values():
    a = jax.random.uniform(jax.random.PRNGKey(0), (16, 16, 3))
    assert float(train.photometric_loss(a, a)) < 1e-6
    b = jnp.clip(a + 0.1, 0, 1)
    l1 = float(jnp.mean(jnp.abs(a - b)))
    assert float(train.photometric_loss(a, b)) > 0.8 * l1


def test_depth_pruning_threshold_endpoints():
    means = jnp.array([[0.0, 0.0, 1.0], [0.0, 0.0, 2.0], [0.0, 0.0, 3.0]])
    thr = train.depth_pruning_threshold(means, 0.01, axis=2)
    np.testing.assert_allclose(thr, [0.01, 0.005, 0.01 / 3], rtol=1e-6)


def test_gradient_step_reduces_loss_for_both_methods():
    views = scenes.make_views(4, 32)
    gt = scenes.make_scene(0.5)
    target = jax.jit(lambda c: scenes.render_sharp(gt, c, views.K, 32, 32))(
        views.c2w[1]
    )
    g = _small_gaussians(40)
    from jaxsuite.splat import blur_mlp

    for deblur in (False, True):
        mlp = blur_mlp.init(jax.random.PRNGKey(0), motion=True, num_moments=2)
        params = train.init_params(g, mlp if deblur else None)
        opt = train.make_optimizer(train.OptimizerSettings(steps=100), 1.0)
        settings = train.DeblurSettings(lambda_p=0.01) if deblur else None

        def loss_fn(p, settings=settings):
            img, _, overflow = train.render_views(
                p,
                views.c2w[1],
                views.K,
                width=32,
                height=32,
                sh_degree=1,
                background=jnp.ones(3),
                raster=RASTER,
                mlp=settings,
            )
            return train.photometric_loss(img, target)

        state = opt.init(params)
        losses = []
        value_and_grad = jax.jit(jax.value_and_grad(loss_fn))
        for _ in range(3):
            loss, grads = value_and_grad(params)
            updates, state = optim.update(opt, grads, state, params)
            params = optax.apply_updates(params, updates)
            losses.append(float(loss))
        assert losses[-1] < losses[0], losses
