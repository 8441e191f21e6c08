"""Procedural objects against closed forms: ray-sphere hits, box and torus
distances, Lambert shading, the one-sided marker and the camera convention."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jaxsuite.core import cameras, rendering
from jaxsuite.gen3d import objects as ob


def _sphere(r=0.5, c=(0.1, -0.05, 0.02), **kw):
    return ob.from_parts([(ob.SPHERE, c, (r, 0, 0))], **kw)


def test_sphere_render_matches_closed_form_intersection():
    c = np.array([0.1, -0.05, 0.02], np.float32)
    spec = _sphere(c=c)
    c2w = ob.camera(jnp.array([10.0, -5.0]), jnp.array([30.0, 200.0]))
    out = ob.render(spec, c2w, 24)
    o, d = cameras.generate_rays(c2w, ob.intrinsics(24), 24, 24)
    t_near, _, hit = rendering.intersect_sphere(o, d, c, 0.5)
    # Pixels whose rays graze the silhouette may go either way.
    _, _, hit_in = rendering.intersect_sphere(o, d, c, 0.49)
    _, _, hit_out = rendering.intersect_sphere(o, d, c, 0.51)
    sure = hit_in | ~hit_out
    np.testing.assert_array_equal(np.asarray(out.mask)[sure], np.asarray(hit)[sure])
    m = np.asarray(hit_in)
    np.testing.assert_allclose(
        np.asarray(out.depth)[m], np.asarray(t_near)[m], atol=2e-3
    )
    p = np.asarray(o + t_near[..., None] * d)[m]
    np.testing.assert_allclose(np.asarray(out.normal)[m], (p - c) / 0.5, atol=5e-3)
    # Background is white and off-object depth/normal are zero.
    off = ~np.asarray(hit_out)
    assert np.all(np.asarray(out.rgb)[off] == 1.0)
    assert np.all(np.asarray(out.depth)[off] == 0.0)


def test_lambert_shading_closed_form():
    col = np.array([0.8, 0.4, 0.2], np.float32)
    spec = _sphere(c=(0, 0, 0), color_a=col)
    out = ob.render(spec, ob.camera(jnp.array([0.0]), jnp.array([0.0])), 16)
    n = np.asarray(out.normal)[0]
    m = np.asarray(out.mask)[0] > 0
    light = np.asarray(ob.LIGHT) / np.linalg.norm(ob.LIGHT)
    lam = np.maximum(n @ light, 0.0)
    want = col[None] * (ob.AMBIENT + (1 - ob.AMBIENT) * lam[m])[:, None]
    np.testing.assert_allclose(np.asarray(out.rgb)[0][m], want, atol=1e-4)


def test_box_and_torus_and_capsule_distances():
    box = ob.from_parts([(ob.BOX, (0, 0, 0), (0.3, 0.2, 0.1))])
    rounding = 0.03
    pts = jnp.array([[1.0, 0, 0], [0, 0.5, 0], [0.5, 0.4, 0.0], [0, 0, 0]])
    d = np.asarray(ob.sdf(box, pts))
    corner = math.hypot(0.5 - 0.27, 0.4 - 0.17) - rounding
    np.testing.assert_allclose(d, [0.7, 0.3, corner, -0.1], atol=1e-5)
    torus = ob.from_parts([(ob.TORUS, (0, 0, 0.1), (0.4, 0.1, 0))])
    pts = jnp.array([[0.4, 0, 0.1], [0, 0.9, 0.1], [0, 0, 0.1], [0.4, 0, 0.5]])
    np.testing.assert_allclose(
        np.asarray(ob.sdf(torus, pts)), [-0.1, 0.4, 0.3, 0.3], atol=1e-5
    )
    cap = ob.from_parts([(ob.CAPSULE, (0, 0, 0), (0.2, 0.1, 0))])
    pts = jnp.array([[0.5, 0, 0.1], [0, 0, 0.6], [0, 0, 0]])
    np.testing.assert_allclose(
        np.asarray(ob.sdf(cap, pts)), [0.4, 0.3, -0.1], atol=1e-5
    )


def test_union_is_min_and_inactive_parts_are_ignored():
    two = ob.from_parts(
        [(ob.SPHERE, (-0.3, 0, 0), (0.2, 0, 0)), (ob.SPHERE, (0.3, 0, 0), (0.1, 0, 0))]
    )
    p = jax.random.uniform(jax.random.PRNGKey(0), (50, 3), minval=-1, maxval=1)
    want = np.minimum(
        np.linalg.norm(p - np.array([[-0.3, 0, 0]]), axis=-1) - 0.2,
        np.linalg.norm(p - np.array([[0.3, 0, 0]]), axis=-1) - 0.1,
    )
    np.testing.assert_allclose(np.asarray(ob.sdf(two, p)), want, atol=1e-5)
    assert int(np.sum(np.asarray(two.active))) == 2


def test_marker_is_one_sided():
    for seed in range(4):
        spec = ob.sample_spec(seed, class_id=seed)
        c2w = ob.camera(jnp.zeros(2), jnp.array([0.0, 180.0]))
        out = ob.render(spec, c2w, 32)
        front, back = np.asarray(out.marker).sum(axis=(1, 2))
        assert front > 2 and back == 0, (seed, front, back)
        # The marker is the only magenta on the object.
        rgb = np.asarray(out.rgb)
        magenta = (rgb[..., 1] < 0.1) & (rgb[..., 0] > 0.3) & (rgb[..., 2] > 0.3)
        np.testing.assert_array_equal(magenta, np.asarray(out.marker) > 0)


def test_camera_convention():
    c2w = np.asarray(ob.camera(0.0, 0.0))
    np.testing.assert_allclose(c2w[:3, 3], [ob.REF_RADIUS, 0, 0], atol=1e-6)
    np.testing.assert_allclose(c2w[:3, 2], [1, 0, 0], atol=1e-6)  # looks along -x
    c2w = np.asarray(ob.camera(90.0 - 1e-3, 0.0, 2.0))
    np.testing.assert_allclose(c2w[:3, 3], [0, 0, 2.0], atol=1e-4)


def test_samples_are_deterministic_and_fit_the_cube():
    chex.assert_trees_all_equal(ob.sample_spec(7), ob.sample_spec(7))
    for seed in range(20):
        spec = ob.sample_spec(seed)
        corners = np.array(np.meshgrid(*[[-1, 1]] * 3)).reshape(3, -1).T * 0.99
        assert np.all(np.asarray(ob.sdf(spec, jnp.asarray(corners, jnp.float32))) > 0)
        assert "/" in ob.describe(spec)
