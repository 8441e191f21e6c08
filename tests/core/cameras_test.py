"""Tests for jaxsuite.core.cameras: intrinsics, poses, rays and projection."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsuite.core import cameras


def _check_rotation(c2w, atol=1e-5):
    rot = np.asarray(c2w)[..., :3, :3]
    eye = np.broadcast_to(np.eye(3), rot.shape)
    np.testing.assert_allclose(np.swapaxes(rot, -1, -2) @ rot, eye, atol=atol)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=atol)
    np.testing.assert_allclose(
        np.asarray(c2w)[..., 3, :],
        np.broadcast_to([0.0, 0.0, 0.0, 1.0], rot.shape[:-2] + (4,)),
    )


def test_intrinsics_focal_and_fov():
    K = np.asarray(cameras.intrinsics(64, 48, 50.0))
    np.testing.assert_allclose(K, [[50, 0, 32], [0, 50, 24], [0, 0, 1]])
    K2 = np.asarray(cameras.intrinsics(64, 48, (50.0, 40.0), principal_point=(30, 20)))
    np.testing.assert_allclose(K2, [[50, 0, 30], [0, 40, 20], [0, 0, 1]])
    # A 90 degree horizontal field of view puts the image edge at x/z = 1.
    K3 = np.asarray(cameras.intrinsics(64, 48, fov_x_deg=90.0))
    np.testing.assert_allclose(K3[0, 0], 32.0, rtol=1e-6)
    np.testing.assert_allclose(
        cameras.focal_from_fov(100, 60.0), 50 / math.tan(math.pi / 6)
    )
    with pytest.raises(ValueError):
        cameras.intrinsics(64, 48)


def test_look_at_axes():
    eye = np.array([2.0, -3.0, 1.5])
    target = np.array([0.1, 0.2, -0.3])
    c2w = np.asarray(jax.jit(cameras.look_at)(eye, target))
    _check_rotation(c2w)
    np.testing.assert_allclose(c2w[:3, 3], eye)
    forward = (target - eye) / np.linalg.norm(target - eye)
    np.testing.assert_allclose(-c2w[:3, 2], forward, atol=1e-6)
    assert abs(c2w[2, 0]) < 1e-6  # camera x axis is horizontal
    assert c2w[2, 1] > 0  # camera y axis points up-ish
    # Camera at -y looking at the origin: x right = +x world, y = +z world.
    c2w = np.asarray(cameras.look_at([0.0, -4.0, 0.0], [0.0, 0.0, 0.0]))
    np.testing.assert_allclose(
        c2w[:3, :3], [[1, 0, 0], [0, 0, -1], [0, 1, 0]], atol=1e-6
    )


def test_look_at_straight_down_is_finite():
    c2w = np.asarray(cameras.look_at([0.0, 0.0, 3.0], [0.0, 0.0, 0.0]))
    assert np.all(np.isfinite(c2w))
    _check_rotation(c2w)
    np.testing.assert_allclose(c2w[:3, 2], [0.0, 0.0, 1.0], atol=1e-6)


def test_orbit_poses():
    n, radius, elev = 8, 3.0, 30.0
    target = np.array([0.5, -0.2, 0.1])
    c2w = np.asarray(cameras.orbit_poses(n, radius, elev, target))
    assert c2w.shape == (n, 4, 4)
    _check_rotation(c2w)
    offsets = c2w[:, :3, 3] - target
    np.testing.assert_allclose(np.linalg.norm(offsets, axis=-1), radius, rtol=1e-5)
    np.testing.assert_allclose(
        offsets[:, 2], radius * math.sin(math.radians(elev)), rtol=1e-5
    )
    az = np.unwrap(np.arctan2(offsets[:, 1], offsets[:, 0]))
    np.testing.assert_allclose(np.diff(az), 2 * np.pi / n, atol=1e-5)
    # Every camera sees the target at the principal point.
    K = cameras.intrinsics(33, 25, 30.0)
    for k in range(n):
        uv, depth = cameras.project_points(target, c2w[k], K)
        np.testing.assert_allclose(uv, [16.5, 12.5], atol=1e-4)
        np.testing.assert_allclose(depth, radius, rtol=1e-5)


def test_random_poses_sphere_and_hemisphere():
    key = jax.random.key(0)
    n = 4000
    c2w = np.asarray(cameras.random_poses(key, n, 2.0))
    _check_rotation(c2w)
    pos = c2w[:, :3, 3] / 2.0
    np.testing.assert_allclose(np.linalg.norm(pos, axis=-1), 1.0, rtol=1e-5)
    # Uniform on the sphere: each coordinate has mean 0 and variance 1/3.
    tol = 4.0 / math.sqrt(n)
    np.testing.assert_allclose(pos.mean(0), 0.0, atol=tol)
    np.testing.assert_allclose((pos**2).mean(0), 1.0 / 3.0, atol=tol)
    # Looking at the target: the camera -z axis is -position.
    np.testing.assert_allclose(-c2w[:, :3, 2], -pos, atol=1e-5)

    hemi = np.asarray(
        cameras.random_poses(key, n, (1.0, 2.0), elevation_range_deg=(0.0, 90.0))
    )
    r = np.linalg.norm(hemi[:, :3, 3], axis=-1)
    assert r.min() >= 1.0 - 1e-5 and r.max() <= 2.0 + 1e-5
    z = hemi[:, 2, 3] / r
    assert z.min() >= -1e-6
    # Area-uniform on the hemisphere means z ~ U(0, 1).
    np.testing.assert_allclose(z.mean(), 0.5, atol=tol)
    assert not np.allclose(
        hemi, np.asarray(cameras.random_poses(jax.random.key(1), n, 2.0))
    )


def _reference_rays(c2w, f, cx, cy, width, height):
    """NeRF-style ray generation written out with numpy."""
    i, j = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5, indexing="xy")
    dirs = np.stack([(i - cx) / f, -(j - cy) / f, -np.ones_like(i)], -1)
    rays_d = np.sum(dirs[..., None, :] * c2w[:3, :3], -1)
    rays_o = np.broadcast_to(c2w[:3, -1], rays_d.shape)
    return rays_o, rays_d


def test_generate_rays_matches_reference():
    width, height, f = 7, 5, 6.0
    c2w = np.asarray(cameras.look_at([1.0, -2.0, 0.7], [0.0, 0.1, 0.0]))
    K = cameras.intrinsics(width, height, f)
    gen = jax.jit(
        cameras.generate_rays, static_argnums=(2, 3), static_argnames="normalize"
    )
    o, d = gen(c2w, K, width, height, normalize=False)
    ro, rd = _reference_rays(c2w, f, width / 2, height / 2, width, height)
    assert o.shape == d.shape == (height, width, 3)
    np.testing.assert_allclose(o, ro, atol=1e-6)
    np.testing.assert_allclose(d, rd, atol=1e-5)
    _, dn = gen(c2w, K, width, height)
    np.testing.assert_allclose(np.linalg.norm(dn, axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(
        dn, rd / np.linalg.norm(rd, axis=-1, keepdims=True), atol=1e-5
    )
    # The centre pixel of an odd-sized image looks straight ahead (-z).
    np.testing.assert_allclose(dn[2, 3], -c2w[:3, 2], atol=1e-6)
    # The top-left pixel looks left (camera -x) and up (camera +y).
    d_cam = c2w[:3, :3].T @ np.asarray(dn[0, 0])
    assert d_cam[0] < 0 and d_cam[1] > 0 and d_cam[2] < 0


def test_generate_rays_batched_poses():
    c2w = cameras.orbit_poses(3, 2.0, 20.0)
    K = cameras.intrinsics(4, 3, 5.0)
    o, d = cameras.generate_rays(c2w, K, 4, 3)
    assert o.shape == d.shape == (3, 3, 4, 3)
    for k in range(3):
        ok, dk = cameras.generate_rays(c2w[k], K, 4, 3)
        np.testing.assert_allclose(o[k], ok, atol=1e-6)
        np.testing.assert_allclose(d[k], dk, atol=1e-6)
    # A (3, 4) pose gives the same rays as its (4, 4) form.
    o34, d34 = cameras.generate_rays(c2w[0, :3], K, 4, 3)
    np.testing.assert_allclose(d34, d[0], atol=1e-6)


def test_project_points_inverts_generate_rays():
    width, height = 9, 6
    K = cameras.intrinsics(width, height, (8.0, 7.0), principal_point=(4.2, 3.1))
    c2w = cameras.look_at([0.3, -2.5, 1.2], [0.0, 0.0, 0.2])
    o, d = cameras.generate_rays(c2w, K, width, height)
    t = jax.random.uniform(jax.random.key(3), (height, width), minval=0.5, maxval=5.0)
    points = o + t[..., None] * d
    uv, depth = jax.jit(cameras.project_points)(points, c2w, K)
    np.testing.assert_allclose(uv, cameras.pixel_centers(width, height), atol=1e-4)
    # Depth is the distance along the optical axis.
    expected = t * jnp.einsum("hwi,i->hw", d, -c2w[:3, 2])
    np.testing.assert_allclose(depth, expected, rtol=1e-5)
    assert np.all(np.asarray(depth) > 0)


def test_invert_pose():
    c2w = cameras.random_poses(jax.random.key(5), 4, (1.0, 3.0))
    w2c = cameras.invert_pose(c2w)
    np.testing.assert_allclose(
        w2c @ c2w, np.broadcast_to(np.eye(4), (4, 4, 4)), atol=1e-5
    )
    np.testing.assert_allclose(w2c, np.linalg.inv(np.asarray(c2w)), atol=1e-5)


def test_opencv_opengl_conversion():
    c2w_gl = np.asarray(cameras.look_at([1.5, -2.0, 1.0], [0.0, 0.0, 0.0]))
    c2w_cv = np.asarray(cameras.opengl_to_opencv(c2w_gl))
    _check_rotation(c2w_cv)
    np.testing.assert_allclose(cameras.opencv_to_opengl(c2w_cv), c2w_gl)
    np.testing.assert_allclose(cameras.opencv_to_opengl(c2w_cv[:3]), c2w_gl[:3])
    # OpenCV cameras look along +z.
    np.testing.assert_allclose(c2w_cv[:3, 2], -c2w_gl[:3, 2])
    # The OpenCV pinhole model (u = fx x / z + cx, v = fy y / z + cy) agrees
    # with project_points on the converted pose.
    K = cameras.intrinsics(20, 16, (18.0, 17.0))
    pts = np.asarray(
        jax.random.uniform(jax.random.key(2), (10, 3), minval=-0.5, maxval=0.5)
    )
    w2c_cv = np.linalg.inv(c2w_cv)
    p_cam = pts @ w2c_cv[:3, :3].T + w2c_cv[:3, 3]
    uv_cv = (p_cam[:, :2] / p_cam[:, 2:]) * np.diag(K)[:2] + np.asarray(K)[:2, 2]
    uv, depth = cameras.project_points(pts, c2w_gl, K)
    np.testing.assert_allclose(uv, uv_cv, atol=1e-4)
    np.testing.assert_allclose(depth, p_cam[:, 2], rtol=1e-5)
