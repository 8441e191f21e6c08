"""Prior conditions and data: prompt layout, group dropout, relative cameras,
the UNet's diffusers structure and the diffusion sampler."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxsuite.gen3d import diffusion, objects, priors, unet


def test_view_buckets_follow_dreamfusion():
    az = jnp.array([0.0, 44.0, 46.0, -90.0, 134.0, 136.0, 180.0, -179.0, 360.0])
    np.testing.assert_array_equal(priors.view_bucket(az), [0, 0, 1, 1, 1, 2, 2, 2, 0])


def test_prompt_layout_and_null():
    label = jnp.array([2, 1, 4, 0])
    c = priors.image_condition(label, 170.0, True, ("class", "color_b", "view"))
    on = np.nonzero(np.asarray(c))[0].tolist()
    # class 2, colour B 4, view back (2), modality flag.
    assert on == [2, 10 + 4, 19 + 2, 22]
    np.testing.assert_array_equal(
        np.nonzero(np.asarray(priors.null_condition(c)))[0], [22]
    )
    full = priors.image_condition(
        label[None], jnp.zeros(1), False, tuple(priors.COND_GROUPS)[:5]
    )
    assert full.shape == (1, priors.COND_DIM) and float(full.sum()) == 5.0


def test_group_dropout_never_drops_the_modality():
    label = jnp.tile(jnp.array([[1, 2, 3, 1]]), (4000, 1))
    c = priors.image_condition(
        label, jnp.zeros(4000), True, tuple(priors.COND_GROUPS)[:5]
    )
    d = np.asarray(priors.drop_groups(jax.random.PRNGKey(0), c))
    assert np.all(d[:, 22] == 1.0)
    for g, p in priors.GROUP_DROP.items():
        lo, hi = priors.COND_GROUPS[g]
        kept = d[:, lo:hi].sum(1).mean()
        want = (1 - p) * (1 - priors.NULL_DROP)
        assert abs(kept - want) < 0.03, g


def test_relative_camera_matches_zero123():
    c = np.asarray(priors.camera_condition(10.0, 30.0, 40.0, 120.0, 0.5))
    np.testing.assert_allclose(c, [np.deg2rad(-30.0), 1.0, 0.0, 0.5], atol=1e-6)
    el, az = priors.elevation_azimuth(
        objects.camera(jnp.array([20.0]), jnp.array([-70.0]))
    )
    np.testing.assert_allclose([float(el[0]), float(az[0])], [20.0, -70.0], atol=1e-4)


def test_dataset_views_and_normal_maps():
    d = priors.make_dataset([5], 3, 16, jax.random.PRNGKey(0))
    assert d["rgb"].shape == (1, 3, 16, 16, 3) and d["rgb"].dtype == np.uint8
    assert d["elev"][0, 0] == 0.0 and d["azim"][0, 0] == 0.0
    assert np.all((d["elev"] >= -10) & (d["elev"] <= 45))
    n = d["normal"][0, 0].astype(np.float32) / 255.0 * 2 - 1
    on = np.linalg.norm(n, axis=-1) < 1.5  # background is white: (1, 1, 1)
    # Camera-space normals face the camera (+z) on the visible surface.
    assert np.all(n[on][:, 2] > -0.1)
    np.testing.assert_allclose(np.linalg.norm(n[on], axis=-1), 1.0, atol=0.05)


def test_unet_shapes_and_timestep_embedding():
    cfg = unet.UNetConfig(
        sample_size=8,
        block_out_channels=(8,),
        norm_num_groups=4,
        attention_head_dim=4,
        class_embed_dim=3,
    )
    m = unet.create(cfg, 0)
    x = jnp.ones((2, 8, 8, 3))
    out = nnx.jit(lambda m, x, t, c: m(x, t, c))(
        m, x, jnp.array([1.0, 500.0]), jnp.eye(3)[:2]
    )
    assert out.shape == (2, 8, 8, 3)
    assert unet.count_params(m) > 0
    emb = unet.timestep_embedding(jnp.array([0.0]), 8)
    np.testing.assert_allclose(emb, [[1, 1, 1, 1, 0, 0, 0, 0]], atol=1e-6)  # cos first


def test_schedule_and_ddim_recover_a_point_mass():
    sched = diffusion.Schedule()
    ab = sched.alphas_cumprod
    assert ab[0] > 0.999 and ab[-1] < 1e-3 and np.all(np.diff(ab) < 0)
    x0 = jnp.full((2, 4), 0.3)
    # The exact denoiser of a point mass at 0.3: eps = (x - sqrt(ab) x0) / sqrt(1 - ab).
    abj = jnp.asarray(ab)

    def eps_fn(x, t):
        a = abj[t][:, None]
        return (x - jnp.sqrt(a) * 0.3) / jnp.sqrt(1 - a)

    x = diffusion.ddim_sample(
        sched, eps_fn, jax.random.normal(jax.random.PRNGKey(0), (2, 4)), 999, 10
    )
    np.testing.assert_allclose(x, x0, atol=1e-4)
    y = diffusion.sdedit(
        sched, eps_fn, x0 + 0.2, jnp.float32(0.4), 5, jax.random.PRNGKey(1)
    )
    np.testing.assert_allclose(y, x0, atol=1e-4)
