"""Tile rasteriser: the Pallas and XLA paths against the reference.

``test_rasterize_matches_reference`` runs every implementation x mode of
``tests/kernels/kernel_base.py`` (interpreted on CPU, compiled under the
``gpu`` marker); the other tests check the reference and the binning by
closed forms, brute force and finite differences.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxsuite.kernels.splatting import api, binning, reference
from jaxsuite.kernels.splatting.testing import random_scene

from tests.kernels import kernel_base

W, H = 40, 24
N = 40
CAP = 4096
BG = jnp.array([0.1, 0.2, 0.3])
IMPLEMENTATIONS = ("reference", "xla", "pallas")


@pytest.mark.parametrize("implementation, mode", kernel_base.cases(IMPLEMENTATIONS))
def test_rasterize_matches_reference(implementation, mode):
    """Image, alpha and gradients wrt every float input against the reference."""
    means, conics, colors, opacities, depths, radii = random_scene(
        jax.random.PRNGKey(2), N, W, H
    )

    def fn(
        means, conics, colors, opacities, depths, radii, *, implementation, interpret
    ):
        out = api.rasterize(
            means,
            conics,
            colors,
            opacities,
            depths,
            radii,
            width=W,
            height=H,
            background=BG,
            capacity=CAP,
            max_per_tile=64,
            implementation=implementation,
            interpret=interpret,
        )
        frame = jnp.concatenate([out.image, out.alpha[..., None]], axis=-1)
        return frame, (out.num_intersections, out.overflow)

    # The intersection count and the overflow flag must equal the reference's.
    count, overflow = kernel_base.check_against_reference(
        fn,
        (means, conics, colors, opacities, depths, radii),
        (0, 1, 2, 3),
        implementation,
        mode,
        rtol=(2e-6, 2e-5, 2e-5, 2e-5, 2e-5),
        names=("image and alpha", "d means", "d conics", "d colors", "d opacities"),
        has_aux=True,
        cache_key="splatting",
    )
    assert count > 0 and not overflow


def test_xla_smaller_tiles_match_reference():
    args = random_scene(jax.random.PRNGKey(0), N, W, H)
    kw = dict(width=W, height=H, background=BG, capacity=CAP, tile=8)
    ref8 = api.rasterize(*args, implementation="reference", **kw)
    xla8 = api.rasterize(*args, implementation="xla", max_per_tile=64, **kw)
    np.testing.assert_allclose(xla8.image, ref8.image, atol=2e-6)
    assert int(xla8.num_intersections) == int(ref8.num_intersections)


def test_pallas_gradient_finite_differences():
    """Directional derivatives of the kernel against central differences.

    The Gaussians are wide and semi-transparent, so every pixel stays above
    the 1/255 cut-off, below the 0.99 cap and far from the 1e-4 stop: the image
    is smooth in the parameters there.
    """
    means = jnp.array([[7.0, 8.0], [9.5, 7.0], [8.0, 9.5]])
    conics = jnp.array([[0.03, 0.004, 0.025], [0.02, -0.005, 0.03], [0.03, 0.0, 0.03]])
    colors = jnp.array([[0.9, 0.1, 0.2], [0.2, 0.8, 0.3], [0.1, 0.3, 0.9]])
    opacities = jnp.array([0.7, 0.5, 0.6])
    depths = jnp.array([1.0, 2.0, 3.0])
    radii = jnp.array([20, 20, 20], jnp.int32)
    w = h = 16
    weights = jnp.cos(jnp.arange(h * w * 3, dtype=jnp.float32)).reshape(h, w, 3)

    def f(params):
        out = api.rasterize(
            *params,
            depths,
            radii,
            width=w,
            height=h,
            capacity=64,
            implementation="pallas",
            interpret=True,
        )
        return jnp.sum(out.image * weights) + jnp.sum(out.alpha * weights[..., 1])

    params = (means, conics, colors, opacities)
    grads = jax.grad(f)(params)
    for key in jax.random.split(jax.random.PRNGKey(3), 2):
        direction = jax.tree.map(
            lambda p, k=key: jax.random.normal(k, p.shape) * jnp.abs(p) * 1e-2, params
        )
        directional = sum(
            float(jnp.sum(g * d))
            for g, d in zip(jax.tree.leaves(grads), jax.tree.leaves(direction))
        )
        plus = f(jax.tree.map(lambda p, d: p + d, params, direction))
        minus = f(jax.tree.map(lambda p, d: p - d, params, direction))
        fd = float(plus - minus) / 2.0
        assert abs(fd - directional) < 1e-2 * abs(fd) + 2e-4, (fd, directional)


def test_front_to_back_constants_closed_form():
    """Three stacked Gaussians: cap 0.99, blend, then stop before T < 1e-4."""
    means = jnp.full((3, 2), 8.5)
    conics = jnp.tile(jnp.array([[0.5, 0.0, 0.5]]), (3, 1))
    colors = jnp.eye(3)
    opacities = jnp.array([1.0, 0.98, 0.99])
    depths = jnp.array([1.0, 2.0, 3.0])
    radii = jnp.full((3,), 5, jnp.int32)
    for impl in ("reference", "pallas"):
        out = api.rasterize(
            means,
            conics,
            colors,
            opacities,
            depths,
            radii,
            width=16,
            height=16,
            background=jnp.ones(3),
            capacity=64,
            implementation=impl,
            interpret=True,
        )
        # Pixel (8, 8) is centred on the means: power 0, alphas 0.99, 0.98, 0.99.
        t_final = 0.01 * 0.02  # the third Gaussian would take T below 1e-4
        expected = np.array([0.99, 0.01 * 0.98, 0.0]) + t_final
        np.testing.assert_allclose(out.image[8, 8], expected, rtol=1e-5)
        np.testing.assert_allclose(out.alpha[8, 8], 1.0 - t_final, rtol=1e-6)


def test_invariants_constant_colour_and_alpha_range():
    args = list(random_scene(jax.random.PRNGKey(4), N, W, H))
    colour = jnp.array([0.3, 0.6, 0.9])
    args[2] = jnp.tile(colour[None], (N, 1))
    for impl in ("reference", "pallas", "xla"):
        out = api.rasterize(
            *args,
            width=W,
            height=H,
            background=colour,
            capacity=CAP,
            implementation=impl,
            interpret=True,
        )
        # Weights and the final transmittance sum to one at every pixel.
        np.testing.assert_allclose(
            out.image, jnp.broadcast_to(colour, (H, W, 3)), atol=2e-6
        )
        assert float(out.alpha.min()) >= 0.0
        assert float(out.alpha.max()) <= 1.0 - 1e-4 + 1e-7


def test_binning_matches_brute_force():
    means, _, _, _, depths, radii = random_scene(jax.random.PRNGKey(5), N, W, H)
    b = binning.bin_gaussians(means, depths, radii, W, H, capacity=1000)
    lo, hi = (np.asarray(x) for x in binning.tile_rects(means, radii, W, H))
    ids = np.asarray(b.gaussian_ids)
    depths = np.asarray(depths)
    starts, ends = np.asarray(b.tile_starts), np.asarray(b.tile_ends)
    ny, nx = binning.tile_grid(W, H)
    total = 0
    for ty in range(ny):
        for tx in range(nx):
            inside = [
                g
                for g in range(N)
                if lo[g, 0] <= tx < hi[g, 0] and lo[g, 1] <= ty < hi[g, 1]
            ]
            expected = sorted(inside, key=lambda g: (float(depths[g]), g))
            s, e = starts[ty, tx], ends[ty, tx]
            assert list(ids[s:e]) == expected
            total += len(expected)
    assert int(b.num_intersections) == total
    assert not bool(b.overflow)
    assert np.all(ids[total:] == N)


@pytest.mark.parametrize("capacity, tile", [(1000, 16), (64, 8)])
def test_binning_steps_compose_to_bin_gaussians(capacity, tile):
    """expand, sort and ranges, each jitted alone, give bin_gaussians bitwise."""
    means, _, _, _, depths, radii = random_scene(jax.random.PRNGKey(8), N, W, H)
    static = dict(width=W, height=H, capacity=capacity, tile=tile)
    b = jax.jit(binning.bin_gaussians, static_argnames=tuple(static))(
        means, depths, radii, **static
    )
    inter = jax.jit(binning.expand_intersections, static_argnames=tuple(static))(
        means, depths, radii, **static
    )
    keys, ids = jax.jit(binning.sort_intersections)(
        inter.tile_keys, inter.depth_bits, inter.gaussian_ids
    )
    starts, ends = jax.jit(binning.tile_ranges, static_argnums=(1, 2, 3))(
        keys, W, H, tile
    )
    composed = (ids, starts, ends, inter.num_intersections)
    for got, want in zip(composed, b[:4]):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    assert bool(b.overflow) == (int(inter.num_intersections) > capacity)
    # Unsorted slots: each Gaussian's tiles in a row, unused slots keyed last.
    ny, nx = binning.tile_grid(W, H, tile)
    used = min(int(inter.num_intersections), capacity)
    np.testing.assert_array_equal(np.diff(inter.gaussian_ids[:used]) >= 0, True)
    assert np.all(np.asarray(inter.tile_keys[used:]) == ny * nx)
    assert np.all(np.diff(np.asarray(keys).astype(np.int64)) >= 0)


@pytest.mark.parametrize("tile", [16, 8])
def test_depth_first_binning_equals_two_keys(tile):
    """Depth-sorted Gaussians + a tile-only sort give the (tile, depth) binning
    bit for bit, ties in depth included; overflow flags agree."""
    means, _, _, _, depths, radii = random_scene(jax.random.PRNGKey(9), N, W, H)
    depths = jnp.round(depths * 2.0) / 2.0  # many equal depths
    for capacity in (2048, 32):
        static = dict(width=W, height=H, capacity=capacity, tile=tile)
        fn = jax.jit(binning.bin_gaussians, static_argnames=(*static, "method"))
        a = fn(means, depths, radii, **static, method="two_keys")
        b = fn(means, depths, radii, **static, method="depth_first")
        assert bool(a.overflow) == bool(b.overflow) == (capacity == 32)
        np.testing.assert_array_equal(a.num_intersections, b.num_intersections)
        if capacity == 32:
            continue  # overflowing workspaces keep different intersections
        for got, want in zip(b[:3], a[:3]):
            np.testing.assert_array_equal(got, want)
    order = np.asarray(binning.depth_order(depths))
    keys = [(float(depths[g]), g) for g in order]
    assert keys == sorted(keys)
    with pytest.raises(ValueError, match="method must be"):
        binning.bin_gaussians(means, depths, radii, W, H, 64, method="radix")


def test_depth_first_rasterize_matches_default():
    args = random_scene(jax.random.PRNGKey(10), N, W, H)
    kw = dict(width=W, height=H, capacity=4096, implementation="xla")
    a = api.rasterize(*args, **kw)
    b = api.rasterize(*args, **kw, binning="depth_first")
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.alpha, b.alpha)


def test_overflow_is_detected_and_reported():
    args = random_scene(jax.random.PRNGKey(6), N, W, H)
    needed = int(jnp.sum(binning.count_intersections(args[0], args[5], W, H)))
    out = api.rasterize(
        *args,
        width=W,
        height=H,
        capacity=needed - 1,
        implementation="pallas",
        interpret=True,
    )
    assert bool(out.overflow)
    assert int(out.num_intersections) == needed
    tiles = api.rasterize(
        *args, width=W, height=H, capacity=CAP, max_per_tile=2, implementation="xla"
    )
    assert bool(tiles.overflow)
    with pytest.raises(binning.OverflowError, match=str(needed)):
        binning.check_overflow(out.num_intersections, needed - 1)
    binning.check_overflow(out.num_intersections, needed)


def test_culled_gaussians_do_not_render():
    args = list(random_scene(jax.random.PRNGKey(7), N, W, H))
    args[5] = jnp.zeros_like(args[5])
    for impl in ("reference", "pallas"):
        out = api.rasterize(
            *args,
            width=W,
            height=H,
            capacity=CAP,
            implementation=impl,
            interpret=True,
        )
        assert float(jnp.abs(out.image).max()) == 0.0
        assert int(out.num_intersections) == 0


def test_reference_single_gaussian_footprint():
    """Alpha of one isotropic Gaussian equals o exp(-r^2 / (2 var)) in its rect."""
    var = 4.0
    out = reference.rasterize(
        jnp.array([[16.0, 16.0]]),
        jnp.array([[1 / var, 0.0, 1 / var]]),
        jnp.ones((1, 1)),
        jnp.array([0.5]),
        jnp.ones(1),
        jnp.array([7], jnp.int32),
        32,
        32,
    )
    ys, xs = np.mgrid[0:32, 0:32] + 0.5
    alpha = 0.5 * np.exp(-((xs - 16) ** 2 + (ys - 16) ** 2) / (2 * var))
    alpha = np.where(alpha >= 1 / 255, alpha, 0.0)
    np.testing.assert_allclose(out[0][..., 0], alpha, atol=1e-6)


def test_running_total_saturates_instead_of_wrapping():
    big = 1 << 29
    counts = np.array([big, big, big, big - 1, 7, 0, 3], np.int64)
    got = np.asarray(binning.running_total(jnp.asarray(counts, jnp.int32)))
    want = np.minimum(np.cumsum(counts), binning.MAX_COUNT)
    np.testing.assert_array_equal(got, want)
    assert int(binning.total_intersections(jnp.asarray(counts[:1], jnp.int32))) == big
    small = np.arange(50, dtype=np.int32)
    np.testing.assert_array_equal(binning.running_total(small), np.cumsum(small))


def test_billions_of_intersections_overflow_instead_of_going_negative():
    # 600 Gaussians over a 2048 x 2048 image of 1-pixel tiles: 2.5e9
    # intersections, past int32's 2**31 - 1.
    n, size = 600, 2048
    means = jnp.full((n, 2), size / 2.0)
    radii = jnp.full((n,), 4 * size, jnp.int32)
    depths = jnp.linspace(1.0, 2.0, n)
    counts = binning.count_intersections(means, radii, size, size, tile=1)
    assert int(counts[0]) == size * size
    total = binning.total_intersections(counts)
    assert int(total) == binning.MAX_COUNT
    b = binning.bin_gaussians(means, depths, radii, size, size, capacity=1024, tile=1)
    assert int(b.num_intersections) == binning.MAX_COUNT and bool(b.overflow)
    # The first slots still hold the front Gaussian's first tiles, in order.
    assert int(b.tile_starts[0, 0]) == 0 and int(b.tile_ends[0, 0]) == 1
    with pytest.raises(binning.OverflowError, match="needs at least 1073741823"):
        binning.check_overflow(b.num_intersections, 1024)
    with pytest.raises(ValueError, match="capacity="):
        binning.bin_gaussians(means, depths, radii, 64, 64, capacity=1 << 30)


def test_pallas_lowers_to_triton_for_cuda():
    # Lowering for a CUDA target runs here without a GPU: it checks that every
    # op of the forward and backward kernels has a Triton lowering (the Triton
    # IR itself is compiled on the GPU). Shapes are abstract, nothing runs.
    from jax import export

    float_shape = lambda *s: jax.ShapeDtypeStruct(s, jnp.float32)
    means, conics, colors = float_shape(N, 2), float_shape(N, 3), float_shape(N, 3)
    opacities, depths = float_shape(N), float_shape(N)
    radii = jax.ShapeDtypeStruct((N,), jnp.int32)
    ct = float_shape(H, W, 3), float_shape(H, W)

    def fwd_bwd(means, conics, colors, opacities, depths, radii, ct):
        def f(*params):
            out = api.rasterize(
                *params,
                depths,
                radii,
                width=W,
                height=H,
                capacity=CAP,
                implementation="pallas",
                interpret=False,
            )
            return out.image, out.alpha

        out, pull = jax.vjp(f, means, conics, colors, opacities)
        return out, *pull(ct)

    triton = "__gpu$xla.gpu.triton"
    exported = export.export(
        jax.jit(fwd_bwd),
        platforms=["cuda"],
        disabled_checks=[export.DisabledSafetyCheck.custom_call(triton)],
    )(means, conics, colors, opacities, depths, radii, ct)
    assert exported.mlir_module().count(f"@{triton}") == 2


def test_package_exports_its_api():
    import jaxsuite.kernels.splatting as splatting

    assert splatting.rasterize is api.rasterize
    assert splatting.bin_gaussians is binning.bin_gaussians
    assert splatting.sort_intersections is binning.sort_intersections
    assert splatting.rasterize_reference is reference.rasterize
    assert all(hasattr(splatting, name) for name in splatting.__all__)
