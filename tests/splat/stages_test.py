"""The frame's stages compose to ``render``: image, gradients, reference window."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsuite.core import cameras
from jaxsuite.splat import render as render_lib
from jaxsuite.splat import scenes, stages

W, H = 48, 32
N = 96
FOV = 50.0


def _setup():
    K = cameras.intrinsics(W, H, fov_x_deg=FOV)
    scene = scenes.random_scene(jax.random.key(3), N, float(K[0, 0]), FOV, H / W)
    c2w = scenes.nearby_cameras(2, spread=0.2)[1]
    return scene, c2w, K


@pytest.mark.parametrize("implementation", ["xla", "pallas"])
def test_stages_compose_to_render_and_its_gradients(implementation):
    scene, c2w, K = _setup()
    bg = jnp.array([0.3, 0.5, 0.7])
    kw = dict(width=W, height=H, capacity=1 << 11, max_per_tile=128)
    kw.update(implementation=implementation, interpret=True, background=bg)
    fwd, out = stages.forward_stages(scene, c2w, K, **kw)
    assert [s.name for s in fwd] == list(stages.FORWARD)
    ct = jax.random.normal(jax.random.key(4), (H, W, 3))
    bwd, grads = stages.backward_stages(scene, c2w, K, out, ct, width=W, height=H)
    want_names = [
        n for n in stages.BACKWARD if implementation == "pallas" or n != "segment_sum"
    ]
    assert [s.name for s in bwd] == want_names

    def frame(s):
        return render_lib.render(**s, c2w=c2w, K=K, **kw)

    want = jax.jit(frame)(scene)
    assert int(want.num_intersections) > 0 and not bool(want.overflow)
    np.testing.assert_allclose(out["image"], want.image, atol=1e-6)
    np.testing.assert_allclose(out["alpha"], want.alpha, atol=1e-6)
    # Each stage recomputes its stored output from its stored inputs.
    np.testing.assert_array_equal(fwd[-1].fn(*fwd[-1].args)[0], out["image"])
    want_grads = jax.jit(lambda s: jax.vjp(lambda s: frame(s).image, s)[1](ct)[0])(
        scene
    )
    for name, g in want_grads.items():
        scale = float(jnp.abs(g).max())
        assert scale > 0, name
        np.testing.assert_allclose(grads[name], g, atol=1e-4 * scale, err_msg=name)


def test_reference_window_equals_the_whole_frame_reference():
    scene, c2w, K = _setup()
    bg = jnp.ones(3)
    _, out = stages.forward_stages(
        scene, c2w, K, width=W, height=H, capacity=1 << 11, implementation="xla",
        background=bg,
    )  # fmt: skip
    p = out["proj"]
    whole = stages.reference_window(
        p, out["colors"], scene["opacities"], W, H, (0, 0, H, W), bg
    )
    window = stages.reference_window(
        p, out["colors"], scene["opacities"], W, H, (16, 16, 16, 32), bg
    )
    np.testing.assert_allclose(window, whole[16:32, 16:48], atol=1e-6)
    np.testing.assert_allclose(whole, out["image"], atol=1e-6)
    with pytest.raises(ValueError, match="grid"):
        stages.reference_window(
            p, out["colors"], scene["opacities"], W, H, (8, 0, 8, 8), bg
        )
