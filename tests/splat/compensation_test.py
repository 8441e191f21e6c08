"""Sparse-point compensation: box, count, neighbour colours and dropping."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxsuite.splat import compensation


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
