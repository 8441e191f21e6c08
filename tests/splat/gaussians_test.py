"""Gaussian parameters, covariances, SH colour and EWA projection."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxsuite.core import cameras
from jaxsuite.splat import gaussians as gl
from jaxsuite.splat import projection, render


def test_covariance_eigenvalues_are_squared_scales():
    key = jax.random.PRNGKey(0)
    q = gl.normalize_quats(jax.random.normal(key, (5, 4)))
    s = jnp.array([[0.1, 0.5, 2.0]] * 5)
    cov = gl.covariance_3d(s, q)
    eig = np.linalg.eigvalsh(np.asarray(cov))
    np.testing.assert_allclose(eig, np.sort(np.asarray(s) ** 2, -1), rtol=1e-4)
    r = gl.quat_to_matrix(q)
    np.testing.assert_allclose(
        r @ jnp.swapaxes(r, -1, -2), jnp.broadcast_to(jnp.eye(3), (5, 3, 3)), atol=1e-5
    )


def test_unnormalised_quaternion_scales_covariance_like_the_rasteriser():
    # Doubling an axis-aligned quaternion (w only) gives R = diag(1, 1, 1) since
    # the off-diagonal terms vanish and 1 - 2(y^2 + z^2) = 1: only w scaled does
    # nothing, while x scaled shears. Compare with the explicit formula.
    q = jnp.array([[0.9, 0.3, 0.0, 0.0]])
    r = np.asarray(gl.quat_to_matrix(q))[0]
    w, x = 0.9, 0.3
    expected = np.array(
        [[1, 0, 0], [0, 1 - 2 * x * x, -2 * w * x], [0, 2 * w * x, 1 - 2 * x * x]]
    )
    np.testing.assert_allclose(r, expected, atol=1e-6)


def test_sh_degree_zero_colour():
    dc = jnp.array([[[0.4, -0.2, 1.0]]])
    rgb = gl.sh_to_color(dc, jnp.zeros((1, 3)), jnp.array([0.0, 0.0, 5.0]), 0)
    np.testing.assert_allclose(rgb[0], gl.SH_C0 * dc[0, 0] + 0.5, rtol=1e-6)
    np.testing.assert_allclose(gl.sh_to_rgb(gl.rgb_to_sh(rgb)), rgb, rtol=1e-6)


def test_sh_basis_is_orthonormal_on_the_sphere():
    n = 40000
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    theta = np.pi * (1 + 5**0.5) * i
    dirs = np.stack(
        [np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], -1
    )
    basis = np.asarray(gl.sh_basis(jnp.asarray(dirs, jnp.float32), 3))
    gram = 4 * np.pi * basis.T @ basis / n
    np.testing.assert_allclose(gram, np.eye(16), atol=2e-3)


def test_sh_degree_mask():
    key = jax.random.PRNGKey(1)
    sh = jax.random.normal(key, (4, 16, 3))
    means = jax.random.normal(jax.random.PRNGKey(2), (4, 3))
    cam = jnp.array([0.0, 0.0, 6.0])
    c1 = gl.sh_to_color(sh, means, cam, 1)
    c1_direct = gl.sh_to_color(sh[:, :4], means, cam, 1)
    np.testing.assert_allclose(c1, c1_direct, rtol=1e-5, atol=1e-6)


def _camera(width=32, height=32, focal=40.0):
    c2w = cameras.look_at(jnp.array([0.0, 0.0, 0.0]), jnp.array([0.0, 1.0, 0.0]))
    return c2w, cameras.intrinsics(width, height, focal)


def test_isotropic_gaussian_closed_form_footprint():
    c2w, K = _camera()
    d, sigma, f = 4.0, 0.15, 40.0
    means = jnp.array([[0.0, d, 0.0]])
    g = gl.Gaussians(
        means=means,
        log_scales=jnp.full((1, 3), np.log(sigma)),
        quats=jnp.array([[1.0, 0.0, 0.0, 0.0]]),
        opacity_logits=jnp.array([10.0]),
        sh=jnp.zeros((1, 1, 3)).at[0, 0].set(gl.rgb_to_sh(jnp.ones(3))),
    )
    cov = gl.covariance_3d(g.scales, g.rotations)
    proj = projection.project(g.means, cov, c2w, K, 32, 32)
    var = (f * sigma / d) ** 2 + 0.3
    np.testing.assert_allclose(proj.means2d[0], [16.0, 16.0], atol=1e-4)
    np.testing.assert_allclose(proj.conics[0], [1 / var, 0.0, 1 / var], rtol=1e-4)
    lam = var + np.sqrt(0.1)
    assert int(proj.radii[0]) == int(np.ceil(3 * np.sqrt(lam)))
    np.testing.assert_allclose(proj.depths[0], d, rtol=1e-6)
    out = render.render_gaussians(
        g, c2w, K, width=32, height=32, sh_degree=0, implementation="reference"
    )
    ys, xs = np.mgrid[0:32, 0:32] + 0.5
    alpha = float(g.opacities[0]) * np.exp(
        -((xs - 16) ** 2 + (ys - 16) ** 2) / (2 * var)
    )
    alpha = np.where(alpha >= 1 / 255, np.minimum(alpha, 0.99), 0.0)
    np.testing.assert_allclose(out.alpha, alpha, atol=1e-5)


def test_projection_matches_autodiff_jacobian():
    c2w = cameras.look_at(jnp.array([0.3, -2.0, 0.5]), jnp.array([0.0, 1.0, 0.2]))
    K = cameras.intrinsics(48, 40, (50.0, 45.0), principal_point=(23.0, 21.0))
    key = jax.random.PRNGKey(3)
    means = jax.random.uniform(key, (6, 3), minval=-0.5, maxval=0.5)
    means = means + jnp.array([[0.0, 1.5, 0.0]])
    q = gl.normalize_quats(jax.random.normal(jax.random.PRNGKey(4), (6, 4)))
    s = jax.random.uniform(jax.random.PRNGKey(5), (6, 3), minval=0.02, maxval=0.1)
    cov3 = gl.covariance_3d(s, q)
    proj = projection.project(means, cov3, c2w, K, 48, 40)

    def pix(p):
        return cameras.project_points(p, c2w, K)[0]

    jacobians = jax.jit(jax.vmap(jax.jacfwd(pix)))(means)
    for i in range(6):
        jac = jacobians[i]
        cov2 = jac @ cov3[i] @ jac.T + 0.3 * jnp.eye(2)
        np.testing.assert_allclose(proj.means2d[i], pix(means[i]), atol=1e-3)
        expected = jnp.linalg.inv(cov2)
        np.testing.assert_allclose(
            proj.conics[i],
            [expected[0, 0], expected[0, 1], expected[1, 1]],
            rtol=1e-3,
            atol=1e-6,
        )


def test_near_plane_culling():
    c2w, K = _camera()
    means = jnp.array([[0.0, 0.1, 0.0], [0.0, 0.3, 0.0], [0.0, -1.0, 0.0]])
    cov = jnp.broadcast_to(0.01 * jnp.eye(3), (3, 3, 3))
    proj = projection.project(means, cov, c2w, K, 32, 32)
    assert list(np.asarray(proj.radii > 0)) == [False, True, False]


def test_init_from_points_scales_from_neighbours():
    pts = jnp.array([[0.0, 0, 0], [1.0, 0, 0], [0, 2.0, 0], [0, 0, 3.0]])
    g = gl.init_from_points(jax.random.PRNGKey(0), pts, jnp.full((4, 3), 0.5))
    # Point 0's three nearest squared distances are 1, 4, 9.
    np.testing.assert_allclose(g.scales[0], np.sqrt(14 / 3), rtol=1e-5)
    np.testing.assert_allclose(g.opacities, 0.1, rtol=1e-5)
    np.testing.assert_allclose(gl.sh_to_rgb(g.sh[:, 0]), 0.5, atol=1e-6)
