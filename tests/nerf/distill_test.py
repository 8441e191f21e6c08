"""Tests for progressive volume distillation: inheritance, stages, losses,
data, and that a student converges to its teacher."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxsuite.core import cameras
from jaxsuite.nerf import distill, fields, occupancy, trainer

CFG = fields.FieldConfig(
    hidden=16,
    hash_levels=4,
    hash_log2_table=10,
    hash_max_resolution=64.0,
    mlp_depth=3,
    mlp_width=16,
    mlp_freqs=4,
    vm_resolution=8,
    vm_sigma_rank=2,
    vm_color_rank=3,
    dense_resolution=6,
)
DC = distill.DistillConfig(
    total_steps=30,
    stage1_steps=0,
    stage2_steps=0,
    batch_rays=64,
    num_samples=12,
    poses_per_epoch=4,
    steps_per_epoch=5,
    image_size=16,
)


def test_inherit_copies_matching_names_and_shapes():
    key = jax.random.key(0)
    p = {
        a: fields.init(jax.random.fold_in(key, i), a, CFG)
        for i, a in enumerate(fields.ARCHS)
    }
    mlp, copied = distill.inherit(p["mlp"], p["hash"])
    assert set(copied) == {f"sigma_net/w{i}" for i in range(2)} | {
        f"color_net/w{i}" for i in range(3)
    }
    np.testing.assert_array_equal(mlp["sigma_net"]["w1"], p["hash"]["sigma_net"]["w1"])
    np.testing.assert_array_equal(mlp["encoder"]["w0"], p["mlp"]["encoder"]["w0"])
    _, copied = distill.inherit(p["vm"], p["hash"])
    assert set(copied) == {f"color_net/w{i}" for i in range(3)}
    _, copied = distill.inherit(p["dense"], p["vm"])
    assert copied == []


def test_stage_boundaries_skip_feature_stage_for_dense():
    dc = distill.DistillConfig(stage1_steps=100, stage2_steps=300)
    assert distill.stage_boundaries("hash", "mlp", dc) == (100, 300)
    assert distill.stage_boundaries("dense", "mlp", dc) == (0, 200)
    assert distill.stage_boundaries("vm", "dense", dc) == (0, 200)


def test_random_rays_pass_through_pixel_centres():
    poses = cameras.random_poses(jax.random.key(1), 3, 4.0)
    K = cameras.intrinsics(16, 16, fov_x_deg=40.0)
    o, d = distill.random_rays(jax.random.key(2), poses, K, 16, 32)
    np.testing.assert_allclose(jnp.linalg.norm(d, axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(jnp.linalg.norm(o, axis=-1), 4.0, rtol=1e-5)
    eyes = np.asarray(poses[:, :3, 3])
    for oi, di in zip(np.asarray(o), np.asarray(d)):
        cam = int(np.argmin(np.linalg.norm(eyes - oi, axis=-1)))
        uv, depth = cameras.project_points(oi + 2.0 * di, poses[cam], K)
        assert float(depth) > 0
        np.testing.assert_allclose(np.asarray(uv) % 1.0, [0.5, 0.5], atol=1e-3)


def test_losses_are_unsquared_l2_norms_over_valid_samples():
    rng = np.random.default_rng(0)
    mk = lambda: fields.FieldOutput(
        jnp.asarray(rng.normal(size=(4, 5, 16)), jnp.float32),
        jnp.asarray(rng.normal(size=(4, 5)), jnp.float32),
        jnp.asarray(rng.uniform(size=(4, 5, 3)), jnp.float32),
    )
    s, t = mk(), mk()
    valid = jnp.asarray(rng.uniform(size=(4, 5)) > 0.4)
    rs, rt = jnp.ones((4, 3)), jnp.zeros((4, 3))
    out = distill.distill_losses(s, t, rs, rt, valid)
    v = np.asarray(valid)
    np.testing.assert_allclose(
        out["sigma"],
        np.sqrt(np.sum((np.asarray(s.log_sigma - t.log_sigma)[v]) ** 2)),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        out["feature"], np.linalg.norm(np.asarray(s.feature - t.feature)[v]), rtol=1e-5
    )
    np.testing.assert_allclose(out["rgb"], np.sqrt(12.0), rtol=1e-5)
    same = distill.distill_losses(s, s, rs, rs, valid)
    for value in same.values():
        assert float(value) < 1e-5


def _step(teacher_arch, t_params, student_arch, s_params, dc):
    oc = trainer.OptimConfig(lr_grid=1e-2, lr_net=1e-2, total_steps=dc.total_steps)
    tx = trainer.make_optimizer(s_params, student_arch, oc)
    occ = occupancy.init_grid(4)
    K = cameras.intrinsics(16, 16, fov_x_deg=40.0)
    fn = distill.make_distill_step(
        teacher_arch,
        t_params,
        student_arch,
        CFG,
        tx,
        occ.mask,
        K,
        jax.random.key(3),
        dc,
    )
    return fn, distill.DistillState(s_params, tx.init(s_params))


def test_identical_student_gets_zero_loss():
    # The teacher sees the student's exact samples, directions and background,
    # so a student equal to its teacher has nothing to learn.
    teacher = fields.init(jax.random.key(4), "vm", CFG)
    student, copied = distill.inherit(
        fields.init(jax.random.key(5), "vm", CFG), teacher
    )
    assert len(copied) == len(jax.tree.leaves(teacher))
    dc = distill.DistillConfig(**{**DC.__dict__, "vm_l1": 0.0})
    fn, state = _step("vm", teacher, "vm", student, dc)
    _, scalars = fn(state, jnp.asarray(7, jnp.int32))
    for name in ("feature", "sigma", "color", "rgb"):
        assert float(scalars[name]) < 1e-4, name


def test_student_converges_towards_teacher():
    # Teacher: uniform density e^2 and a uniform, view-independent colour.
    grid = jnp.zeros((6, 6, 6, 28)).at[..., 0].set(2.0)
    grid = grid.at[..., 1].set(4.0).at[..., 10].set(-2.0)  # DC terms of R, G
    teacher = {"encoder": {"grid": grid}}
    student = fields.init(jax.random.key(7), "mlp", CFG)
    fn, state = _step("dense", teacher, "mlp", student, DC)
    hist = {"sigma": [], "color": [], "rgb": []}
    for step in range(1, 31):
        state, scalars = fn(state, jnp.asarray(step, jnp.int32))
        for k in hist:
            hist[k].append(float(scalars[k]))
    for k, v in hist.items():
        assert np.all(np.isfinite(v))
        assert np.mean(v[-5:]) < 0.5 * np.mean(v[:5]), (k, v)
