"""Procedural scenes and synthetic blur: geometry of the sub-cameras."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxsuite.core import cameras
from jaxsuite.splat import scenes


def test_defocus_keeps_focal_plane_and_spreads_by_the_circle_of_confusion():
    views = scenes.make_views(4, 64)
    c2w, K = views.c2w[1], views.K
    aperture, focus = 0.2, 2.5
    poses, ks = scenes.defocus_cameras(c2w, K, aperture, focus, 32)
    forward = -c2w[:3, 2]
    on_plane = c2w[:3, 3] + focus * forward + 0.1 * c2w[:3, 0]
    far = c2w[:3, 3] + 5.0 * forward
    uv0 = cameras.project_points(on_plane, c2w, K)[0]
    spread_far = []
    for p, k in zip(poses, ks):
        np.testing.assert_allclose(
            cameras.project_points(on_plane, p, k)[0], uv0, atol=1e-3
        )
        spread_far.append(
            cameras.project_points(far, p, k)[0]
            - cameras.project_points(far, c2w, K)[0]
        )
    radius = np.max(np.linalg.norm(np.asarray(spread_far), axis=-1))
    coc = aperture * float(K[0, 0]) * abs(5.0 - focus) / (5.0 * focus)
    np.testing.assert_allclose(radius, coc, rtol=0.05)


def test_defocus_enlargement_matches_the_spread_of_the_sub_cameras():
    # The per-axis spread of a point's projections over the aperture, taken
    # back to world units at its depth, is the scale the control adds.
    views = scenes.make_views(4, 64)
    c2w, K = views.c2w[2], views.K
    rng = np.random.default_rng(0)
    aperture, focus = float(rng.uniform(0.05, 0.3)), float(rng.uniform(1.5, 4.0))
    poses, ks = scenes.defocus_cameras(c2w, K, aperture, focus, 4096)
    c2w_np = np.asarray(c2w)
    forward = -c2w_np[:3, 2]
    depths = rng.uniform(1.0, 6.0, 5)
    offsets = rng.normal(size=(5, 2)) * 0.1
    points = (
        c2w_np[:3, 3]
        + depths[:, None] * forward
        + offsets[:, :1] * c2w_np[:3, 0]
        + offsets[:, 1:] * c2w_np[:3, 1]
    )
    uv = np.stack(
        [np.asarray(cameras.project_points(points, p, k)[0]) for p, k in zip(poses, ks)]
    )
    spread = np.std(uv, axis=0).mean(-1) * depths / float(K[0, 0])
    scales = jnp.asarray(rng.uniform(0.0, 0.05, (5, 3)), jnp.float32)
    grown = scenes.defocus_enlarged_scales(
        jnp.asarray(points, jnp.float32), scales, c2w, aperture, focus
    )
    expected = np.sqrt(np.asarray(scales) ** 2 + spread[:, None] ** 2)
    np.testing.assert_allclose(grown, expected, rtol=0.02, atol=1e-5)


def test_motion_path_is_centred_and_rigid():
    views = scenes.make_views(4, 64)
    poses = scenes.motion_cameras(jax.random.PRNGKey(0), views.c2w[2], 3.0, 0.1, 9)
    np.testing.assert_allclose(poses[4], views.c2w[2], atol=1e-6)
    rot = poses[:, :3, :3]
    eye = jnp.broadcast_to(jnp.eye(3), rot.shape)
    np.testing.assert_allclose(rot @ jnp.swapaxes(rot, -1, -2), eye, atol=1e-5)
    length = float(jnp.linalg.norm(poses[-1, :3, 3] - poses[0, :3, 3]))
    assert 0.05 - 1e-6 <= length <= 0.1 + 1e-6
    cos = (jnp.trace(poses[-1, :3, :3].T @ poses[0, :3, :3]) - 1) / 2
    angle = float(jnp.degrees(jnp.arccos(jnp.clip(cos, -1, 1))))
    assert 1.5 - 1e-3 <= angle <= 3.0 + 1e-3


def test_srgb_round_trip_and_linear_averaging():
    x = jnp.linspace(0.0, 1.0, 11)
    np.testing.assert_allclose(
        scenes.linear_to_srgb(scenes.srgb_to_linear(x)), x, atol=1e-5
    )
    img = jnp.full((2, 4, 4, 3), 0.0).at[1].set(1.0)
    # Mean of black and white in linear light is 0.5, i.e. sRGB ~0.735.
    np.testing.assert_allclose(scenes.blur_average(img), 0.7354, atol=1e-3)


def test_split_every_eighth_view_is_test():
    train, test = scenes.split(17, 8)
    assert list(test) == [0, 8, 16]
    assert len(train) == 14 and not set(train) & set(test)


def test_scene_renders_its_textures_in_front_of_a_white_background():
    g = scenes.make_scene(0.5)
    views = scenes.make_views(4, 32)
    img = jax.jit(lambda c2w: scenes.render_sharp(g, c2w, views.K, 32, 32))(
        views.c2w[0]
    )
    assert img.shape == (32, 32, 3)
    assert float(jnp.std(img)) > 0.1  # textured
    assert float(jnp.min(img)) >= 0.0 and float(jnp.max(img)) <= 1.0


def test_detailed_scene_spans_depth_and_holds_fine_detail():
    g = scenes.make_detailed_scene(0.5)
    views = scenes.make_views(4, 48)
    c2w = views.c2w[0]
    depth = np.asarray((g.means - c2w[None, :3, 3]) @ (-c2w[:3, 2]))
    assert depth.min() < 1.3 and depth.max() > 5.5  # defocus varies in a frame
    # Thin rods: Gaussians whose smallest cross-section is well below a pixel
    # at their depth (a pixel is 2 tan(25 deg) z / 48 wide).
    widths = np.sort(np.asarray(g.scales), axis=1)[:, 1]
    assert np.any(widths < 0.5 * 2 * np.tan(np.radians(25)) * depth / 48)
    img = np.asarray(jax.jit(lambda c: scenes.render_sharp(g, c, views.K, 48, 48))(c2w))
    # High frequencies: neighbouring pixels differ a lot somewhere, and a 3x3
    # box blur (what a mild defocus does) changes the image clearly.
    assert np.abs(np.diff(img, axis=1)).max() > 0.5
    pad = np.pad(img, ((1, 1), (1, 1), (0, 0)), mode="edge")
    box = sum(pad[i : i + 48, j : j + 48] for i in range(3) for j in range(3)) / 9
    assert np.mean(np.abs(box - img)) > 0.03
