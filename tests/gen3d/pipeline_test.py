"""3-D pieces against closed forms and invariants: renders of a known SDF,
SDF from occupancy, reference checks, losses, the BSD cycle and cache,
marching cubes and mesh files, and the evaluation metrics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsuite.gen3d import (
    bsd,
    evaluation,
    geometry,
    losses,
    mesh,
    objects,
    stages,
    texture,
)

SPEC = objects.sample_spec(100_003, class_id=3)


def _grid(spec, g=40):
    pts = geometry.grid_points(g, 1.0).reshape(-1, 3)
    return objects.sdf(spec, pts).reshape(g, g, g)


def test_surface_render_of_the_true_sdf_matches_ground_truth():
    grid = _grid(SPEC)
    c2w = objects.camera(jnp.array([0.0, 25.0]), jnp.array([0.0, 140.0]))
    gt = objects.render(SPEC, c2w, 24)

    def shade(p):
        n = objects.sdf_normal(SPEC, p)
        return objects.shade(objects.albedo(SPEC, p, n), n)

    @jax.jit
    def both(c):
        a = geometry.render_surface(grid, shade, c, 24, objects.REF_FOV_DEG, 1.0)
        b = geometry.render_sdf(grid, shade, c, 24, objects.REF_FOV_DEG, 1.0, 0.01)
        return a, b

    for i in range(2):
        a, b = both(c2w[i])
        assert np.mean(np.asarray(a.opacity) == np.asarray(gt.mask[i])) > 0.98
        m = np.asarray(gt.mask[i]) > 0
        np.testing.assert_allclose(
            np.asarray(a.depth)[m], np.asarray(gt.depth[i])[m], atol=0.03
        )
        # The volume-rendered SDF agrees with the hard surface.
        assert np.mean(np.abs(np.asarray(b.opacity) - np.asarray(gt.mask[i]))) < 0.05
        cos = np.sum(np.asarray(b.normal)[m] * np.asarray(gt.normal[i])[m], -1)
        assert np.median(cos) > 0.95


def test_sdf_from_density_of_a_ball():
    g = 33
    pts = np.asarray(geometry.grid_points(g, 1.0))
    r = np.linalg.norm(pts, axis=-1)
    dens = np.where(r < 0.5, 100.0, 0.0)
    sdf = geometry.sdf_from_density(dens, 10.0, 1.0)
    near = np.abs(r - 0.5) < 0.3
    np.testing.assert_allclose(sdf[near], (r - 0.5)[near], atol=2.0 / (g - 1))
    assert geometry.eikonal_loss(jnp.asarray(r - 0.5), 1.0) < 1e-3


def test_reference_validation():
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[4:12, 4:12] = [255, 0, 0, 255]
    ref = losses.reference_from_rgba(rgba, 16)
    np.testing.assert_allclose(ref.rgb[0, 0], [1, 1, 1])  # composited on white
    np.testing.assert_allclose(ref.rgb[8, 8], [1, 0, 0])
    assert float(ref.mask.sum()) == 64
    with pytest.raises(ValueError, match="RGBA"):
        losses.reference_from_rgba(rgba[..., :3], 16)
    with pytest.raises(ValueError, match="resize"):
        losses.reference_from_rgba(rgba, 32)


def test_pearson_depth_loss_is_scale_and_shift_invariant():
    key = jax.random.PRNGKey(0)
    d = jax.random.uniform(key, (8, 8)) + 3.0
    mask = (jax.random.uniform(jax.random.PRNGKey(1), (8, 8)) > 0.3).astype(jnp.float32)
    ref = losses.Reference(jnp.zeros((8, 8, 3)), mask, d * mask)
    assert float(losses.pearson_depth_loss(2.5 * d - 1.0, ref)) < 1e-5
    assert float(losses.pearson_depth_loss(-d, ref)) == pytest.approx(2.0, abs=1e-5)


def test_erode_and_regularisers():
    m = jnp.zeros((9, 9)).at[2:7, 2:7].set(1.0)
    e = losses.erode(m, 3)
    assert float(e.sum()) == 9 and float(e[4, 4]) == 1
    assert losses.erode(m, 1) is m
    assert float(losses.opaque_loss(jnp.array([0.0, 1.0]))) < 0.01
    assert float(losses.opaque_loss(jnp.array([0.5]))) == pytest.approx(np.log(2), 1e-5)


def test_bsd_cycle_and_cache():
    cycle = 1000
    phases = [bsd.phase(s, cycle) for s in range(5000)]
    assert phases.count("prior") == 1000  # 200 per cycle, 5 cycles
    assert phases[199] == "prior" and phases[200] == "ref" and phases[201] == "guide"
    assert bsd.augment_every(1000) == 25  # the released schedule
    cache = bsd.empty_cache(2, capacity=3)
    for i in range(5):
        cache = bsd.push(cache, jnp.full((2, 2, 3), float(i)), jnp.float32(i))
    assert int(cache.count) == 5
    np.testing.assert_array_equal(np.sort(np.asarray(cache.azimuth)), [2, 3, 4])
    imgs, az = bsd.draw(cache, jax.random.PRNGKey(0), 50)
    assert set(np.asarray(az).tolist()) <= {2.0, 3.0, 4.0}
    np.testing.assert_array_equal(np.asarray(imgs)[:, 0, 0, 0], np.asarray(az))


def test_variants_schedules_and_kernels():
    assert texture.parse_variant("bsd2") == ("bsd", 2)
    assert texture.parse_variant("sds") == ("sds", 0)
    with pytest.raises(ValueError):
        texture.parse_variant("bsd0")
    assert stages.band_levels(0.1, 4, 8, 0.4, 0.1) == 4
    assert stages.band_levels(0.4, 4, 8, 0.4, 0.1) == 5
    assert stages.band_levels(0.95, 4, 8, 0.4, 0.1) == 8
    el, az = losses.progressive_ranges(50, 200, (-10, 45), (-180, 180))
    assert el == (-2.5, 11.25) and az == (-45.0, 45.0)


def test_marching_cubes_and_mesh_files(tmp_path):
    g = 32
    pts = np.asarray(geometry.grid_points(g, 1.0))
    sdf = np.linalg.norm(pts, axis=-1) - 0.6
    v, f = mesh.marching_cubes(sdf, 1.0)
    np.testing.assert_allclose(np.linalg.norm(v, axis=-1), 0.6, atol=0.01)
    tri = v[f]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    assert np.mean(np.sum(normal * tri.mean(1), -1) > 0) > 0.99  # outward
    cols = np.clip(v * 0.5 + 0.5, 0, 1)
    path = mesh.write_ply(str(tmp_path / "m.ply"), v, f, cols)
    v2, f2, c2 = mesh.read_ply(path)
    np.testing.assert_allclose(v2, v, atol=1e-5)
    np.testing.assert_array_equal(f2, f)
    np.testing.assert_array_equal(c2, np.round(cols * 255).astype(np.uint8))
    obj = mesh.write_obj(str(tmp_path / "m.obj"), v, f, cols)
    with open(obj) as fh:
        lines = fh.read().splitlines()
    assert sum(ln.startswith("v ") for ln in lines) == len(v)
    faces = [ln for ln in lines if ln.startswith("f ")]
    assert len(faces) == len(f) and faces[0] == "f {} {} {}".format(*(f[0] + 1))
    assert mesh.marching_cubes(np.ones((4, 4, 4)), 1.0)[0].shape == (0, 3)


def test_evaluation_metrics():
    el, az = evaluation.turntable(12, (0.0, 20.0))
    front, back = evaluation.split(az)
    assert front.sum() == 10 and back.sum() == 10  # 5 of 12 azimuths per ring each
    gt = objects.render(SPEC, objects.camera(jnp.asarray(el), jnp.asarray(az)), 32)
    rgb = np.asarray(gt.rgb)
    np.testing.assert_array_equal(
        evaluation.marker_pixels(rgb), np.asarray(gt.marker).sum(axis=(1, 2))
    )
    m = evaluation.view_metrics(rgb * 0.98, rgb, az)
    assert not m["janus"] and m["front_marker_pixels"] > 0
    flipped = rgb.copy()
    flipped[back] = rgb[np.argmax(front)]  # paste a front view over the back
    assert evaluation.view_metrics(flipped, rgb, az)["janus"]
    grid = np.asarray(_grid(SPEC, 32))
    assert evaluation.chamfer(grid, grid, 1.0) < 1e-6
    assert evaluation.iou(grid, grid) == 1.0
    assert evaluation.iou(grid, grid + 0.05) < 1.0
    geo = evaluation.geometry_metrics(jnp.asarray(grid), SPEC, 32, 1.0)
    assert geo["iou"] > 0.97 and geo["chamfer"] < 0.01
    mean, lo, hi = evaluation.paired_bootstrap(np.array([1.0, 2.0, 3.0, 2.5]), 500)
    assert lo <= mean <= hi and mean == pytest.approx(2.125)


def test_sdf_render_gradients_are_finite_at_flat_points():
    # A ball's distance transform has a zero finite-difference gradient at
    # its centre; normals and the eikonal term must still give finite grads.
    g = 24
    pts = np.asarray(geometry.grid_points(g, 1.0))
    r = np.linalg.norm(pts, axis=-1)
    sdf = jnp.asarray(
        geometry.sdf_from_density(np.where(r < 0.5, 100.0, 0.0), 10.0, 1.0)
    )
    c2w = objects.camera(0.0, 0.0)

    def loss(grid):
        v = geometry.render_sdf(
            grid, lambda x: 0.5 * jnp.ones_like(x), c2w, 16, 20.0, 1.0, 0.02
        )
        return jnp.sum(v.rgb) + jnp.sum(v.normal) + geometry.eikonal_loss(grid, 1.0)

    assert bool(jnp.all(jnp.isfinite(jax.jit(jax.grad(loss))(sdf))))
