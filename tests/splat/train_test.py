"""Training pieces: parameters, loss, pruning threshold, one step."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxsuite.splat import gaussians as gl
from jaxsuite.splat import scenes, train


def _small_gaussians(n=24, key=0):
    k = jax.random.split(jax.random.PRNGKey(key), 2)
    pts = jax.random.uniform(k[0], (n, 3), minval=-0.5, maxval=0.5)
    pts = pts + jnp.array([[0.0, 3.0, 0.0]])
    return gl.init_from_points(k[1], pts, jax.random.uniform(k[1], (n, 3)), sh_degree=1)


def _config(**kw):
    c = ml_collections.ConfigDict(
        dict(
            steps=100,
            lr_means=1.6e-3,
            lr_means_final=1.6e-5,
            lr_scales=5e-3,
            lr_quats=1e-3,
            lr_opacity=0.05,
            lr_sh=2.5e-3,
            lr_mlp=1e-3,
            capacity=4096,
            max_per_tile=128,
            tile=16,
            implementation="",
            lambda_s=0.01,
            lambda_p=0.01,
            max_clamp=1.1,
            mlp_rotation_factors=True,
            mlp_center_offsets=False,
            mlp_relative_factors=False,
        )
    )
    c.update(kw)
    return c


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
        cfg = _config()
        opt = train.make_optimizer(cfg, 1.0)

        def loss_fn(p, deblur=deblur, cfg=cfg):
            img, _, overflow = train.render_views(
                p,
                views.c2w[1],
                views.K,
                width=32,
                height=32,
                sh_degree=1,
                background=jnp.ones(3),
                deblur=deblur,
                config=cfg,
            )
            return train.photometric_loss(img, target)

        state = opt.init(params)
        losses = []
        value_and_grad = jax.jit(jax.value_and_grad(loss_fn))
        for _ in range(3):
            loss, grads = value_and_grad(params)
            updates, state = opt.update(grads, state, params)
            params = optax.apply_updates(params, updates)
            losses.append(float(loss))
        assert losses[-1] < losses[0], losses
