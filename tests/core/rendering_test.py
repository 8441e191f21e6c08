"""Tests for jaxsuite.core.rendering against closed forms and brute force."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsuite.core import rendering


def test_compute_deltas():
    t = jnp.array([[0.0, 0.5, 1.5, 3.0]])
    np.testing.assert_allclose(
        rendering.compute_deltas(t, t_far=jnp.array([4.0])), [[0.5, 1.0, 1.5, 1.0]]
    )
    np.testing.assert_allclose(
        rendering.compute_deltas(t), [[0.5, 1.0, 1.5, rendering.FAR_DELTA]]
    )
    np.testing.assert_allclose(rendering.compute_deltas(t, 3.5)[0, -1], 0.5)


def test_weights_match_cumprod_reference():
    key_s, key_t = jax.random.split(jax.random.key(0))
    sigma = jax.random.uniform(key_s, (5, 16), maxval=3.0)
    t = jnp.sort(jax.random.uniform(key_t, (5, 16), maxval=4.0), axis=-1)
    w, trans, alpha = jax.jit(rendering.render_weights)(sigma, t, 4.5)
    # Reference: explicit product of (1 - alpha) in float64.
    s64, t64 = np.asarray(sigma, np.float64), np.asarray(t, np.float64)
    delta = np.concatenate([np.diff(t64, axis=-1), 4.5 - t64[:, -1:]], axis=-1)
    a_ref = 1.0 - np.exp(-s64 * delta)
    t_ref = np.cumprod(np.concatenate([np.ones((5, 1)), 1.0 - a_ref[:, :-1]], -1), -1)
    np.testing.assert_allclose(alpha, a_ref, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(trans, t_ref, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(w, t_ref * a_ref, rtol=1e-5, atol=1e-7)
    # The weights add up to one minus the light that gets through.
    np.testing.assert_allclose(
        w.sum(-1), 1.0 - np.prod(1.0 - a_ref, axis=-1), rtol=1e-5, atol=1e-6
    )


def test_far_delta_makes_last_sample_opaque():
    sigma = jnp.array([0.0, 0.0, 0.3])
    out = rendering.volume_render(sigma, jnp.ones((3, 2)), jnp.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(out.opacity, 1.0)
    np.testing.assert_allclose(out.weights, [0.0, 0.0, 1.0])
    np.testing.assert_allclose(out.depth, 3.0)


def test_piecewise_constant_density_is_exact():
    # When the density is constant on each interval the quadrature is exact.
    edges = jnp.linspace(0.0, 2.0, 9)
    t, t_far = edges[:-1], edges[-1]
    sigma = jnp.array([0.0, 0.5, 2.0, 2.0, 0.1, 0.0, 3.0, 1.0])
    out = rendering.volume_render(sigma, jnp.ones((8, 1)), t, t_far=t_far)
    expected = 1.0 - np.exp(-np.sum(np.asarray(sigma) * 0.25))
    np.testing.assert_allclose(out.opacity, expected, rtol=1e-6)


def _sphere_case():
    """Rays along +z at impact parameters b past a unit sphere of density s."""
    s, b = np.meshgrid([0.5, 2.0, 8.0], [0.0, 0.4, 0.8, 0.95], indexing="ij")
    s, b = s.ravel(), b.ravel()
    dist, radius = 3.0, 1.0
    origins = np.stack([b, np.zeros_like(b), np.full_like(b, -dist)], -1)
    directions = np.broadcast_to([0.0, 0.0, 1.0], origins.shape)
    chord = 2.0 * np.sqrt(radius**2 - b**2)
    t0 = dist - chord / 2.0
    opacity = 1.0 - np.exp(-s * chord)
    # E[t] = int_{t0}^{t0+L} t s exp(-s (t - t0)) dt
    #      = t0 (1 - e^{-sL}) + (1 - e^{-sL} (1 + sL)) / s.
    depth = t0 * opacity + (1.0 - np.exp(-s * chord) * (1.0 + s * chord)) / s
    return s, origins, directions, radius, opacity, depth


@pytest.mark.parametrize("stratified", [False, True])
def test_constant_density_sphere_converges_to_closed_form(stratified):
    s, origins, directions, radius, opacity, depth = _sphere_case()
    colour = np.array([0.9, 0.3, 0.1])
    background = np.array([0.2, 0.5, 1.0])
    expected_rgb = opacity[:, None] * colour + (1.0 - opacity[:, None]) * background
    near, far = 0.5, 5.5

    @jax.jit
    def render(t):
        points = rendering.ray_points(origins, directions, t)
        inside = jnp.linalg.norm(points, axis=-1) < radius
        sigma = jnp.where(inside, jnp.asarray(s, jnp.float32)[:, None], 0.0)
        rgb = jnp.broadcast_to(jnp.asarray(colour, jnp.float32), t.shape + (3,))
        return rendering.volume_render(
            sigma, rgb, t, t_far=far, background=jnp.asarray(background)
        )

    errors = []
    for i, num in enumerate([64, 256, 1024, 4096]):
        key = jax.random.key(i) if stratified else None
        t = rendering.stratified_samples(key, jnp.full(s.shape, near), far, num)
        out = render(t)
        delta = (far - near) / num
        err = [
            np.abs(out.opacity - opacity).max(),
            np.abs(out.weights.sum(-1) - opacity).max(),
            np.abs(out.rgb - expected_rgb).max(),
            np.abs(out.depth - depth).max(),
        ]
        # First-order quadrature of a discontinuous density: error O(delta).
        assert max(err[:3]) < 2.0 * delta, (num, err)
        assert err[3] < 4.0 * delta, (num, err)
        errors.append(max(err))
    assert errors[-1] < errors[0] / 10.0


def test_gradient_matches_finite_differences():
    with jax.enable_x64(True):
        key_s, key_c, key_t = jax.random.split(jax.random.key(1), 3)
        sigma = jax.random.uniform(key_s, (12,), jnp.float64, maxval=2.0)
        rgb = jax.random.uniform(key_c, (12, 3), jnp.float64)
        t = jnp.sort(jax.random.uniform(key_t, (12,), jnp.float64, maxval=3.0))
        probe = jnp.array([0.3, -1.0, 0.7])

        def f(sig):
            out = rendering.volume_render(
                sig, rgb, t, t_far=3.5, background=jnp.array([0.1, 0.2, 0.3])
            )
            return jnp.dot(out.rgb, probe) + 0.1 * out.depth

        grad = jax.jit(jax.grad(f))(sigma)
        eps = 1e-6
        fd = np.array(
            [
                (f(sigma.at[i].add(eps)) - f(sigma.at[i].add(-eps))) / (2 * eps)
                for i in range(12)
            ]
        )
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)


def test_stratified_samples():
    near = jnp.array([0.0, 1.0, 2.0])
    far = jnp.array([1.0, 3.0, 2.5])
    mid = rendering.stratified_samples(None, near, far, 4)
    np.testing.assert_allclose(mid[1], [1.25, 1.75, 2.25, 2.75])
    t = rendering.stratified_samples(jax.random.key(0), near, far, 4)
    assert t.shape == (3, 4)
    width = np.asarray(far - near)[:, None] / 4
    lower = np.asarray(near)[:, None] + width * np.arange(4)
    assert np.all(np.asarray(t) >= lower - 1e-6)
    assert np.all(np.asarray(t) <= lower + width + 1e-6)
    assert not np.allclose(
        t, rendering.stratified_samples(jax.random.key(1), near, far, 4)
    )
    # Uniform inside bins: offsets average 0.5 over many rays.
    many = rendering.stratified_samples(jax.random.key(2), jnp.zeros(2000), 1.0, 8)
    offsets = np.asarray(many) * 8 - np.arange(8)
    np.testing.assert_allclose(offsets.mean(), 0.5, atol=0.01)


def _brute_force_interval(origins, directions, inside_fn, t_max=10.0, num=20_001):
    """First and last t in [0, t_max] where inside_fn(o + t d) holds."""
    t = np.linspace(0.0, t_max, num)
    pts = origins[:, None, :] + t[None, :, None] * directions[:, None, :]
    inside = inside_fn(pts)
    hit = inside.any(-1)
    first = np.where(hit, t[np.argmax(inside, -1)], 0.0)
    last = np.where(hit, t[num - 1 - np.argmax(inside[:, ::-1], -1)], 0.0)
    return first, last, hit, t[1] - t[0]


def _random_rays(key, n):
    """Rays from random origins; half aim at points near the origin."""
    k_o, k_d, k_a = jax.random.split(key, 3)
    origins = np.array(jax.random.uniform(k_o, (n, 3), minval=-2.5, maxval=2.5))
    directions = np.array(jax.random.normal(k_d, (n, 3)))
    aims = np.asarray(jax.random.uniform(k_a, (n // 2, 3), minval=-0.5, maxval=0.5))
    directions[: n // 2] = aims - origins[: n // 2]
    directions[:3] = [[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 2.0]]
    origins[:3] = [[-3.0, 0.2, -0.1], [0.3, 3.0, 0.0], [0.0, 0.0, 0.0]]
    return origins, directions


def test_intersect_aabb_against_brute_force():
    lo, hi = np.array([-1.0, -0.5, -0.8]), np.array([1.0, 0.7, 0.6])
    origins, directions = _random_rays(jax.random.key(4), 64)
    near, far, hit = jax.jit(rendering.intersect_aabb)(origins, directions, lo, hi)

    def inside(p):
        return np.all((p >= lo) & (p <= hi), axis=-1)

    first, last, ref_hit, dt = _brute_force_interval(origins, directions, inside)
    np.testing.assert_array_equal(hit, ref_hit)
    assert ref_hit.sum() > 10 and (~ref_hit).sum() > 10
    tol = 2 * dt + 1e-5
    np.testing.assert_allclose(np.asarray(near)[hit], first[hit], atol=tol)
    np.testing.assert_allclose(np.asarray(far)[hit], last[hit], atol=tol)
    # The axis-aligned ray from (-3, .2, -.1) along +x enters at x = -1.
    np.testing.assert_allclose([near[0], far[0]], [2.0, 4.0], atol=1e-6)
    np.testing.assert_allclose(near[2], 0.0)  # starts inside
    np.testing.assert_allclose(far[2], 0.6 / 2.0, atol=1e-6)


def test_intersect_sphere_against_brute_force():
    center, radius = np.array([0.2, -0.1, 0.3]), 1.2
    origins, directions = _random_rays(jax.random.key(5), 64)
    near, far, hit = jax.jit(rendering.intersect_sphere)(
        origins, directions, center, radius
    )

    def inside(p):
        return np.linalg.norm(p - center, axis=-1) <= radius

    first, last, ref_hit, dt = _brute_force_interval(origins, directions, inside)
    np.testing.assert_array_equal(hit, ref_hit)
    assert ref_hit.sum() > 10 and (~ref_hit).sum() > 10
    np.testing.assert_allclose(np.asarray(near)[hit], first[hit], atol=2 * dt + 1e-5)
    np.testing.assert_allclose(np.asarray(far)[hit], last[hit], atol=2 * dt + 1e-5)
    # Exit points lie on the sphere.
    exit_pts = origins + np.asarray(far)[:, None] * directions
    np.testing.assert_allclose(
        np.linalg.norm(exit_pts - center, axis=-1)[hit], radius, rtol=1e-5
    )


def test_render_poses_reassembles_chunks_in_pixel_order():
    from jaxsuite.core import cameras

    poses = cameras.orbit_poses(3, 4.0, 20.0)
    K = cameras.intrinsics(7, 5, focal=6.0)
    calls = []

    def fn(o, d):
        calls.append(o.shape[0])
        return jnp.concatenate([o, d], axis=-1)

    out = rendering.render_poses(fn, poses, K, 7, 5, chunk=16)
    o, d = cameras.generate_rays(poses, K, 7, 5)
    assert out.shape == (3, 5, 7, 6)
    np.testing.assert_array_equal(out, jnp.concatenate([o, d], axis=-1))
    assert set(calls) == {16}  # equal chunks, the last one padded
