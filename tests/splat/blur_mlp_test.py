"""The deblurring MLP: input layout, initialisation, clamps and transforms."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxsuite.splat import blur_mlp


def test_positional_encoding_layout_and_input_width():
    x = jnp.array([[0.3, -1.0, 2.0]])
    pe = blur_mlp.positional_encoding(x, 3)
    expected = [x]
    for k in range(3):
        expected += [jnp.sin(x * 2.0**k), jnp.cos(x * 2.0**k)]
    np.testing.assert_allclose(pe, jnp.concatenate(expected, -1), rtol=1e-6)
    assert pe.shape == (1, 21)
    assert blur_mlp.input_dim() == 91
    params = blur_mlp.init(jax.random.PRNGKey(0))
    assert params["trunk0"]["w"].shape == (91, 64)
    assert [params[f"trunk{i}"]["w"].shape for i in (1, 2)] == [(64, 64)] * 2


def test_init_gains_and_head_sizes():
    params = blur_mlp.init(jax.random.PRNGKey(1), motion=True, num_moments=4)
    assert params["s"]["w"].shape == (64, 15)
    assert params["r"]["w"].shape == (64, 20)
    assert params["p"]["w"].shape == (64, 12)
    defocus = blur_mlp.init(jax.random.PRNGKey(1))
    # Xavier-normal: std = gain * sqrt(2 / (fan_in + fan_out)); gain 0.1 for 3 outputs.
    std_s = float(jnp.std(defocus["s"]["w"]))
    std_r = float(jnp.std(defocus["r"]["w"]))
    np.testing.assert_allclose(std_s, 0.1 * np.sqrt(2 / 67), rtol=0.25)
    np.testing.assert_allclose(std_r, np.sqrt(2 / 68), rtol=0.25)
    assert all(float(jnp.abs(v["b"]).max()) == 0 for v in defocus.values())


def test_clamp_delta_range():
    out = jnp.linspace(-100.0, 100.0, 101)
    d = blur_mlp.clamp_delta(out, 0.01, 1.1)
    assert float(d.min()) == 1.0 and float(d.max()) == np.float32(1.1)
    np.testing.assert_allclose(blur_mlp.clamp_delta(jnp.array(5.0), 0.01, 1.1), 1.04)


def _gaussians(n=7):
    k = jax.random.split(jax.random.PRNGKey(2), 3)
    means = jax.random.normal(k[0], (n, 3))
    scales = jnp.exp(jax.random.normal(k[1], (n, 3)) - 3)
    q = jax.random.normal(k[2], (n, 4))
    return means, scales, q / jnp.linalg.norm(q, axis=-1, keepdims=True)


def test_defocus_transform_only_grows_scales_and_quaternions():
    means, scales, rots = _gaussians()
    params = blur_mlp.init(jax.random.PRNGKey(3))
    params["s"]["b"] = jnp.full((3,), 30.0)  # pushes the factor above the clamp
    m, s, q = blur_mlp.blur_transforms(params, means, scales, rots, jnp.ones(3))
    assert m.shape == (1, 7, 3) and s.shape == (1, 7, 3) and q.shape == (1, 7, 4)
    np.testing.assert_allclose(m[0], means)
    np.testing.assert_allclose(s[0], scales * np.float32(1.1), rtol=1e-6)
    ratio = q[0] / rots
    assert float(ratio.min()) >= 1.0 - 1e-6 and float(ratio.max()) <= 1.1 + 1e-6


def test_motion_layout_render_zero_unshifted():
    means, scales, rots = _gaussians()
    m_moments = 4
    params = blur_mlp.init(jax.random.PRNGKey(4), motion=True, num_moments=m_moments)
    params["p"]["b"] = jnp.arange(12.0)  # output channel c = axis * M + moment
    params["s"]["b"] = jnp.arange(15.0) * 2.0  # factor 1 - 0.01 + 0.02 c
    m, s, _ = blur_mlp.blur_transforms(
        params, means, scales, rots, jnp.zeros(3), lambda_p=1.0
    )
    assert m.shape == (5, 7, 3)
    np.testing.assert_allclose(m[0], means)
    out_p = blur_mlp.apply(params, means, scales, rots, jnp.zeros(3))[2]
    for i in range(m_moments):
        shift = out_p[:, [0 * m_moments + i, 1 * m_moments + i, 2 * m_moments + i]]
        np.testing.assert_allclose(m[i + 1], means + shift, rtol=1e-5, atol=1e-6)
    out_s = blur_mlp.apply(params, means, scales, rots, jnp.zeros(3))[0]
    ds = blur_mlp.clamp_delta(out_s, 0.01, 1.1).reshape(7, 3, 5)
    np.testing.assert_allclose(s[0], scales * ds[..., 4], rtol=1e-6)
    np.testing.assert_allclose(s[2], scales * ds[..., 1], rtol=1e-6)


def test_centred_offsets_keep_the_plain_gaussians_at_the_path_centroid():
    means, scales, rots = _gaussians()
    params = blur_mlp.init(jax.random.PRNGKey(6), motion=True, num_moments=3)
    params["p"]["b"] = jax.random.normal(jax.random.PRNGKey(7), (9,)) * 5
    kw = dict(lambda_p=0.1)
    free, s_free, q_free = blur_mlp.blur_transforms(
        params, means, scales, rots, jnp.ones(3), **kw
    )
    centred, s_c, q_c = blur_mlp.blur_transforms(
        params, means, scales, rots, jnp.ones(3), center_offsets=True, **kw
    )
    np.testing.assert_allclose(jnp.mean(centred, 0), means, atol=1e-5)
    # The same renders up to one shared per-Gaussian shift.
    shared = jnp.mean(free, 0) - means
    assert float(jnp.abs(shared).max()) > 1e-2
    np.testing.assert_allclose(centred, free - shared[None], atol=1e-5)
    np.testing.assert_array_equal(s_c, s_free)
    np.testing.assert_array_equal(q_c, q_free)


def test_relative_factors_are_one_in_some_view_and_keep_ratios():
    means, scales, rots = _gaussians()
    params = blur_mlp.init(jax.random.PRNGKey(8), scale_bias=1.2)
    # Large trunk weights make the factors differ strongly between views.
    params["s"]["w"] = params["s"]["w"] * 300
    centres = jax.random.normal(jax.random.PRNGKey(9), (5, 3))
    kw = dict(lambda_s=0.1, max_clamp=2.0)
    absolute = jnp.stack(
        [blur_mlp.factors(params, means, scales, rots, c, **kw)[0] for c in centres]
    )
    relative = jnp.stack(
        [
            blur_mlp.factors(
                params, means, scales, rots, c, reference_centers=centres, **kw
            )[0]
            for c in centres
        ]
    )
    assert float(jnp.std(absolute)) > 0.05
    np.testing.assert_allclose(jnp.min(relative, 0), 1.0, rtol=1e-6)
    assert float(relative.min()) >= 1.0
    np.testing.assert_allclose(
        relative[0] / relative[1], absolute[0] / absolute[1], rtol=1e-5
    )
    _, s, _ = blur_mlp.blur_transforms(
        params, means, scales, rots, centres[2], reference_centers=centres, **kw
    )
    np.testing.assert_allclose(s[0], scales * relative[2], rtol=1e-6)
    stats = blur_mlp.delta_stats(
        params, means, scales, rots, centres, lambda_p=0.0, relative_factors=True, **kw
    )
    np.testing.assert_allclose(
        stats["scale_factor_mean"], jnp.mean(relative), rtol=1e-5
    )


def test_mlp_inputs_carry_no_gradient():
    means, scales, rots = _gaussians()
    params = blur_mlp.init(jax.random.PRNGKey(5))

    def f(means, scales):
        _, s, _ = blur_mlp.blur_transforms(params, means, scales, rots, jnp.ones(3))
        return jnp.sum(s)

    g_means, g_scales = jax.grad(f, argnums=(0, 1))(means, scales)
    assert float(jnp.abs(g_means).max()) == 0.0
    # Only the direct product s * delta carries a gradient to the scales.
    _, s, _ = blur_mlp.blur_transforms(params, means, scales, rots, jnp.ones(3))
    np.testing.assert_allclose(g_scales, s[0] / scales, rtol=1e-5)


def test_delta_stats_closed_forms():
    n = 30
    key = jax.random.PRNGKey(0)
    means = jax.random.normal(key, (n, 3))
    scales = jnp.full((n, 3), 0.1)
    quats = jnp.zeros((n, 4)).at[:, 0].set(1.0)
    centres = jax.random.normal(jax.random.PRNGKey(1), (4, 3))
    params = blur_mlp.init(key, motion=True, num_moments=2)
    kw = dict(lambda_s=0.01, lambda_p=0.01, max_clamp=1.1)
    # With zero weights every head outputs its bias.
    for head in ("s", "r", "p"):
        params[head]["w"] = jnp.zeros_like(params[head]["w"])
    off = blur_mlp.delta_stats(params, means, scales, quats, centres, **kw)
    for name in ("scale", "rotation"):
        np.testing.assert_allclose(off[f"{name}_factor_mean"], 1.0)
        assert float(off[f"{name}_active_fraction"]) == 0.0
    assert float(off["offset_mean"]) == 0.0
    # s bias 6 -> delta_s = 1.05; r bias 40 -> 1.39, clamped to 1.1; p bias 3
    # -> offsets (0.03, 0.03, 0.03) on each of the M shifted renders.
    params["s"]["b"] = jnp.full_like(params["s"]["b"], 6.0)
    params["r"]["b"] = jnp.full_like(params["r"]["b"], 40.0)
    params["p"]["b"] = jnp.full_like(params["p"]["b"], 3.0)
    on = blur_mlp.delta_stats(params, means, scales, quats, centres, **kw)
    np.testing.assert_allclose(on["scale_factor_mean"], 1.05, rtol=1e-5)  # float32
    np.testing.assert_allclose(on["scale_factor_max"], 1.05, rtol=1e-5)
    np.testing.assert_allclose(on["rotation_factor_mean"], 1.1, rtol=1e-5)
    assert float(on["scale_active_fraction"]) == 1.0
    assert float(on["rotation_active_fraction"]) == 1.0
    np.testing.assert_allclose(on["offset_mean"], 0.03 * np.sqrt(3), rtol=1e-5)
    # Rotation factors that are not applied count as 1.
    unused = blur_mlp.delta_stats(
        params, means, scales, quats, centres, rotation_factors=False, **kw
    )
    np.testing.assert_allclose(unused["rotation_factor_max"], 1.0)
    assert float(unused["rotation_active_fraction"]) == 0.0
    np.testing.assert_allclose(unused["scale_factor_mean"], 1.05, rtol=1e-5)
    # Centred: the shifts (0, .03, .03) per axis become (-.02, .01, .01).
    centred = blur_mlp.delta_stats(
        params, means, scales, quats, centres, center_offsets=True, **kw
    )
    np.testing.assert_allclose(centred["offset_mean"], 0.04 / 3 * np.sqrt(3), rtol=1e-5)


def test_scale_bias_lifts_the_factors_out_of_the_clamps_flat_zone():
    means, scales, rots = _gaussians()
    kw = dict(lambda_s=0.01, max_clamp=1.1)

    def head_grad(params):
        def f(p):
            _, s, _ = blur_mlp.blur_transforms(
                p, means, scales, rots, jnp.ones(3), **kw
            )
            return jnp.sum(s)

        return jax.grad(f)(params)["s"]["w"]

    # The code's init: outputs near 0 give 0.99 < 1, clamped, no gradient.
    code = blur_mlp.init(jax.random.PRNGKey(6))
    assert float(jnp.abs(head_grad(code)).max()) == 0.0
    lifted = blur_mlp.init(jax.random.PRNGKey(6), scale_bias=3.0)
    np.testing.assert_array_equal(lifted["s"]["w"], code["s"]["w"])
    np.testing.assert_array_equal(lifted["r"]["b"], code["r"]["b"])
    assert float(jnp.abs(head_grad(lifted)).max()) > 0.0
    _, s, _ = blur_mlp.blur_transforms(lifted, means, scales, rots, jnp.ones(3), **kw)
    np.testing.assert_allclose(s[0] / scales, 1.02, atol=5e-3)


def test_rotation_factors_off_keeps_quaternions_and_scale_factors():
    means, scales, rots = _gaussians()
    params = blur_mlp.init(
        jax.random.PRNGKey(7), motion=True, num_moments=2, rotation_bias=3.0
    )
    kw = dict(lambda_s=0.1, lambda_p=0.01, max_clamp=2.0)
    on = blur_mlp.blur_transforms(params, means, scales, rots, jnp.ones(3), **kw)
    off = blur_mlp.blur_transforms(
        params, means, scales, rots, jnp.ones(3), rotation_factors=False, **kw
    )
    assert float(jnp.abs(on[2] - rots[None]).max()) > 0.0
    np.testing.assert_array_equal(off[2], jnp.broadcast_to(rots, off[2].shape))
    np.testing.assert_array_equal(off[0], on[0])
    np.testing.assert_array_equal(off[1], on[1])


def test_nnx_module_computes_exactly_what_the_pure_function_did():
    """Same weights, same inputs: BlurMLP and apply/blur_transforms agree
    bit for bit, for both heads, also through nnx.split/merge and jit."""
    from flax import nnx

    key = jax.random.PRNGKey(3)
    n = 17
    k = jax.random.split(key, 5)
    means = jax.random.normal(k[0], (n, 3)) * 2.0
    scales = jnp.exp(jax.random.normal(k[1], (n, 3)) - 3.0)
    rot = jax.random.normal(k[2], (n, 4))
    rot = rot / jnp.linalg.norm(rot, axis=-1, keepdims=True)
    centre = jax.random.normal(k[3], (3,))
    for motion in (False, True):
        params = blur_mlp.init(k[4], motion=motion, num_moments=3, scale_bias=0.5)
        module = blur_mlp.BlurMLP(motion=motion, num_moments=3, rngs=nnx.Rngs(0))
        module.load_params(params)
        want = blur_mlp.apply(params, means, scales, rot, centre)
        got = module(means, scales, rot, centre)
        for a, b in zip(want, got):
            if a is None:
                assert b is None
            else:
                np.testing.assert_array_equal(a, b)
        graphdef, state = nnx.split(module)

        @functools.partial(jax.jit, static_argnums=0)
        def transforms(graphdef, state, c):
            mlp = nnx.merge(graphdef, state)
            return blur_mlp.blur_transforms(mlp, means, scales, rot, c)

        ref = jax.jit(lambda p, c: blur_mlp.blur_transforms(p, means, scales, rot, c))(
            params, centre
        )
        for a, b in zip(ref, transforms(graphdef, state, centre)):
            np.testing.assert_array_equal(a, b)
        back = module.to_params()
        assert jax.tree.structure(back) == jax.tree.structure(params)
        jax.tree.map(np.testing.assert_array_equal, back, params)


def test_nnx_module_initialises_like_the_code():
    """Xavier-normal std with gain 0.1 on the 3-output head, 1 elsewhere;
    zero biases except the requested head bias."""
    from flax import nnx

    module = blur_mlp.BlurMLP(scale_bias=1.2, rngs=nnx.Rngs(1), width=256)
    w = np.asarray(module.trunk[1].kernel[...])
    np.testing.assert_allclose(w.std(), np.sqrt(2.0 / 512), rtol=0.05)
    s = np.asarray(module.s.kernel[...])
    np.testing.assert_allclose(s.std(), 0.1 * np.sqrt(2.0 / 259), rtol=0.1)
    np.testing.assert_array_equal(module.s.bias[...], np.float32(1.2))
    np.testing.assert_array_equal(module.r.bias[...], 0.0)
