"""``render_cameras``: one compiled call for many cameras equals a loop of renders."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsuite.core import cameras
from jaxsuite.splat import render as render_lib
from jaxsuite.splat import scenes

SIZE = 32
N = 64
FOV = 50.0


def _scene_and_cameras():
    K = cameras.intrinsics(SIZE, SIZE, fov_x_deg=FOV)
    scene = scenes.random_scene(jax.random.key(0), N, float(K[0, 0]), FOV)
    c2ws = scenes.nearby_cameras(2, spread=0.4)
    Ks = jnp.stack([K, cameras.intrinsics(SIZE, SIZE, fov_x_deg=FOV + 6.0)])
    return scene, c2ws, Ks


def _loop(scene, c2ws, Ks, **kw):
    outs = [
        render_lib.render(**scene, c2w=c2ws[i], K=Ks[i], **kw)
        for i in range(c2ws.shape[0])
    ]
    return jax.tree.map(lambda *x: jnp.stack(x), *outs)


@pytest.mark.parametrize("implementation", ["xla", "pallas"])
def test_render_cameras_equals_a_loop_of_renders(implementation):
    scene, c2ws, Ks = _scene_and_cameras()
    kw = dict(
        width=SIZE,
        height=SIZE,
        background=jnp.array([0.2, 0.4, 0.6]),
        capacity=1 << 10,
        max_per_tile=128,
        implementation=implementation,
        interpret=True,
    )
    weights = jnp.cos(jnp.arange(2 * SIZE * SIZE * 3, dtype=jnp.float32))
    weights = weights.reshape(2, SIZE, SIZE, 3)

    def loss(means, opacities, batched):
        s = dict(scene, means=means, opacities=opacities)
        if batched:
            out = render_lib.render_cameras(**s, c2ws=c2ws, Ks=Ks, **kw)
        else:
            out = _loop(s, c2ws, Ks, **kw)
        return jnp.sum(out.image * weights) + jnp.sum(out.alpha), out

    args = (scene["means"], scene["opacities"])
    grad = jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True), static_argnums=2)
    (g_means, g_opac), batched = grad(*args, True)
    (want_means, want_opac), looped = grad(*args, False)
    assert batched.image.shape == (2, SIZE, SIZE, 3)
    assert batched.alpha.shape == (2, SIZE, SIZE)
    assert batched.num_intersections.shape == batched.overflow.shape == (2,)
    np.testing.assert_allclose(batched.image, looped.image, atol=2e-6)
    np.testing.assert_allclose(batched.alpha, looped.alpha, atol=2e-6)
    np.testing.assert_array_equal(batched.num_intersections, looped.num_intersections)
    assert not np.any(looped.overflow) and not np.any(batched.overflow)
    # The two cameras see the scene differently.
    assert float(jnp.abs(batched.image[0] - batched.image[1]).max()) > 0.1
    for got, want in ((g_means, want_means), (g_opac, want_opac)):
        scale = float(jnp.abs(want).max())
        assert scale > 0
        np.testing.assert_allclose(got, want, atol=2e-5 * scale)


@pytest.mark.parametrize("implementation", ["xla", "pallas"])
def test_render_cameras_flags_overflow_per_camera(implementation):
    scene, c2ws, Ks = _scene_and_cameras()
    kw = dict(width=SIZE, height=SIZE, implementation=implementation, interpret=True)
    needed = render_lib.render_cameras(
        **scene, c2ws=c2ws, Ks=Ks, capacity=1 << 10, **kw
    ).num_intersections
    needed = np.asarray(needed)
    assert needed[0] != needed[1] and not np.any(needed > 1 << 10)
    capacity = int(needed.min())
    out = render_lib.render_cameras(**scene, c2ws=c2ws, Ks=Ks, capacity=capacity, **kw)
    np.testing.assert_array_equal(out.num_intersections, needed)
    np.testing.assert_array_equal(out.overflow, needed > capacity)


def test_render_cameras_pallas_lowers_to_triton_for_cuda():
    # The camera axis becomes a grid axis of both kernels; lowering for a CUDA
    # target runs here without a GPU and needs a Triton lowering of each.
    from jax import export

    scene, c2ws, Ks = _scene_and_cameras()
    triton = "__gpu$xla.gpu.triton"

    def fwd_bwd(scene, c2ws, Ks, ct):
        def f(means, opacities):
            s = dict(scene, means=means, opacities=opacities)
            out = render_lib.render_cameras(
                **s,
                c2ws=c2ws,
                Ks=Ks,
                width=SIZE,
                height=SIZE,
                capacity=1 << 10,
                implementation="pallas",
                interpret=False,
            )
            return out.image

        out, pull = jax.vjp(f, scene["means"], scene["opacities"])
        return out, *pull(ct)

    ct = jnp.ones((2, SIZE, SIZE, 3))
    exported = export.export(
        jax.jit(fwd_bwd),
        platforms=["cuda"],
        disabled_checks=[export.DisabledSafetyCheck.custom_call(triton)],
    )(scene, c2ws, Ks, ct)
    assert exported.mlir_module().count(f"@{triton}") == 2
