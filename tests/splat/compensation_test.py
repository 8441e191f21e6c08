"""Sparse-point compensation: box, count, neighbour colours and dropping."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsuite.splat import compensation, gaussians, train


def test_points_fill_the_quantile_box_with_distance_weighted_colours():
    key = jax.random.PRNGKey(0)
    means = jax.random.uniform(key, (200, 3)) * jnp.array([[4.0, 2.0, 1.0]])
    sh = jax.random.normal(jax.random.PRNGKey(1), (200, 4, 3))
    pts, cols, valid = compensation.sample_points(
        jax.random.PRNGKey(2), means, sh, max_points=64, rank=10, max_distance=10.0
    )
    s = np.sort(np.asarray(means), axis=0)
    lo, hi = s[9], s[-10]
    assert np.all(np.asarray(pts) >= lo - 1e-6) and np.all(np.asarray(pts) <= hi + 1e-6)
    # Volume ~ 8 * 0.9^3 / 1.1^3 ~ 4.4 -> the first 4 candidates are valid.
    count = int(np.prod(hi - lo) / 1.1**3)
    assert list(np.asarray(valid)) == [i < count for i in range(64)]
    # Colour of point 0 by brute force with distance-proportional weights.
    d = np.linalg.norm(np.asarray(means) - np.asarray(pts[0]), axis=-1)
    nn = np.argsort(d)[:4]
    w = d[nn] / d[nn].sum()
    np.testing.assert_allclose(
        cols[0], np.einsum("k,kcd->cd", w, np.asarray(sh)[nn]), rtol=1e-4, atol=1e-5
    )


def test_far_points_are_dropped():
    means = jnp.concatenate([jnp.zeros((15, 3)), jnp.full((15, 3), 30.0)])
    sh = jnp.ones((30, 1, 3))
    pts, _, valid = compensation.sample_points(
        jax.random.PRNGKey(3), means, sh, max_points=200, rank=1, max_distance=2.0
    )
    near = np.min(
        np.linalg.norm(np.asarray(pts)[:, None] - np.asarray(means)[None], axis=-1),
        axis=1,
    )
    np.testing.assert_array_equal(np.asarray(valid), near <= 2.0)


def test_compensate_fills_the_least_opaque_slots_and_resets_their_moments():
    n, k = 60, 8
    key = jax.random.PRNGKey(4)
    g = gaussians.init_from_points(
        key, jax.random.uniform(key, (n, 3)) * 8.0, jnp.full((n, 3), 0.5), sh_degree=1
    )
    params = train.init_params(g)
    logits = jax.random.normal(jax.random.PRNGKey(5), (n,))
    params["opacity_logits"] = logits
    optimizer = train.make_optimizer(train.OptimizerSettings(steps=6), 1.0)
    state = optimizer.init(params)
    state = jax.tree.map(lambda x: x + 1.0 if x.dtype == jnp.float32 else x, state)
    compensate = functools.partial(
        compensation.compensate, max_points=k, max_distance=1.0
    )
    new, new_state, added = jax.jit(compensate)(params, state, jax.random.PRNGKey(6))

    sh = jnp.concatenate([params["sh_dc"], params["sh_rest"]], axis=1)
    pts, _, valid = compensation.sample_points(
        jax.random.PRNGKey(6), params["means"], sh, max_points=k, max_distance=1.0
    )
    num = int(np.sum(valid))
    assert int(added) == num and 0 < num < k
    slots = np.argsort(np.asarray(logits), kind="stable")[:num]
    moved = np.any(np.asarray(new["means"]) != np.asarray(params["means"]), axis=-1)
    assert sorted(np.flatnonzero(moved)) == sorted(slots)
    np.testing.assert_allclose(
        np.sort(np.asarray(new["means"])[slots], 0),
        np.sort(np.asarray(pts)[np.asarray(valid)], 0),
    )
    opacity = jax.nn.sigmoid(new["opacity_logits"][slots])
    np.testing.assert_allclose(opacity, 0.1, rtol=1e-5)
    keep = np.setdiff1d(np.arange(n), slots)
    moments = [
        np.asarray(x)
        for x in jax.tree.leaves(new_state.inner_states["means"])
        if x.shape == (n, 3)
    ]
    assert len(moments) == 2  # Adam's mu and nu
    for m in moments:
        assert np.all(m[slots] == 0.0) and np.all(m[keep] == 1.0)
    np.testing.assert_array_equal(new["quats"][keep], params["quats"][keep])
    with pytest.raises(ValueError, match="exceeds"):
        compensation.compensate(params, state, key, max_points=n + 1)
